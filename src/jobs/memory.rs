//! The in-memory job store (no `[cluster]`): a map of at most `capacity` entries, each
//! with its expiry, and their ids ordered by expiry. An expired entry is removed when
//! read; a full map drops one entry per new one, found in O(log n): an expired pending
//! one, else the finished one closest to expiry (a pending one only when none is
//! finished).

use super::{JobRecord, JobState};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The entries, and their ids ordered by expiry, pending and finished apart: the
/// entry to drop when full is found in O(log n), not by a scan of the map.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (JobRecord, Instant)>,
    pending: BTreeSet<(Instant, String)>,
    finished: BTreeSet<(Instant, String)>,
}

impl Entries {
    fn order(&mut self, record: &JobRecord) -> &mut BTreeSet<(Instant, String)> {
        if record.state == JobState::Pending {
            &mut self.pending
        } else {
            &mut self.finished
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some((record, expires)) = self.map.remove(id) {
            self.order(&record).remove(&(expires, id.to_owned()));
        }
    }

    fn insert(&mut self, id: &str, record: JobRecord, expires: Instant) {
        self.remove(id);
        self.order(&record).insert((expires, id.to_owned()));
        self.map.insert(id.to_owned(), (record, expires));
    }

    /// The entry to drop from a full map: an expired pending one, else the finished
    /// one closest to expiry (expired or not), else the pending one closest to it.
    fn victim(&self, now: Instant) -> Option<String> {
        let pending = self.pending.first();
        match (pending, self.finished.first()) {
            (Some((expires, id)), _) if *expires <= now => Some(id.clone()),
            (_, Some((_, id))) | (Some((_, id)), None) => Some(id.clone()),
            (None, None) => None,
        }
    }
}

/// The in-memory store: a bounded map with expiries.
#[derive(Debug)]
pub(super) struct Memory {
    entries: Mutex<Entries>,
    /// Grown by a reload that adds async routes (never shrunk: entries stay).
    capacity: std::sync::atomic::AtomicUsize,
}

impl Memory {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::default(),
            capacity: capacity.max(1).into(),
        }
    }

    /// Raises the capacity to `capacity` if it is more.
    pub(super) fn grow(&self, capacity: usize) {
        self.capacity
            .fetch_max(capacity, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn put(&self, id: &str, record: JobRecord, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("not poisoned");
        let capacity = self.capacity.load(std::sync::atomic::Ordering::Relaxed);
        if entries.map.len() >= capacity
            && !entries.map.contains_key(id)
            && let Some(victim) = entries.victim(now)
        {
            entries.remove(&victim);
        }
        entries.insert(id, record, now + ttl);
    }

    /// Stores `record` (a final state) only if `id` is still pending: whether it did.
    pub(super) fn finish(&self, id: &str, record: JobRecord, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("not poisoned");
        match entries.map.get(id) {
            Some((r, expires)) if *expires > now && r.state == JobState::Pending => {
                entries.insert(id, record, now + ttl);
                true
            }
            _ => false,
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<JobRecord> {
        let mut entries = self.entries.lock().expect("not poisoned");
        match entries.map.get(id) {
            Some((record, expires)) if *expires > Instant::now() => Some(record.clone()),
            Some(_) => {
                entries.remove(id);
                None
            }
            None => None,
        }
    }

    pub(super) fn delete(&self, id: &str) {
        self.entries.lock().expect("not poisoned").remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Stored;
    use bytes::Bytes;

    fn pending() -> JobRecord {
        JobRecord {
            owner: None,
            state: JobState::Pending,
        }
    }

    fn done() -> JobRecord {
        JobRecord {
            owner: None,
            state: JobState::Done(Stored {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: Bytes::from_static(b"{}"),
            }),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_pending_job_takes_a_final_state() {
        let memory = Memory::new(3);
        memory.put("p", pending(), Duration::from_secs(9));
        let cancelled = JobRecord {
            owner: None,
            state: JobState::Cancelled,
        };
        assert!(memory.finish("p", cancelled.clone(), Duration::from_secs(9)));
        assert!(
            !memory.finish("p", done(), Duration::from_secs(9)),
            "cancelled first"
        );
        assert_eq!(memory.get("p"), Some(cancelled));
        assert!(!memory.finish("unknown", done(), Duration::from_secs(9)));
        assert_eq!(memory.get("unknown"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_map_drops_expired_then_the_finished_entry_closest_to_expiry() {
        let memory = Memory::new(3);
        memory.put("p", pending(), Duration::from_secs(1));
        memory.put("d1", done(), Duration::from_secs(5));
        memory.put("d2", done(), Duration::from_secs(9));
        memory.put("d3", done(), Duration::from_secs(9));
        // The pending one stays even though it expires first; d1 went.
        assert!(memory.get("p").is_some());
        assert!(memory.get("d1").is_none());
        tokio::time::advance(Duration::from_secs(2)).await;
        memory.put("d4", done(), Duration::from_secs(9));
        assert!(memory.get("p").is_none(), "expired, removed first");
        for id in ["d2", "d3", "d4"] {
            assert!(memory.get(id).is_some(), "{id}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_order_follows_rewrites_and_deletes() {
        let memory = Memory::new(2);
        memory.put("a", pending(), Duration::from_secs(1));
        memory.put("b", done(), Duration::from_secs(5));
        // a finishes with a later expiry than b: b is now the first to go.
        assert!(memory.finish("a", done(), Duration::from_secs(9)));
        memory.put("c", done(), Duration::from_secs(9));
        assert!(memory.get("b").is_none());
        assert!(memory.get("a").is_some());
        memory.delete("a");
        memory.put("d", pending(), Duration::from_secs(1));
        let entries = memory.entries.lock().unwrap();
        assert_eq!(entries.map.len(), 2);
        assert_eq!(entries.pending.len() + entries.finished.len(), 2);
    }
}
