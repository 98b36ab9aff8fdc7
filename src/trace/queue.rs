//! The bounds of the queue between requests and the span exporter: at most [`QUEUE`]
//! requests, and at most [`QUEUE_BYTES`] bytes held by their records. The count alone
//! did not bound memory: a request's record holds a client span per upstream try (a
//! `for_each` of 100 items, each retried, is hundreds), each with its path, and a hung
//! collector keeps the queue full.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests whose spans wait for the exporter, at most.
pub const QUEUE: usize = 4096;
/// Bytes the waiting requests' records may hold (`RequestSpans::weight`), at most.
pub const QUEUE_BYTES: usize = 32 << 20;

/// The bytes of the records waiting in the queue: taken by a request before it sends
/// its records, given back by the exporter as it takes them out.
#[derive(Debug)]
pub struct QueuedBytes {
    held: AtomicUsize,
    limit: usize,
}

impl QueuedBytes {
    pub fn new(limit: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `bytes` if they fit under the limit: whether they did.
    pub fn take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|&after| after <= self.limit)
            })
            .is_ok()
    }

    pub fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes held now.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Tracing;
    use crate::trace::record::{CallTrace, MAX_PATH};

    #[test]
    fn bytes_are_taken_while_they_fit_and_given_back() {
        let queued = QueuedBytes::new(100);
        assert!(queued.take(60));
        assert!(!queued.take(41), "60 + 41 is past the limit");
        assert_eq!(queued.held(), 60, "a refused take holds nothing");
        assert!(queued.take(40));
        queued.give_back(60);
        assert!(queued.take(60));
        assert_eq!(queued.held(), 100);
    }

    #[test]
    fn requests_with_many_long_spans_are_dropped_past_the_byte_bound() {
        let (tracing, dropped, mut rx) = Tracing::undrained(64 << 10);
        let long = "/items/".to_string() + &"x".repeat(70_000);
        let mut handed = 0;
        for _ in 0..20 {
            let context = tracing.context(&http::HeaderMap::new());
            let log = context.log.as_ref().expect("recording");
            let call = CallTrace::new(context.server.child(), Some(log), Some("items"));
            for _ in 0..10 {
                drop(call.tries("up", &http::Method::GET, &long).start());
            }
            let handed_over = tracing.finish(&context, "/r", &http::Method::GET, &long, 200, None);
            handed += usize::from(handed_over.is_some());
        }
        // Each request holds 11 paths cut to 1 KiB, and its 10 client spans: as many as
        // fit in 64 KiB are queued (4); the rest are dropped and counted, the server span
        // with its client spans.
        let first = rx.try_recv().expect("queued");
        assert_eq!(first.path.len(), MAX_PATH);
        assert!(first.clients.iter().all(|c| c.path.len() == MAX_PATH));
        let weight = first.weight();
        assert!(weight > 11 * MAX_PATH && weight < 16 * MAX_PATH, "{weight}");
        assert_eq!(handed, (64 << 10) / weight);
        assert_eq!(dropped.get(), (20 - handed as u64) * 11);
    }
}
