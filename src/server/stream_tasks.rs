//! The HTTP/2 streams of a connection handed to hyper, run on that connection's own
//! task. hyper starts a future per stream through its executor; spawned, each stream
//! would cost a task of its own (an allocation, its scheduling, and a wake of the
//! connection's task to send what it made). [`StreamExecutor`] gives the
//! futures started while a [`WithStreams`] polls its connection to that connection
//! instead, which polls them beside hyper's connection: a stream that finishes in a poll
//! has its answer written by the same poll.
//!
//! A connection's streams so share one task, as a connection's requests share one worker
//! in nginx or Envoy: on a runtime of several workers they run on one at a time, and when
//! the connection ends (its client gone, or the send timeout cut it) the streams still
//! running are dropped, which cancels their upstream calls. A future started outside
//! any connection's poll is spawned on a task of its own.

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// A stream's future as hyper starts it.
type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    /// Futures started during the poll of a [`WithStreams`] on this thread: `None`
    /// outside such a poll.
    static STARTED: RefCell<Option<Vec<StreamFuture>>> = const { RefCell::new(None) };
}

/// hyper's executor for the connections it serves: see the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamExecutor;

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        let future: StreamFuture = Box::pin(future);
        let outside = STARTED.with(|started| match started.borrow_mut().as_mut() {
            Some(started) => {
                started.push(future);
                None
            }
            None => Some(future),
        });
        if let Some(future) = outside {
            tokio::spawn(future);
        }
    }
}

pin_project! {
    /// A connection served by hyper with [`StreamExecutor`], and the streams it started.
    pub struct WithStreams<C> {
        #[pin]
        connection: C,
        streams: FuturesUnordered<StreamFuture>,
        // Kept between polls so that starting streams allocates nothing once it has room.
        started: Vec<StreamFuture>,
        // What the connection is polled with: it says whether the connection asked for a
        // poll (its socket, or a stream with something to send), as the streams' upstream
        // calls wake the task far more often.
        wake: Arc<ConnectionWake>,
        waker: Waker,
    }
}

impl<C> WithStreams<C> {
    pub fn new(connection: C) -> Self {
        let wake = Arc::new(ConnectionWake {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            connection,
            streams: FuturesUnordered::new(),
            started: Vec::new(),
            waker: Waker::from(wake.clone()),
            wake,
        }
    }

    /// The connection itself (for its graceful shutdown, after which it wants a poll).
    pub fn connection(self: Pin<&mut Self>) -> Pin<&mut C> {
        let this = self.project();
        this.wake.woken.store(true, Ordering::Release);
        this.connection
    }
}

impl<C: Future> Future for WithStreams<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = self.project();
        this.wake.task.register(cx.waker());
        // The streams first: what they send now, the connection's poll below writes.
        drive(this.streams, cx);
        if !this.wake.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let collecting = Collecting::begin(std::mem::take(this.started));
        let polled = this.connection.poll(&mut Context::from_waker(this.waker));
        *this.started = collecting.end();
        if polled.is_ready() {
            return polled;
        }
        if !this.started.is_empty() {
            this.streams.extend(this.started.drain(..));
            // A stream that answers at once wakes the connection, and so this task.
            drive(this.streams, cx);
        }
        Poll::Pending
    }
}

