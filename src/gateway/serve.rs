//! Serving one request on a snapshot, in phases that read top to bottom, as Pingora
//! names its `request_filter` ... `logging`:
//!
//! 1. [`Gateway::route_for`]: the route match (404, 405); then, on a route with `auth`,
//!    the auth phase (`auth.rs`: 401, 403, 503) proving the request's identity; then
//!    [`Gateway::admit`]: the rate limit (429) and the declared body size (413), before
//!    any upstream is called.
//! 2. [`Gateway::dispatch`]: the route's handler, aggregate or proxy. It returns the
//!    answer and a [`Summary`] of what happened (route, backend outcomes, whether the
//!    answer is an upstream's passed through).
//!    On an async route (`async`), `start_job` instead: the handler runs as a job and
//!    the answer is 202; a request on a status path is answered by `job_status`,
//!    before the route match (`gateway/jobs.rs`).
//! 3. Finishing the response: compression (`compress::apply`; whole answers only, never
//!    an upstream's passed through), then [`Gateway::finish_response`]: rate-limit
//!    headers and the request id.
//! 4. [`Gateway::log`]: metrics, and the access log's record handed to its writer.
//!
//! Errors become responses through `error.rs` where they happen; every phase after
//! `admit` sees a response.

use super::{Gateway, Handler, Route};
use crate::access_log::{AccessLogSpec, LogFormat, Record};
use crate::aggregate::{self, BackendOutcomes};
use crate::auth::Identity;
use crate::body::{Body, ClientBody, check_declared_length, full};
use crate::compress;
use crate::connection::ClientConnection;
use crate::error::{GatewayError, RATELIMIT_LIMIT, RATELIMIT_REMAINING};
use crate::limits::{
    ClientKey, ClusterLimit, ClusterVerdict, LimitKey, RouteLimit, Verdict, client_key,
    client_key_by,
};
use crate::metrics::{Label, RouteSeries};
use crate::proxy;
use crate::request_id::{self, X_REQUEST_ID};
use crate::router::{RouteMatch, normalize};
use crate::trace::context::TRACEPARENT;
use crate::trace::{TraceContext, TraceId};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version, header};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

static SERVER_TIMING: http::HeaderName = http::HeaderName::from_static("server-timing");

