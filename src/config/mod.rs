//! The configuration as written in `gateway.toml`: raw serde structs, their defaults, and
//! the entry points that load and validate them into a [`Compiled`] config.

mod auth;
mod canary;
mod cluster;
mod compiled;
mod diff;
mod document;
mod env;
mod http2;
mod jobs;
mod load;
pub mod mirror;
mod plan;
mod tls;
mod units;
mod validate;

pub use auth::{ApiKeysConfig, AuthProviderConfig, AuthProviders};
pub use canary::{CanarySpec, StickyKey, WeightedUpstreamConfig};
pub use cluster::{ClusterConfig, ClusterSpec, OnStoreError, RedisTopology, RedisUrls, Scope};
pub use compiled::{
    AggregateSpec, BackendSpec, Compiled, CorsSpec, ExportSpec, ForEachSpec, HealthCheckSpec,
    MAX_DEPTH_LIMIT, OtlpProtocol, ProxySpec, RateLimitSpec, RedirectPrefixes, RouteAuthSpec,
    RouteKind, RouteSpec, ServerSpec, Shape, TracingSpec, UpstreamLimitSpec, UpstreamSpec,
};
pub use diff::{ConfigDiff, ValueChange, diff};
pub use document::{REDACTED, SECRET_ROUNDS};
pub use env::Env;
pub use http2::{Http2Config, Http2Spec};
pub use jobs::{AsyncConfig, AsyncSpec};
pub use load::{compile, compile_file, load_str};
pub use mirror::{MirrorConfig, MirrorSpec};
pub use plan::Plan;
pub use tls::{
    ClientAuthSpec, ServerCert, ServerTlsConfig, ServerTlsSpec, TlsCertConfig, TlsVersion,
    UpstreamTlsConfig, UpstreamTlsSpec,
};
pub use units::{parse_duration, parse_size};
pub use validate::validate;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One problem in a config: where it is (`routes[2].backends[1].upstream`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted place in the document, or `config` for the document as a whole.
    pub place: String,
    /// What is wrong and, where there is one, how to fix it.
    pub message: String,
}

