//! Serving one request on a snapshot, in phases that read top to bottom, as Pingora
//! names its `request_filter` ... `logging`:
//!
//! 1. [`Gateway::route_for`] (`admit.rs`): the route match (404, 405); then, on a route with `auth`,
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
//! 4. [`Gateway::log`] (`log.rs`): metrics, and the access log's record handed to its writer.
//!
//! This file owns the request's path through the phases (`handle`, `dispatch`,
//! `finish_response`) and the [`Summary`] they pass along.
//!
//! Errors become responses through `error.rs` where they happen; every phase after
//! `admit` sees a response.

mod admit;
mod log;

pub(super) use admit::Admitted;

use admit::{Admission, Matched, Quota};
use log::{Client, Logged};

use super::{Gateway, Handler, Route};
use crate::aggregate::{self, BackendOutcomes};
use crate::body::{Body, ClientBody, full};
use crate::compress;
use crate::connection::ClientConnection;
use crate::error::{GatewayError, RATELIMIT_LIMIT, RATELIMIT_REMAINING};
use crate::metrics::{Label, RouteSeries};
use crate::proxy;
use crate::request_id::{self, X_REQUEST_ID};
use crate::router::normalize;
use crate::trace::TraceContext;
use crate::trace::context::TRACEPARENT;
use http::{HeaderValue, Request, Response, header};
use std::sync::Arc;

static SERVER_TIMING: http::HeaderName = http::HeaderName::from_static("server-timing");

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
        let (request_id, request_id_origin) = request_id::of(request.headers());
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
            request_id_origin,
            trace_id: trace.server.trace_id,
            method,
            uri,
            client,
            user,
        };
        self.log(summary, &response, request, started.elapsed(), exported);
        response
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

/// `value`, marked for HPACK's never-indexed literal (HTTP/1.1 ignores the mark): the
/// request id and the `traceparent` differ on every answer, so on an HTTP/2 connection
/// adding them to the dynamic table only evicts the entries that do repeat, and every
/// answer's lookup walks a chain of dead values of the same name.
fn never_indexed(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}
