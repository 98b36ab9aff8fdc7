//! The send timeout of an HTTP/2 connection's answers. A client that reads nothing need
//! not fill the socket: it stops granting flow-control window, and hyper then stops
//! polling the answer's body, so no write ever waits (see `send_timeout`). Each answer's
//! body is watched instead ([`Watched`]): it records when its reader took the last
//! frame, and the connection's one [`SendWatch`] resolves once a reader has not come
//! back within the limit. The connection then closes, the one way to end a stream that
//! waits for window, and with it every answer it carried: their bodies are dropped, which
//! cancels the upstream calls feeding them.
//!
//! One timer on the connection's task checks all of its answers; an answer costs a slot
//! in a table and a clock read per frame, no task and no timer of its own.

use crate::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// The answers of one connection, and when each one's reader last took a frame.
#[derive(Debug)]
pub struct SendWatch {
    limit: Duration,
    base: Instant,
    /// Per answer being sent: milliseconds from `base` to when its reader took the last
    /// frame (or the answer was made), or `READING` while the reader waits for the body;
    /// `FREE` marks a slot no answer holds. As long as the most answers the connection
    /// had at once (`max_concurrent_streams` at most).
    taken_at: Mutex<Vec<u64>>,
}

/// The reader is polling the body, which has no frame yet: the wait is the upstream's
/// (bounded by the route's `idle_timeout`), not the reader's.
const READING: u64 = u64::MAX;
/// A slot no answer holds.
const FREE: u64 = u64::MAX - 1;

impl SendWatch {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            base: Instant::now(),
            taken_at: Mutex::new(Vec::new()),
        }
    }

    /// Watches `body`, as if its reader had just taken a frame: a reader that never
    /// comes is cut too.
    pub fn watch(self: &Arc<Self>, body: Body) -> Watched {
        let now = self.now();
        let mut slots = self.slots();
        let slot = match slots.iter().position(|&at| at == FREE) {
            Some(free) => {
                slots[free] = now;
                free
            }
            None => {
                slots.push(now);
                slots.len() - 1
            }
        };
        drop(slots);
        Watched {
            body,
            watch: Some((self.clone(), slot)),
        }
    }

    /// Resolves once an answer's reader has taken no frame for the limit. Wakes at the
    /// earliest moment that can happen, and at least once per limit while nothing is
    /// watched: an answer watched later cannot be due sooner than that.
    pub async fn overdue(&self) {
        loop {
            let next = {
                let now = Instant::now();
                let slots = self.slots();
                let mut next = now + self.limit;
                for &taken_at in slots.iter() {
                    if taken_at >= FREE {
                        continue;
                    }
                    let due = self.base + Duration::from_millis(taken_at) + self.limit;
                    if due <= now {
                        return;
                    }
                    next = next.min(due);
                }
                next
            };
            tokio::time::sleep_until(next).await;
        }
    }

    fn now(&self) -> u64 {
        let ms = Instant::now().duration_since(self.base).as_millis();
        u64::try_from(ms).unwrap_or(FREE - 1).min(FREE - 1)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.taken_at.lock().expect("never poisoned")
    }
}

/// An answer's body; watched (its slot in a [`SendWatch`]) until it ends or is dropped.
pub struct Watched {
    body: Body,
    watch: Option<(Arc<SendWatch>, usize)>,
}

impl Watched {
    /// A body nobody watches: an HTTP/1.1 answer, whose writes are bounded instead.
    pub fn unwatched(body: Body) -> Self {
        Self { body, watch: None }
    }

    fn unregister(&mut self) {
        if let Some((watch, slot)) = self.watch.take() {
            watch.slots()[slot] = FREE;
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if let Some((watch, slot)) = &this.watch {
            match &polled {
                Poll::Ready(Some(Ok(_))) => {
                    let now = watch.now();
                    watch.slots()[*slot] = now;
                }
                Poll::Pending => watch.slots()[*slot] = READING,
                Poll::Ready(None | Some(Err(_))) => this.unregister(),
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const LIMIT: Duration = Duration::from_secs(10);

    /// A body whose frames come from a channel.
    fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, Body) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            let bytes = rx.recv().await?;
            Some((Ok::<_, io::Error>(Frame::data(bytes)), rx))
        });
        (tx, http_body_util::StreamBody::new(stream).boxed_unsync())
    }