impl ConfigProblem {
    pub fn new(place: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            place: place.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Every problem found in one config, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The whole document. Assembled section by section by the loader, so that a mistake in
/// one route does not hide the mistakes in the others.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayConfig {
    /// `[server]`: listener and process settings.
    pub server: ServerConfig,
    /// `[cache]`: the process-wide response cache.
    pub cache: CacheConfig,
    /// `[access_log]`: one line per request, written off the request path.
    pub access_log: AccessLogConfig,
    /// `[tracing]`: OpenTelemetry export of the gateway's spans.
    pub tracing: TracingConfig,
    /// `[cluster]`: the Redis store instances share; `None`: every instance on its own.
    pub cluster: Option<ClusterConfig>,
    /// `[auth.NAME]`: identity providers routes name in `auth`.
    pub auth: BTreeMap<String, AuthProviderConfig>,
    /// `[upstreams.NAME]`: the services routes call, by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// `[[routes]]`: the route table, in declaration order.
    pub routes: Vec<RouteConfig>,
    /// Places whose strings came from `${VAR}`: redacted wherever the config is shown.
    #[serde(skip)]
    pub interpolated: Vec<String>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the gateway listens on, `IP:PORT`.
    pub listen: String,
    /// Default deadline of a whole route, when the route sets no `timeout`.
    pub request_timeout: String,
    /// A client that has not sent its request headers within this time is disconnected.
    pub header_read_timeout: String,
    /// An idle keep-alive client connection is closed after this long without a request.
    pub keepalive_timeout: String,
    /// A client that takes no byte of an answer for this long is disconnected, and the
    /// upstream call feeding the answer cancelled (nginx's `send_timeout`).
    pub send_timeout: String,
    /// On SIGTERM/SIGINT: stop accepting, then give in-flight requests this long to finish.
    pub shutdown_grace: String,
    /// Largest request body buffered for an aggregate route (413 beyond it).
    pub max_body: String,
    /// Liveness endpoint answered on the main listener (`200 {"status":"ok"}`).
    pub health_path: String,
    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Runtime worker threads; default: the number of cores this process may use.
    pub workers: Option<usize>,
    /// Compress responses (gzip, br) for clients that accept it.
    pub compression: bool,
    /// Responses smaller than this are sent uncompressed.
    pub compression_min_size: String,
    /// Cross-origin access for browser dashboards; absent means no CORS headers at all.
    pub cors: Option<CorsConfig>,
    /// Connections served at once; more wait in the listen backlog. Default: no limit.
    pub max_connections: Option<usize>,
    /// Address of the admin listener (health, ready, metrics, config, reload), or `"off"`.
    pub admin_listen: String,
    /// Bearer token required for the admin POSTs, and for any non-loopback admin address.
    pub admin_token: Option<String>,
    /// TLS on the main listener; absent: plain HTTP.
    pub tls: Option<ServerTlsConfig>,
    /// Limits of the main listener's HTTP/2 connections.
    pub http2: Http2Config,
    /// With `tls`: an address (`IP:PORT`) of a plain listener that answers every request
    /// with `308` to the same URL over https.
    pub redirect_http: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            request_timeout: "30s".into(),
            header_read_timeout: "10s".into(),
            // nginx's keepalive_timeout.
            keepalive_timeout: "75s".into(),
            // nginx's send_timeout, and a proxy route's default idle_timeout.
            send_timeout: "60s".into(),
            shutdown_grace: "30s".into(),
            max_body: "10MiB".into(),
            health_path: "/__health".into(),
            trusted_proxies: Vec::new(),
            workers: None,
            compression: true,
            compression_min_size: "1KiB".into(),
            cors: None,
            max_connections: None,
            admin_listen: "127.0.0.1:9901".into(),
            admin_token: None,
            tls: None,
            http2: Http2Config::default(),
            redirect_http: None,
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Capacity in bytes of keys and answers; the least useful entries are evicted.
    pub max_size: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_size: "256MiB".into(),
        }
    }
}

/// `[access_log]`. Every key applies on a reload.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Write a line per request.
    pub enabled: bool,
    /// `"stdout"`, `"stderr"`, or the path of a file to append to (reopened on SIGUSR1).
    pub path: String,
    /// `"json"` (one object per line), `"text"` (`key=value`), or `"combined"` (nginx's).
    pub format: String,
    /// Lines are gathered up to this many bytes before a write.
    pub buffer: String,
    /// The longest a line waits in the buffer before it is written.
    pub flush: String,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "stderr".into(),
            format: "json".into(),
            buffer: "64KiB".into(),
            flush: "1s".into(),
        }
    }
}

/// `[tracing]`. Trace context (`traceparent`) is propagated whatever this says; this
/// section decides whether the gateway's own spans are recorded and exported.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The OTLP collector's URL (`http://collector:4318`); absent: no spans are
    /// recorded, only propagated. For the HTTP protocols a URL without a path gets
    /// `/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// How spans are sent: `"http/protobuf"`, `"http/json"` or `"grpc"`.
    pub protocol: String,
    /// The share of new traces sampled, 0.0 to 1.0 (a client's sampled flag is
    /// followed; requests that fail are exported whatever this says).
    pub sample_ratio: f64,
    /// The `service.name` spans are exported under.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            protocol: "http/protobuf".into(),
            sample_ratio: 1.0,
            service_name: "fanout".into(),
        }
    }
}

/// `[server.cors]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to call the gateway (`https://dash.example.com`), or `["*"]`.
    pub allow_origins: Vec<String>,
    /// Methods allowed in preflight; absent: the method the preflight asks for.
    pub allow_methods: Option<Vec<String>>,
    /// Request headers allowed in preflight; absent: the headers the preflight asks for.
    pub allow_headers: Option<Vec<String>>,
    /// Response headers the browser may read.
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age: String,
    /// Allow cookies and `Authorization` on cross-origin calls (not with origin `*`).
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allow_origins: Vec::new(),
            allow_methods: None,
            allow_headers: None,
            expose_headers: vec![
                "x-request-id".into(),
                "x-fanout-complete".into(),
                "server-timing".into(),
                "traceparent".into(),
            ],
            max_age: "10m".into(),
            allow_credentials: false,
        }
    }
}

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

