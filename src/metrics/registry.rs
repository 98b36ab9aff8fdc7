//! Builds the one registry: every family, its name and help text, and the series shown
//! at 0 before their first event.

use super::label::{ExemplarHistogram, latency_buckets, request_latency_buckets};
use super::{JwksMetrics, Metrics, ReasonLabels, ResultLabels};
use crate::cache::CacheStats;
use crate::cluster::ClusterStats;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex};

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
        at_zero(&m.cache.shared, &crate::cache::SHARED_OUTCOMES);
        registry.register(
            "cache_purge_events",
            "The [cluster] purge stream here, by outcome: started (its end found, this memory purged), applied (an entry read and its purge done here, this instance's own included), lost (entries gone unread or too far behind: this memory purged)",
            m.cache.purge_events.clone(),
        );
        at_zero(&m.cache.purge_events, &crate::cache::PURGE_OUTCOMES);
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
}

/// Shows each of `outcomes` in `family` at 0 before its first event.
fn at_zero(family: &Family<crate::cache::SharedLabels, Counter>, outcomes: &[&'static str]) {
    for &outcome in outcomes {
        let _ = family.get_or_create(&crate::cache::SharedLabels { outcome });
    }
}
