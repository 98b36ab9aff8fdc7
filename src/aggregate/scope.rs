//! What the stages of an aggregate route share: the compiled route and its backends, one
//! request's scope (its headers, body and deadline), and what a backend's call gives back
//! (its answer or error, and how long it took). A leaf: it imports no stage.

use super::error::BackendError;
use crate::auth::Identity;
use crate::auth::claim_headers::set_upstream_headers;
use crate::cache::{KeyedBy, ResponseCache, StoredForm, Varying};
use crate::canary::Canary;
use crate::config::{BackendSpec, Plan};
use crate::connection::{ClientConnection, X_FORWARDED_PROTO, forwarded_proto};
use crate::metrics::{BackendSeries, Label, Metrics};
use crate::request_id::X_REQUEST_ID;
use crate::template::{Answered, RenderError, RenderInput};
use crate::tls::client_cert::X_FORWARDED_CLIENT_CERT;
use crate::trace::TraceContext;
use crate::trace::record::CallTrace;
use crate::upstream::Upstream;
use bytes::Bytes;
use http::header::ACCEPT_ENCODING;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, request};
use serde_json::Value;
use std::borrow::Cow;
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
    /// Largest request body read for `forward_body` backends and `{body...}` templates.
    pub max_body: u64,
    /// Most JSON values in a request body that is parsed (`server.max_body_values`).
    pub max_body_values: usize,
    /// Whether a request's body is read, and parsed as JSON.
    pub body: BodyUse,
    pub forward_headers: Vec<HeaderName>,
    pub errors_field: Option<String>,
    /// The backend (by index) whose 2xx status the route answers with.
    pub status_from: Option<usize>,
    /// Response headers copied from backends (by index) into the client's answer.
    pub headers_from: Vec<(usize, Vec<HeaderName>)>,
    pub backends: Vec<Backend>,
    /// Which backend waits for whose answer, as `validate` built it.
    pub plan: Plan,
    /// The process-wide cache, for backends with `cache_ttl`.
    pub cache: Arc<ResponseCache>,
    /// The store every instance shares (`[cluster]`): the cache's second level for
    /// backends with `cache_scope = "cluster"`.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The access log is on: collect each backend's outcome for it.
    pub access_log: bool,
    /// The route has `auth`: cache keys hold the identity in place of credentials.
    pub authenticated: bool,
    /// A backend has a weighted canary: each request picks its upstreams first.
    pub canaries: bool,
}

/// What an aggregate route does with a request's body, derived once from its backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyUse {
    /// A backend forwards it or a template reads it.
    pub read: bool,
    /// A template reads `{body...}` or a `when` reads `request.body`: it is parsed as
    /// JSON, once.
    pub parse: bool,
}

impl BodyUse {
    pub fn of(backends: &[BackendSpec]) -> Self {
        Self {
            read: backends.iter().any(BackendSpec::reads_request_body),
            parse: backends.iter().any(BackendSpec::parses_request_body),
        }
    }
}

/// One backend of an aggregate route.
#[derive(Debug)]
pub struct Backend {
    /// The backend's name, its label in metrics.
    pub label: Label,
    pub series: BackendSeries,
    pub spec: BackendSpec,
    /// The upstream every call goes to; with a canary, its first upstream, unused: a
    /// call goes to [`Backend::upstream_at`] its pick.
    pub upstream: Arc<Upstream>,
    /// `upstreams`: a weighted canary, each request's calls sent to its pick.
    pub canary: Option<Canary<Arc<Upstream>>>,
    /// Shadow upstreams this backend's calls are copied to; empty: none.
    pub mirrors: Vec<Arc<crate::mirror::Mirror>>,
    /// The form its answers are cached in ([`super::cache_form`]): part of each key.
    pub cache_form: StoredForm,
}

impl Backend {
    /// The upstream of the canary's choice `pick` ([`RequestScope::pick`]); without a
    /// canary, the one upstream.
    pub fn upstream_at(&self, pick: usize) -> &Arc<Upstream> {
        match &self.canary {
            None => &self.upstream,
            Some(canary) => &canary.choice(pick).target,
        }
    }
}