/// What the route match found.
enum Matched<'s, 'p> {
    Found(&'s Route, matchit::Params<'s, 'p>),
    /// 404 or 405, counted as the summary says.
    Refused(GatewayError, Summary<'s>),
}

/// What `admit` decided.
enum Admission<'s, 'p> {
    Admitted(Admitted<'s, 'p>),
    /// Refused, counted as the summary says.
    Refused(GatewayError, Summary<'s>),
}

/// A request admitted to its route.
pub(super) struct Admitted<'s, 'p> {
    pub(super) route: &'s Route,
    pub(super) params: matchit::Params<'s, 'p>,
    pub(super) quota: Option<Quota>,
    /// Who the request comes from, when the route has `auth` and it proved an identity.
    pub(super) identity: Option<Arc<Identity>>,
}

/// A route's rate limit and the requests left in it, for `RateLimit-*` headers.
#[derive(Clone, Copy)]
pub(super) struct Quota {
    limit: u32,
    remaining: u32,
}

/// A limit's verdict as `RateLimit-*` headers, or 429 with `Retry-After`.
fn quota_of(verdict: Verdict, limit: u32) -> Result<Quota, GatewayError> {
    match verdict {
        Verdict::Allowed { remaining } => Ok(Quota { limit, remaining }),
        Verdict::Limited { retry_after } => Err(GatewayError::RateLimited {
            // Whole seconds, rounded up: a client that waits that long gets in.
            retry_after_secs: retry_after.as_nanos().div_ceil(1_000_000_000).max(1) as u64,
            limit,
        }),
    }
}

/// What serving a request came to: what finishing its response and the log need.
pub(super) struct Summary<'s> {
    /// The metrics label it is counted on: `health`, `unmatched`, or the path pattern
    /// that matched (a 405 too).
    label: &'s Label,
    series: Option<&'s RouteSeries>,
    quota: Option<Quota>,
    /// The answer is an upstream's, passed through as it sent it: not compressed.
    passthrough: bool,
    /// Each aggregate backend's outcome, when the access log is on.
    backends: Option<BackendOutcomes>,
    /// A proxy route's canary pick: its name goes to the access log.
    canary: Option<&'s Label>,
    /// On a status path: the job id (an ownerless job's only secret) is not logged.
    job_id_in_path: bool,
}

impl<'s> Summary<'s> {
    /// A proxy route's canary pick, if it has a canary.
    pub(super) fn canary(&self) -> Option<&'s Label> {
        self.canary
    }

    /// Counted on `label` alone: answered before any route was admitted.
    fn on(label: &'s Label) -> Self {
        Self {
            label,
            series: None,
            quota: None,
            passthrough: false,
            backends: None,
            canary: None,
            job_id_in_path: false,
        }
    }

    /// Counted on a status path of async routes (`gateway/jobs.rs`).
    pub(super) fn on_status_path(label: &'s Label, series: &'s RouteSeries) -> Self {
        Self {
            series: Some(series),
            job_id_in_path: true,
            ..Self::on(label)
        }
    }

    /// Counted on `route`.
    pub(super) fn route(route: &'s Route, quota: Option<Quota>) -> Self {
        Self {
            label: &route.label,
            series: Some(&route.series),
            quota,
            passthrough: false,
            backends: None,
            canary: None,
            job_id_in_path: false,
        }
    }
}

impl Gateway {
    /// Answers one request. Takes the snapshot it answers from by value, so the server
    /// can box this future as it is instead of in a block that owns the snapshot (one
    /// copy of it fewer).
    pub async fn handle(
        self: Arc<Self>,
        request: Request<ClientBody>,
        connection: ClientConnection,
    ) -> Response<Body> {
        let started = tokio::time::Instant::now();
        let _in_flight = self.metrics.in_flight();
        let request_id = request_id::of(request.headers());
        let trace = self.tracing.context(request.headers());
        // A Uri clone shares its bytes: the path params borrow this copy while the
        // request itself moves on to its handler.
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let client = Client::of(&self.config.access_log, &request, &connection);
        let encoding = self
            .server
            .compression
            .then(|| compress::negotiate(request.headers()));
        // The subject of the identity the request proved, for the log and the span.
        let mut user: Option<Arc<str>> = None;
        let (response, summary) = 'answered: {
            if uri.path() == self.server.health_path {
                break 'answered (health(), Summary::on(&self.health));
            }
            // Routes match the path's normal form, and a proxy sends it upstream: no
            // spelling of a path can pass one route's policy to reach another's upstream.
            let path = match normalize(uri.path()) {
                Ok(path) => path,
                Err(e) => {
                    let error = GatewayError::BadRequest {
                        backend: None,
                        message: e.to_string(),
                    };
                    break 'answered (error.into_response(), Summary::on(&self.unmatched));
                }
            };
            // Status paths of async routes come before the routes (validation keeps
            // them off every route's path); without async routes, a branch.
            if let Some(status) = &self.status_paths
                && let Some((status, id)) = status.find(&path)
            {
                let answer = self.job_status(status, id, &method, request.headers(), &uri);
                break 'answered Box::pin(answer).await;
            }
            let (route, params) = match self.route_for(&method, &path) {
                Matched::Found(route, params) => (route, params),
                Matched::Refused(error, summary) => {
                    break 'answered (error.into_response(), summary);
                }
            };
            // The auth phase, only on a route with `auth`: a route without one pays a
            // branch, not a future.
            let identity = match &route.auth {
                None => None,
                Some(auth) => {
                    let checked = Box::pin(auth.check(request.headers(), &uri, &route.label));
                    match checked.await {
                        Ok(identity) => identity,
                        Err(refusal) => {
                            self.metrics.auth_refused(&route.label, refusal.reason());
                            let error = GatewayError::from(refusal);
                            break 'answered (error.into_response(), Summary::route(route, None));
                        }
                    }
                }
            };
            user = identity.as_ref().map(|i| i.subject.clone());
            // A cluster-scoped limit asks the store: the one await of the limit phase,
            // on those routes only (a local limit stays a plain call in `admit`).
            let counted = match &route.cluster_limit {
                None => None,
                Some((_, limit)) => {
                    let check = self.take_cluster_quota(
                        limit,
                        request.headers(),
                        &connection,
                        identity.as_deref(),
                    );
                    Some(Box::pin(check).await)
                }
            };
            // Bound before the await: a match's scrutinee would be kept across it.
            let admitted = match self.admit(
                route,
                params,
                identity,
                counted,
                request.headers(),
                &connection,
            ) {
                Admission::Admitted(admitted) => admitted,
                Admission::Refused(error, summary) => {
                    break 'answered (error.into_response(), summary);
                }
            };
            if admitted.route.async_job.is_some() {
                let job =
                    self.start_job(&admitted, &path, request, &connection, &request_id, &trace);
                break 'answered Box::pin(job).await;
            }
            self.dispatch(&admitted, request, &connection, &request_id, &trace)
                .await
        };
        // A proxied answer is the upstream's as it sent it (nginx's `gzip_proxied off`):
        // a stream is not held back in an encoder.
        let mut response = match encoding {
            Some(encoding) if !summary.passthrough => {
                let min = self.server.compression_min_size;
                compress::apply(response, encoding, min).await
            }
            _ => response,
        };
        self.finish_response(&mut response, &summary, &request_id, &trace);
        let status = response.status().as_u16();
        let exported = self.tracing.finish(
            &trace,
            summary.label.as_str(),
            &method,
            uri.path(),
            status,
            user.as_ref(),
        );
        let request = Logged {
            request_id,
            trace_id: trace.server.trace_id,
            method,
            uri,
            client,
            user,
        };
        self.log(summary, &response, request, started.elapsed(), exported);
        response
    }

