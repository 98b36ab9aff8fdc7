//! The HTTP/1.1 client of one plain-http upstream: aggregate backends (answers read
//! whole) and bodiless proxied requests (answers streamed back). The request is written
//! and the answer read on the caller's task, without hyper's per-connection task and the
//! channel hop to it; idle connections wait in a bounded pool, the most recently used
//! first. TLS upstreams, uploads and upgrades go through hyper (`upstream::transport`).
//! Why hand-written: hyper's `client::conn::http1` connection, pooled and driven on the
//! caller's task, costs ~157 µs CPU per 3-backend aggregate against ~88 µs here
//! (`bench/run --only a,b`, (b): ~2,600 against ~4,150 req/s; (a) within noise).

mod body;
mod conn;

pub use body::AnswerBody;

use super::framing::{Framing, keeps_alive};
use super::parse::{AnswerHead, ParseError};
use crate::trace::TraceParent;
use crate::trace::context::TRACEPARENT;
use bytes::{Bytes, BytesMut};
use conn::Connection;
use http::{HeaderMap, HeaderValue, Method, Response, Uri, header};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A body up to this size goes out in the same write as the head.
const INLINE_BODY: usize = 16 * 1024;
/// An idle connection keeps a read buffer up to this size; a larger one is dropped.
const KEEP_BUFFER: usize = 64 * 1024;
/// An idle connection used this recently is reused without asking its socket whether
/// the upstream closed it (`Pool::checkout`). Upstreams' keep-alive timeouts are seconds.
const RECENTLY_USED: Duration = Duration::from_secs(1);

/// The connections of one plain-http upstream.
#[derive(Debug)]
pub struct Pool {
    /// Where to connect: `host:port`.
    addr: String,
    /// The `Host` of a request that does not set its own.
    host: HeaderValue,
    /// Where the path starts in a URL rendered from the base (after `http://host:port`).
    origin_len: usize,
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

/// A whole answer.
#[derive(Debug)]
pub struct WholeReply {
    pub head: AnswerHead,
    pub body: Bytes,
}

/// Why one request to an upstream failed. The upstream module turns it into its own
/// `CallError`, whose stable codes the gateway reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// No connection could be made (refused, unreachable, the connect timeout).
    #[error("{0}")]
    Connect(String),
    /// The answer's body is larger than the caller's limit.
    #[error("answer larger than {0} bytes")]
    TooLarge(u64),
    /// Anything else: a reset, a close within the answer, a malformed or faultily
    /// framed answer.
    #[error("{0}")]
    Failed(String),
}

/// How one exchange on one connection failed.
enum Failure {
    /// The connection was closed before any byte of an answer: a pooled connection the
    /// upstream had already given up on.
    Closed,
    Exchange(ExchangeError),
}

impl Failure {
    fn into_error(self) -> ExchangeError {
        match self {
            Failure::Closed => ExchangeError::Failed("connection closed before an answer".into()),
            Failure::Exchange(e) => e,
        }
    }
}

/// A request sent and its answer's head read.
struct Started {
    conn: Connection,
    head: AnswerHead,
    framing: Framing,
    /// Whether the request, the answer head and the framing allow keeping the
    /// connection once the body is read (a body that runs to the close does not).
    reusable: bool,
}

impl From<ParseError> for Failure {
    fn from(e: ParseError) -> Self {
        Failure::Exchange(match e {
            ParseError::TooLarge(limit) => ExchangeError::TooLarge(limit),
            other => ExchangeError::Failed(other.to_string()),
        })
    }
}