    /// When `watch` finds an answer overdue, from now; `None` within `horizon`.
    async fn overdue_after(watch: &SendWatch, horizon: Duration) -> Option<Duration> {
        let start = Instant::now();
        tokio::time::timeout(horizon, watch.overdue())
            .await
            .ok()
            .map(|()| start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_taking_frames_is_overdue_after_the_limit() {
        let watch = Arc::new(SendWatch::new(LIMIT));
        let (tx, body) = channel_body();
        let mut watched = watch.watch(body);
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        assert!(watched.frame().await.unwrap().is_ok());
        // The reader takes its time, but less than the limit: nothing happens.
        assert_eq!(
            overdue_after(&watch, LIMIT - Duration::from_secs(1)).await,
            None
        );
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        assert!(watched.frame().await.unwrap().is_ok());
        // Now it takes nothing: overdue one limit after the last frame.
        assert_eq!(overdue_after(&watch, 2 * LIMIT).await, Some(LIMIT));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_never_comes_is_overdue_too() {
        let watch = Arc::new(SendWatch::new(LIMIT));
        tokio::time::sleep(3 * LIMIT).await;
        let (_tx, body) = channel_body();
        let _watched = watch.watch(body);
        assert_eq!(overdue_after(&watch, 3 * LIMIT).await, Some(LIMIT));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_keeps_taking_frames_is_never_overdue() {
        let watch = Arc::new(SendWatch::new(LIMIT));
        let (tx, body) = channel_body();
        let mut watched = watch.watch(body);
        let checker = {
            let watch = watch.clone();
            tokio::spawn(async move { watch.overdue().await })
        };
        for _ in 0..20 {
            tokio::time::sleep(LIMIT - Duration::from_secs(1)).await;
            tx.send(Bytes::from_static(b"x")).await.unwrap();
            assert!(watched.frame().await.unwrap().is_ok());
        }
        assert!(!checker.is_finished());
        checker.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_upstream_is_not_the_reader_s_fault() {
        let watch = Arc::new(SendWatch::new(LIMIT));
        let (tx, body) = channel_body();
        let mut watched = watch.watch(body);
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while let Some(frame) = watched.frame().await {
                got += frame.unwrap().into_data().unwrap().len();
            }
            got
        });
        let checker = {
            let watch = watch.clone();
            tokio::spawn(async move { watch.overdue().await })
        };
        for _ in 0..3 {
            tokio::time::sleep(3 * LIMIT).await;
            tx.send(Bytes::from_static(b"x")).await.unwrap();
        }
        drop(tx);
        assert_eq!(reader.await.unwrap(), 3);
        tokio::time::sleep(2 * LIMIT).await;
        assert!(!checker.is_finished());
        checker.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_or_dropped_answer_is_no_longer_watched() {
        let watch = Arc::new(SendWatch::new(LIMIT));
        let (tx, body) = channel_body();
        let mut ended = watch.watch(body);
        drop(tx);
        assert!(ended.frame().await.is_none());
        let (_tx, body) = channel_body();
        drop(watch.watch(body));
        assert!(watch.slots().iter().all(|&at| at == FREE));
        assert_eq!(overdue_after(&watch, 5 * LIMIT).await, None);
        drop(ended);
    }

    #[tokio::test(start_paused = true)]
    async fn watching_spawns_no_task() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let watch = Arc::new(SendWatch::new(LIMIT));
        let (_tx, body) = channel_body();
        let _watched = watch.watch(body);
        tokio::task::yield_now().await;
        assert_eq!(metrics.num_alive_tasks(), 0);
    }
}
