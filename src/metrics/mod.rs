//! Prometheus metrics for `/metrics`: requests by route and status, latency per route
//! and per backend, backend outcomes by code, cache and rate-limit counters, requests in
//! flight, reloads by result, and the config hash. One registry per process: it
//! outlives every config snapshot.
//!
//! A request's latency carries the id of its trace as an OpenMetrics exemplar when the
//! trace was sampled (`{trace_id="…"}` on the bucket it fell in, the latest per bucket),
//! so a dashboard goes from a slow bucket to the trace that shows why.

mod features;
mod jwks;
mod label;
mod registry;
mod series;

pub use features::MirrorSeries;
pub use jwks::JwksMetrics;
pub use label::Label;
pub use series::{BackendSeries, RouteSeries};

use crate::cache::CacheStats;
use crate::cluster::ClusterStats;
#[cfg(test)]
use crate::trace::TraceId;
use features::{CanaryLabels, MirrorDropLabels, MirrorOutcomeLabels, MirrorUpstreamLabels};
use label::{ExemplarHistogram, Histograms};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
#[cfg(test)]
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Label,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    route: Label,
    backend: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    route: Label,
    backend: Label,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthLabels {
    route: Label,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabels {
    hash: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, ExemplarHistogram, fn() -> ExemplarHistogram>,
    backend_seconds: Histograms<BackendLabels>,
    backend_outcomes: Family<OutcomeLabels, Counter>,
    rate_limited: Family<RouteLabels, Counter>,
    auth_refused: Family<AuthLabels, Counter>,
    in_flight: Gauge,
    reloads: Family<ResultLabels, Counter>,
    access_log_dropped: Family<ReasonLabels, Counter>,
    config: Family<HashLabels, Gauge>,
    tls_cert_expiry: Family<NameLabels, Gauge>,
    current_hash: Mutex<String>,
    /// Shared with the response cache, whichever snapshot holds it.
    pub cache: CacheStats,
    /// Spans recorded but not exported (the queue full, or the export failed).
    pub spans_dropped: Counter,
    /// JWT providers' key set fetches.
    pub jwks: JwksMetrics,
    /// The `[cluster]` store's failed calls and breaker, whichever snapshot's store.
    pub cluster: ClusterStats,
    /// Async routes' jobs: running here, and finished by how.
    pub jobs: crate::jobs::JobStats,
    /// Requests per canary upstream: `fanout_canary_requests_total`.
    canary_requests: Family<CanaryLabels, Counter>,
    /// Mirror copies by outcome (`ok`, `error`, `timeout`).
    mirror_requests: Family<MirrorOutcomeLabels, Counter>,
    /// Mirror copies not sent, by reason (`in_flight`, `body_too_large`).
    mirror_dropped: Family<MirrorDropLabels, Counter>,
    /// Mirror copies under way, by shadow upstream.
    mirror_in_flight: Family<MirrorUpstreamLabels, Gauge>,
    /// The dashboard's windows (per route, per backend), across snapshots.
    pub stats: crate::stats::Stats,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Counts a request as in flight until dropped.
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn rate_limited(&self, route: &Label) {
        self.rate_limited
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .inc();
    }

    /// Counts a request the route's auth phase refused: `missing` or `invalid`
    /// credentials (401), `forbidden` by `require` (403), `unavailable` (503).
    pub fn auth_refused(&self, route: &Label, reason: &'static str) {
        self.auth_refused
            .get_or_create(&AuthLabels {
                route: route.clone(),
                reason,
            })
            .inc();
    }

    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "rejected" };
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }

    /// The counter of access log lines lost for `reason` (`queue_full`, `write_error`),
    /// for the access log to add to.
    pub fn access_log_dropped(&self, reason: &'static str) -> Counter {
        self.access_log_dropped
            .get_or_create(&ReasonLabels { reason })
            .clone()
    }

    /// Marks `hash` as the config now serving.
    pub fn config_hash(&self, hash: &str) {
        let mut current = self.current_hash.lock().expect("never poisoned");
        if *current != hash {
            self.config.remove(&HashLabels {
                hash: current.clone(),
            });
            self.config
                .get_or_create(&HashLabels {
                    hash: hash.to_string(),
                })
                .set(1);
            *current = hash.to_string();
        }
    }

    /// The certificates a snapshot serves: `(name, notAfter in Unix seconds)`. Replaces
    /// the previous snapshot's, so a certificate no longer served has no series.
    pub fn tls_cert_expiry(&self, certs: &[(String, i64)]) {
        self.tls_cert_expiry.clear();
        for (name, not_after) in certs {
            self.tls_cert_expiry
                .get_or_create(&NameLabels { name: name.clone() })
                .set(*not_after);
        }
    }

    /// The OpenMetrics text exposition, exemplars included
    /// ([`crate::exposition::Exposition`] turns it into the Prometheus text format).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String");
        out
    }

    /// Requests being answered now, for the dashboard.
    pub fn requests_in_flight(&self) -> i64 {
        self.in_flight.get()
    }
}

#[cfg(test)]
mod tests;