impl Pool {
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
        let after_scheme = base.find("://")? + 3;
        let origin_len = base[after_scheme..]
            .find('/')
            .map_or(base.len(), |at| after_scheme + at);
        Some(Self {
            addr,
            host,
            origin_len,
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            idle_timeout,
            connect_timeout,
        })
    }

    /// The request target of `url` (rendered from this pool's base) as it goes on the
    /// request line, when it is plainly safe there: a path of visible ASCII, no
    /// fragment. `None` sends the caller through `Uri`'s full parse; most URLs need
    /// none, and the parse costs about a fortieth of a proxied request.
    pub fn path_of<'u>(&self, url: &'u str) -> Option<&'u str> {
        let path = url.get(self.origin_len..)?;
        let plain =
            path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b'#');
        plain.then_some(path)
    }

    /// Sends one request and reads the whole answer, of at most `limit` body bytes.
    /// `trace`: the call's `traceparent`, written in place of any in `headers`.
    pub async fn send(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        trace: Option<&TraceParent>,
        body: Option<&Bytes>,
        limit: u64,
    ) -> Result<WholeReply, ExchangeError> {
        let Started {
            mut conn,
            head,
            framing,
            reusable,
        } = self.start(method, path, headers, trace, body).await?;
        let body = conn
            .read_whole(framing, limit)
            .await
            .map_err(Failure::into_error)?;
        // Bytes after the answer were never asked for: the connection is out of step.
        if reusable && conn.buf.is_empty() {
            self.checkin(conn);
        }
        Ok(WholeReply { head, body })
    }

    /// Sends one bodiless request and returns the answer as soon as its head is in; the
    /// body streams from the connection, which rejoins the pool once the body is read.
    pub async fn open(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        trace: Option<&TraceParent>,
    ) -> Result<Response<AnswerBody>, ExchangeError> {
        let started = self.start(method, path, headers, trace, None).await?;
        let status = started.head.status;
        let answer_headers = started
            .head
            .into_headers()
            .map_err(|e| Failure::from(e).into_error())?;
        let mut response = Response::new(AnswerBody::new(
            self.clone(),
            started.conn,
            started.framing,
            started.reusable,
        ));
        *response.status_mut() = status;
        *response.headers_mut() = answer_headers;
        Ok(response)
    }

    /// Writes the request on a pooled or new connection and reads the answer's head.
    async fn start(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        trace: Option<&TraceParent>,
        body: Option<&Bytes>,
    ) -> Result<Started, ExchangeError> {
        let (request, keep) = self.request(method, path, headers, trace, body);
        let tail = body.filter(|b| b.len() > INLINE_BODY);
        loop {
            let (mut conn, pooled) = match self.checkout(is_idempotent(method)) {
                Some(conn) => (conn, true),
                None => (self.connect().await?, false),
            };
            match conn.begin(&request, tail).await {
                Ok(head) => {
                    let framing = Framing::of_answer(method, &head)
                        .map_err(|e| Failure::from(e).into_error())?;
                    let reusable = keep && keeps_alive(&head, framing);
                    return Ok(Started {
                        conn,
                        head,
                        framing,
                        reusable,
                    });
                }
                // The upstream closed a pooled connection as it was taken: send again on
                // another, as hyper and nginx do, when sending twice is harmless.
                Err(Failure::Closed) if pooled && is_idempotent(method) => continue,
                Err(e) => return Err(e.into_error()),
            }
        }
    }

    /// The request head (and a small body) as bytes, and whether the connection may be
    /// kept after it.
    fn request(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        trace: Option<&TraceParent>,
        body: Option<&Bytes>,
    ) -> (Vec<u8>, bool) {
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
            if trace.is_some() && name == TRACEPARENT {
                continue;
            }
            if name == header::CONNECTION && value.as_bytes().eq_ignore_ascii_case(b"close") {
                keep = false;
            }
            line(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
        if let Some(trace) = trace {
            // Written from the stack: no header value is made for it.
            line(&mut out, b"traceparent", &trace.encode());
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

    /// The most recently used idle connection that is still open. One that answered
    /// within `RECENTLY_USED`, for a request that may be sent twice, is taken on the
    /// runtime's word that nothing arrived on it: a close in the reactor's blind spot
    /// (since its last turn) fails that request as "closed before an answer", and it is
    /// sent again on another connection; stray bytes there would need an upstream that
    /// speaks unasked within a moment of answering. Any other is asked of the socket
    /// (`Connection::is_open`, one `recv`). Under load that `recv` was one of the five
    /// system calls of a proxied request.
    fn checkout(&self, resend_safe: bool) -> Option<Connection> {
        loop {
            let idle = self.idle.lock().expect("never poisoned").pop_back()?;
            let idle_for = idle.since.elapsed();
            if idle_for >= self.idle_timeout {
                continue;
            }
            let trusted = resend_safe && idle_for < RECENTLY_USED && !idle.conn.seen_readable();
            if trusted || idle.conn.is_open() {
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

    async fn connect(&self) -> Result<Connection, ExchangeError> {
        let stream = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(&self.addr),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(ExchangeError::Connect(e.to_string())),
            Err(_) => {
                let after = humantime::format_duration(self.connect_timeout);
                return Err(ExchangeError::Connect(format!(
                    "no connection within {after}"
                )));
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Connection::new(stream))
    }
}

impl Pool {
    /// Idle connections kept for reuse now, and at most (`pool_idle_per_host`): the
    /// dashboard's pool size.
    pub fn idle_connections(&self) -> (usize, usize) {
        let idle = self.idle.lock().expect("never poisoned").len();
        (idle, self.max_idle)
    }
}

/// Methods that may be sent twice (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::Pool;
    use std::time::Duration;

    fn pool(base: &str) -> Pool {
        let s = Duration::from_secs(1);
        Pool::for_base(base, 1, s, s).unwrap()
    }

    #[test]
    fn a_plain_path_goes_out_as_rendered() {
        let p = pool("http://127.0.0.1:9000");
        assert_eq!(
            p.path_of("http://127.0.0.1:9000/a/b?x=1&y=%20"),
            Some("/a/b?x=1&y=%20")
        );
        let p = pool("http://users:80/api");
        assert_eq!(p.path_of("http://users:80/api/v1/u/7"), Some("/api/v1/u/7"));
    }

    #[test]
    fn anything_unusual_goes_through_the_full_parse() {
        let p = pool("http://h:1");
        for url in [
            "http://h:1/a b",
            "http://h:1/a\r\nx: y",
            "http://h:1/caf\u{e9}",
            "http://h:1/a#frag",
            "http://h:1",
            "http://h:1?q",
            "http:/",
        ] {
            assert_eq!(p.path_of(url), None, "{url:?}");
        }
    }
}
