//! One upstream connection: writing a request, reading an answer's head, and reading a
//! whole body by its framing. The streaming body reads through [`Connection::poll_fill`].

use super::{ExchangeError, Failure, KEEP_BUFFER};
use crate::http1::body::{ChunkedDecoder, Collected};
use crate::http1::framing::Framing;
use crate::http1::parse::{AnswerHead, parse_answer_head};
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use socket2::SockRef;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[derive(Debug)]
pub(super) struct Connection {
    pub(super) stream: TcpStream,
    /// Bytes read and not yet consumed.
    pub(super) buf: BytesMut,
}

impl Connection {
    pub(super) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Whether the runtime has seen the idle connection readable (the upstream's close,
    /// or bytes nobody asked for) since its last read drained it. No system call, but
    /// only as current as the reactor's last turn: `Pool::checkout` trusts a `false` only
    /// where that window cannot hurt.
    pub(super) fn seen_readable(&self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.stream.poll_read_ready(&mut cx).is_ready()
    }

    /// An idle connection with nothing to read is open. Anything readable (the
    /// upstream's close, or bytes nobody asked for) makes it unusable. The socket itself
    /// is asked, with a non-blocking peek, rather than the runtime's readiness, which
    /// knows only what the reactor had seen at its last turn: bytes that arrived since
    /// would be read as the answer to the request about to be sent. It costs one `recv`
    /// per reuse; bytes that arrive after it cannot be told from the answer.
    pub(super) fn is_open(&self) -> bool {
        let mut byte = [MaybeUninit::uninit(); 1];
        matches!(
            SockRef::from(&self.stream).peek(&mut byte),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        )
    }

    /// Writes `request` (then `tail`, a large body) and reads the final answer head;
    /// interim 1xx answers (100 Continue, 103) are skipped.
    pub(super) async fn begin(
        &mut self,
        request: &[u8],
        tail: Option<&Bytes>,
    ) -> Result<AnswerHead, Failure> {
        if self.stream.write_all(request).await.is_err() {
            return Err(Failure::Closed);
        }
        if let Some(tail) = tail {
            self.stream.write_all(tail).await.map_err(failed)?;
        }
        let mut received = false;
        loop {
            // A pooled connection starts empty: nothing to parse before the first read.
            if !self.buf.is_empty()
                && let Some(head) = parse_answer_head(&mut self.buf)?
            {
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(failed("answered 101 to a request without Upgrade"));
                }
                if head.status.is_informational() {
                    continue;
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

    /// The whole body, of at most `limit` bytes.
    pub(super) async fn read_whole(
        &mut self,
        framing: Framing,
        limit: u64,
    ) -> Result<Bytes, Failure> {
        match framing {
            Framing::Empty => Ok(Bytes::new()),
            Framing::Length(n) => self.read_exact(n, limit).await,
            Framing::Chunked => self.read_chunked(limit).await,
            Framing::UntilClose => self.read_to_close(limit).await,
        }
    }

    async fn read_exact(&mut self, n: u64, limit: u64) -> Result<Bytes, Failure> {
        if n > limit {
            return Err(Failure::Exchange(ExchangeError::TooLarge(limit)));
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

    /// Reads once, with room for at least `wanted` more bytes (4 to 64 KiB).
    async fn fill(&mut self, wanted: usize) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx, wanted)).await
    }

    pub(super) fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        wanted: usize,
    ) -> Poll<io::Result<usize>> {
        self.buf.reserve(wanted.clamp(4096, KEEP_BUFFER));
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buf)
    }
}

pub(super) fn failed(e: impl ToString) -> Failure {
    Failure::Exchange(ExchangeError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::Connection;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Connection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap());
        let (ours, theirs) = tokio::join!(ours, listener.accept());
        (Connection::new(ours.unwrap()), theirs.unwrap().0)
    }

    #[tokio::test]
    async fn a_quiet_connection_is_open() {
        let (conn, _upstream) = pair().await;
        assert!(conn.is_open());
        assert!(conn.is_open(), "checking reads nothing");
    }

    #[tokio::test]
    async fn stray_bytes_the_runtime_has_not_seen_yet_retire_it() {
        let (conn, mut upstream) = pair().await;
        // Written and checked in one turn of this task: the reactor has not run since,
        // so the runtime still believes the socket has nothing to read.
        upstream.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        assert!(!conn.is_open());
    }

    #[tokio::test]
    async fn what_the_reactor_saw_is_known_without_a_recv() {
        let (conn, mut upstream) = pair().await;
        assert!(!conn.seen_readable(), "a quiet connection");
        upstream.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        // Until the reactor turns, the runtime cannot know; after, it does.
        conn.stream.readable().await.unwrap();
        assert!(conn.seen_readable());
        assert!(!conn.is_open());
    }

    #[tokio::test]
    async fn a_close_the_reactor_saw_is_known_without_a_recv() {
        let (conn, upstream) = pair().await;
        drop(upstream);
        conn.stream.readable().await.unwrap();
        assert!(conn.seen_readable());
    }

    #[tokio::test]
    async fn a_close_retires_it() {
        let (conn, upstream) = pair().await;
        drop(upstream);
        assert!(!conn.is_open());
    }
}
