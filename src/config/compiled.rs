//! The compiled config: every string parsed, every reference resolved; the types the
//! gateway is built from, and the route table `fanout check` prints.

use super::{MergeMode, OnError, Plan};
use crate::access_log::AccessLogSpec;
use crate::cache::CachePolicy;
use crate::condition::Condition;
use crate::json_path::Path;
use crate::limits::{LimitKey, Rate};
use crate::router::Methods;
use crate::template::{BodyTemplate, Source, Template, TextTemplate};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// A config that passed validation: every string parsed, every reference resolved.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The effective config as JSON with secrets redacted, for `/config`. After a
    /// reload, listener settings show the values serving (see `pending_restart`).
    pub document: Arc<serde_json::Value>,
    /// Identifies the loaded config across instances and with `fanout check`: SHA-256
    /// of the redacted document and of a slow (PBKDF2) digest of the secrets, so a
    /// changed secret changes it but the hash does not reveal it (see `document.rs`).
    pub hash: String,
    /// Settings the file sets that wait for a restart (`server.listen` → the loaded
    /// value); empty but after a reload that changed listener settings.
    pub pending_restart: serde_json::Map<String, serde_json::Value>,
    /// What works but needs attention, each with its place (a certificate that expires
    /// within 14 days): printed by `fanout check`, logged at start and on every reload.
    pub warnings: Vec<super::ConfigProblem>,
    pub server: ServerSpec,
    /// Capacity of the response cache, in bytes.
    pub cache_max_size: u64,
    /// `[jobs] max_memory`: bytes the in-memory job store may hold; at least 1.
    pub jobs_max_memory: u64,
    pub access_log: AccessLogSpec,
    pub tracing: TracingSpec,
    /// `[cluster]`: the store instances share; `None`: each instance on its own.
    pub cluster: Option<super::ClusterSpec>,
    /// `[auth.NAME]` identity providers, by name.
    pub auth: BTreeMap<String, crate::auth::ProviderSpec>,
    pub upstreams: BTreeMap<String, UpstreamSpec>,
    pub routes: Vec<RouteSpec>,
}

/// `[tracing]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingSpec {
    /// Where spans are exported; `None`: none are recorded.
    pub export: Option<ExportSpec>,
    /// The share of new traces sampled, 0.0 to 1.0.
    pub sample_ratio: f64,
    pub service_name: String,
}

/// An OTLP collector to export spans to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSpec {
    /// The URL spans are sent to (for HTTP, with `/v1/traces` when the config gave no
    /// path).
    pub endpoint: String,
    pub protocol: OtlpProtocol,
}

/// How spans are sent to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    pub listen: SocketAddr,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// A write to a client that makes no progress for this long ends its connection.
    pub send_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_body: u64,
    /// Most values in a request body that is parsed; at least 1.
    pub max_body_values: usize,
    pub health_path: String,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub workers: Option<usize>,
    pub compression: bool,
    pub compression_min_size: u64,
    pub cors: Option<CorsSpec>,
    pub max_connections: Option<usize>,
    /// `None`: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    pub admin_token: Option<String>,
    /// `[server.tls]`; `None`: the main listener is plain HTTP.
    pub tls: Option<super::tls::ServerTlsSpec>,
    /// `[server.http2]`.
    pub http2: super::http2::Http2Spec,
    /// The plain listener that redirects to https (`redirect_http`).
    pub redirect_http: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CorsSpec {
    /// Empty means any origin (`*`).
    pub allow_origins: Vec<HeaderValue>,
    pub allow_methods: Option<Vec<Method>>,
    pub allow_headers: Option<Vec<HeaderName>>,
    pub expose_headers: Vec<HeaderName>,
    pub max_age: Duration,
    pub allow_credentials: bool,
}

/// The largest `max_depth`: answers that are shaped or read by other backends are parsed
/// into values, and parsing, shaping and dropping a value recurse once per level.
pub const MAX_DEPTH_LIMIT: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSpec {
    pub name: String,
    /// The base URL without a trailing `/`; a rendered path is appended to it.
    pub base: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub pool_idle_per_host: usize,
    pub pool_idle_timeout: Duration,
    pub headers: HeaderMap,
    pub max_response: u64,
    /// Deepest nesting accepted in an aggregate answer, 1 to [`MAX_DEPTH_LIMIT`].
    pub max_depth: usize,
    /// Most values in an aggregate answer that is parsed; at least 1.
    pub max_values: usize,
    pub max_in_flight: Option<usize>,
    pub queue_timeout: Duration,
    pub rate_limit: Option<UpstreamLimitSpec>,
    pub retries: u32,
    pub hedge_after: Option<Duration>,
    /// Consecutive failures that open the circuit, and for how long.
    pub circuit_breaker: Option<(u32, Duration)>,
    pub health_check: Option<HealthCheckSpec>,
    /// The upstream's `tls`; `None`: the platform's roots, no client certificate.
    pub tls: Option<super::tls::UpstreamTlsSpec>,
    /// Cleartext HTTP/2 with prior knowledge.
    pub h2c: bool,
}

