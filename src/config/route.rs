//! `[[routes]]` as written: the route's raw struct, its rate limit and its `proxy`
//! table, and their defaults.

use super::{AsyncConfig, AuthProviders, BackendConfig, MirrorConfig, WeightedUpstreamConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
