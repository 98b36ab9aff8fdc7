//! [`JobStore`]: where jobs are, in one of two places behind the same calls:
//!
//! - in memory (no `[cluster]`): a map of at most `capacity` entries and `[jobs]
//!   max_memory` bytes, each with its expiry (a pending job's `job_timeout` plus a
//!   margin, a finished one's `result_ttl`); expired entries are removed as new ones
//!   come, and when the map is full the finished entry closest to expiry goes first.
//!   Only this instance answers.
//! - in the `[cluster]` store (Redis, through [`Cluster`]: its timeout and breaker): one
//!   key per job (`PREFIX` `job:ID`) with the same TTLs, so any instance answers the
//!   status URL. A pending entry whose instance died expires after `job_timeout` plus
//!   the margin instead of staying pending. A `DELETE` on another instance sets a
//!   cancel flag (`job-cancel:ID`) that the running instance reads every
//!   [`CANCEL_POLL`].
//!
//! Its [`Running`] jobs are shared by every snapshot's store: the shutdown drain waits
//! for them, then marks the rest `job_interrupted`.

use super::memory::Memory;
use super::running::{Running, RunningJob};
use super::{JobRecord, JobState, JobStats, decode, encode};
use crate::cache::Stored;
use crate::cluster::{Cluster, ClusterError};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How much longer than its `job_timeout` a pending entry is kept: the time a job may
/// take to store its answer once done.
pub const PENDING_MARGIN: Duration = Duration::from_secs(60);
/// How often a running job reads its cancel flag in the `[cluster]` store.
pub const CANCEL_POLL: Duration = Duration::from_secs(1);

