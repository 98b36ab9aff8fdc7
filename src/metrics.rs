//! Prometheus metrics for `/metrics`: requests by route and status, latency per route
//! and per backend, backend outcomes by code, cache and rate-limit counters, requests in
//! flight, reloads by result, and the config hash. One registry per process: it
//! outlives every config snapshot.
//!
//! A request's latency carries the id of its trace as an OpenMetrics exemplar when the
//! trace was sampled (`{trace_id="…"}` on the bucket it fell in, the latest per bucket),
//! so a dashboard goes from a slow bucket to the trace that shows why.

use crate::cache::CacheStats;
use crate::cluster::ClusterStats;
use crate::trace::TraceId;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A label value made once (a route's path, a backend's name) and shared: recording a
/// metric clones an `Arc`, it does not build a `String` per request.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Label(Arc<str>);

impl Label {
    pub fn new(text: &str) -> Self {
        Self(Arc::from(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

/// A trace id as an exemplar's label value: 32 lowercase hex digits, written at scrape
/// time (recording one copies 16 bytes).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct TraceIdValue(TraceId);

impl EncodeLabelValue for TraceIdValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        // ASCII hex digits: always valid UTF-8.
        encoder.write_str(std::str::from_utf8(&self.0.to_hex()).unwrap_or_default())
    }
}

/// The exemplar of a request's latency: `trace_id`, the label Grafana and Tempo look up.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceLabels {
    trace_id: TraceIdValue,
}

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

/// A JWT provider's JWKS fetches: `fanout_auth_jwks_refresh_total{provider,result}`
/// (`ok`, `error`, `invalid`) and `fanout_auth_jwks_keys{provider}`, the usable keys of
/// the set in use. Shared by every snapshot, so a provider rebuilt on reload keeps its
/// series.
#[derive(Clone, Debug, Default)]
pub struct JwksMetrics {
    refreshes: Family<JwksLabels, Counter>,
    keys: Family<ProviderLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JwksLabels {
    provider: Label,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: Label,
}

impl JwksMetrics {
    /// Counts one fetch of `provider`'s key set and its `result`.
    pub fn fetched(&self, provider: &str, result: &'static str) {
        let provider = Label::new(provider);
        self.refreshes
            .get_or_create(&JwksLabels { provider, result })
            .inc();
    }