/// `[[routes]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Path pattern: `{name}` matches one segment, `{*rest}` the rest of the path.
    pub path: String,
    /// Methods this route answers. Absent: `["GET"]` (and HEAD) on an aggregate route,
    /// every method on a proxy route.
    pub methods: Option<Vec<String>>,
    /// Deadline for the whole route; default `server.request_timeout`.
    pub timeout: Option<String>,
    /// Client request headers passed on to every backend.
    pub forward_headers: Vec<String>,
    /// If set, a key in the merged body describing each failed backend.
    pub errors_field: Option<String>,
    /// Aggregate routes: answer with this backend's 2xx status (201, 202, 204: no body)
    /// when the route succeeds; when that backend failed or was skipped, the usual 200.
    pub status_from: Option<String>,
    /// Aggregate routes: response headers copied from backends into the client's
    /// answer, `{ order = ["location", "etag"] }`.
    pub headers_from: BTreeMap<String, Vec<String>>,
    /// Largest request body: aggregate routes default to `server.max_body`; a proxy
    /// route streams any size unless this is set.
    pub max_body: Option<String>,
    /// Proxy routes: cache 2xx answers to GET for this long (whole response).
    pub cache_ttl: Option<String>,
    /// Proxy routes with `cache_ttl`: `local`, or `cluster` to share answers through the
    /// `[cluster]` store.
    pub cache_scope: String,
    /// Requests per client over time; beyond it, 429.
    pub rate_limit: Option<RouteRateLimitConfig>,
    /// The calls an aggregate route fans out to.
    pub backends: Vec<BackendConfig>,
    /// Makes this a proxy route to one upstream instead of an aggregate.
    pub proxy: Option<ProxyConfig>,
    /// Pass client headers whose names have an underscore (`X_User`) upstream; by
    /// default they are dropped, as nginx's `underscores_in_headers off` does, since
    /// CGI-style upstreams read `X_Forwarded_For` as `X-Forwarded-For`.
    pub underscores_in_headers: bool,
    /// The identity provider(s) a request must satisfy: `auth = "users"` or a list.
    pub auth: Option<AuthProviders>,
    /// With `auth`: let requests without credentials through, with no identity.
    pub auth_optional: bool,
    /// With `auth`: a CEL expression over `claims` the identity must satisfy, or 403.
    pub require: Option<String>,
    /// `async = { status_path = "/jobs/{job}", ... }`: answer `202 Accepted` with a
    /// status URL at once and run the work as a job (README, "Async routes").
    #[serde(rename = "async")]
    pub async_job: Option<AsyncConfig>,
    /// Proxy routes: copies of requests sent to shadow upstreams, fire and forget.
    pub mirror: Vec<MirrorConfig>,
    /// The largest request body a mirror copies (default 1MiB); a request with a larger
    /// body goes to the primary whole and is not copied.
    pub mirror_max_body: Option<String>,
}

// Written out, as every section's defaults are, rather than derived.
#[allow(clippy::derivable_impls)]
impl Default for RouteConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            methods: None,
            timeout: None,
            forward_headers: Vec::new(),
            errors_field: None,
            status_from: None,
            headers_from: BTreeMap::new(),
            max_body: None,
            cache_ttl: None,
            cache_scope: "local".into(),
            rate_limit: None,
            backends: Vec::new(),
            proxy: None,
            underscores_in_headers: false,
            auth: None,
            auth_optional: false,
            require: None,
            async_job: None,
            mirror: Vec::new(),
            mirror_max_body: None,
        }
    }
}

