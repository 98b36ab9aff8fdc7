//! The jobs' metrics, shared with whichever snapshot's store: `fanout_jobs{state=
//! "pending"}`, the jobs running in this instance now, and
//! `fanout_jobs_finished_total{state}`, jobs this instance ended, by how: `done` (an
//! answer below 500), `failed` (500 and above: upstream failure, timeout),
//! `cancelled`, `interrupted` (still running when the shutdown grace ran out).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// The `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobStateLabels {
    pub state: &'static str,
}

/// The states a finished job is counted under.
pub const FINISHED_STATES: [&str; 4] = ["done", "failed", "cancelled", "interrupted"];

#[derive(Debug, Clone, Default)]
pub struct JobStats {
    /// `fanout_jobs{state}`: `pending` only (running here now).
    pub jobs: Family<JobStateLabels, Gauge>,
    /// `fanout_jobs_finished_total{state}`.
    pub finished: Family<JobStateLabels, Counter>,
}

impl JobStats {
    /// Makes every series, at 0, so a dashboard sees them before the first job.
    pub fn touch(&self) {
        let _ = self.pending();
        for state in FINISHED_STATES {
            let _ = self.finished.get_or_create(&JobStateLabels { state });
        }
    }

    pub fn pending(&self) -> Gauge {
        self.jobs
            .get_or_create(&JobStateLabels { state: "pending" })
            .clone()
    }

    pub fn finished(&self, state: &'static str) {
        self.finished.get_or_create(&JobStateLabels { state }).inc();
    }
}
