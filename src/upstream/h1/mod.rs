//! A lean HTTP/1.1 client for plain-http upstreams whose answers are read whole
//! (aggregate backends). The request is written and the answer read on the caller's
//! task, without hyper's per-connection task and the channel hop to it; idle connections
//! wait in a bounded pool, the most recently used first.

mod parse;

use super::CallError;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use parse::{ChunkedDecoder, Collected, Framing, Head, ParseError};
use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A body up to this size goes out in the same write as the head.
const INLINE_BODY: usize = 16 * 1024;
/// An idle connection keeps a read buffer up to this size; a larger one is dropped.
const KEEP_BUFFER: usize = 64 * 1024;

/// The connections of one plain-http upstream.
#[derive(Debug)]
pub struct H1Pool {
    /// Where to connect: `host:port`.
    addr: String,
    /// The `Host` of a request that does not set its own.
    host: HeaderValue,
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    conn: Connection,
    since: Instant,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    buf: BytesMut,
}

/// A whole answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// How one exchange on one connection failed.
enum Failure {
    /// The connection was closed before any byte of an answer: a pooled connection the
    /// upstream had already given up on.
    Closed,
    Call(CallError),
}

impl From<ParseError> for Failure {
    fn from(e: ParseError) -> Self {
        Failure::Call(match e {
            ParseError::TooLarge(limit) => CallError::TooLarge(limit),
            other => CallError::Failed(other.to_string()),
        })
    }
}

impl H1Pool {
    /// The pool of an `http://` base URL; `None` for any other (TLS goes through hyper).
    pub fn for_base(
        base: &str,
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
    ) -> Option<Self> {
        let uri: Uri = base.parse().ok()?;
        if uri.scheme_str() != Some("http") {
            return None;
        }
        let authority = uri.authority()?;
        let addr = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        let host = HeaderValue::from_str(authority.as_str()).ok()?;
        Some(Self {
            addr,
            host,
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            idle_timeout,
            connect_timeout,
        })
    }