    /// Finds the route: 405 on a path whose routes do not answer the method (counted on
    /// the route whose path matched), 404 on `unmatched`.
    fn route_for<'s, 'p>(&'s self, method: &Method, path: &'p str) -> Matched<'s, 'p> {
        match self.routes.lookup(method, path) {
            RouteMatch::Found(route, params) => Matched::Found(route, params),
            RouteMatch::MethodNotAllowed { allow, on_path, .. } => {
                let allow = allow.clone();
                Matched::Refused(
                    GatewayError::MethodNotAllowed { allow },
                    Summary::route(on_path, None),
                )
            }
            RouteMatch::NotFound => {
                Matched::Refused(GatewayError::RouteNotFound, Summary::on(&self.unmatched))
            }
        }
    }

    /// Lets a request its route's auth phase passed in: its client's rate limit (429,
    /// keyed by `identity` with an `auth:` key; `counted`: what a cluster-scoped limit
    /// already decided) and its declared body size (413).
    fn admit<'s, 'p>(
        &'s self,
        route: &'s Route,
        params: matchit::Params<'s, 'p>,
        identity: Option<Arc<Identity>>,
        counted: Option<Result<Option<Quota>, GatewayError>>,
        headers: &HeaderMap,
        connection: &ClientConnection,
    ) -> Admission<'s, 'p> {
        let counted = match (counted, &route.limit) {
            (Some(counted), _) => counted,
            (None, Some((_, limit))) => self
                .take_quota(limit, headers, connection, identity.as_deref())
                .map(Some),
            (None, None) => Ok(None),
        };
        let quota = match counted {
            Ok(quota) => quota,
            Err(e) => {
                self.metrics.rate_limited(&route.label);
                return Admission::Refused(e, Summary::route(route, None));
            }
        };
        if let Some(limit) = route.max_body
            && let Err(e) = check_declared_length(headers, limit)
        {
            return Admission::Refused(e.into(), Summary::route(route, quota));
        }
        Admission::Admitted(Admitted {
            route,
            params,
            quota,
            identity,
        })
    }

    /// Counts a request against its route's limit: the requests left, or 429.
    fn take_quota(
        &self,
        limit: &RouteLimit,
        headers: &HeaderMap,
        connection: &ClientConnection,
        identity: Option<&Identity>,
    ) -> Result<Quota, GatewayError> {
        let key = match (&limit.key, connection.client_cert()) {
            (LimitKey::ClientCert, Some(cert)) => ClientKey::value(cert.subject.as_bytes()),
            _ => client_key(
                &limit.key,
                connection.peer.ip(),
                headers,
                &self.server.trusted_proxies,
                identity,
            ),
        };
        quota_of(limit.check(&key), limit.burst)
    }