/// `rate_limit = { rate = "100/min", burst = 20, key = "header:x-user-id" }` on a route.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteRateLimitConfig {
    /// `N/s`, `N/min` or `N/hour`, refilled evenly.
    pub rate: String,
    /// Requests allowed at once; default the rate's count.
    pub burst: Option<u32>,
    /// `ip` (the client's address), `header:NAME`, or `global` (one bucket).
    pub key: String,
    /// Most clients (keys) tracked at once; when full, the least recently used key is
    /// forgotten and starts again with a full bucket.
    pub max_keys: usize,
    /// `local`: counted by each instance; `cluster`: counted once for all instances, in
    /// the `[cluster]` store.
    pub scope: String,
}

impl Default for RouteRateLimitConfig {
    fn default() -> Self {
        Self {
            rate: String::new(),
            burst: None,
            key: "ip".into(),
            max_keys: crate::limits::DEFAULT_MAX_KEYS,
            scope: "local".into(),
        }
    }
}

/// `[[routes.backends]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Unique in the route; the key of this answer in the merged body.
    pub name: String,
    /// Name of an `[upstreams.NAME]` entry.
    pub upstream: String,
    /// Path and query on the upstream, with `{param}`, `{query.NAME}`, `{header.NAME}`,
    /// `{BACKEND.dotted.path}` (another backend's answer) and, with `for_each`, `{item}`.
    pub path: String,
    /// `true`: this backend's failure fails the whole route; the same as
    /// `on_error = "fail"`, kept as its short form.
    pub required: Option<bool>,
    /// What this backend's failure does: `"fail"` fails the route, `"default"` puts its
    /// `default` (or `null`) under its key, `"omit"` leaves its key out. Default
    /// `"default"`, or `"fail"` with `required = true`.
    pub on_error: Option<OnError>,
    /// Per-call timeout; default the upstream's `timeout`.
    pub timeout: Option<String>,
    /// JSON used in place of the answer when this optional backend fails.
    pub default: Option<serde_json::Value>,
    /// `"key"`: the answer goes under `name`; `"root"`: its fields go to the top level.
    pub merge: MergeMode,
    /// Send the client's method and body (buffered up to `max_body`) instead of a GET.
    pub forward_body: bool,
    /// Cache 2xx answers for this long; default: not cached.
    pub cache_ttl: Option<String>,
    /// After `cache_ttl`, serve the stale answer at once for this long while one
    /// background call refreshes it.
    pub stale_while_revalidate: Option<String>,
    /// After `cache_ttl`, serve the stale answer for this long when a fresh call fails.
    pub stale_if_error: Option<String>,
    /// Store answers even when the upstream says `Cache-Control: no-store` or `private`.
    pub cache_ignore_upstream: bool,
    /// `local`: this instance's cache only; `cluster`: also the `[cluster]` store, so
    /// every instance shares the answer.
    pub cache_scope: String,
    /// Shaping, first: a dotted path into the answer (`data.items`, `items.0`).
    pub extract: Option<String>,
    /// Shaping, second: keep only these dotted paths (of each element of an array).
    pub select: Vec<String>,
    /// Shaping, third: drop these dotted paths.
    pub omit: Vec<String>,
    /// Shaping, last: rename top-level keys, `{ old = "new" }`.
    pub rename: BTreeMap<String, String>,
    /// One call per element of this array in another backend's answer
    /// (`user.friend_ids`); the answers form an array in element order.
    pub for_each: Option<String>,
    /// With `for_each`: at most this many element calls at once.
    pub concurrency: usize,
    /// With `for_each`: a longer array fails the backend (`too_many_items`) rather than
    /// flooding the upstream.
    pub max_items: usize,
    /// With `for_each`: `"null"` puts null in place of a failed element; `"all"` fails the
    /// whole backend.
    pub for_each_fail: ForEachFail,
    /// The call's method: `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// A JSON body template sent with the call (`Content-Type: application/json`): a
    /// string that is exactly one placeholder keeps its value's JSON type, other strings
    /// interpolate text. Not with `GET` or `forward_body`.
    pub body: Option<serde_json::Value>,
    /// The call may be repeated: a write call (not `GET`) is retried, hedged and cached
    /// only when this is set.
    pub idempotent: bool,
    /// Request headers set on the call, `{ "x-tenant" = "{user.tenant_id}" }`: text
    /// templates whose values are checked to be valid header values.
    pub headers: BTreeMap<String, String>,
    /// A CEL condition (`"user.plan == 'pro'"`) over `request` and earlier backends'
    /// answers: false skips this backend (no call; its `default` in its place), and every
    /// backend reading it; default: always called.
    pub when: Option<String>,
    /// A weighted canary in place of `upstream`: `[{ name = "v1", weight = 90 }, { name =
    /// "v2", weight = 10 }]`; each request's call goes to one of them.
    pub upstreams: Option<Vec<WeightedUpstreamConfig>>,
    /// With `upstreams`: keep a client on its pick by hashing `header:NAME`, `auth:sub`,
    /// `auth:CLAIM` or `cookie:NAME`; default: a random pick per request.
    pub sticky: Option<String>,
    /// Copies of this backend's calls sent to shadow upstreams, fire and forget.
    pub mirror: Vec<MirrorConfig>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            upstream: String::new(),
            path: String::new(),
            required: None,
            on_error: None,
            timeout: None,
            default: None,
            merge: MergeMode::Key,
            forward_body: false,
            cache_ttl: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            cache_ignore_upstream: false,
            cache_scope: "local".into(),
            extract: None,
            select: Vec::new(),
            omit: Vec::new(),
            rename: BTreeMap::new(),
            for_each: None,
            concurrency: 8,
            max_items: 100,
            for_each_fail: ForEachFail::Null,
            method: "GET".into(),
            body: None,
            idempotent: false,
            headers: BTreeMap::new(),
            when: None,
            upstreams: None,
            sticky: None,
            mirror: Vec::new(),
        }
    }
}