/// An upstream's `rate_limit`: one bucket for all its calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpstreamLimitSpec {
    pub rate: Rate,
    pub burst: Option<NonZeroU32>,
    /// `Cluster`: the bucket is in the `[cluster]` store, shared by every instance.
    pub scope: super::Scope,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub path: String,
    pub methods: Methods,
    pub timeout: Duration,
    pub forward_headers: Vec<HeaderName>,
    pub errors_field: Option<String>,
    /// The route's own limit; `None` means the server's for an aggregate, none for a proxy.
    pub max_body: Option<u64>,
    pub rate_limit: Option<RateLimitSpec>,
    /// Client headers with `_` in their names go upstream too.
    pub underscores_in_headers: bool,
    /// Who may call the route: `auth`, `auth_optional` and `require`; `None`: anyone.
    pub auth: Option<RouteAuthSpec>,
    pub kind: RouteKind,
    /// `async`: answered 202 with a status URL, the work run as a job; `None`: as usual.
    pub async_job: Option<super::AsyncSpec>,
}

/// A route's `auth`, `auth_optional` and `require`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteAuthSpec {
    /// The `[auth.NAME]` providers, tried in this order.
    pub providers: Vec<String>,
    /// Requests without credentials pass, with no identity.
    pub optional: bool,
    /// What the identity's claims must satisfy, or 403.
    pub require: Option<crate::condition::ClaimsCondition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSpec {
    pub rate: Rate,
    pub burst: Option<NonZeroU32>,
    pub key: LimitKey,
    /// Keys held at once, at least 1.
    pub max_keys: usize,
    /// `Cluster`: counted in the `[cluster]` store, once for every instance.
    pub scope: super::Scope,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteKind {
    Aggregate(AggregateSpec),
    Proxy(ProxySpec),
}

/// An aggregate route's backends and the plan `validate` built from them.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateSpec {
    /// In declaration order; a backend's index is its place here.
    pub backends: Vec<BackendSpec>,
    /// Which backend waits for whose answer; checked to have no cycle.
    pub plan: Plan,
    /// `status_from`: the backend (by index) whose 2xx status the route answers with.
    pub status_from: Option<usize>,
    /// `headers_from`: the backends (by index) whose response headers the client's
    /// answer carries, and which ones; each backend's `keep_headers` holds them.
    pub headers_from: Vec<(usize, Vec<HeaderName>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    pub name: String,
    pub upstream: String,
    pub path: Template,
    /// What this backend's failure does (`required = true` is `Fail`).
    pub on_error: OnError,
    pub timeout: Option<Duration>,
    /// The `default` as JSON text (`null` when absent).
    pub default: Bytes,
    pub merge: MergeMode,
    pub forward_body: bool,
    /// Cache answers with this policy; `None`: not cached.
    pub cache: Option<CachePolicy>,
    pub cache_ignore_upstream: bool,
    /// `Cluster`: cached answers are shared through the `[cluster]` store too.
    pub cache_scope: super::Scope,
    /// `None`: the answer is spliced as it came.
    pub shape: Option<Arc<Shape>>,
    /// The backends (by index in the route) whose answers this one waits for.
    pub waits_for: Vec<usize>,
    pub for_each: Option<ForEachSpec>,
    /// The call's method (`forward_body` sends the client's instead).
    pub method: Method,
    /// The JSON body template; `None`: no body (but a forwarded one).
    pub body: Option<BodyTemplate>,
    /// Whether the call may be retried, hedged and cached (always for `GET`).
    pub idempotent: bool,
    /// Request headers set on the call from templates, after the forwarded ones.
    pub headers: Vec<(HeaderName, TextTemplate)>,
    /// `when`: decided once the answers it reads are in; false skips this backend.
    pub when: Option<Condition>,
    /// The response headers this backend's calls keep (lower case, sorted, unique):
    /// those `headers_from`, templates or conditions read. Empty: none are kept.
    pub keep_headers: Vec<HeaderName>,
    /// `upstreams`: a weighted canary; `upstream` is then its first upstream's name, and
    /// each request's call goes to the one picked.
    pub canary: Option<super::CanarySpec>,
    /// Shadow upstreams each call is copied to; empty: none.
    pub mirror: Vec<super::MirrorSpec>,
}

impl BackendSpec {
    /// Whether this backend's failure fails the whole route.
    pub fn required(&self) -> bool {
        self.on_error == OnError::Fail
    }

    /// Whether serving this backend needs the client's request body: it sends it on, a
    /// template reads `{body...}`, or its `when` reads `request.body`.
    pub fn reads_request_body(&self) -> bool {
        self.forward_body || self.parses_request_body()
    }

    /// Whether serving this backend needs the client's body parsed as JSON: a template
    /// reads `{body...}` or its `when` reads `request.body`.
    pub fn parses_request_body(&self) -> bool {
        let reads = |s: &Source| matches!(s, Source::Body(_));
        self.path.sources().any(reads)
            || self.body.iter().flat_map(BodyTemplate::sources).any(reads)
            || self
                .headers
                .iter()
                .flat_map(|(_, t)| t.sources())
                .any(reads)
            || self
                .when
                .as_ref()
                .is_some_and(Condition::reads_request_body)
    }

    /// Whether the call may be repeated: retried, hedged, cached, shared.
    pub fn repeatable(&self) -> bool {
        self.method == Method::GET || self.idempotent
    }
}

/// How one backend's answer is shaped: `extract`, then `select`, `omit`, `rename`. The
/// rules are written where it is applied, in the aggregate's `shape` module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape {
    /// Where the kept value is in the answer; `None`: the whole answer.
    pub extract: Option<Path>,
    /// Paths to keep; empty: keep all.
    pub select: Vec<Path>,
    /// Paths to drop.
    pub omit: Vec<Path>,
    /// Top-level keys to rename, `(old, new)`.
    pub rename: Vec<(String, String)>,
}

