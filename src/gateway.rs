//! The gateway's runtime state: one immutable snapshot built from a compiled config (route
//! table, one client per upstream), and the request path through it.

use crate::aggregate::{self, AggregateRoute, Backend, BackendOutcomes};
use crate::body::{Body, ClientBody, full};
use crate::cache::ResponseCache;
use crate::compress;
use crate::config::{AggregateSpec, Compiled, RateLimitSpec, RouteKind, ServerSpec};
use crate::error::{GatewayError, RATELIMIT_LIMIT, RATELIMIT_REMAINING};
use crate::limits::{RouteLimit, Verdict, client_key};
use crate::metrics::{Label, Metrics, RouteSeries};
use crate::proxy::{self, LocationRewrite, ProxyRoute};
use crate::router::{Lookup, Methods, RouteTable, normalize};
use crate::upstream::{Upstream, health};
use http::{HeaderName, HeaderValue, Request, Response, header};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// One route at runtime.
#[derive(Debug)]
pub struct Route {
    pub path: String,
    /// The path pattern as a metrics label.
    pub label: Label,
    pub series: RouteSeries,
    pub methods: Methods,
    /// Requests per client, and its spec (to carry the state over an unchanged reload).
    pub limit: Option<(RateLimitSpec, Arc<RouteLimit>)>,
    pub handler: Handler,
}

#[derive(Debug)]
pub enum Handler {
    Aggregate(AggregateRoute),
    Proxy(ProxyRoute),
}

/// An immutable snapshot of everything a request needs.
#[derive(Debug)]
pub struct Gateway {
    pub server: ServerSpec,
    /// The config this snapshot was built from: for diffs and `/config`.
    pub config: Compiled,
    pub routes: RouteTable<Route>,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    /// The response cache shared by every route.
    pub cache: Arc<ResponseCache>,
    /// The process's metrics: the same registry across reloads.
    pub metrics: Arc<Metrics>,
    /// The metrics label of requests no route matched (made once, not per request).
    unmatched: Label,
    /// The metrics label of the main listener's health path.
    health: Label,
}

/// The snapshot could not be built (a TLS backend that failed to initialize).
#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream}: cannot build its HTTP client: {source}")]
pub struct BuildError {
    upstream: String,
    source: crate::upstream::client::ClientError,
}

impl Gateway {
    /// Builds the snapshot: one pooled client per upstream, shared by every route.
    ///
    /// With a `previous` snapshot (a reload), what did not change carries over: an
    /// upstream with the same settings keeps its pool, breaker and health check; a route
    /// with the same path, methods and limit keeps its rate-limit state; the cache keeps
    /// its entries unless its size changed.
    pub fn build(compiled: Compiled, previous: Option<&Gateway>) -> Result<Self, BuildError> {
        let config = compiled.clone();
        let metrics = previous.map_or_else(Metrics::new, |p| p.metrics.clone());
        metrics.config_hash(&compiled.hash);
        let mut upstreams = BTreeMap::new();
        for (name, spec) in compiled.upstreams {
            let kept = previous
                .and_then(|p| p.upstreams.get(&name))
                .filter(|u| u.spec == spec);
            let up = match kept {
                Some(up) => up.clone(),
                None => {
                    let up = Upstream::build(spec).map_err(|source| BuildError {
                        upstream: name.clone(),
                        source,
                    })?;
                    let up = Arc::new(up);
                    health::spawn(&up);
                    up
                }
            };
            upstreams.insert(name, up);
        }
        let cache = match previous {
            Some(p) if p.config.cache_max_size == compiled.cache_max_size => p.cache.clone(),
            _ => ResponseCache::new(compiled.cache_max_size, metrics.cache.clone()),
        };
        let mut routes = RouteTable::default();
        for spec in compiled.routes {
            let limit = spec.rate_limit.clone().map(|l| {
                let kept = previous.and_then(|p| {
                    p.routes.iter().find_map(|r| match &r.limit {
                        Some((was, limit))
                            if r.path == spec.path && r.methods == spec.methods && *was == l =>
                        {
                            Some(limit.clone())
                        }
                        _ => None,
                    })
                });
                let limit = kept.unwrap_or_else(|| {
                    Arc::new(RouteLimit::new(l.rate, l.burst, l.key.clone(), l.max_keys))
                });
                (l, limit)
            });
            let label = Label::new(&spec.path);
            let handler = match spec.kind {
                RouteKind::Aggregate(AggregateSpec { backends, plan }) => {
                    Handler::Aggregate(AggregateRoute {
                        plan,
                        label: label.clone(),
                        metrics: metrics.clone(),
                        timeout: spec.timeout,
                        max_body: spec.max_body.unwrap_or(compiled.server.max_body),
                        cache: cache.clone(),
                        forward_headers: spec.forward_headers,
                        errors_field: spec.errors_field,
                        backends: backends
                            .into_iter()
                            .map(|b| {
                                let name = Label::new(&b.name);
                                Backend {
                                    series: metrics.backend_series(&label, &name),
                                    label: name,
                                    upstream: upstreams[&b.upstream].clone(),
                                    spec: b,
                                }
                            })
                            .collect(),
                    })
                }
                RouteKind::Proxy(p) => {
                    let upstream = upstreams[&p.upstream].clone();
                    Handler::Proxy(ProxyRoute {
                        redirects: p
                            .redirects
                            .as_ref()
                            .and_then(|m| LocationRewrite::new(&upstream.spec.base, m)),
                        upstream,
                        path: p.path,
                        timeout: spec.timeout,
                        idle_timeout: p.idle_timeout,
                        preserve_host: p.preserve_host,
                        max_body: spec.max_body,
                        cache: p.cache_ttl.map(|ttl| (cache.clone(), ttl)),
                        upgrade: p.upgrade,
                        underscores_in_headers: spec.underscores_in_headers,
                    })
                }
            };
            let route = Route {
                path: spec.path.clone(),
                series: metrics.route_series(&label, limit.is_some()),
                label,
                methods: spec.methods.clone(),
                limit,
                handler,
            };
            routes
                .insert(&spec.path, &spec.methods, route)
                .expect("validate() checked the route table");
        }
        Ok(Self {
            server: compiled.server,
            config,
            routes,
            upstreams,
            cache,
            metrics,
            unmatched: Label::new("unmatched"),
            health: Label::new("health"),
        })
    }

