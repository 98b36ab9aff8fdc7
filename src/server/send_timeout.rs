//! The send timeout of a client connection (nginx's `send_timeout`): a write that makes no
//! progress for `server.send_timeout` fails with `TimedOut`. The connection then ends, and
//! with it the answer being sent, so the upstream call feeding that answer is cancelled.
//! The timer is armed only once a write has to wait: a socket with room costs nothing, no
//! timer and no allocation.
//!
//! On HTTP/2 a client that reads nothing need not fill the socket: it stops granting
//! flow-control window, and hyper then stops polling the answer's body. [`SendWatch`]
//! watches such a body from a task of its own.

use crate::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
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

/// An answer's body that is dropped, and ends in [`SendTimeoutError`], once its reader
/// has not come back for the next frame within the limit since taking the last one (or,
/// for the first, since the answer was made). A wait on the body itself (an upstream that
/// sends nothing) is not the reader's, and is bounded by the route's `idle_timeout`
/// instead. The watchdog task ends with the body.
pub struct SendWatch {
    shared: Arc<Watched>,
    /// Tells the watchdog the body has ended or is dropped.
    ended: Arc<Notify>,
}

struct Watched {
    /// `None` once the body has ended, or was dropped by the watchdog.
    body: Mutex<Option<Body>>,
    /// Milliseconds from `base` to when the reader took the last frame; `READING` while
    /// the reader is polling (or the body has ended).
    taken_at: AtomicU64,
    base: Instant,
    limit: Duration,
    cut: AtomicBool,
    /// Told when the body is cut: the connection to close (see `handoff`).
    connection: Option<Arc<Notify>>,
}

const READING: u64 = u64::MAX;

impl SendWatch {
    /// Watches `body`; needs a runtime, for the watchdog task.
    #[cfg(test)]
    pub fn new(body: Body, limit: Duration) -> Self {
        Self::telling(body, limit, None)
    }

    /// Like `new`, and a cut notifies `connection`. An HTTP/2 answer waiting for
    /// flow-control window is not polled again, so only closing its connection ends
    /// the client's stream.
    pub fn telling(body: Body, limit: Duration, connection: Option<Arc<Notify>>) -> Self {
        let shared = Arc::new(Watched {
            body: Mutex::new(Some(body)),
            // As if a frame had been taken now: a reader that never comes is cut too.
            taken_at: AtomicU64::new(0),
            base: Instant::now(),
            limit,
            cut: AtomicBool::new(false),
            connection,
        });
        let ended = Arc::new(Notify::new());
        tokio::spawn(watchdog(Arc::downgrade(&shared), ended.clone()));
        Self { shared, ended }
    }
}

impl Drop for SendWatch {
    fn drop(&mut self) {
        self.ended.notify_one();
    }
}

/// Cuts the body when the reader took a frame and did not come back within the limit.
/// Holds only a weak reference while it waits, and ends when told the body has.
async fn watchdog(watched: Weak<Watched>, ended: Arc<Notify>) {
    loop {
        let (taken_at, wake) = {
            let Some(w) = watched.upgrade() else { return };
            let taken_at = w.taken_at.load(Ordering::Acquire);
            let wake = match taken_at {
                READING => Instant::now() + w.limit,
                at => w.base + Duration::from_millis(at) + w.limit,
            };
            (taken_at, wake)
        };
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = ended.notified() => return,
        }
        let Some(w) = watched.upgrade() else { return };
        if taken_at != READING && w.taken_at.load(Ordering::Acquire) == taken_at {
            w.cut.store(true, Ordering::Release);
            // Dropping the body cancels the upstream call that feeds it.
            let body = w.body.lock().expect("never poisoned").take();
            drop(body);
            if let Some(connection) = &w.connection {
                connection.notify_one();
            }
            return;
        }
        if w.body.lock().expect("never poisoned").is_none() {
            return;
        }
    }
}

impl http_body::Body for SendWatch {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let w = &self.shared;
        w.taken_at.store(READING, Ordering::Release);
        let mut body = w.body.lock().expect("never poisoned");
        let Some(inner) = body.as_mut() else {
            return Poll::Ready(w.cut.load(Ordering::Acquire).then(|| {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    SendTimeoutError(w.limit),
                ))
            }));
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        match &frame {
            Some(Ok(_)) => {
                let at = Instant::now().duration_since(w.base).as_millis() as u64;
                w.taken_at.store(at.min(READING - 1), Ordering::Release);
            }
            None | Some(Err(_)) => {
                *body = None;
                self.ended.notify_one();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let body = self.shared.body.lock().expect("never poisoned");
        body.as_ref().is_none_or(|b| b.is_end_stream()) && !self.shared.cut.load(Ordering::Acquire)
    }

    fn size_hint(&self) -> SizeHint {
        let body = self.shared.body.lock().expect("never poisoned");
        body.as_ref()
            .map_or_else(SizeHint::default, |b| b.size_hint())
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

    /// A body whose frames come from a channel, counting whether it was dropped.
    fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Arc<()>, Body) {
        use http_body_util::BodyExt;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let alive = Arc::new(());
        let held = alive.clone();
        let stream = futures_util::stream::unfold((rx, held), |(mut rx, held)| async move {
            let bytes = rx.recv().await?;
            Some((Ok::<_, io::Error>(Frame::data(bytes)), (rx, held)))
        });
        (
            tx,
            alive,
            http_body_util::StreamBody::new(stream).boxed_unsync(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_taking_frames_is_cut_and_the_body_dropped() {
        use http_body_util::BodyExt;
        let (tx, alive, body) = channel_body();
        let mut watched = SendWatch::new(body, LIMIT);
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert!(watched.frame().await.unwrap().is_ok());
        // The reader takes its time, but less than the limit: nothing happens.
        tokio::time::sleep(LIMIT - Duration::from_secs(1)).await;
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        assert!(watched.frame().await.unwrap().is_ok());
        // Now it takes nothing for the limit: the body is dropped at once.
        tokio::time::sleep(LIMIT + Duration::from_millis(10)).await;
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "the upstream body was dropped"
        );
        let e = watched.frame().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_never_comes_is_cut_too() {
        let (_tx, alive, body) = channel_body();
        let _watched = SendWatch::new(body, LIMIT);
        tokio::time::sleep(LIMIT + Duration::from_millis(10)).await;
        assert_eq!(
            Arc::strong_count(&alive),
            1,
            "the upstream body was dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_ends_with_the_body() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let (_tx, _alive, body) = channel_body();
        let watched = SendWatch::new(body, LIMIT);
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), 1);
        drop(watched);
        // No time passes: the task ends because it was told, not at its next check.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(metrics.num_alive_tasks(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_is_not_the_reader_s_fault() {
        use http_body_util::BodyExt;
        let (tx, alive, body) = channel_body();
        let mut watched = SendWatch::new(body, LIMIT);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while let Some(frame) = watched.frame().await {
                got += frame.unwrap().into_data().unwrap().len();
            }
            got
        });
        for _ in 0..3 {
            tokio::time::sleep(3 * LIMIT).await;
            tx.send(Bytes::from_static(b"x")).await.unwrap();
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), 3);
        tokio::time::sleep(2 * LIMIT).await;
        assert_eq!(Arc::strong_count(&alive), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_socket_with_room_arms_no_timer() {
        let (ours, _client) = duplex(1024);
        let mut ours = SendTimeout::new(ours, LIMIT);
        ours.write_all(b"small").await.unwrap();
        assert!(ours.timer.is_none());
    }
}
