//! The in-memory job store (no `[cluster]`): a map of at most `capacity` entries and
//! `max_memory` bytes (`[jobs] max_memory`), each entry with its expiry, and their ids
//! ordered by expiry. An expired entry is removed when read. A write past either bound
//! drops entries, each found in O(log n): an expired pending one, else the finished one
//! closest to expiry; never the entry just written, so a finished answer stays readable
//! until newer ones push it out. Only the entry count may drop a job still running (a
//! pending one, when none is finished): the bytes never do, since a running job's
//! entry is small and its answer would be lost with it.

use super::{JobRecord, JobState};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// What an entry holds beyond its answer: the map's slot, the two copies of its id in
/// the expiry order, the record's fields. An estimate, so that a flood of pending or
/// cancelled jobs (no answer) counts too.
const ENTRY_OVERHEAD: usize = 192;

/// `record` with its answer in allocations of its own: an answer's body and header
/// values may be slices of the upstream connection's read buffer, which would stay
/// alive, uncounted, as long as the entry.
fn detached(record: &JobRecord) -> JobRecord {
    match &record.state {
        JobState::Done(stored) => JobRecord {
            owner: record.owner,
            state: JobState::Done(stored.to_owned_copy()),
        },
        JobState::Pending | JobState::Cancelled => record.clone(),
    }
}

/// Bytes `id`'s entry holding `record` counts against `max_memory`.
fn weight(id: &str, record: &JobRecord) -> u64 {
    let answer = match &record.state {
        JobState::Done(stored) => stored.weight(),
        JobState::Pending | JobState::Cancelled => 0,
    };
    (ENTRY_OVERHEAD + 3 * id.len() + answer) as u64
}

/// The entries, and their ids ordered by expiry, pending and finished apart: the
/// entry to drop when full is found in O(log n), not by a scan of the map.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, (JobRecord, Instant)>,
    pending: BTreeSet<(Instant, String)>,
    finished: BTreeSet<(Instant, String)>,
    /// The sum of the entries' [`weight`]s.
    bytes: u64,
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
            self.bytes -= weight(id, &record);
            self.order(&record).remove(&(expires, id.to_owned()));
        }
    }

    fn insert(&mut self, id: &str, record: JobRecord, expires: Instant) {
        self.remove(id);
        self.bytes += weight(id, &record);
        self.order(&record).insert((expires, id.to_owned()));
        self.map.insert(id.to_owned(), (record, expires));
    }

    /// The entry to drop, other than `keep`: an expired pending one, else the finished
    /// one closest to expiry (expired or not), else, with `running`, the pending one
    /// closest to it.
    fn victim(&self, now: Instant, keep: &str, running: bool) -> Option<String> {
        let other = |(_, id): &&(Instant, String)| id != keep;
        let first_pending = self.pending.iter().find(other);
        if let Some((expires, id)) = first_pending
            && *expires <= now
        {
            return Some(id.clone());
        }
        let finished = self.finished.iter().find(other);
        finished
            .or(first_pending.filter(|_| running))
            .map(|(_, id)| id.clone())
    }

    /// Drops entries other than `keep` until at most `capacity` hold, then until at most
    /// `max_memory` bytes do or only running jobs (and `keep`) are left.
    fn shrink_to(&mut self, capacity: usize, max_memory: u64, now: Instant, keep: &str) {
        while self.map.len() > capacity {
            let Some(victim) = self.victim(now, keep, true) else {
                return;
            };
            self.remove(&victim);
        }
        while self.bytes > max_memory {
            let Some(victim) = self.victim(now, keep, false) else {
                return;
            };
            self.remove(&victim);
        }
    }
}

/// The in-memory store: a map bounded in entries and bytes, with expiries.
#[derive(Debug)]
pub(super) struct Memory {
    entries: Mutex<Entries>,
    /// Grown by a reload that adds async routes (never shrunk: entries stay).
    capacity: AtomicUsize,
    /// `[jobs] max_memory`, as the latest reload set it.
    max_memory: AtomicU64,
}

impl Memory {
    pub(super) fn new(capacity: usize, max_memory: u64) -> Self {
        Self {
            entries: Mutex::default(),
            capacity: capacity.max(1).into(),
            max_memory: max_memory.into(),
        }
    }

    /// A reload's bounds: the capacity raised to `capacity` if it is more, the byte
    /// budget set to `max_memory` (a lower one takes effect at the next write).
    pub(super) fn resize(&self, capacity: usize, max_memory: u64) {
        self.capacity.fetch_max(capacity, Ordering::Relaxed);
        self.max_memory.store(max_memory, Ordering::Relaxed);
    }