    /// Answers one request. Errors become responses here, through `error.rs`. Takes
    /// the snapshot it answers from by value, so the server can box this future as it
    /// is instead of in a block that owns the snapshot (one copy of it fewer).
    pub async fn handle(
        self: Arc<Self>,
        mut request: Request<ClientBody>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let started = tokio::time::Instant::now();
        let _in_flight = self.metrics.in_flight();
        // The client's request id, or a new one; upstreams and the response carry it.
        let request_id = match request.headers().get(&X_REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = new_request_id();
                request
                    .headers_mut()
                    .insert(X_REQUEST_ID.clone(), id.clone());
                id
            }
        };
        // A Uri clone shares its bytes: no copy of the path per request.
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let encoding = self
            .server
            .compression
            .then(|| compress::negotiate(request.headers()));
        let mut matched = Matched {
            label: &self.unmatched,
            series: None,
            passthrough: false,
        };
        let mut response = match self.route(request, peer, &mut matched).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        };
        let label = matched.label;
        // A proxied answer is the upstream's, as it sent it (nginx's `gzip_proxied off`):
        // a stream is not held back in an encoder.
        if let Some(encoding) = encoding
            && !matched.passthrough
        {
            let min = self.server.compression_min_size;
            response = compress::apply(response, encoding, min).await;
        }
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        self.metrics.request(label, matched.series, status, elapsed);
        // The access log: one line per request; RUST_LOG=fanout::access=off silences it.
        // The duration is whole microseconds, so it prints as `12.345`, not as the
        // nearest binary fraction.
        tracing::info!(
            target: "fanout::access",
            request_id = request_id.to_str().unwrap_or(""),
            %method,
            path = uri.path(),
            route = label.as_str(),
            status,
            duration_ms = elapsed.as_micros() as f64 / 1000.0,
            backends = ?Words(response.extensions().get::<BackendOutcomes>().map_or("", |b| b.0.as_str())),
            "request"
        );
        // An upstream's own id on a proxied answer is kept, as tower-http's layer did.
        response
            .headers_mut()
            .entry(X_REQUEST_ID.clone())
            .or_insert(request_id);
        response
    }

    /// `matched` says which route answered: `health` for the health path, the route of
    /// the matched path for a 405, `unmatched` when no path matched.
    async fn route<'s>(
        &'s self,
        request: Request<ClientBody>,
        peer: SocketAddr,
        matched: &mut Matched<'s>,
    ) -> Result<Response<Body>, GatewayError> {
        let (parts, body) = request.into_parts();
        if parts.uri.path() == self.server.health_path {
            matched.label = &self.health;
            return Ok(health());
        }
        // Routes match the path's normal form, and a proxy sends it upstream: no
        // spelling of a path can pass one route's policy to reach another's upstream.
        let path = normalize(parts.uri.path()).map_err(|e| GatewayError::BadRequest {
            backend: None,
            message: e.to_string(),
        })?;
        let (route, params) = match self.routes.lookup(&parts.method, &path) {
            Lookup::Found(route, params) => (route, params),
            Lookup::MethodNotAllowed { allow, on_path, .. } => {
                // Counted on the route whose path matched.
                matched.label = &on_path.label;
                matched.series = Some(&on_path.series);
                return Err(GatewayError::MethodNotAllowed {
                    allow: allow.clone(),
                });
            }
            Lookup::NotFound => return Err(GatewayError::RouteNotFound),
        };
        matched.label = &route.label;
        matched.series = Some(&route.series);
        let quota = match &route.limit {
            Some((_, limit)) => match self.admit(limit, &parts, peer.ip()) {
                Ok(remaining) => Some((limit.burst, remaining)),
                Err(e) => {
                    self.metrics.rate_limited(&route.label);
                    return Err(e);
                }
            },
            None => None,
        };
        // Each handler's future is boxed: they are large, and unboxed they would make
        // every layer's future as large, copied whole each time one is wrapped.
        let result = match &route.handler {
            Handler::Aggregate(agg) => Box::pin(aggregate::serve(agg, &parts, &params, body))
                .await
                .map_err(GatewayError::from),
            Handler::Proxy(p) => {
                // The URL is rendered first: the params borrow the path of `parts`,
                // which the proxy then takes by value.
                let url = proxy::target_url(p, &parts, &params)?;
                drop(params);
                drop(path);
                let result = Box::pin(proxy::forward(p, url, parts, body, peer)).await;
                matched.passthrough = result.is_ok();
                result
            }
        };
        let Some((limit, remaining)) = quota else {
            return result;
        };
        let mut response = result.unwrap_or_else(GatewayError::into_response);
        let headers = response.headers_mut();
        headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(limit));
        headers.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(remaining));
        Ok(response)
    }

    /// Counts a request against its route's limit: the requests left, or 429.
    fn admit(
        &self,
        limit: &RouteLimit,
        parts: &http::request::Parts,
        peer: IpAddr,
    ) -> Result<u32, GatewayError> {
        let key = client_key(
            &limit.key,
            peer,
            &parts.headers,
            &self.server.trusted_proxies,
        );
        match limit.check(&key) {
            Verdict::Allowed { remaining } => Ok(remaining),
            Verdict::Limited { retry_after } => Err(GatewayError::RateLimited {
                // Whole seconds, rounded up: a client that waits that long gets in.
                retry_after_secs: retry_after.as_nanos().div_ceil(1_000_000_000).max(1) as u64,
                limit: limit.burst,
            }),
        }
    }

    /// Forgets rate-limit keys whose buckets are full again (see [`RouteLimit::prune`]).
    pub fn prune_limits(&self) {
        for (_, limit) in self.routes.iter().filter_map(|r| r.limit.as_ref()) {
            limit.prune();
        }
    }
}

/// What [`Gateway::route`] found: the route's metrics label, and whether the answer
/// is an upstream's passed through (not compressed).
struct Matched<'s> {
    label: &'s Label,
    series: Option<&'s RouteSeries>,
    passthrough: bool,
}

/// Space-separated words logged as a list: `["user:ok", "orders:timeout"]` in text, a
/// JSON array with `--log-format json`.
struct Words<'a>(&'a str);

impl std::fmt::Debug for Words<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.split_whitespace()).finish()
    }
}

/// The request id: set here on every request, passed to every upstream call.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A random (v4) UUID, formatted without a `String`.
fn new_request_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).expect("a UUID is a valid header value")
}

fn health() -> Response<Body> {
    let mut r = Response::new(full(&br#"{"status":"ok"}"#[..]));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::new_request_id;

    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        let id = uuid::Uuid::parse_str(a.to_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 4);
        assert_eq!(a.len(), 36);
    }
}