    /// Counts a request against its route's cluster-scoped limit: the requests left
    /// (none to tell when the store failed and `on_error = "allow"`), or 429.
    async fn take_cluster_quota(
        &self,
        limit: &ClusterLimit,
        headers: &HeaderMap,
        connection: &ClientConnection,
        identity: Option<&Identity>,
    ) -> Result<Option<Quota>, GatewayError> {
        let key = match (&limit.key, connection.client_cert()) {
            (LimitKey::ClientCert, Some(cert)) => ClientKey::stable(cert.subject.as_bytes()),
            _ => client_key_by(
                &limit.key,
                connection.peer.ip(),
                headers,
                &self.server.trusted_proxies,
                identity,
                ClientKey::stable,
            ),
        };
        match limit.check(&key).await {
            ClusterVerdict::Decided(verdict) => quota_of(verdict, limit.burst).map(Some),
            ClusterVerdict::Allowed => Ok(None),
        }
    }

    /// Runs the admitted route's handler: the aggregate, or the proxy. Takes the
    /// admission by reference: an async fn keeps its arguments for its whole life, and
    /// the path params are large.
    pub(super) async fn dispatch<'s>(
        &'s self,
        admitted: &Admitted<'s, '_>,
        request: Request<ClientBody>,
        connection: &ClientConnection,
        request_id: &HeaderValue,
        trace: &TraceContext,
    ) -> (Response<Body>, Summary<'s>) {
        let Admitted {
            route,
            ref params,
            quota,
            ref identity,
        } = *admitted;
        let identity = identity.as_deref();
        let (mut parts, body) = request.into_parts();
        // Before any handler reads a header: a client's copy of a header the gateway sets
        // from an identity never goes on, on any route.
        self.claim_headers.strip(&mut parts.headers);
        // Each handler's future is boxed: they are large, and unboxed they would make
        // every layer's future as large, copied whole each time one is wrapped.
        let mut canary = None;
        let (result, passthrough, backends) = match &route.handler {
            Handler::Aggregate(agg) => {
                match Box::pin(aggregate::serve(
                    agg, &parts, params, body, request_id, trace, identity, connection,
                ))
                .await
                {
                    Ok((response, backends)) => (Ok(response), false, backends),
                    Err(e) => (Err(GatewayError::from(e)), false, None),
                }
            }
            Handler::Proxy(p) => {
                // A canary's pick, made once: the URL and the call go to the same upstream.
                let picked = p.pick(&parts.headers, identity);
                canary = picked.canary;
                match proxy::target_url(p, picked, &parts, params, identity, connection) {
                    Ok(url) => {
                        let forward = proxy::forward(
                            p, picked, url, parts, body, connection, request_id, trace, identity,
                        );
                        let result = Box::pin(forward).await;
                        let passthrough = result.is_ok();
                        (result, passthrough, None)
                    }
                    Err(e) => (Err(e), false, None),
                }
            }
        };
        let summary = Summary {
            passthrough,
            backends,
            canary: canary.map(|c| &c.name),
            ..Summary::route(route, quota)
        };
        let mut response = result.unwrap_or_else(GatewayError::into_response);
        // The pick, beside any `Server-Timing` the upstream sent: `upstream;desc="v2"`.
        if let Some(choice) = canary {
            response
                .headers_mut()
                .append(SERVER_TIMING.clone(), choice.timing.clone());
        }
        (response, summary)
    }

    /// The headers every answer gets: `RateLimit-*` on a limited route, the request id
    /// (an upstream's own id on its answer is kept) and the server span's `traceparent`
    /// (an upstream's is replaced: its span is a child of ours).
    fn finish_response(
        &self,
        response: &mut Response<Body>,
        summary: &Summary<'_>,
        request_id: &HeaderValue,
        trace: &TraceContext,
    ) {
        let headers = response.headers_mut();
        if let Some(Quota { limit, remaining }) = summary.quota {
            headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(limit));
            headers.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from(remaining));
        }
        headers
            .entry(X_REQUEST_ID.clone())
            .or_insert_with(|| never_indexed(request_id.clone()));
        headers.insert(
            TRACEPARENT.clone(),
            never_indexed(trace.server.header_value()),
        );
    }

    /// Counts the request in the metrics and hands its access log record to the
    /// writer: copies and reference counts, no formatting and no system call here.
    /// `exported`: the trace's id when its spans went to the collector, the latency's
    /// exemplar, so a slow bucket links to a trace the collector has.
    fn log(
        &self,
        summary: Summary<'_>,
        response: &Response<Body>,
        request: Logged,
        elapsed: Duration,
        exported: Option<TraceId>,
    ) {
        let status = response.status();
        self.metrics.request(
            summary.label,
            summary.series,
            status.as_u16(),
            elapsed,
            exported,
        );
        if !self.config.access_log.enabled {
            return;
        }
        let Logged {
            request_id,
            trace_id,
            method,
            uri,
            client,
            user,
        } = request;
        self.access_log.submit(Record {
            time: SystemTime::now(),
            request_id,
            trace_id: Some(trace_id),
            client: client.addr,
            user,
            method,
            uri: if summary.job_id_in_path {
                super::jobs::without_job_id(&uri)
            } else {
                detached(&uri)
            },
            redact_query: self.token_params.clone(),
            version: client.version,
            route: summary.label.clone(),
            status: status.as_u16(),
            bytes: body_length(response),
            duration: elapsed,
            backends: summary.backends.map(|b| b.0),
            referer: client.referer,
            user_agent: client.user_agent,
            client_cert: client.cert_subject,
            upstream: summary.canary.cloned(),
        });
    }
}