    pub(super) fn put(&self, id: &str, record: &JobRecord, ttl: Duration) {
        let record = detached(record);
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("not poisoned");
        entries.insert(id, record, now + ttl);
        self.shrink(&mut entries, now, id);
    }

    /// Stores `record` (a final state) only if `id` is still pending: whether it did.
    pub(super) fn finish(&self, id: &str, record: &JobRecord, ttl: Duration) -> bool {
        let record = detached(record);
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("not poisoned");
        match entries.map.get(id) {
            Some((r, expires)) if *expires > now && r.state == JobState::Pending => {
                entries.insert(id, record, now + ttl);
                self.shrink(&mut entries, now, id);
                true
            }
            _ => false,
        }
    }

    fn shrink(&self, entries: &mut Entries, now: Instant, keep: &str) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        entries.shrink_to(capacity, self.max_memory.load(Ordering::Relaxed), now, keep);
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
        let memory = Memory::new(3, u64::MAX);
        memory.put("p", &pending(), Duration::from_secs(9));
        let cancelled = JobRecord {
            owner: None,
            state: JobState::Cancelled,
        };
        assert!(memory.finish("p", &cancelled, Duration::from_secs(9)));
        assert!(
            !memory.finish("p", &done(), Duration::from_secs(9)),
            "cancelled first"
        );
        assert_eq!(memory.get("p"), Some(cancelled));
        assert!(!memory.finish("unknown", &done(), Duration::from_secs(9)));
        assert_eq!(memory.get("unknown"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_map_drops_expired_then_the_finished_entry_closest_to_expiry() {
        let memory = Memory::new(3, u64::MAX);
        memory.put("p", &pending(), Duration::from_secs(1));
        memory.put("d1", &done(), Duration::from_secs(5));
        memory.put("d2", &done(), Duration::from_secs(9));
        memory.put("d3", &done(), Duration::from_secs(9));
        // The pending one stays even though it expires first; d1 went.
        assert!(memory.get("p").is_some());
        assert!(memory.get("d1").is_none());
        tokio::time::advance(Duration::from_secs(2)).await;
        memory.put("d4", &done(), Duration::from_secs(9));
        assert!(memory.get("p").is_none(), "expired, removed first");
        for id in ["d2", "d3", "d4"] {
            assert!(memory.get(id).is_some(), "{id}");
        }
    }

    fn done_of(bytes: usize) -> JobRecord {
        JobRecord {
            owner: None,
            state: JobState::Done(Stored {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: Bytes::from(vec![b'x'; bytes]),
            }),
        }
    }

    fn held(memory: &Memory) -> (usize, u64) {
        let entries = memory.entries.lock().unwrap();
        (entries.map.len(), entries.bytes)
    }

    #[tokio::test(start_paused = true)]
    async fn answers_past_max_memory_push_out_the_finished_closest_to_expiry() {
        let answer = weight("j1", &done_of(1000));
        let memory = Memory::new(100, 2 * answer + weight("j3", &pending()));
        for id in ["j1", "j2", "j3"] {
            memory.put(id, &pending(), Duration::from_secs(60));
        }
        assert!(memory.finish("j1", &done_of(1000), Duration::from_secs(10)));
        assert!(memory.finish("j2", &done_of(1000), Duration::from_secs(20)));
        assert_eq!(held(&memory).0, 3, "two answers and a pending job fit");
        assert!(memory.finish("j3", &done_of(1000), Duration::from_secs(30)));
        assert!(memory.get("j1").is_none(), "closest to expiry, dropped");
        assert_eq!(memory.get("j2"), Some(done_of(1000)));
        assert_eq!(memory.get("j3"), Some(done_of(1000)));
        assert_eq!(held(&memory), (2, 2 * answer));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stored_answer_owns_its_bytes() {
        // An answer read off a connection: body and header value are slices of its buffer.
        let buffer = Bytes::from(b"HTTP/1.1 200 OK\r\nx-report: r1\r\n\r\n{\"rows\":3}".to_vec());
        let mut headers = http::HeaderMap::new();
        let value = http::HeaderValue::from_maybe_shared(buffer.slice(27..29)).unwrap();
        headers.insert("x-report", value);
        let answer = |body: Bytes| JobRecord {
            owner: None,
            state: JobState::Done(Stored {
                status: http::StatusCode::OK,
                headers: headers.clone(),
                body,
            }),
        };
        let memory = Memory::new(10, u64::MAX);
        memory.put("p", &pending(), Duration::from_secs(9));
        assert!(memory.finish("p", &answer(buffer.slice(33..)), Duration::from_secs(9)));
        memory.put("d", &answer(buffer.slice(33..)), Duration::from_secs(9));
        let range = buffer.as_ptr_range();
        for id in ["p", "d"] {
            let Some(JobRecord {
                state: JobState::Done(stored),
                ..
            }) = memory.get(id)
            else {
                panic!("{id} is done");
            };
            assert_eq!(&stored.body[..], br#"{"rows":3}"#);
            assert_eq!(stored.headers["x-report"], "r1");
            assert!(
                !range.contains(&stored.body.as_ptr()),
                "{id}'s body is a copy"
            );
            assert!(!range.contains(&stored.headers["x-report"].as_bytes().as_ptr()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_entry_just_written_stays_even_alone_past_the_budget() {
        let memory = Memory::new(100, 1);
        memory.put("a", &done_of(10), Duration::from_secs(60));
        assert!(memory.get("a").is_some());
        memory.put("b", &pending(), Duration::from_secs(60));
        assert!(memory.get("a").is_none(), "the other answer went");
        assert!(memory.finish("b", &done_of(5000), Duration::from_secs(60)));
        assert_eq!(memory.get("b"), Some(done_of(5000)));
        assert_eq!(held(&memory).0, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_bound_never_drops_a_running_job() {
        // One large answer over the budget pushes out the other answers, not the entry of
        // a job still running, whose answer would be lost when it ends.
        let memory = Memory::new(1000, 8192);
        memory.put("old", &done_of(100), Duration::from_secs(5));
        memory.put("running", &pending(), Duration::from_secs(60));
        memory.put("j", &pending(), Duration::from_secs(60));
        assert!(memory.finish("j", &done_of(8000), Duration::from_secs(60)));
        assert!(memory.get("old").is_none(), "the finished answer went");
        assert_eq!(memory.get("running"), Some(pending()));
        assert!(memory.finish("running", &done_of(10), Duration::from_secs(60)));
        assert_eq!(memory.get("running"), Some(done_of(10)));
        // Expired pending entries do go for bytes.
        memory.put("stale", &pending(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        memory.put("new", &done_of(8000), Duration::from_secs(60));
        assert_eq!(held(&memory).0, 1, "only the entry just written is left");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_jobs_without_answers_is_bounded_by_count() {
        let memory = Memory::new(10, 1);
        for i in 0..5000 {
            memory.put(&format!("job-{i:04}"), &pending(), Duration::from_secs(60));
        }
        assert_eq!(held(&memory).0, 10);
        assert!(memory.get("job-4999").is_some());
        assert!(memory.get("job-0000").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lowered_budget_applies_at_the_next_write_and_bytes_follow_removals() {
        let memory = Memory::new(100, u64::MAX);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            memory.put(id, &done_of(1000), Duration::from_secs(10 + i as u64));
        }
        let answer = weight("a", &done_of(1000));
        assert_eq!(held(&memory), (3, 3 * answer));
        memory.resize(1, answer);
        assert_eq!(held(&memory).0, 3, "nothing dropped until a write");
        memory.put("d", &pending(), Duration::from_secs(60));
        assert_eq!(held(&memory), (1, weight("d", &pending())));
        memory.delete("d");
        assert_eq!(held(&memory), (0, 0));
        memory.resize(1, u64::MAX);
        memory.put("e", &done_of(10), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(memory.get("e").is_none(), "expired");
        assert_eq!(held(&memory), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_order_follows_rewrites_and_deletes() {
        let memory = Memory::new(2, u64::MAX);
        memory.put("a", &pending(), Duration::from_secs(1));
        memory.put("b", &done(), Duration::from_secs(5));
        // a finishes with a later expiry than b: b is now the first to go.
        assert!(memory.finish("a", &done(), Duration::from_secs(9)));
        memory.put("c", &done(), Duration::from_secs(9));
        assert!(memory.get("b").is_none());
        assert!(memory.get("a").is_some());
        memory.delete("a");
        memory.put("d", &pending(), Duration::from_secs(1));
        let entries = memory.entries.lock().unwrap();
        assert_eq!(entries.map.len(), 2);
        assert_eq!(entries.pending.len() + entries.finished.len(), 2);
    }
}