/// The store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("the job store: {0}")]
pub struct JobStoreError(#[from] ClusterError);

#[derive(Debug)]
enum Backend {
    Memory(Memory),
    Cluster(Arc<Cluster>),
}

/// Where jobs are, and this instance's running ones.
#[derive(Debug)]
pub struct JobStore {
    backend: Backend,
    running: Arc<Running>,
    pub stats: JobStats,
}

impl JobStore {
    /// The store for a snapshot: `previous`'s when it keeps the same place (memory, or
    /// the same cluster connection), else a new one that shares `previous`'s running
    /// jobs.
    pub fn for_snapshot(
        previous: Option<&Arc<JobStore>>,
        cluster: Option<&Arc<Cluster>>,
        capacity: usize,
        max_memory: u64,
        stats: &JobStats,
    ) -> Arc<JobStore> {
        if let Some(p) = previous {
            let same = match (&p.backend, cluster) {
                (Backend::Memory(_), None) => true,
                (Backend::Cluster(was), Some(now)) => Arc::ptr_eq(was, now),
                _ => false,
            };
            if same {
                // A reload that adds async routes (or raises max_jobs) grows the map;
                // `[jobs] max_memory` is the new config's.
                if let Backend::Memory(m) = &p.backend {
                    m.resize(capacity, max_memory);
                }
                return p.clone();
            }
        }
        let running = previous.map_or_else(
            || Arc::new(Running::new(stats.pending())),
            |p| p.running.clone(),
        );
        stats.touch();
        Arc::new(JobStore {
            backend: match cluster {
                Some(c) => Backend::Cluster(c.clone()),
                None => Backend::Memory(Memory::new(capacity, max_memory)),
            },
            running,
            stats: stats.clone(),
        })
    }

    /// Whether jobs are in the `[cluster]` store (any instance answers them).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Cluster(_))
    }

    pub fn running(&self) -> &Arc<Running> {
        &self.running
    }

    /// Stores `record` at `id` for `ttl`.
    pub async fn put(
        &self,
        id: &str,
        record: &JobRecord,
        ttl: Duration,
    ) -> Result<(), JobStoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.put(id, record, ttl);
                Ok(())
            }
            Backend::Cluster(c) => Ok(c.set(&c.key("job", id), encode(record), ttl).await?),
        }
    }

    /// Stores `record`, a final state, at `id` for `ttl` only if the job is still
    /// pending there: whether it did. Of a job's ends (its answer, a cancel here or on
    /// another instance, the shutdown's interrupt) the first wins; the others lose.
    pub async fn finish(
        &self,
        id: &str,
        record: &JobRecord,
        ttl: Duration,
    ) -> Result<bool, JobStoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.finish(id, record, ttl)),
            Backend::Cluster(c) => {
                let pending = encode(&JobRecord {
                    owner: record.owner,
                    state: JobState::Pending,
                });
                Ok(c.replace(&c.key("job", id), pending, encode(record), ttl)
                    .await?)
            }
        }
    }

    /// The job at `id`, if any (a value that is not a record is none).
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>, JobStoreError> {
        match &self.backend {
            Backend::Memory(m) => Ok(m.get(id)),
            Backend::Cluster(c) => {
                let value = c.get(&c.key("job", id)).await?;
                Ok(value.and_then(|v| match decode(v) {
                    Ok(record) => Some(record),
                    Err(e) => {
                        tracing::warn!(error = %e, "a job's stored value is not a job record");
                        None
                    }
                }))
            }
        }
    }

    /// Forgets the job at `id`.
    pub async fn delete(&self, id: &str) -> Result<(), JobStoreError> {
        match &self.backend {
            Backend::Memory(m) => {
                m.delete(id);
                Ok(())
            }
            Backend::Cluster(c) => Ok(c.delete(&c.key("job", id)).await?),
        }
    }

    /// Asks the instance running `id` to drop it (the `[cluster]` store only: in
    /// memory, the job runs here and is cancelled through [`Running`]).
    pub async fn request_cancel(&self, id: &str, ttl: Duration) -> Result<(), JobStoreError> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Cluster(c) => {
                let key = c.key("job-cancel", id);
                Ok(c.set(&key, Bytes::from_static(b"1"), ttl).await?)
            }
        }
    }

    /// Resolves once another instance asked to cancel `id`; never, in memory. A store
    /// that fails to answer is asked again at the next poll.
    pub async fn cancelled_elsewhere(&self, id: &str) {
        let Backend::Cluster(c) = &self.backend else {
            return std::future::pending().await;
        };
        let key = c.key("job-cancel", id);
        loop {
            tokio::time::sleep(CANCEL_POLL).await;
            if let Ok(Some(_)) = c.get(&key).await {
                return;
            }
        }
    }

    /// On shutdown: waits up to `grace` for this instance's running jobs to finish,
    /// then drops the rest and stores `interrupted` as their answer. Returns how many
    /// were interrupted.
    pub async fn drain(&self, grace: Duration, interrupted: Stored) -> usize {
        self.running
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        let deadline = Instant::now() + grace;
        loop {
            let changed = self.running.changed.notified();
            if self.running.count() == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
        let left: Vec<(String, RunningJob)> = {
            let mut jobs = self.running.jobs.lock().expect("not poisoned");
            jobs.drain().collect()
        };
        for (id, job) in &left {
            job.abort.abort();
            self.running.pending.dec();
            let record = JobRecord {
                owner: job.owner,
                state: JobState::Done(interrupted.clone()),
            };
            match self.finish(id, &record, job.result_ttl).await {
                Ok(true) => self.stats.finished("interrupted"),
                // It stored its answer (or was cancelled) as the grace ran out.
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "an interrupted job could not be marked so; it expires instead");
                }
            }
        }
        if !left.is_empty() {
            tracing::warn!(
                jobs = left.len(),
                "shutdown grace elapsed; running jobs marked job_interrupted"
            );
        }
        left.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn an_entry_lives_its_ttl_then_is_gone() {
        let store = JobStore::for_snapshot(None, None, 10, u64::MAX, &JobStats::default());
        store
            .put("a", &done(), Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert_eq!(store.get("a").await.unwrap(), Some(done()));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(store.get("a").await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_running_jobs_then_interrupts_the_rest() {
        let stats = JobStats::default();
        let store = JobStore::for_snapshot(None, None, 10, u64::MAX, &stats);
        let route = super::super::AsyncRoute {
            spec: crate::config::AsyncSpec {
                status_path: "/jobs/{job}".into(),
                job_timeout: Duration::from_secs(60),
                result_ttl: Duration::from_secs(60),
                max_jobs: 10,
                max_result: 1024,
            },
            running: Arc::default(),
        };
        let mut tasks = Vec::new();
        for (id, takes) in [("quick", 1), ("slow", 100)] {
            let pending = JobRecord {
                owner: None,
                state: JobState::Pending,
            };
            store
                .put(id, &pending, Duration::from_secs(600))
                .await
                .unwrap();
            let (work, abort) =
                futures_util::future::abortable(tokio::time::sleep(Duration::from_secs(takes)));
            let slot = store.running().start(
                id,
                RunningJob {
                    abort,
                    owner: None,
                    result_ttl: Duration::from_secs(60),
                },
                route.try_slot().unwrap(),
            );
            tasks.push(tokio::spawn(async move {
                let finished = work.await.is_ok();
                drop(slot);
                finished
            }));
        }
        assert_eq!(stats.pending().get(), 2);
        let interrupted = Stored {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            headers: http::HeaderMap::new(),
            body: Bytes::from_static(b"interrupted"),
        };
        let started = Instant::now();
        assert_eq!(
            store
                .drain(Duration::from_secs(5), interrupted.clone())
                .await,
            1
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        let slow = tasks.pop().unwrap().await.unwrap();
        let quick = tasks.pop().unwrap().await.unwrap();
        assert!(
            quick && !slow,
            "the quick job finished, the slow one was dropped"
        );
        assert_eq!(
            store.get("slow").await.unwrap().unwrap().state,
            JobState::Done(interrupted)
        );
        assert_eq!(stats.pending().get(), 0);
        assert_eq!(route.running.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(
            store.running().is_closing(),
            "no job starts after the drain"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_on_the_memory_store_grows_its_capacity() {
        let stats = JobStats::default();
        let first = JobStore::for_snapshot(None, None, 1, u64::MAX, &stats);
        let second = JobStore::for_snapshot(Some(&first), None, 2, u64::MAX, &stats);
        assert!(Arc::ptr_eq(&first, &second), "the same store, jobs kept");
        for id in ["a", "b"] {
            second
                .put(id, &done(), Duration::from_secs(10))
                .await
                .unwrap();
        }
        assert!(second.get("a").await.unwrap().is_some(), "room for two now");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_with_nothing_running_still_closes_the_store_to_new_jobs() {
        let store = JobStore::for_snapshot(None, None, 10, u64::MAX, &JobStats::default());
        assert!(!store.running().is_closing());
        let interrupted = Stored {
            status: http::StatusCode::SERVICE_UNAVAILABLE,
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
        };
        assert_eq!(store.drain(Duration::from_secs(5), interrupted).await, 0);
        assert!(store.running().is_closing());
    }
}