/// What every backend call of one request shares.
pub struct RequestScope<'a> {
    pub route: &'a AggregateRoute,
    pub parts: &'a request::Parts,
    /// The request id every call carries.
    request_id: &'a HeaderValue,
    /// The request's trace: each call is a child of its server span.
    pub trace: &'a TraceContext,
    /// The headers every call carries, made by the first call (a request answered
    /// from the cache makes none).
    forwarded: OnceLock<HeaderMap>,
    /// The request headers cache keys vary by, read when a backend caches.
    pub varying: Option<Varying>,
    /// The request body, read only when a backend sends it on or reads `{body...}`.
    pub body: Option<Bytes>,
    /// The request body parsed as JSON, once, when a backend's template reads it;
    /// `None` for an empty body.
    pub json_body: Option<Value>,
    /// The route's deadline.
    pub deadline: Instant,
    /// Who the request comes from, when the route has `auth` and it proved an identity.
    pub identity: Option<&'a Identity>,
    /// The client's connection: TLS or not, and its verified client certificate.
    pub connection: &'a ClientConnection,
    /// Each backend's canary pick, by index (0 for a backend without a canary); empty
    /// on a route without canaries.
    picks: Vec<usize>,
}

impl<'a> RequestScope<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        route: &'a AggregateRoute,
        parts: &'a request::Parts,
        request_id: &'a HeaderValue,
        trace: &'a TraceContext,
        body: Option<Bytes>,
        json_body: Option<Value>,
        deadline: Instant,
        identity: Option<&'a Identity>,
        connection: &'a ClientConnection,
    ) -> Self {
        Self {
            route,
            parts,
            request_id,
            trace,
            forwarded: OnceLock::new(),
            varying: route
                .backends
                .iter()
                .any(|b| b.spec.cache.is_some())
                .then(|| {
                    let keyed = if route.authenticated {
                        KeyedBy::Identity(identity)
                    } else {
                        KeyedBy::Credentials
                    };
                    Varying::read_keyed(&parts.headers, keyed, &route.forward_headers)
                }),
            body,
            json_body,
            deadline,
            identity,
            connection,
            // Picked once per request, so a backend's URL, call and log agree; counted
            // only when the backend is called.
            picks: if route.canaries {
                route
                    .backends
                    .iter()
                    .map(|b| match &b.canary {
                        Some(canary) => canary.pick(&parts.headers, identity),
                        None => 0,
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Backend `i`'s canary pick (0 without a canary).
    pub fn pick(&self, i: usize) -> usize {
        self.picks.get(i).copied().unwrap_or(0)
    }

    /// Every backend's canary pick, by index; empty on a route without canaries.
    pub fn picks(&self) -> &[usize] {
        &self.picks
    }

    /// How a call of `backend` is traced: a child of the server span, recorded with the
    /// backend's name when the request's spans are.
    pub fn call_trace(&self, backend: &Backend) -> CallTrace {
        let log = self.trace.log.as_ref();
        CallTrace::new(self.trace.server, log, Some(&backend.spec.name))
    }

    /// The request id every call carries.
    pub fn request_id(&self) -> &HeaderValue {
        self.request_id
    }

    /// The headers every backend call carries (see [`forwarded`]).
    pub fn forwarded(&self) -> &HeaderMap {
        self.forwarded
            .get_or_init(|| forwarded(self, &self.parts.headers))
    }
}

/// What one call of a backend sends: its URL and, rendered from its templates, a write
/// call's JSON body and headers.
#[derive(Debug)]
pub struct CallRequest {
    pub url: String,
    pub body: Option<Bytes>,
    /// Set after the forwarded headers, replacing any of the same name.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The backend's canary pick: the call goes to [`Backend::upstream_at`] it.
    pub pick: usize,
    /// Where each of the backend's mirrors sends its copy; empty without mirrors.
    pub mirror_paths: Vec<crate::mirror::ShadowPath>,
}

impl CallRequest {
    /// Renders the URL, body and headers of a call of `backend`; the first value that is
    /// missing or unusable fails it, before anything is sent.
    pub fn render(
        backend: &Backend,
        pick: usize,
        input: &RenderInput<'_>,
    ) -> Result<Self, RenderError> {
        let spec = &backend.spec;
        let url = spec
            .path
            .render(&backend.upstream_at(pick).spec.base, input)?;
        let body = spec.body.as_ref().map(|t| t.render(input)).transpose()?;
        let headers = spec
            .headers
            .iter()
            .map(|(name, t)| Ok((name.clone(), t.render(input)?)))
            .collect::<Result<_, RenderError>>()?;
        let mirror_paths = crate::mirror::render_paths(&backend.mirrors, input);
        Ok(Self {
            url,
            body,
            headers,
            pick,
            mirror_paths,
        })
    }

    /// What a cache key holds of this call: the URL, and the body and set headers that
    /// also decide the answer (a GET without templates: the URL alone, borrowed).
    pub fn key_text(&self) -> Cow<'_, str> {
        if self.body.is_none() && self.headers.is_empty() {
            return Cow::Borrowed(&self.url);
        }
        let mut text = self.url.clone();
        for (name, value) in &self.headers {
            text.push('\0');
            text.push_str(name.as_str());
            text.push(':');
            text.push_str(&String::from_utf8_lossy(value.as_bytes()));
        }
        if let Some(body) = &self.body {
            text.push('\0');
            text.push_str(&String::from_utf8_lossy(body));
        }
        Cow::Owned(text)
    }
}

/// One backend's result and how long it took.
#[derive(Debug)]
pub struct Outcome {
    pub result: Result<BackendAnswer, BackendError>,
    pub elapsed: Duration,
}

impl Outcome {
    /// Whether the backend failed, or some of its `for_each` elements did.
    pub fn failed_backend(&self) -> bool {
        self.result
            .as_ref()
            .map_or(true, |answer| answer.failed_elements.is_some())
    }

    /// A backend that failed before any call was made.
    pub fn failed(error: BackendError) -> Self {
        Self {
            result: Err(error),
            elapsed: Duration::ZERO,
        }
    }

    /// A backend skipped by its `when` (or because a backend it reads was): not called,
    /// `default` in its place.
    pub fn skipped(default: &Bytes) -> Self {
        Self {
            result: Ok(BackendAnswer {
                body: default.clone(),
                desc: BackendAnswer::SKIPPED,
                raw: None,
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                failed_elements: None,
            }),
            elapsed: Duration::ZERO,
        }
    }

    /// Whether the backend was skipped rather than called.
    pub fn is_skipped(&self) -> bool {
        self.result.as_ref().is_ok_and(BackendAnswer::is_skipped)
    }
}

/// A backend's usable answer.
#[derive(Debug)]
pub struct BackendAnswer {
    /// What goes into the merged body: the shaped JSON.
    pub body: Bytes,
    /// The `Server-Timing` desc: `ok`, `hit`, `stale` or `skipped`.
    pub desc: &'static str,
    /// The answer before shaping, kept only when another backend reads it.
    pub raw: Option<Answered>,
    /// The upstream's status (a cache hit: the stored one; `for_each`: 200), for
    /// `status_from`.
    pub status: StatusCode,
    /// The response headers in the backend's `keep_headers`, for `headers_from`; empty
    /// (never allocated) when it keeps none.
    pub headers: HeaderMap,
    /// For `for_each`: the element calls that failed, each `null` in its place.
    pub failed_elements: Option<ElementFailures>,
}

impl BackendAnswer {
    /// The desc (and metrics and access-log code) of a backend its `when` skipped.
    pub const SKIPPED: &'static str = "skipped";

    /// Whether this is the stand-in of a skipped backend: its default, no call made.
    pub fn is_skipped(&self) -> bool {
        self.desc == Self::SKIPPED
    }
}

/// Element calls of a `for_each` backend that failed.
#[derive(Debug)]
pub struct ElementFailures {
    pub failed: usize,
    pub total: usize,
    pub first: BackendError,
}

/// The headers every backend call carries: the route's `forward_headers`, the request
/// id and the trace's `tracestate` and `baggage`, so one request can be followed across
/// services, `Accept-Encoding: identity`, `X-Forwarded-Proto` (`https` on a TLS
/// connection), the identity's `claims_to_headers` and, on a connection with a verified
/// client certificate, `X-Forwarded-Client-Cert` (the client's copies of both were
/// removed before). A client's trace headers listed in
/// `forward_headers` are replaced by the trace's: each call's own `traceparent` is
/// added by the upstream call itself.
/// Without it an upstream may pick any coding (RFC 9110 §12.5.3); a forwarded client
/// `Accept-Encoding` is replaced, since the client's list says what the client decodes,
/// not what the gateway does (answers compressed anyway are decoded, see `upstream`).
fn forwarded(scope: &RequestScope<'_>, incoming: &HeaderMap) -> HeaderMap {
    let (route, request_id) = (scope.route, scope.request_id);
    let mut headers = HeaderMap::with_capacity(route.forward_headers.len() + 6);
    for name in &route.forward_headers {
        for value in incoming.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    scope.trace.pass_on(&mut headers);
    headers.insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    headers.insert(
        X_FORWARDED_PROTO,
        forwarded_proto(scope.connection.is_tls()),
    );
    set_upstream_headers(&mut headers, scope.identity);
    if let Some(cert) = scope.connection.client_cert() {
        headers.insert(X_FORWARDED_CLIENT_CERT, cert.header.clone());
    }
    headers
}
