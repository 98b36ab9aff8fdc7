//! `async = { ... }` on a route: the raw config of an async route (the request is
//! answered `202 Accepted` with a status URL, the work runs as a job), and what it
//! compiles to; and `[jobs]`, what the in-memory job store may hold. Validation is
//! `validate/jobs.rs`; the runtime is `crate::jobs`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `async = { status_path = "/jobs/{job}", job_timeout = "5m", result_ttl = "10m",
/// max_jobs = 10000 }` on an aggregate or proxy route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsyncConfig {
    /// The status URL's path pattern, with exactly one `{job}` segment. Several async
    /// routes may share one (a job id names one job whichever route started it).
    pub status_path: String,
    /// The job's deadline, in place of the route's `timeout`; past it the job answers
    /// as the route's timeout does (504).
    pub job_timeout: String,
    /// How long a finished job's answer stays at its status URL; then 404.
    pub result_ttl: String,
    /// Jobs of this route running at once in one instance; beyond it, 503.
    pub max_jobs: usize,
    /// The largest answer a job keeps (a size: "1MiB"); a larger one is stored as
    /// 502 `bad_gateway`. A proxy route's upstream `max_response` applies too.
    pub max_result: String,
}

impl Default for AsyncConfig {
    fn default() -> Self {
        Self {
            status_path: "/jobs/{job}".into(),
            job_timeout: "5m".into(),
            result_ttl: "10m".into(),
            max_jobs: 10_000,
            max_result: "1MiB".into(),
        }
    }
}

/// `[jobs]`: the in-memory job store (no `[cluster]`). Every key applies on a reload.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Bytes the store may hold (finished answers, their headers, and each entry's
    /// bookkeeping); past it the finished answers closest to expiry are dropped first.
    /// Every async route's `max_result` must fit in it.
    pub max_memory: String,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            max_memory: "256MiB".into(),
        }
    }
}

/// A route's `async`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsyncSpec {
    /// The status path pattern, holding one `{job}` segment.
    pub status_path: String,
    pub job_timeout: Duration,
    pub result_ttl: Duration,
    /// At least 1.
    pub max_jobs: usize,
    /// Bytes of the largest answer a job keeps; at least 1.
    pub max_result: u64,
}

impl AsyncSpec {
    /// The status URL of job `id`: `status_path` with `{job}` replaced.
    pub fn status_url(&self, id: &str) -> String {
        self.status_path.replacen("{job}", id, 1)
    }
}
