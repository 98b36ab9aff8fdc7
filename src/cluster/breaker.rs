//! The store's circuit breaker: after `failures` failed calls in a row, no call goes to
//! the store for `open_for` (each fails at once: no timeout paid per request during an
//! outage); then one call probes it. The probe's success closes the breaker; its failure
//! opens it again. State changes are logged once each (the store's `display`, never its
//! URL), and counted in [`ClusterStats`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Store calls that gave no answer, by kind, and whether the breaker is open: shared by
/// every snapshot (the metrics registry holds them), whichever `Cluster` records.
#[derive(Debug, Clone, Default)]
pub struct ClusterStats {
    /// `fanout_cluster_store_errors_total{kind}`: `timeout`, `error`, `skipped` (the
    /// breaker was open).
    pub errors: Family<KindLabels, Counter>,
    /// `fanout_cluster_breaker_open`: 1 while calls skip the store.
    pub open: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    kind: &'static str,
}

impl KindLabels {
    pub fn of(kind: &'static str) -> Self {
        Self { kind }
    }
}

impl ClusterStats {
    /// Counts one call that gave no answer.
    pub fn failed(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// The series at 0, so a rate over them is defined before the first error.
    pub fn touch(&self) {
        for kind in ["timeout", "error", "skipped"] {
            let _ = self.errors.get_or_create(&KindLabels { kind });
        }
    }
}

/// What the breaker says about the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Call the store.
    Call,
    /// Call it: this call is the probe after `open_for`.
    Probe,
    /// Do not call it: fail at once.
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Calling the store; `failures` in a row so far; `answered`: some call succeeded.
    Closed { failures: u32, answered: bool },
    /// Skipping the store until then.
    Open { until: Instant },
    /// One probe under way since then; the others skip.
    Probing { since: Instant },
}

/// The breaker of one `Cluster`.
#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    open_for: Duration,
    /// A probe older than this was abandoned (its call is bounded by the store's
    /// timeout): another call may probe.
    probe_patience: Duration,
    state: Mutex<State>,
}

/// A change the caller logs (once, outside the lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The store failed `failures` times in a row: skipping it.
    Opened,
    /// A probe failed: skipping it again.
    Reopened,
    /// A probe (or a call) succeeded after failures: calling it again.
    Closed,
}

impl Breaker {
    pub fn new(failures: u32, open_for: Duration, call_timeout: Duration) -> Self {
        Self {
            failures: failures.max(1),
            open_for,
            probe_patience: call_timeout.saturating_mul(2),
            state: Mutex::new(State::Closed {
                failures: 0,
                answered: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the next call goes to the store.
    pub fn admit(&self) -> Admit {
        let now = Instant::now();
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Admit::Call,
            State::Open { until } if now >= until => {
                *state = State::Probing { since: now };
                Admit::Probe
            }
            State::Probing { since } if now >= since + self.probe_patience => {
                *state = State::Probing { since: now };
                Admit::Probe
            }
            State::Open { .. } | State::Probing { .. } => Admit::Skip,
        }
    }

    /// A call answered.
    pub fn succeeded(&self) -> Option<Change> {
        let mut state = self.state();
        let change = match *state {
            State::Closed {
                failures: 0,
                answered: true,
            } => return None,
            State::Closed { .. } => None,
            State::Open { .. } | State::Probing { .. } => Some(Change::Closed),
        };
        *state = State::Closed {
            failures: 0,
            answered: true,
        };
        change
    }

    /// A call failed or ran past the timeout.
    pub fn failed(&self) -> Option<Change> {
        let now = Instant::now();
        let mut state = self.state();
        match *state {
            State::Closed { failures, answered } => {
                let failures = failures + 1;
                if failures >= self.failures {
                    *state = State::Open {
                        until: now + self.open_for,
                    };
                    Some(Change::Opened)
                } else {
                    *state = State::Closed { failures, answered };
                    None
                }
            }
            State::Probing { .. } => {
                *state = State::Open {
                    until: now + self.open_for,
                };
                Some(Change::Reopened)
            }
            // A call admitted before the breaker opened, failing late: already open.
            State::Open { .. } => None,
        }
    }

    /// For `/ready`: `unknown` (no call answered or failed yet), `up` (the last call
    /// answered), `down` (failing, not yet `failures` in a row) or `open` (skipping).
    pub fn describe(&self) -> &'static str {
        match *self.state() {
            State::Closed {
                failures: 0,
                answered: false,
            } => "unknown",
            State::Closed { failures: 0, .. } => "up",
            State::Closed { .. } => "down",
            State::Open { .. } | State::Probing { .. } => "open",
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.state(), State::Open { .. } | State::Probing { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn it_opens_after_failures_in_a_row_skips_then_probes_once() {
        let b = Breaker::new(3, Duration::from_secs(1), Duration::from_millis(5));
        assert_eq!(b.describe(), "unknown");
        assert_eq!(b.failed(), None);
        assert_eq!(b.succeeded(), None);
        assert_eq!(b.describe(), "up");
        // A success in between starts the count again.
        assert_eq!(b.failed(), None);
        assert_eq!(b.failed(), None);
        assert_eq!(b.describe(), "down");
        assert_eq!(b.failed(), Some(Change::Opened));
        assert_eq!(b.describe(), "open");
        assert_eq!(b.admit(), Admit::Skip);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(b.admit(), Admit::Skip);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.admit(), Admit::Probe);
        // One probe at a time.
        assert_eq!(b.admit(), Admit::Skip);
        assert_eq!(b.failed(), Some(Change::Reopened));
        assert_eq!(b.admit(), Admit::Skip);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(), Admit::Probe);
        assert_eq!(b.succeeded(), Some(Change::Closed));
        assert_eq!(b.admit(), Admit::Call);
        assert_eq!(b.describe(), "up");
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_another_call_probe() {
        let b = Breaker::new(1, Duration::from_secs(1), Duration::from_millis(5));
        assert_eq!(b.failed(), Some(Change::Opened));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(), Admit::Probe);
        // Its request was dropped: it never reports.
        tokio::time::advance(Duration::from_millis(9)).await;
        assert_eq!(b.admit(), Admit::Skip);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(b.admit(), Admit::Probe);
    }
}