/// What the log needs of a request that the handler takes away.
struct Logged {
    request_id: HeaderValue,
    /// The request's trace, whether or not its spans are exported: upstreams that
    /// trace on their own log the same id.
    trace_id: TraceId,
    method: Method,
    uri: Uri,
    client: Client,
    /// The subject of the identity the request proved.
    user: Option<Arc<str>>,
}

/// The client's side of an access log record, taken before the request moves on.
struct Client {
    addr: IpAddr,
    version: Version,
    /// `Referer` and `User-Agent`, kept only when the `combined` format prints them.
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    /// The verified client certificate's subject, on a TLS connection with one and the
    /// access log on.
    cert_subject: Option<Arc<str>>,
}

impl Client {
    fn of(
        log: &AccessLogSpec,
        request: &Request<ClientBody>,
        connection: &ClientConnection,
    ) -> Self {
        let combined = log.enabled && log.format == LogFormat::Combined;
        let kept = |name| {
            combined
                .then(|| request.headers().get(name).cloned())
                .flatten()
        };
        Self {
            addr: connection.peer.ip(),
            version: request.version(),
            referer: kept(header::REFERER),
            user_agent: kept(header::USER_AGENT),
            cert_subject: log
                .enabled
                .then(|| connection.client_cert().map(|c| c.subject.clone()))
                .flatten(),
        }
    }
}

/// The response body's length when it is known before it is sent: a whole answer's
/// size, or what a stream declares (its size hint, or a passed-through
/// `Content-Length`); `None` for a stream of unknown length.
fn body_length(response: &Response<Body>) -> Option<u64> {
    use http_body::Body as _;
    response.body().size_hint().exact().or_else(|| {
        response
            .headers()
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    })
}

/// The answer on the main listener's health path.
fn health() -> Response<Body> {
    let mut r = Response::new(full(&br#"{"status":"ok"}"#[..]));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `uri` in bytes of its own. A request's target is a view into the buffer its head
/// was read into (4 KiB or more): the record waits for the log's writer thread up to its
/// poll interval, and would keep that buffer alive as long and free it on the writer's
/// thread, so every logged request would take a fresh buffer instead of reusing the one
/// just freed. Copying the path and query (tens of bytes) costs less.
fn detached(uri: &Uri) -> Uri {
    let Some(target) = uri.path_and_query() else {
        return uri.clone();
    };
    Uri::from_maybe_shared(Bytes::copy_from_slice(target.as_str().as_bytes()))
        .unwrap_or_else(|_| uri.clone())
}

/// `value`, marked for HPACK's never-indexed literal (HTTP/1.1 ignores the mark): the
/// request id and the `traceparent` differ on every answer, so on an HTTP/2 connection
/// adding them to the dynamic table only evicts the entries that do repeat, and every
/// answer's lookup walks a chain of dead values of the same name.
fn never_indexed(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}
