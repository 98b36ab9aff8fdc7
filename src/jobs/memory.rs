//! The in-memory job store (no `[cluster]`): a map of at most `capacity` entries, each
//! with its expiry. Expired entries are removed when the map is full, or when read; a
//! full map of live entries drops the finished one closest to expiry first (a pending
//! one only when none is finished).

use super::{JobRecord, JobState};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The in-memory store: a bounded map with expiries.
#[derive(Debug)]
pub(super) struct Memory {
    entries: Mutex<HashMap<String, (JobRecord, Instant)>>,
    capacity: usize,
}

impl Memory {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    pub(super) fn put(&self, id: &str, record: JobRecord, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= self.capacity && !entries.contains_key(id) {
            entries.retain(|_, (_, expires)| *expires > now);
        }
        if entries.len() >= self.capacity && !entries.contains_key(id) {
            // Full of live entries: the finished one closest to expiry goes (a pending
            // one only when none is finished).
            let victim = entries
                .iter()
                .min_by_key(|(_, (r, expires))| (r.state == JobState::Pending, *expires))
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                entries.remove(&victim);
            }
        }
        entries.insert(id.to_owned(), (record, now + ttl));
    }

    /// Stores `record` (a final state) only if `id` is still pending: whether it did.
    pub(super) fn finish(&self, id: &str, record: JobRecord, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("not poisoned");
        match entries.get_mut(id) {
            Some(entry) if entry.1 > now && entry.0.state == JobState::Pending => {
                *entry = (record, now + ttl);
                true
            }
            _ => false,
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<JobRecord> {
        let mut entries = self.entries.lock().expect("not poisoned");
        match entries.get(id) {
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
}