impl Shape {
    /// Whether this shape leaves every answer as it is.
    pub fn is_identity(&self) -> bool {
        *self == Shape::default()
    }
}

/// One call per element of an array in another backend's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ForEachSpec {
    /// The backend (by index in the route) whose answer holds the array.
    pub backend: usize,
    /// Where the array is in that answer; `None`: the answer itself.
    pub path: Option<Path>,
    /// At most this many element calls at once.
    pub concurrency: usize,
    pub max_items: usize,
    /// A failed element fails the backend, instead of giving `null`.
    pub fail_all: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxySpec {
    pub upstream: String,
    pub path: Template,
    pub preserve_host: bool,
    pub idle_timeout: Duration,
    /// Cache 2xx answers to GET for this long.
    pub cache_ttl: Option<Duration>,
    /// `Cluster`: cached answers are shared through the `[cluster]` store too.
    pub cache_scope: super::Scope,
    /// Protocols a client may upgrade to, in lower case (never `h2c`).
    pub upgrade: Vec<String>,
    /// How the upstream's URLs map to the client's, for rewriting redirects; `None`
    /// with `rewrite_location = false`, or when the route does not map a prefix.
    pub redirects: Option<RedirectPrefixes>,
    /// `upstreams`: a weighted canary; `upstream` is then its first upstream's name, and
    /// each request goes to the one picked.
    pub canary: Option<super::CanarySpec>,
    /// Shadow upstreams requests are copied to; empty: none.
    pub mirror: Vec<super::MirrorSpec>,
}

/// A proxy route that maps a path prefix: the upstream path `upstream` + REST is the
/// client's path `client` + REST (route `/p/{*rest}` to `/v1/{rest}`: `/v1/`, `/p/`).
#[derive(Debug, Clone, PartialEq)]
pub struct RedirectPrefixes {
    /// After the upstream's base URL (whose path, if any, comes first).
    pub upstream: String,
    pub client: String,
}

impl Compiled {
    /// The route table as `fanout check` prints it: methods, path, kind and targets.
    pub fn route_table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .routes
            .iter()
            .map(|r| {
                let methods = r.methods.to_string();
                let (kind, target) = match &r.kind {
                    RouteKind::Aggregate(AggregateSpec { backends, .. }) => (
                        "aggregate",
                        backends
                            .iter()
                            .map(|b| {
                                let req = if b.required() { ", required" } else { "" };
                                let each = match &b.for_each {
                                    Some(f) => match &f.path {
                                        Some(p) => {
                                            format!(", for each {}.{p}", backends[f.backend].name)
                                        }
                                        None => format!(", for each {}", backends[f.backend].name),
                                    },
                                    None => String::new(),
                                };
                                let after = if b.waits_for.is_empty() {
                                    String::new()
                                } else {
                                    let names: Vec<&str> = b
                                        .waits_for
                                        .iter()
                                        .map(|&i| backends[i].name.as_str())
                                        .collect();
                                    format!(", after {}", names.join(" and "))
                                };
                                // A write call shows its method: `order (orders POST /orders)`.
                                let method = if b.method == Method::GET {
                                    String::new()
                                } else {
                                    format!("{} ", b.method)
                                };
                                let upstream = match &b.canary {
                                    Some(c) => format!("[{}]", c.describe()),
                                    None => b.upstream.clone(),
                                };
                                format!(
                                    "{} ({upstream} {method}{}{req}{each}{after})",
                                    b.name,
                                    b.path.source()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    RouteKind::Proxy(p) => {
                        let upstream = match &p.canary {
                            Some(c) => format!("[{}]", c.describe()),
                            None => p.upstream.clone(),
                        };
                        ("proxy", format!("{upstream} {}", p.path.source()))
                    }
                };
                [methods, r.path.clone(), kind.to_string(), target]
            })
            .collect();
        let header = ["METHODS", "PATH", "KIND", "TARGETS"].map(String::from);
        let mut widths = [0usize; 3];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            out.push_str(&format!(
                "{:w0$}  {:w1$}  {:w2$}  {}\n",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            ));
        }
        out
    }
}
