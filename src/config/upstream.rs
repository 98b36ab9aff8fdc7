//! `[upstreams.NAME]` as written: the upstream's raw struct, its rate limit, circuit
//! breaker and health check, and their defaults.

use super::UpstreamTlsConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[upstreams.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL, `http://` or `https://`; a path here prefixes every call's path.
    pub url: String,
    /// Default per-call timeout for this upstream (connect, headers and body).
    pub timeout: String,
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: String,
    /// Idle keep-alive connections kept per host.
    pub pool_idle_per_host: usize,
    /// An idle pooled connection is closed after this long.
    pub pool_idle_timeout: String,
    /// Headers added to every call (`authorization = "Bearer ${TOKEN}"`).
    pub headers: BTreeMap<String, String>,
    /// Largest answer body accepted from this upstream on an aggregate route (after
    /// decoding a compressed one).
    pub max_response: String,
    /// Deepest nesting of arrays and objects accepted in an aggregate backend's answer
    /// (1 to 128); a deeper answer fails as `invalid_json`.
    pub max_depth: usize,
    /// Most JSON values (elements, members, containers) an aggregate backend's answer
    /// may hold when the gateway parses it (to shape it, for a backend that reads it,
    /// for `for_each`); a larger one fails as `too_large`. At least 1.
    pub max_values: usize,
    /// Calls at once; more wait up to `queue_timeout`. Default: no limit.
    pub max_in_flight: Option<usize>,
    /// How long a call waits for a free `max_in_flight` slot before failing (503).
    pub queue_timeout: String,
    /// Calls per period to this upstream (one bucket); beyond it calls fail at once.
    pub rate_limit: Option<UpstreamRateLimitConfig>,
    /// Extra tries for idempotent calls after a connect error or a 502/503/504.
    pub retries: u32,
    /// Idempotent calls: start a second try if the first has not answered by then.
    pub hedge_after: Option<String>,
    /// Stop calling an upstream that keeps failing.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// Probe the upstream in the background; calls fail at once while it is unhealthy.
    pub health_check: Option<HealthCheckConfig>,
    /// How the upstream's certificate is checked and what the gateway presents to it.
    pub tls: Option<UpstreamTlsConfig>,
    /// Speak cleartext HTTP/2 to an `http://` upstream without asking first (prior
    /// knowledge), as gRPC services expect.
    pub h2c: bool,
}

/// `rate_limit = { rate = "1000/s" }` on an upstream.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamRateLimitConfig {
    /// `N/s`, `N/min` or `N/hour`.
    pub rate: String,
    /// Calls allowed at once; default the rate's count.
    pub burst: Option<u32>,
    /// `local`: one bucket per instance; `cluster`: one bucket in the `[cluster]` store.
    pub scope: String,
}

impl Default for UpstreamRateLimitConfig {
    fn default() -> Self {
        Self {
            rate: String::new(),
            burst: None,
            scope: "local".into(),
        }
    }
}

/// `circuit_breaker = { failures = 5, open_for = "10s" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitBreakerConfig {
    /// Consecutive failures (connect errors, timeouts, 5xx) that open the circuit.
    pub failures: u32,
    /// How long calls fail at once before one probe is let through.
    pub open_for: String,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            open_for: "10s".into(),
        }
    }
}

/// `health_check = { path = "/health", interval = "5s" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    /// Path probed with GET; any 2xx is healthy.
    pub path: String,
    /// Time between probes.
    pub interval: String,
    /// A probe without an answer by then has failed.
    pub timeout: String,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/health".into(),
            interval: "5s".into(),
            timeout: "1s".into(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout: "10s".into(),
            connect_timeout: "1s".into(),
            pool_idle_per_host: 64,
            pool_idle_timeout: "90s".into(),
            headers: BTreeMap::new(),
            max_response: "16MiB".into(),
            max_depth: 128,
            max_values: 1_000_000,
            max_in_flight: None,
            queue_timeout: "50ms".into(),
            rate_limit: None,
            retries: 0,
            hedge_after: None,
            circuit_breaker: None,
            health_check: None,
            tls: None,
            h2c: false,
        }
    }
}
