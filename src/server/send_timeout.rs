//! The send timeout of a client connection (nginx's `send_timeout`): a write that makes no
//! progress for `server.send_timeout` fails with `TimedOut`. The connection then ends, and
//! with it the answer being sent, so the upstream call feeding that answer is cancelled.
//! The timer is armed only once a write has to wait: a socket with room costs nothing, no
//! timer and no allocation.
//!
//! On HTTP/2 a client that reads nothing need not fill the socket: it stops granting
//! flow-control window, and hyper then stops polling the answer's body; `send_watch`
//! bounds that wait.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The error of a write that made no progress for the send timeout.
#[derive(Debug, thiserror::Error)]
#[error("the client took no bytes for {}", humantime::format_duration(*.0))]
pub struct SendTimeoutError(pub Duration);

/// `io`, whose writes fail once one has waited `limit` without a byte taken.
#[derive(Debug)]
pub struct SendTimeout<IO> {
    io: IO,
    limit: Duration,
    /// Made at the first wait and reset at each later one, so a long download makes one.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer counts the wait now going on.
    waiting: bool,
}

impl<IO> SendTimeout<IO> {
    pub fn new(io: IO, limit: Duration) -> Self {
        Self {
            io,
            limit,
            timer: None,
            waiting: false,
        }
    }

    /// A write's outcome: bytes taken end the wait; a write (or flush) that has to wait
    /// starts the clock, unless a wait without progress is already being counted.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
        progress: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(result) = poll {
            if result.as_ref().is_ok_and(progress) {
                self.waiting = false;
            }
            return Poll::Ready(result);
        }
        if !self.waiting {
            let deadline = Instant::now() + self.limit;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.waiting = true;
        }
        let timer = self.timer.as_mut().expect("set when the wait began");
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            SendTimeoutError(self.limit),
        )))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for SendTimeout<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, poll, |&n| n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, poll, |&n| n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, poll, |()| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, poll, |()| false)
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for SendTimeout<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    const LIMIT: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_keeps_taking_bytes_is_never_cut() {
        let (ours, mut client) = duplex(1024);
        let mut ours = SendTimeout::new(ours, LIMIT);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 512];
            loop {
                // Slower than the writer, never silent for the limit.
                tokio::time::sleep(Duration::from_secs(9)).await;
                match client.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got += n,
                }
            }
        });
        let started = Instant::now();
        ours.write_all(&[7u8; 8 * 1024]).await.unwrap();
        ours.shutdown().await.unwrap();
        drop(ours);
        assert_eq!(reader.await.unwrap(), 8 * 1024);
        assert!(started.elapsed() > 10 * LIMIT, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_the_limit_fails() {
        let (ours, _client) = duplex(1024);
        let mut ours = SendTimeout::new(ours, LIMIT);
        let started = Instant::now();
        let e = ours.write_all(&[7u8; 4096]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "the client took no bytes for 10s");
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_with_room_arms_no_timer() {
        let (ours, _client) = duplex(1024);
        let mut ours = SendTimeout::new(ours, LIMIT);
        ours.write_all(b"small").await.unwrap();
        assert!(ours.timer.is_none());
    }
}