    /// The number of usable keys `provider` verifies with now.
    pub fn keys(&self, provider: &str, count: usize) {
        let labels = ProviderLabels {
            provider: Label::new(provider),
        };
        self.keys
            .get_or_create(&labels)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabels {
    hash: String,
}

/// Whole microseconds as seconds: `0.012345`, not the nearest binary fraction of the
/// nanosecond count.
fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_micros() as f64 / 1e6
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// A request latency histogram: one exemplar slot per bucket, written only by a request
/// whose trace was sampled. Its observe takes a write lock around the histogram's own
/// mutex, exemplar or not: one more uncontended lock than a plain histogram, and no
/// allocation (a bucket's slot is made by its first exemplar, then overwritten).
type ExemplarHistogram = HistogramWithExemplars<TraceLabels>;

/// 0.5 ms to about 16 s.
fn latency_bucket_bounds() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

fn latency_buckets() -> Histogram {
    Histogram::new(latency_bucket_bounds())
}

fn request_latency_buckets() -> ExemplarHistogram {
    HistogramWithExemplars::new(latency_bucket_bounds())
}

/// Records `seconds` with `trace` as its bucket's exemplar when there is one.
fn observe(histogram: &ExemplarHistogram, seconds: f64, trace: Option<TraceId>) {
    match trace {
        None => histogram.observe(seconds, None, None),
        Some(id) => histogram.observe(
            seconds,
            Some(TraceLabels {
                trace_id: TraceIdValue(id),
            }),
            Some(SystemTime::now()),
        ),
    }
}

/// A route's latency histogram and its count of 200 answers (most answers), held by the
/// route: recording them needs no hashed lookup of the label set per request. Made at
/// build, so a route's series show 0 before its first request.
#[derive(Debug, Clone)]
pub struct RouteSeries {
    seconds: ExemplarHistogram,
    ok: Counter,
    /// The dashboard's sliding window of this route (`crate::stats`).
    pub window: Arc<crate::stats::RouteWindow>,
}

/// A backend's latency histogram and its counts of the common outcomes, `ok` and `hit`.
#[derive(Debug, Clone)]
pub struct BackendSeries {
    seconds: Histogram,
    ok: Counter,
    hit: Counter,
    /// The dashboard's sliding window of this backend (`crate::stats`).
    pub window: Arc<crate::stats::BackendWindow>,
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
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("fanout");
        let m = Self {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(
                request_latency_buckets as fn() -> ExemplarHistogram,
            ),
            backend_seconds: Family::new_with_constructor(latency_buckets as fn() -> Histogram),
            backend_outcomes: Family::default(),
            rate_limited: Family::default(),
            auth_refused: Family::default(),
            in_flight: Gauge::default(),
            reloads: Family::default(),
            access_log_dropped: Family::default(),
            config: Family::default(),
            tls_cert_expiry: Family::default(),
            current_hash: Mutex::new(String::new()),
            cache: CacheStats::default(),
            spans_dropped: Counter::default(),
            jwks: JwksMetrics::default(),
            cluster: ClusterStats::default(),
            jobs: crate::jobs::JobStats::default(),
            mirror_requests: Family::default(),
            mirror_dropped: Family::default(),
            mirror_in_flight: Family::default(),
            stats: crate::stats::Stats::default(),
            registry: Registry::default(),
            canary_requests: Family::default(),
        };
        registry.register(
            "auth_jwks_refresh",
            "JWKS fetches of JWT providers, by provider and result (ok, error, invalid)",
            m.jwks.refreshes.clone(),
        );
        registry.register(
            "auth_jwks_keys",
            "Usable keys in the JWKS a JWT provider verifies with",
            m.jwks.keys.clone(),
        );
        registry.register(
            "spans_dropped",
            "Spans recorded but not exported: the export queue was full or the export failed",
            m.spans_dropped.clone(),
        );
        registry.register(
            "requests",
            "Requests answered, by route and status",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to answer, by route",
            m.request_seconds.clone(),
        );
        registry.register(
            "backend_duration_seconds",
            "Time of each backend call, by route and backend",
            m.backend_seconds.clone(),
        );
        registry.register(
            "backend_outcomes",
            "Backend calls by outcome code (ok, hit, stale, timeout, ...)",
            m.backend_outcomes.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a route rate limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "auth_refused",
            "Requests a route's auth refused, by reason (missing, invalid, forbidden, unavailable)",
            m.auth_refused.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being answered now",
            m.in_flight.clone(),
        );
        registry.register("reloads", "Config reloads by result", m.reloads.clone());
        // Shown at 0 before the first reload, so a rate over them is defined.
        for result in ["ok", "rejected"] {
            let _ = m.reloads.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        registry.register(
            "access_log_dropped",
            "Access log lines lost, by reason: queue_full (the writer fell behind) or write_error",
            m.access_log_dropped.clone(),
        );
        for reason in ["queue_full", "write_error"] {
            let _ = m.access_log_dropped.get_or_create(&ReasonLabels { reason });
        }
        registry.register(
            "config_info",
            "The config hash now serving (value 1)",
            m.config.clone(),
        );
        registry.register(
            "tls_cert_expiry_seconds",
            "When each certificate the listener serves expires (notAfter), in Unix seconds, by its first server name",
            m.tls_cert_expiry.clone(),
        );
        registry.register(
            "cache_hits",
            "Answers served fresh from the cache",
            m.cache.hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Cache lookups that called the upstream",
            m.cache.misses.clone(),
        );
        registry.register(
            "cache_stale",
            "Stale answers served (revalidating, or after an error)",
            m.cache.stale.clone(),
        );
        registry.register(
            "cache_coalesced",
            "Misses that waited for a call already under way",
            m.cache.coalesced.clone(),
        );
        registry.register(
            "cluster_store_errors",
            "[cluster] store calls that gave no answer, by kind: timeout, error, skipped (the breaker was open)",
            m.cluster.errors.clone(),
        );
        registry.register(
            "cluster_breaker_open",
            "1 while calls skip the [cluster] store after repeated failures",
            m.cluster.open.clone(),
        );
        registry.register(
            "cache_shared",
            "The shared (cluster) cache level, by outcome: hit, miss, stored, too_large, waited, gave_up, error",
            m.cache.shared.clone(),
        );
        for outcome in crate::cache::SHARED_OUTCOMES {
            let _ = m
                .cache
                .shared
                .get_or_create(&crate::cache::SharedLabels { outcome });
        }
        registry.register(
            "jobs",
            "Async routes' jobs running in this instance (state=\"pending\")",
            m.jobs.jobs.clone(),
        );
        registry.register(
            "jobs_finished",
            "Async routes' jobs this instance ended, by state: done, failed (5xx), cancelled, interrupted (shutdown)",
            m.jobs.finished.clone(),
        );
        m.jobs.touch();
        registry.register(
            "canary_requests",
            "Requests sent to each upstream of a weighted canary, by route, backend (empty on a proxy route) and upstream",
            m.canary_requests.clone(),
        );
        registry.register(
            "mirror_requests",
            "Mirror copies sent to shadow upstreams, by route, upstream and outcome (ok, error, timeout)",
            m.mirror_requests.clone(),
        );
        registry.register(
            "mirror_dropped",
            "Mirror copies not sent, by route, upstream and reason (in_flight, body_too_large)",
            m.mirror_dropped.clone(),
        );
        registry.register(
            "mirror_in_flight",
            "Mirror copies under way, by shadow upstream",
            m.mirror_in_flight.clone(),
        );
        Arc::new(Self { registry, ..m })
    }

    /// A route's series that every request records, made once per snapshot. A route
    /// with a rate limit also gets its `rate_limited_total` at 0.
    pub fn route_series(&self, route: &Label, limited: bool) -> RouteSeries {
        let labels = RouteLabels {
            route: route.clone(),
        };
        if limited {
            let _ = self.rate_limited.get_or_create(&labels);
        }
        RouteSeries {
            seconds: self.request_seconds.get_or_create(&labels).clone(),
            ok: self
                .requests
                .get_or_create(&RequestLabels {
                    route: route.clone(),
                    status: 200,
                })
                .clone(),
            window: self.stats.route(route.as_str()),
        }
    }

    /// A backend's series that every call records, made once per snapshot.
    pub fn backend_series(&self, route: &Label, backend: &Label) -> BackendSeries {
        let labels = BackendLabels {
            route: route.clone(),
            backend: backend.clone(),
        };
        let outcome = |code| {
            self.backend_outcomes
                .get_or_create(&OutcomeLabels {
                    route: route.clone(),
                    backend: backend.clone(),
                    code,
                })
                .clone()
        };
        BackendSeries {
            seconds: self.backend_seconds.get_or_create(&labels).clone(),
            ok: outcome("ok"),
            hit: outcome("hit"),
            window: self.stats.backend(route.as_str(), backend.as_str()),
        }
    }

    /// Records an answer: through the route's `series` when it has one (a matched
    /// route), by lookup otherwise and for a status other than 200. `trace` is the id
    /// of the request's trace when it was sampled: the latency's exemplar.
    pub fn request(
        &self,
        route: &Label,
        series: Option<&RouteSeries>,
        status: u16,
        elapsed: Duration,
        trace: Option<TraceId>,
    ) {
        let seconds = seconds(elapsed);
        if let Some(series) = series {
            series.window.record(crate::stats::now(), status, elapsed);
        }
        match series {
            Some(series) => observe(&series.seconds, seconds, trace),
            None => observe(
                &self.request_seconds.get_or_create(&RouteLabels {
                    route: route.clone(),
                }),
                seconds,
                trace,
            ),
        }
        if let Some(series) = series.filter(|_| status == 200) {
            series.ok.inc();
            return;
        }
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                status,
            })
            .inc();
    }

