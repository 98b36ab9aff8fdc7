//! Admission to one upstream: its health, its circuit breaker, its rate limit (one
//! bucket, in this process or, `scope = "cluster"`, in the `[cluster]` store) and its
//! in-flight slots. A refused call fails at once with a stable code;
//! an admitted one holds a [`Permit`] that records how it went.

use super::CallError;
use super::breaker::{Admission, CircuitBreaker};
use crate::cluster::Cluster;
use crate::config::{Scope, UpstreamSpec};
use crate::limits::{ClientKey, ClusterLimit, ClusterVerdict, LimitKey, Verdict};
use governor::{DefaultDirectRateLimiter, RateLimiter};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug)]
pub struct Guard {
    healthy: AtomicBool,
    breaker: Option<CircuitBreaker>,
    limiter: Option<DefaultDirectRateLimiter>,
    /// The rate limit when it is cluster-scoped (then `limiter` is `None`).
    cluster_limit: Option<ClusterLimit>,
    slots: Option<Arc<Semaphore>>,
    queue_timeout: Duration,
}

/// An admitted call. Dropping it without [`Permit::record`] (a cancelled call) frees
/// its slot and, if it was the breaker's probe, lets another call probe.
#[derive(Debug)]
pub struct Permit<'a> {
    guard: &'a Guard,
    admission: Option<Admission>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Guard {
    pub fn new(spec: &UpstreamSpec) -> Self {
        Self::in_cluster(spec, None)
    }

    /// A guard whose cluster-scoped rate limit counts in `cluster` (without one, a
    /// cluster-scoped limit, which `validate` refuses, counts in this process).
    pub fn in_cluster(spec: &UpstreamSpec, cluster: Option<&Arc<Cluster>>) -> Self {
        let (local, shared) = match (spec.rate_limit, cluster) {
            (Some(l), Some(cluster)) if l.scope == Scope::Cluster => (
                None,
                Some(ClusterLimit::new(
                    cluster.clone(),
                    &format!("upstream:{}", spec.name),
                    l.rate,
                    l.burst,
                    LimitKey::Global,
                    1,
                )),
            ),
            (l, _) => (l.map(|l| RateLimiter::direct(l.rate.quota(l.burst))), None),
        };
        Self {
            healthy: AtomicBool::new(true),
            breaker: spec
                .circuit_breaker
                .map(|(n, open_for)| CircuitBreaker::new(&spec.name, n, open_for)),
            limiter: local,
            cluster_limit: shared,
            slots: spec.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
            queue_timeout: spec.queue_timeout,
        }
    }

    /// Admits a call, waiting at most `queue_timeout` (and never past `deadline`) for a
    /// free slot.
    pub async fn admit(&self, deadline: Instant) -> Result<Permit<'_>, CallError> {
        if !self.healthy.load(Ordering::Relaxed) {
            return Err(CallError::Unhealthy);
        }
        let admission = match &self.breaker {
            Some(b) => Some(b.admit().ok_or(CallError::CircuitOpen)?),
            None => None,
        };
        // From here on, dropping the permit gives a probe back.
        let mut permit = Permit {
            guard: self,
            admission,
            _slot: None,
        };
        if self.limiter.as_ref().is_some_and(|l| l.check().is_err()) {
            return Err(CallError::Overloaded("over its rate limit".into()));
        }
        if let Some(limit) = &self.cluster_limit
            && let ClusterVerdict::Decided(Verdict::Limited { .. }) =
                Box::pin(limit.check(&ClientKey::Global)).await
        {
            return Err(CallError::Overloaded("over its rate limit".into()));
        }
        if let Some(slots) = &self.slots {
            let wait_until = deadline.min(Instant::now() + self.queue_timeout);
            match tokio::time::timeout_at(wait_until, slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => permit._slot = Some(slot),
                _ => {
                    return Err(CallError::Overloaded(format!(
                        "no free call slot within {}",
                        humantime::format_duration(self.queue_timeout)
                    )));
                }
            }
        }
        Ok(permit)
    }

    /// Whether its cluster-scoped limit (if any) counts in `cluster`: a reload keeps the
    /// upstream only then.
    pub fn counts_in(&self, cluster: Option<&Arc<Cluster>>) -> bool {
        match (&self.cluster_limit, cluster) {
            (None, _) => true,
            (Some(limit), Some(cluster)) => limit.is_in(cluster),
            (Some(_), None) => false,
        }
    }

    /// Sets the health-check verdict; returns whether it changed.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.swap(healthy, Ordering::Relaxed) != healthy
    }

    /// The breaker's state (`closed`, `open`, `half_open`), or `none` without one.
    pub fn circuit(&self) -> &'static str {
        self.breaker
            .as_ref()
            .map_or("none", CircuitBreaker::state_name)
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Free call slots now, with `max_in_flight` set (else `None`: calls are not
    /// counted), for the dashboard's in-flight figure.
    pub fn slots_free(&self) -> Option<usize> {
        self.slots.as_ref().map(|s| s.available_permits())
    }
}

impl Permit<'_> {
    /// Records the call's outcome with the breaker.
    pub fn record(mut self, failed: bool) {
        if let (Some(b), Some(a)) = (&self.guard.breaker, self.admission.take()) {
            b.record(a, failed);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let (Some(b), Some(a)) = (&self.guard.breaker, self.admission.take()) {
            b.abandon(a);
        }
    }
}
