//! What the stages of an aggregate route share: the compiled route and its backends, one
//! request's scope (its headers, body and deadline), and what a backend's call gives back
//! (its answer or error, and how long it took). A leaf: it imports no stage.

use super::error::BackendError;
use crate::cache::{ResponseCache, Varying};
use crate::config::{BackendSpec, Plan};
use crate::metrics::{BackendSeries, Label, Metrics};
use crate::request_id::X_REQUEST_ID;
use crate::upstream::Upstream;
use bytes::Bytes;
use http::header::ACCEPT_ENCODING;
use http::{HeaderMap, HeaderName, HeaderValue, request};
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// A compiled aggregate route with its upstreams resolved.
#[derive(Debug)]
pub struct AggregateRoute {
    /// The route's path pattern, its label in metrics.
    pub label: Label,
    pub metrics: Arc<Metrics>,
    pub timeout: Duration,
    /// Largest request body read for `forward_body` backends.
    pub max_body: u64,
    pub forward_headers: Vec<HeaderName>,
    pub errors_field: Option<String>,
    pub backends: Vec<Backend>,
    /// Which backend waits for whose answer, as `validate` built it.
    pub plan: Plan,
    /// The process-wide cache, for backends with `cache_ttl`.
    pub cache: Arc<ResponseCache>,
    /// The access log is on: collect each backend's outcome for it.
    pub access_log: bool,
}

/// One backend of an aggregate route.
#[derive(Debug)]
pub struct Backend {
    /// The backend's name, its label in metrics.
    pub label: Label,
    pub series: BackendSeries,
    pub spec: BackendSpec,
    pub upstream: Arc<Upstream>,
}

/// What every backend call of one request shares.
pub struct RequestScope<'a> {
    pub route: &'a AggregateRoute,
    pub parts: &'a request::Parts,
    /// The request id every call carries.
    request_id: &'a HeaderValue,
    /// The headers every call carries, made by the first call (a request answered
    /// from the cache makes none).
    forwarded: OnceLock<HeaderMap>,
    /// The request headers cache keys vary by, read when a backend caches.
    pub varying: Option<Varying>,
    /// The request body, read only when a backend has `forward_body`.
    pub body: Option<Bytes>,
    /// The route's deadline.
    pub deadline: Instant,
}

impl<'a> RequestScope<'a> {
    pub fn new(
        route: &'a AggregateRoute,
        parts: &'a request::Parts,
        request_id: &'a HeaderValue,
        body: Option<Bytes>,
        deadline: Instant,
    ) -> Self {
        Self {
            route,
            parts,
            request_id,
            forwarded: OnceLock::new(),
            varying: route
                .backends
                .iter()
                .any(|b| b.spec.cache.is_some())
                .then(|| Varying::read(&parts.headers, &route.forward_headers)),
            body,
            deadline,
        }
    }

    /// The headers every backend call carries (see [`forwarded`]).
    pub fn forwarded(&self) -> &HeaderMap {
        self.forwarded
            .get_or_init(|| forwarded(self.route, &self.parts.headers, self.request_id))
    }
}

/// One backend's result and how long it took.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<BackendAnswer, BackendError>,
    pub elapsed: Duration,
}

impl Outcome {
    /// A backend that failed before any call was made.
    pub fn failed(error: BackendError) -> Self {
        Self {
            result: Err(error),
            elapsed: Duration::ZERO,
        }
    }
}

/// A backend's usable answer.
#[derive(Debug)]
pub struct BackendAnswer {
    /// What goes into the merged body: the shaped JSON.
    pub body: Bytes,
    /// The `Server-Timing` desc: `ok`, `hit` or `stale`.
    pub desc: &'static str,
    /// The answer before shaping, kept only when another backend reads it.
    pub raw: Option<Value>,
    /// For `for_each`: the element calls that failed, each `null` in its place.
    pub failed_elements: Option<ElementFailures>,
}

/// Element calls of a `for_each` backend that failed.
#[derive(Debug)]
pub struct ElementFailures {
    pub failed: usize,
    pub total: usize,
    pub first: BackendError,
}

/// The headers every backend call carries: the route's `forward_headers`, the request
/// id, so one request can be followed across services, and `Accept-Encoding: identity`.
/// Without it an upstream may pick any coding (RFC 9110 §12.5.3); a forwarded client
/// `Accept-Encoding` is replaced, since the client's list says what the client decodes,
/// not what the gateway does (answers compressed anyway are decoded, see `upstream`).
fn forwarded(route: &AggregateRoute, incoming: &HeaderMap, request_id: &HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(route.forward_headers.len() + 2);
    for name in &route.forward_headers {
        for value in incoming.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers
}
