//! The circuit breaker of one upstream: after `failures` consecutive failures it opens for
//! `open_for` (calls fail at once), then lets one probe through; the probe's success
//! closes it, its failure opens it again. Time is tokio's, so tests can pause it.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `probing`: the one probe is out and has not come back.
    HalfOpen {
        probing: bool,
    },
}

/// What the breaker lets a call be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Call,
    /// The one call allowed while half-open; its outcome decides the state.
    Probe,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    upstream: String,
    failures_to_open: u32,
    open_for: Duration,
    /// Never held across an await.
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(upstream: &str, failures_to_open: u32, open_for: Duration) -> Self {
        Self {
            upstream: upstream.to_string(),
            failures_to_open,
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the breaker state is never poisoned")
    }

    /// Whether a call may go now: `None` while open (or while the probe is out).
    pub fn admit(&self) -> Option<Admission> {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Some(Admission::Call),
            State::Open { until } if Instant::now() < until => None,
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                tracing::info!(upstream = %self.upstream, "circuit half-open: one probe call");
                Some(Admission::Probe)
            }
            State::HalfOpen { probing: true } => None,
        }
    }

    /// Records how an admitted call went.
    pub fn record(&self, admission: Admission, failed: bool) {
        let mut state = self.state();
        match (*state, admission, failed) {
            (State::Closed { failures }, _, true) => {
                let failures = failures + 1;
                if failures >= self.failures_to_open {
                    *state = State::Open {
                        until: Instant::now() + self.open_for,
                    };
                    tracing::warn!(upstream = %self.upstream, failures, open_for = ?self.open_for, "circuit opened");
                } else {
                    *state = State::Closed { failures };
                }
            }
            (State::Closed { .. }, _, false) => *state = State::Closed { failures: 0 },
            (State::HalfOpen { .. }, Admission::Probe, true) => {
                *state = State::Open {
                    until: Instant::now() + self.open_for,
                };
                tracing::warn!(upstream = %self.upstream, open_for = ?self.open_for, "probe failed: circuit open again");
            }
            (State::HalfOpen { .. }, Admission::Probe, false) => {
                *state = State::Closed { failures: 0 };
                tracing::info!(upstream = %self.upstream, "probe succeeded: circuit closed");
            }
            // A call admitted before the circuit opened says nothing about now.
            _ => {}
        }
    }

    /// `closed`, `open` or `half_open`, for readiness.
    pub fn state_name(&self) -> &'static str {
        match *self.state() {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }

    /// The probe was cancelled before it had an outcome: let the next call probe.
    pub fn abandon(&self, admission: Admission) {
        let mut state = self.state();
        if admission == Admission::Probe && *state == (State::HalfOpen { probing: true }) {
            *state = State::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new("users", 3, Duration::from_secs(10))
    }

    fn fail(b: &CircuitBreaker) {
        let a = b.admit().expect("admitted");
        b.record(a, true);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = breaker();
        fail(&b);
        fail(&b);
        let a = b.admit().unwrap();
        b.record(a, false);
        fail(&b);
        fail(&b);
        assert_eq!(
            b.admit(),
            Some(Admission::Call),
            "a success in between resets the count"
        );
        fail(&b);
        assert_eq!(b.admit(), None, "three in a row open it");
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_after_open_for_then_closes_on_success() {
        let b = breaker();
        (0..3).for_each(|_| fail(&b));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(b.admit(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(), Some(Admission::Probe));
        assert_eq!(b.admit(), None, "only one probe at a time");
        b.record(Admission::Probe, false);
        assert_eq!(b.admit(), Some(Admission::Call));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_opens_it_again() {
        let b = breaker();
        (0..3).for_each(|_| fail(&b));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit(), Some(Admission::Probe));
        b.record(Admission::Probe, true);
        assert_eq!(b.admit(), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit(), Some(Admission::Probe));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_lets_another_probe() {
        let b = breaker();
        (0..3).for_each(|_| fail(&b));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(b.admit(), Some(Admission::Probe));
        b.abandon(Admission::Probe);
        assert_eq!(b.admit(), Some(Admission::Probe));
    }
}