    /// Sends one request and reads the whole answer, of at most `limit` body bytes.
    pub async fn send(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<&Bytes>,
        limit: u64,
    ) -> Result<Reply, CallError> {
        let (request, keep) = self.request(method, uri, headers, body);
        let tail = body.filter(|b| b.len() > INLINE_BODY);
        loop {
            let (mut conn, pooled) = match self.checkout() {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            match conn.exchange(&request, tail, method, limit).await {
                Ok((reply, reusable)) => {
                    if keep && reusable {
                        self.checkin(conn);
                    }
                    return Ok(reply);
                }
                // The upstream closed a pooled connection as it was taken: send again on
                // another, as hyper and nginx do, when sending twice is harmless.
                Err(Failure::Closed) if pooled && super::is_idempotent(method) => continue,
                Err(Failure::Closed) => {
                    return Err(CallError::Failed(
                        "connection closed before an answer".into(),
                    ));
                }
                Err(Failure::Call(e)) => return Err(e),
            }
        }
    }

    /// The request head (and a small body) as bytes, and whether the connection may be
    /// kept after it.
    fn request(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> (Vec<u8>, bool) {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let inline = body
            .filter(|b| b.len() <= INLINE_BODY)
            .map_or(0, Bytes::len);
        let mut out = Vec::with_capacity(128 + path.len() + 32 * headers.len() + inline);
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !headers.contains_key(header::HOST) {
            line(&mut out, b"host", self.host.as_bytes());
        }
        let mut keep = true;
        for (name, value) in headers {
            // The framing is the client's to set, from the body it actually sends.
            if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
                continue;
            }
            if name == header::CONNECTION && value.as_bytes().eq_ignore_ascii_case(b"close") {
                keep = false;
            }
            line(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
        let length = body.map_or(0, Bytes::len);
        if body.is_some() || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            let mut digits = itoa::Buffer::new();
            line(
                &mut out,
                b"content-length",
                digits.format(length).as_bytes(),
            );
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = body.filter(|b| b.len() <= INLINE_BODY) {
            out.extend_from_slice(body);
        }
        (out, keep)
    }

    /// The most recently used idle connection that is still open.
    fn checkout(&self) -> Option<Connection> {
        loop {
            let idle = self.idle.lock().expect("never poisoned").pop_back()?;
            if idle.since.elapsed() < self.idle_timeout && idle.conn.is_open() {
                return Some(idle.conn);
            }
        }
    }

    fn checkin(&self, mut conn: Connection) {
        if conn.buf.capacity() > KEEP_BUFFER {
            conn.buf = BytesMut::new();
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().expect("never poisoned");
        // The least recently used wait at the front: the expired ones are closed here.
        while idle
            .front()
            .is_some_and(|i| now.duration_since(i.since) >= self.idle_timeout)
        {
            idle.pop_front();
        }
        if idle.len() < self.max_idle {
            idle.push_back(Idle { conn, since: now });
        }
    }

    async fn connect(&self) -> Result<Connection, CallError> {
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(&self.addr),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(CallError::Connect(e.to_string())),
            Err(_) => {
                let after = humantime::format_duration(self.connect_timeout);
                return Err(CallError::Connect(format!("no connection within {after}")));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            stream,
            buf: BytesMut::new(),
        })
    }
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl Connection {
    /// An idle connection with nothing to read is open. Anything readable (the
    /// upstream's close, or bytes nobody asked for) makes it unusable. The readiness
    /// the runtime already knows is checked first, so a healthy one costs no syscall.
    fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => matches!(
                self.stream.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Writes `request` (then `tail`, a large body) and reads the answer. Also returns
    /// whether the connection can be used again.
    async fn exchange(
        &mut self,
        request: &[u8],
        tail: Option<&Bytes>,
        method: &Method,
        limit: u64,
    ) -> Result<(Reply, bool), Failure> {
        if self.stream.write_all(request).await.is_err() {
            return Err(Failure::Closed);
        }
        if let Some(tail) = tail {
            self.stream.write_all(tail).await.map_err(failed)?;
        }
        let head = self.read_head().await?;
        let framing = Framing::of(method, &head)?;
        let mut reusable = parse::keeps_alive(&head);
        let body = match framing {
            Framing::Empty => Bytes::new(),
            Framing::Length(n) => self.read_exact(n, limit).await?,
            Framing::Chunked => self.read_chunked(limit).await?,
            Framing::UntilClose => {
                reusable = false;
                self.read_to_close(limit).await?
            }
        };
        // Bytes after the answer were never asked for: the connection is out of step.
        reusable &= self.buf.is_empty();
        let reply = Reply {
            status: head.status,
            headers: head.headers,
            body,
        };
        Ok((reply, reusable))
    }

    /// The final answer head; interim 1xx answers (100 Continue, 103) are skipped.
    async fn read_head(&mut self) -> Result<Head, Failure> {
        let mut received = false;
        loop {
            if let Some(head) = parse::parse_head(&mut self.buf)? {
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(failed("answered 101 to a request without Upgrade"));
                }
                return Ok(head);
            }
            match self.fill(4096).await {
                Ok(0) if !received => return Err(Failure::Closed),
                Ok(0) => return Err(failed("connection closed in the answer head")),
                Ok(_) => received = true,
                // A reset before any answer is the same closed pooled connection.
                Err(_) if !received => return Err(Failure::Closed),
                Err(e) => return Err(failed(e)),
            }
        }
    }

    async fn read_exact(&mut self, n: u64, limit: u64) -> Result<Bytes, Failure> {
        if n > limit {
            return Err(Failure::Call(CallError::TooLarge(limit)));
        }
        let n = n as usize;
        while self.buf.len() < n {
            let wanted = n - self.buf.len();
            if self.fill(wanted).await.map_err(failed)? == 0 {
                return Err(failed("connection closed before the whole answer"));
            }
        }
        Ok(self.buf.split_to(n).freeze())
    }

    async fn read_chunked(&mut self, limit: u64) -> Result<Bytes, Failure> {
        let mut decoder = ChunkedDecoder::default();
        let mut body = Collected::new(limit);
        while !decoder.decode(&mut self.buf, &mut body)? {
            if self.fill(8192).await.map_err(failed)? == 0 {
                return Err(failed("connection closed before the last chunk"));
            }
        }
        Ok(body.finish())
    }

    async fn read_to_close(&mut self, limit: u64) -> Result<Bytes, Failure> {
        let mut body = Collected::new(limit);
        loop {
            if !self.buf.is_empty() {
                body.push(self.buf.split().freeze())?;
            }
            if self.fill(8192).await.map_err(failed)? == 0 {
                return Ok(body.finish());
            }
        }
    }

    /// Reads once, with room for at least `wanted` more bytes (up to 64 KiB).
    async fn fill(&mut self, wanted: usize) -> io::Result<usize> {
        self.buf.reserve(wanted.clamp(4096, KEEP_BUFFER));
        self.stream.read_buf(&mut self.buf).await
    }
}

fn failed(e: impl ToString) -> Failure {
    Failure::Call(CallError::Failed(e.to_string()))
}