    /// Records one backend call's outcome `code` and time.
    pub fn backend(
        &self,
        route: &Label,
        backend: &Label,
        series: &BackendSeries,
        code: &'static str,
        elapsed: Duration,
    ) {
        series.seconds.observe(seconds(elapsed));
        series.window.record(crate::stats::now(), code, elapsed);
        match code {
            "ok" => series.ok.inc(),
            "hit" => series.hit.inc(),
            _ => self
                .backend_outcomes
                .get_or_create(&OutcomeLabels {
                    route: route.clone(),
                    backend: backend.clone(),
                    code,
                })
                .inc(),
        };
    }

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

    /// The request counter of one canary upstream, made at build (so it shows 0 before
    /// its first request) and held by the canary: counting needs no lookup. `backend`
    /// is empty on a proxy route.
    pub fn canary_requests(&self, route: &Label, backend: &str, upstream: &str) -> Counter {
        self.canary_requests
            .get_or_create(&CanaryLabels {
                route: route.clone(),
                backend: backend.to_owned(),
                upstream: upstream.to_owned(),
            })
            .clone()
    }

    /// The series one mirror entry records, made at build (so they show 0 before the
    /// first copy): a copy's outcome or drop costs an increment, not a label lookup.
    pub fn mirror_series(&self, route: &Label, upstream: &Label) -> MirrorSeries {
        let outcome = |outcome| {
            self.mirror_requests
                .get_or_create(&MirrorOutcomeLabels {
                    route: route.clone(),
                    upstream: upstream.clone(),
                    outcome,
                })
                .clone()
        };
        let dropped = |reason| {
            self.mirror_dropped
                .get_or_create(&MirrorDropLabels {
                    route: route.clone(),
                    upstream: upstream.clone(),
                    reason,
                })
                .clone()
        };
        MirrorSeries {
            ok: outcome("ok"),
            error: outcome("error"),
            timeout: outcome("timeout"),
            dropped_in_flight: dropped("in_flight"),
            dropped_too_large: dropped("body_too_large"),
            in_flight: self
                .mirror_in_flight
                .get_or_create(&MirrorUpstreamLabels {
                    upstream: upstream.clone(),
                })
                .clone(),
        }
    }

    /// Requests being answered now, for the dashboard.
    pub fn requests_in_flight(&self) -> i64 {
        self.in_flight.get()
    }
}

/// `fanout_canary_requests_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CanaryLabels {
    route: Label,
    backend: String,
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorOutcomeLabels {
    route: Label,
    upstream: Label,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorDropLabels {
    route: Label,
    upstream: Label,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MirrorUpstreamLabels {
    upstream: Label,
}

/// One mirror entry's counters and its shadow upstream's in-flight gauge.
#[derive(Debug, Clone)]
pub struct MirrorSeries {
    pub ok: Counter,
    pub error: Counter,
    pub timeout: Counter,
    pub dropped_in_flight: Counter,
    pub dropped_too_large: Counter,
    pub in_flight: Gauge,
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