/// What a failed element call of a `for_each` backend does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForEachFail {
    /// `null` takes the element's place; the others are kept.
    #[default]
    Null,
    /// The backend fails, like any failed backend.
    All,
}

/// What a backend's failure (or, for `omit`, its being skipped) does to the route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The route fails with this backend's error (`required = true`).
    Fail,
    /// Its `default` (or `null`) takes the answer's place under its key.
    #[default]
    Default,
    /// Its key is left out of the merged body (with `merge = "root"`, nothing is spread).
    Omit,
}

/// Where a backend's answer goes in the merged body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    /// Under the backend's `name`.
    #[default]
    Key,
    /// Its object's fields spread into the top level; a later backend wins a clash.
    Root,
}

/// `proxy = { upstream = "files", path = "/{rest}" }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Name of an `[upstreams.NAME]` entry.
    pub upstream: String,
    /// Upstream path; `{rest}` and other route parameters are inserted as matched, in
    /// the request path's normal form.
    pub path: String,
    /// Send the client's `Host` upstream instead of the upstream's own.
    pub preserve_host: bool,
    /// A body stream (either way), or an upgraded connection (WebSocket), that sends
    /// nothing for this long is ended.
    pub idle_timeout: String,
    /// Protocols a client may upgrade to through this route (`Upgrade`); `[]`: none.
    /// `h2c` is never allowed.
    pub upgrade: Vec<String>,
    /// Rewrite a `Location`, `Content-Location` or `Refresh` that points at the
    /// upstream's own URL to the client's (nginx's `proxy_redirect default`).
    pub rewrite_location: bool,
    /// A weighted canary in place of `upstream`: `[{ name = "v1", weight = 90 }, { name =
    /// "v2", weight = 10 }]`; each request goes to one of them.
    pub upstreams: Option<Vec<WeightedUpstreamConfig>>,
    /// With `upstreams`: keep a client on its pick by hashing `header:NAME`, `auth:sub`,
    /// `auth:CLAIM` or `cookie:NAME`; default: a random pick per request.
    pub sticky: Option<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            upstream: String::new(),
            path: "/".into(),
            preserve_host: false,
            idle_timeout: "60s".into(),
            upgrade: vec!["websocket".into()],
            rewrite_location: true,
            upstreams: None,
            sticky: None,
        }
    }
}