/// The connection's waker: marks that it asked for a poll, and wakes the task.
struct ConnectionWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ConnectionWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Polls the streams that are ready until none is (or the set yields, having polled
/// many, after waking this task to come back).
fn drive(streams: &mut FuturesUnordered<StreamFuture>, cx: &mut Context<'_>) {
    while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
}

/// The thread-local collecting a connection's started streams for the length of its
/// poll; what it held before is put back after, also when the poll panics (the streams
/// that poll started are then dropped with it).
struct Collecting {
    outer: Option<Option<Vec<StreamFuture>>>,
}

impl Collecting {
    fn begin(into: Vec<StreamFuture>) -> Self {
        let outer = STARTED.with(|s| s.replace(Some(into)));
        Self { outer: Some(outer) }
    }

    /// The streams started since `begin`, and the list they came in.
    fn end(mut self) -> Vec<StreamFuture> {
        let outer = self.outer.take().unwrap_or(None);
        STARTED.with(|s| s.replace(outer)).unwrap_or_default()
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            STARTED.with(|s| s.replace(outer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::AtomicUsize;

    /// A stand-in for hyper's connection: counts its polls, runs `on_poll` on each (which
    /// may start streams), and ends at the poll `ends_at`.
    struct Connection<F> {
        polls: Arc<AtomicUsize>,
        on_poll: F,
        ends_at: usize,
    }

    impl<F: FnMut(usize) + Unpin> Future for Connection<F> {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            (self.on_poll)(n);
            if n == self.ends_at {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    /// A task waker that counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Sets its flag when dropped.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn poll_once<C: Future>(with: Pin<&mut WithStreams<C>>, waker: &Waker) -> Poll<C::Output> {
        with.poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_stream_started_during_the_connections_poll_runs_on_it_not_on_a_new_task() {
        // No runtime here: a spawn would panic.
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let connection = Connection {
            polls: Arc::default(),
            on_poll: move |n| {
                if n == 1 {
                    let flag = flag.clone();
                    StreamExecutor.execute(async move { flag.store(true, Ordering::SeqCst) });
                }
            },
            ends_at: 0,
        };
        let mut with = std::pin::pin!(WithStreams::new(connection));
        let waker = Waker::from(Arc::new(Wakes::default()));
        assert!(poll_once(with.as_mut(), &waker).is_pending());
        assert!(ran.load(Ordering::SeqCst), "polled in the same poll");
        assert!(with.streams.is_empty(), "and done with");
    }

    #[tokio::test]
    async fn a_future_started_outside_any_connections_poll_is_spawned() {
        let (done, finished) = tokio::sync::oneshot::channel();
        StreamExecutor.execute(async move {
            let _ = done.send(());
        });
        finished.await.expect("it ran on a task of its own");
    }

    #[test]
    fn the_connection_is_polled_when_it_woke_not_when_a_stream_did() {
        let polls = Arc::new(AtomicUsize::new(0));
        let yields = Arc::new(AtomicUsize::new(0));
        let counted = yields.clone();
        let connection = Connection {
            polls: polls.clone(),
            on_poll: move |n| {
                if n == 1 {
                    // A stream whose upstream wakes it three times before it finishes.
                    let counted = counted.clone();
                    StreamExecutor.execute(std::future::poll_fn(move |cx| {
                        if counted.fetch_add(1, Ordering::SeqCst) < 3 {
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        } else {
                            Poll::Ready(())
                        }
                    }));
                }
            },
            ends_at: 0,
        };
        let mut with = std::pin::pin!(WithStreams::new(connection));
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        while wakes.0.load(Ordering::SeqCst) < 3 || !with.streams.is_empty() {
            assert!(poll_once(with.as_mut(), &waker).is_pending());
        }
        assert_eq!(
            yields.load(Ordering::SeqCst),
            4,
            "the stream ran to its end"
        );
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the connection asked once");
        // The connection's own wake brings its next poll.
        with.wake.clone().wake();
        assert!(poll_once(with.as_mut(), &waker).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_streams_still_running_end_with_their_connection() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let connection = Connection {
            polls: Arc::default(),
            on_poll: move |n| {
                if n == 1 {
                    let guard = DropFlag(flag.clone());
                    StreamExecutor.execute(async move {
                        let _guard = guard;
                        std::future::pending::<()>().await
                    });
                }
            },
            ends_at: 2,
        };
        let mut with = Box::pin(WithStreams::new(connection));
        let waker = Waker::from(Arc::new(Wakes::default()));
        assert!(poll_once(with.as_mut(), &waker).is_pending());
        with.wake.clone().wake();
        assert!(poll_once(with.as_mut(), &waker).is_ready());
        assert!(!dropped.load(Ordering::SeqCst));
        drop(with);
        assert!(
            dropped.load(Ordering::SeqCst),
            "dropped with the connection"
        );
    }

    #[tokio::test]
    async fn a_connection_that_panics_leaves_later_futures_to_be_spawned() {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = dropped.clone();
        let connection = Connection {
            polls: Arc::default(),
            on_poll: move |_| {
                let guard = DropFlag(flag.clone());
                StreamExecutor.execute(async move {
                    let _guard = guard;
                });
                panic!("the connection's poll fails");
            },
            ends_at: 0,
        };
        let mut with = Box::pin(WithStreams::new(connection));
        let waker = Waker::from(Arc::new(Wakes::default()));
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            poll_once(with.as_mut(), &waker)
        }));
        assert!(polled.is_err());
        assert!(
            dropped.load(Ordering::SeqCst),
            "its started stream is dropped"
        );
        assert!(
            STARTED.with(|s| s.borrow().is_none()),
            "nothing collects now"
        );
        let (done, finished) = tokio::sync::oneshot::channel();
        StreamExecutor.execute(async move {
            let _ = done.send(());
        });
        finished.await.expect("spawned, not left in a list");
    }
}
