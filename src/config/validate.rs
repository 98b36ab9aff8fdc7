//! `validate()`: checks a loaded [`GatewayConfig`] as a whole and compiles it into the
//! types the gateway runs on. Every problem is collected, each with its place and a fix.

use super::units::{parse_duration, parse_size};
use super::{
    BackendConfig, ConfigError, ConfigProblem, CorsConfig, GatewayConfig, MergeMode, RouteConfig,
    RouteRateLimitConfig, ServerConfig, UpstreamConfig,
};
use crate::cache::CachePolicy;
use crate::limits::{LimitKey, Rate, parse_trusted};
use crate::router::{RouteTable, param_names};
use crate::template::{Template, TemplateMode};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// A config that passed validation: every string parsed, every reference resolved.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The effective config as JSON with secrets redacted, for `/config`.
    pub document: Arc<serde_json::Value>,
    /// A stable hash of the effective config (secrets included).
    pub hash: String,
    pub server: ServerSpec,
    /// Capacity of the response cache, in bytes.
    pub cache_max_size: u64,
    pub upstreams: BTreeMap<String, UpstreamSpec>,
    pub routes: Vec<RouteSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    pub listen: SocketAddr,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_body: u64,
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
    pub max_in_flight: Option<usize>,
    pub queue_timeout: Duration,
    pub rate_limit: Option<(Rate, Option<NonZeroU32>)>,
    pub retries: u32,
    pub hedge_after: Option<Duration>,
    /// Consecutive failures that open the circuit, and for how long.
    pub circuit_breaker: Option<(u32, Duration)>,
    pub health_check: Option<HealthCheckSpec>,
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
    pub methods: Vec<Method>,
    pub timeout: Duration,
    pub forward_headers: Vec<HeaderName>,
    pub errors_field: Option<String>,
    /// The route's own limit; `None` means the server's for an aggregate, none for a proxy.
    pub max_body: Option<u64>,
    pub rate_limit: Option<RateLimitSpec>,
    pub kind: RouteKind,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSpec {
    pub rate: Rate,
    pub burst: Option<NonZeroU32>,
    pub key: LimitKey,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RouteKind {
    Aggregate(Vec<BackendSpec>),
    Proxy(ProxySpec),
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackendSpec {
    pub name: String,
    pub upstream: String,
    pub path: Template,
    pub required: bool,
    pub timeout: Option<Duration>,
    /// The `default` as JSON text (`null` when absent).
    pub default: Bytes,
    pub merge: MergeMode,
    pub forward_body: bool,
    /// Cache answers with this policy; `None`: not cached.
    pub cache: Option<CachePolicy>,
    pub cache_ignore_upstream: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxySpec {
    pub upstream: String,
    pub path: Template,
    pub preserve_host: bool,
    pub idle_timeout: Duration,
    /// Cache 2xx answers to GET for this long.
    pub cache_ttl: Option<Duration>,
}

impl Compiled {
    /// The route table as `fanout check` prints it: methods, path, kind and targets.
    pub fn route_table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .routes
            .iter()
            .map(|r| {
                let methods = r
                    .methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(",");
                let (kind, target) = match &r.kind {
                    RouteKind::Aggregate(backends) => (
                        "aggregate",
                        backends
                            .iter()
                            .map(|b| {
                                let req = if b.required { ", required" } else { "" };
                                format!("{} ({} {}{req})", b.name, b.upstream, b.path.source())
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    RouteKind::Proxy(p) => ("proxy", format!("{} {}", p.upstream, p.path.source())),
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

/// Collects problems while compiling; `place` strings follow the document's own shape.
#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, place: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem::new(place, message));
    }

    fn duration(&mut self, place: &str, text: &str) -> Duration {
        parse_duration(text).unwrap_or_else(|e| {
            self.add(place, e);
            Duration::from_secs(1)
        })
    }

    fn size(&mut self, place: &str, text: &str) -> u64 {
        parse_size(text).unwrap_or_else(|e| {
            self.add(place, e);
            0
        })
    }

    fn header_name(&mut self, place: &str, text: &str) -> Option<HeaderName> {
        let parsed = HeaderName::from_bytes(text.as_bytes()).ok();
        if parsed.is_none() {
            self.add(place, format!("\"{text}\" is not a valid header name"));
        }
        parsed
    }
}

/// Validates the whole config, reporting every problem at once.
pub fn validate(config: &GatewayConfig) -> Result<Compiled, ConfigError> {
    let mut p = Problems::default();
    let server = server(&config.server, &mut p);
    let cache_max_size = p.size("cache.max_size", &config.cache.max_size);
    let upstreams: BTreeMap<String, UpstreamSpec> = config
        .upstreams
        .iter()
        .map(|(name, u)| (name.clone(), upstream(name, u, &mut p)))
        .collect();
    let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
    let mut table = RouteTable::default();
    let mut routes = Vec::new();
    for (i, r) in config.routes.iter().enumerate() {
        let place = format!("routes[{i}]");
        if let Some(route) = route(&place, r, &server, &known, &mut p, &mut table, i) {
            routes.push(route);
        }
    }
    if p.0.is_empty() {
        let (document, hash) = super::document::document(config);
        Ok(Compiled {
            document: Arc::new(document),
            hash,
            server,
            cache_max_size,
            upstreams,
            routes,
        })
    } else {
        Err(ConfigError(p.0))
    }
}

fn server(s: &ServerConfig, p: &mut Problems) -> ServerSpec {
    let listen = s.listen.parse().unwrap_or_else(|_| {
        p.add(
            "server.listen",
            format!(
                "\"{}\" is not an address; write IP:PORT, such as \"0.0.0.0:8080\"",
                s.listen
            ),
        );
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    if !s.health_path.starts_with('/') {
        p.add(
            "server.health_path",
            format!("\"{}\" must start with \"/\"", s.health_path),
        );
    }
    if s.max_connections == Some(0) {
        p.add(
            "server.max_connections",
            "must be at least 1; leave it out for no limit",
        );
    }
    if s.workers == Some(0) {
        p.add(
            "server.workers",
            "must be at least 1; leave it out to use every core",
        );
    }
    ServerSpec {
        listen,
        request_timeout: p.duration("server.request_timeout", &s.request_timeout),
        header_read_timeout: p.duration("server.header_read_timeout", &s.header_read_timeout),
        shutdown_grace: p.duration("server.shutdown_grace", &s.shutdown_grace),
        max_body: p.size("server.max_body", &s.max_body),
        health_path: s.health_path.clone(),
        trusted_proxies: s
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                parse_trusted(t)
                    .map_err(|e| p.add(format!("server.trusted_proxies[{i}]"), e))
                    .ok()
            })
            .collect(),
        workers: s.workers,
        compression: s.compression,
        compression_min_size: p.size("server.compression_min_size", &s.compression_min_size),
        cors: s.cors.as_ref().map(|c| cors(c, p)),
        max_connections: s.max_connections,
        admin_listen: admin_listen(s, p),
        admin_token: s.admin_token.clone().filter(|t| !t.is_empty()),
    }
}

fn admin_listen(s: &ServerConfig, p: &mut Problems) -> Option<SocketAddr> {
    if s.admin_listen == "off" {
        return None;
    }
    let Ok(addr) = s.admin_listen.parse::<SocketAddr>() else {
        p.add(
            "server.admin_listen",
            format!(
                "\"{}\" is not an address; write IP:PORT, such as \"127.0.0.1:9901\", or \"off\"",
                s.admin_listen
            ),
        );
        return None;
    };
    if !addr.ip().is_loopback() && s.admin_token.as_deref().is_none_or(str::is_empty) {
        p.add(
            "server.admin_token",
            format!("is required when the admin listener is not on loopback ({addr}): anyone who reaches it could reload the config"),
        );
    }
    Some(addr)
}

fn cors(c: &CorsConfig, p: &mut Problems) -> CorsSpec {
    let any = c.allow_origins.iter().any(|o| o == "*");
    if c.allow_origins.is_empty() {
        p.add(
            "server.cors.allow_origins",
            "is empty; list the origins of your dashboards, such as [\"https://dash.example.com\"], or [\"*\"]",
        );
    }
    if any && c.allow_origins.len() > 1 {
        p.add(
            "server.cors.allow_origins",
            "\"*\" allows every origin; list it alone",
        );
    }
    if any && c.allow_credentials {
        p.add(
            "server.cors.allow_credentials",
            "browsers refuse credentials with origin \"*\"; list the allowed origins instead",
        );
    }
    let mut origins = Vec::new();
    for (i, o) in c
        .allow_origins
        .iter()
        .enumerate()
        .filter(|(_, o)| *o != "*")
    {
        let well_formed = (o.starts_with("http://") || o.starts_with("https://"))
            && !o.ends_with('/')
            && o.matches('/').count() == 2;
        match HeaderValue::from_str(o) {
            Ok(v) if well_formed => origins.push(v),
            _ => p.add(
                format!("server.cors.allow_origins[{i}]"),
                format!("\"{o}\" is not an origin; write scheme://host[:port] with no path, such as \"https://dash.example.com\""),
            ),
        }
    }
    let allow_methods = c.allow_methods.as_ref().map(|ms| {
        ms.iter()
            .enumerate()
            .filter_map(|(i, m)| method(&format!("server.cors.allow_methods[{i}]"), m, p))
            .collect()
    });
    let names = |list: &[String], key: &str, p: &mut Problems| -> Vec<HeaderName> {
        list.iter()
            .enumerate()
            .filter_map(|(i, h)| p.header_name(&format!("server.cors.{key}[{i}]"), h))
            .collect()
    };
    CorsSpec {
        allow_origins: origins,
        allow_methods,
        allow_headers: c
            .allow_headers
            .as_ref()
            .map(|h| names(h, "allow_headers", p)),
        expose_headers: names(&c.expose_headers, "expose_headers", p),
        max_age: p.duration("server.cors.max_age", &c.max_age),
        allow_credentials: c.allow_credentials,
    }
}

fn method(place: &str, text: &str, p: &mut Problems) -> Option<Method> {
    const KNOWN: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    if KNOWN.contains(&text) {
        Method::from_bytes(text.as_bytes()).ok()
    } else {
        p.add(
            place,
            format!(
                "unknown method \"{text}\"; use one of: {}",
                KNOWN.join(", ")
            ),
        );
        None
    }
}

fn upstream(name: &str, u: &UpstreamConfig, p: &mut Problems) -> UpstreamSpec {
    let place = format!("upstreams.{name}");
    let lowercase = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !lowercase {
        // FANOUT__UPSTREAMS__NAME__KEY overrides arrive lowercased; another name could
        // never be overridden.
        p.add(
            place.clone(),
            "upstream names use lowercase letters, digits, _ and -",
        );
    }
    let base = match reqwest::Url::parse(&u.url) {
        _ if u.url.is_empty() => {
            p.add(
                format!("{place}.url"),
                "is required: the base URL, such as \"http://127.0.0.1:9001\"",
            );
            String::new()
        }
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.has_host()
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            url.as_str().trim_end_matches('/').to_string()
        }
        _ => {
            p.add(
                format!("{place}.url"),
                format!("\"{}\" is not an http(s) base URL; write it as \"http://host:port\" or \"https://host/prefix\", without query", u.url),
            );
            String::new()
        }
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &u.headers {
        let hplace = format!("{place}.headers.{k}");
        let Some(name) = p.header_name(&hplace, k) else {
            continue;
        };
        match HeaderValue::from_str(v) {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            // The value may hold a secret: name the place, never the text.
            Err(_) => p.add(
                hplace,
                "the value is not valid header text (control characters or non-ASCII)",
            ),
        }
    }
    UpstreamSpec {
        name: name.to_string(),
        base,
        timeout: p.duration(&format!("{place}.timeout"), &u.timeout),
        connect_timeout: p.duration(&format!("{place}.connect_timeout"), &u.connect_timeout),
        pool_idle_per_host: u.pool_idle_per_host,
        pool_idle_timeout: p.duration(&format!("{place}.pool_idle_timeout"), &u.pool_idle_timeout),
        headers,
        max_response: p.size(&format!("{place}.max_response"), &u.max_response),
        max_in_flight: match u.max_in_flight {
            Some(0) => {
                p.add(
                    format!("{place}.max_in_flight"),
                    "must be at least 1; leave it out for no limit",
                );
                None
            }
            n => n,
        },
        queue_timeout: p.duration(&format!("{place}.queue_timeout"), &u.queue_timeout),
        rate_limit: u.rate_limit.as_ref().and_then(|l| {
            let rate = Rate::parse(&l.rate)
                .map_err(|e| p.add(format!("{place}.rate_limit.rate"), e))
                .ok()?;
            if l.burst == Some(0) {
                p.add(
                    format!("{place}.rate_limit.burst"),
                    "must be at least 1; leave it out to allow the rate's count at once",
                );
            }
            Some((rate, l.burst.and_then(NonZeroU32::new)))
        }),
        retries: u.retries,
        hedge_after: u
            .hedge_after
            .as_ref()
            .map(|h| p.duration(&format!("{place}.hedge_after"), h)),
        circuit_breaker: u.circuit_breaker.as_ref().map(|c| {
            if c.failures == 0 {
                p.add(
                    format!("{place}.circuit_breaker.failures"),
                    "must be at least 1",
                );
            }
            (
                c.failures.max(1),
                p.duration(&format!("{place}.circuit_breaker.open_for"), &c.open_for),
            )
        }),
        health_check: u.health_check.as_ref().map(|h| {
            if !h.path.starts_with('/') {
                p.add(
                    format!("{place}.health_check.path"),
                    format!("\"{}\" must start with \"/\"", h.path),
                );
            }
            HealthCheckSpec {
                path: h.path.clone(),
                interval: p.duration(&format!("{place}.health_check.interval"), &h.interval),
                timeout: p.duration(&format!("{place}.health_check.timeout"), &h.timeout),
            }
        }),
    }
}

fn rate_limit(place: &str, l: &RouteRateLimitConfig, p: &mut Problems) -> Option<RateLimitSpec> {
    let rate = Rate::parse(&l.rate)
        .map_err(|e| p.add(format!("{place}.rate"), e))
        .ok();
    let key = LimitKey::parse(&l.key)
        .map_err(|e| p.add(format!("{place}.key"), e))
        .ok();
    let burst = match l.burst {
        Some(0) => {
            p.add(
                format!("{place}.burst"),
                "must be at least 1; leave it out to allow the rate's count at once",
            );
            None
        }
        b => b.and_then(NonZeroU32::new),
    };
    Some(RateLimitSpec {
        rate: rate?,
        burst,
        key: key?,
    })
}

fn cache_policy(place: &str, b: &BackendConfig, p: &mut Problems) -> Option<CachePolicy> {
    let mut window = |key: &str, value: &Option<String>| {
        value
            .as_ref()
            .map(|v| p.duration(&format!("{place}.{key}"), v))
            .unwrap_or_default()
    };
    let stale_while_revalidate = window("stale_while_revalidate", &b.stale_while_revalidate);
    let stale_if_error = window("stale_if_error", &b.stale_if_error);
    let Some(ttl) = &b.cache_ttl else {
        if b.stale_while_revalidate.is_some() || b.stale_if_error.is_some() {
            p.add(
                format!("{place}.cache_ttl"),
                "is required by stale_while_revalidate and stale_if_error: they extend it",
            );
        }
        return None;
    };
    let ttl = p.duration(&format!("{place}.cache_ttl"), ttl);
    if b.forward_body {
        p.add(
            format!("{place}.cache_ttl"),
            "a backend with forward_body is not cached: its answer depends on the body",
        );
    }
    Some(CachePolicy {
        ttl,
        stale_while_revalidate,
        stale_if_error,
    })
}

fn known_upstream(place: &str, name: &str, known: &[&str], p: &mut Problems) {
    if name.is_empty() {
        p.add(
            place,
            format!(
                "is required: the name of an [upstreams.NAME] section; known: {}",
                list(known)
            ),
        );
    } else if !known.contains(&name) {
        p.add(
            place,
            format!("no upstream \"{name}\"; known: {}", list(known)),
        );
    }
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none (add an [upstreams.NAME] section)".into()
    } else {
        names.join(", ")
    }
}

fn route(
    place: &str,
    r: &RouteConfig,
    server: &ServerSpec,
    known: &[&str],
    p: &mut Problems,
    table: &mut RouteTable<usize>,
    index: usize,
) -> Option<RouteSpec> {
    if !r.path.starts_with('/') {
        p.add(
            format!("{place}.path"),
            format!("\"{}\" must start with \"/\"", r.path),
        );
        return None;
    }
    if r.methods.is_empty() {
        p.add(
            format!("{place}.methods"),
            "is empty; list at least one method, such as [\"GET\"]",
        );
    }
    let methods: Vec<Method> = r
        .methods
        .iter()
        .enumerate()
        .filter_map(|(i, m)| method(&format!("{place}.methods[{i}]"), m, p))
        .collect();
    // Checked before the rest, so a duplicate is reported even if this route has other
    // problems too.
    if let Err(e) = table.insert(&r.path, &methods, index) {
        p.add(format!("{place}.path"), e);
    }
    let forward_headers = r
        .forward_headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let hplace = format!("{place}.forward_headers[{i}]");
            let name = p.header_name(&hplace, h)?;
            // Hop-by-hop headers belong to one connection; the client library sets
            // Host and Content-Length per call.
            let per_connection = matches!(name.as_str(), "host" | "content-length")
                || crate::proxy::HOP_BY_HOP.contains(&name.as_str());
            if per_connection {
                p.add(
                    hplace,
                    format!(
                        "\"{h}\" describes the connection, not the request, and cannot be forwarded"
                    ),
                );
                return None;
            }
            Some(name)
        })
        .collect();
    let timeout = match &r.timeout {
        Some(t) => p.duration(&format!("{place}.timeout"), t),
        None => server.request_timeout,
    };
    let max_body = r
        .max_body
        .as_ref()
        .map(|m| p.size(&format!("{place}.max_body"), m));
    let rate_limit = r
        .rate_limit
        .as_ref()
        .and_then(|l| rate_limit(&format!("{place}.rate_limit"), l, p));
    let params = param_names(&r.path);
    let kind = match (&r.proxy, r.backends.is_empty()) {
        (Some(_), false) => {
            p.add(
                place,
                "has both `proxy` and `backends`; a route either proxies to one upstream or aggregates backends",
            );
            return None;
        }
        (None, true) => {
            p.add(
                place,
                "has neither `backends` nor `proxy`; add [[routes.backends]] or proxy = { upstream = \"...\", path = \"/{rest}\" }",
            );
            return None;
        }
        (Some(proxy), true) => {
            known_upstream(
                &format!("{place}.proxy.upstream"),
                &proxy.upstream,
                known,
                p,
            );
            let idle_timeout =
                p.duration(&format!("{place}.proxy.idle_timeout"), &proxy.idle_timeout);
            let path = Template::parse(&proxy.path, &params, TemplateMode::Proxy)
                .map_err(|e| p.add(format!("{place}.proxy.path"), e))
                .ok()?;
            let cache_ttl = r
                .cache_ttl
                .as_ref()
                .map(|t| p.duration(&format!("{place}.cache_ttl"), t));
            if cache_ttl.is_some() && !methods.contains(&Method::GET) {
                p.add(
                    format!("{place}.cache_ttl"),
                    "only answers to GET are cached; add GET to methods or remove cache_ttl",
                );
            }
            RouteKind::Proxy(ProxySpec {
                upstream: proxy.upstream.clone(),
                path,
                preserve_host: proxy.preserve_host,
                idle_timeout,
                cache_ttl,
            })
        }
        (None, false) => {
            let bodiless = methods
                .iter()
                .all(|m| *m == Method::GET || *m == Method::HEAD);
            if r.cache_ttl.is_some() {
                p.add(
                    format!("{place}.cache_ttl"),
                    "an aggregate route caches per backend: set cache_ttl in its [[routes.backends]]",
                );
            }
            if bodiless && let Some(i) = r.backends.iter().position(|b| b.forward_body) {
                p.add(
                    format!("{place}.backends[{i}].forward_body"),
                    "the route answers only GET/HEAD, which carry no body; add POST, PUT, PATCH or DELETE to methods",
                );
            }
            RouteKind::Aggregate(backends(place, r, &params, known, p)?)
        }
    };
    Some(RouteSpec {
        path: r.path.clone(),
        methods,
        timeout,
        forward_headers,
        errors_field: r.errors_field.clone(),
        max_body,
        rate_limit,
        kind,
    })
}

fn backends(
    route_place: &str,
    r: &RouteConfig,
    params: &[String],
    known: &[&str],
    p: &mut Problems,
) -> Option<Vec<BackendSpec>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let problems_before = p.0.len();
    for (i, b) in r.backends.iter().enumerate() {
        let place = format!("{route_place}.backends[{i}]");
        let spec = backend(&place, b, params, known, p);
        if !seen.insert(b.name.as_str()) {
            p.add(
                format!("{place}.name"),
                format!("duplicate backend name \"{}\" in this route; names are keys of the merged body and must be unique", b.name),
            );
        }
        out.extend(spec);
    }
    if let Some(field) = &r.errors_field {
        if field.is_empty() {
            p.add(
                format!("{route_place}.errors_field"),
                "is empty; name a key such as \"_errors\", or leave it out",
            );
        } else if seen.contains(field.as_str()) {
            p.add(
                format!("{route_place}.errors_field"),
                format!(
                    "\"{field}\" is also a backend name; pick another key, such as \"_errors\""
                ),
            );
        }
    }
    (p.0.len() == problems_before).then_some(out)
}

fn backend(
    place: &str,
    b: &BackendConfig,
    params: &[String],
    known: &[&str],
    p: &mut Problems,
) -> Option<BackendSpec> {
    let valid_name = b
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && b.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        p.add(
            format!("{place}.name"),
            format!("\"{}\" is not a backend name; use letters, digits, _ and -, starting with a letter", b.name),
        );
    }
    known_upstream(&format!("{place}.upstream"), &b.upstream, known, p);
    let path = Template::parse(&b.path, params, TemplateMode::Backend)
        .map_err(|e| p.add(format!("{place}.path"), e))
        .ok();
    let timeout = b
        .timeout
        .as_ref()
        .map(|t| p.duration(&format!("{place}.timeout"), t));
    let default = match &b.default {
        None => Bytes::from_static(b"null"),
        Some(v) => {
            if b.merge == MergeMode::Root && !v.is_object() {
                p.add(
                    format!("{place}.default"),
                    "a backend with merge = \"root\" spreads an object's fields: its default must be a table, such as {}",
                );
            }
            Bytes::from(serde_json::to_vec(v).expect("a JSON value serializes"))
        }
    };
    Some(BackendSpec {
        name: b.name.clone(),
        upstream: b.upstream.clone(),
        path: path?,
        required: b.required,
        timeout,
        default,
        merge: b.merge,
        forward_body: b.forward_body,
        cache: cache_policy(place, b, p),
        cache_ignore_upstream: b.cache_ignore_upstream,
    })
}
