//! [`Running`]: this instance's running jobs, shared by every snapshot's store: how to
//! drop each (a cancel on this instance drops the job's future at once), whose it is,
//! and a notice when one leaves (the shutdown drain waits on it).

use super::{Owner, RouteSlot};
use futures_util::future::AbortHandle;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running job: how to drop it, whose it is, how long its answer is kept.
#[derive(Debug)]
pub struct RunningJob {
    pub abort: AbortHandle,
    pub owner: Option<Owner>,
    pub result_ttl: Duration,
}

/// This instance's running jobs.
#[derive(Debug)]
pub struct Running {
    pub(super) jobs: Mutex<HashMap<String, RunningJob>>,
    /// Told whenever a job leaves.
    pub(super) changed: tokio::sync::Notify,
    pub(super) pending: Gauge,
    /// Set when the shutdown drain begins: no job starts after it.
    pub(super) closing: std::sync::atomic::AtomicBool,
}

impl Running {
    pub(super) fn new(pending: Gauge) -> Self {
        Self {
            jobs: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            pending,
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether the shutdown drain began: async routes then refuse new jobs (503), which
    /// the drain would neither wait for nor mark interrupted.
    pub fn is_closing(&self) -> bool {
        self.closing.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn count(&self) -> usize {
        self.jobs.lock().expect("not poisoned").len()
    }

    /// Records job `id` as running until the returned [`Slot`] is dropped.
    pub fn start(self: &Arc<Self>, id: &str, job: RunningJob, route: RouteSlot) -> Slot {
        self.jobs
            .lock()
            .expect("not poisoned")
            .insert(id.to_owned(), job);
        self.pending.inc();
        Slot {
            running: self.clone(),
            id: id.to_owned(),
            _route: route,
        }
    }

    /// Takes job `id` out and drops its future, if it runs here and is `owner`'s (or
    /// no one's): its `result_ttl` and owner when it did.
    pub fn cancel(&self, id: &str, owner: Option<Owner>) -> Option<(Duration, Option<Owner>)> {
        let job = {
            let mut jobs = self.jobs.lock().expect("not poisoned");
            match jobs.get(id) {
                Some(job) if job.owner.is_none() || job.owner == owner => jobs.remove(id),
                _ => None,
            }
        }?;
        job.abort.abort();
        self.pending.dec();
        self.changed.notify_waiters();
        Some((job.result_ttl, job.owner))
    }
}

/// A running job's place: dropped when the job ends (finished, failed, dropped).
#[derive(Debug)]
pub struct Slot {
    running: Arc<Running>,
    id: String,
    _route: RouteSlot,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let removed = self
            .running
            .jobs
            .lock()
            .expect("not poisoned")
            .remove(&self.id);
        // A job cancelled or interrupted was taken out (and uncounted) already.
        if removed.is_some() {
            self.running.pending.dec();
        }
        self.running.changed.notify_waiters();
    }
}
