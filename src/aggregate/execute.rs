//! Running an aggregate route: start every backend the moment the answers it reads have
//! arrived (those reading none at once), stop early when a required backend fails, then
//! hand the outcomes to `respond`.

use super::call::{Answer, Lookup, call_upstream, from_hit, lookup};
use super::{AggregateRoute, Backend, BackendError};
use super::{BackendOutcomes, for_each, respond};
use crate::body::{Body, ClientBody, check_declared_length, read_limited};
use crate::cache::{CacheKey, Varying};
use crate::error::GatewayError;
use crate::request_id::X_REQUEST_ID;
use crate::template::{Problem, RenderError, RenderInput};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::ACCEPT_ENCODING;
use http::{HeaderMap, HeaderValue, Response, request};
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

/// One backend's result and how long it took.
pub(super) struct Outcome {
    pub result: Result<Answer, BackendError>,
    pub elapsed: Duration,
}

/// What every backend call of one request shares.
pub(super) struct RequestScope<'a> {
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

/// What one backend is about to call: one URL, or one per `for_each` element.
enum Target {
    One(String),
    Each(Vec<Result<String, RenderError>>),
}

impl RequestScope<'_> {
    /// The headers every backend call carries (see [`forwarded`]).
    pub fn forwarded(&self) -> &HeaderMap {
        self.forwarded
            .get_or_init(|| forwarded(self.route, &self.parts.headers, self.request_id))
    }
}

/// One request's progress through the route's plan.
struct Progress {
    outcomes: Vec<Option<Outcome>>,
    /// Answers (before shaping) that other backends read, by backend index.
    answers: Vec<Option<Value>>,
    /// How many answers each backend still waits for.
    waits: Vec<usize>,
    /// Backends whose answers have all arrived, not yet started.
    ready: Vec<usize>,
}

/// Answers one request on an aggregate route; every backend call carries `request_id`.
/// With the answer, each backend's outcome code when the access log is on.
pub async fn serve(
    route: &AggregateRoute,
    parts: &request::Parts,
    params: &matchit::Params<'_, '_>,
    body: ClientBody,
    request_id: &HeaderValue,
) -> Result<(Response<Body>, Option<BackendOutcomes>), GatewayError> {
    let deadline = Instant::now() + route.timeout;
    // The body is read only when a backend sends it on, and never past max_body.
    let request_body = if route.backends.iter().any(|b| b.spec.forward_body) {
        let read = read_limited(body, &parts.headers, route.max_body);
        let bytes = tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| GatewayError::BadRequest {
                backend: None,
                message: "the request body did not arrive before the route deadline".into(),
            })??;
        Some(bytes)
    } else {
        check_declared_length(&parts.headers, route.max_body)?;
        None
    };
    let scope = RequestScope {
        route,
        parts,
        request_id,
        forwarded: OnceLock::new(),
        varying: route
            .backends
            .iter()
            .any(|b| b.spec.cache.is_some())
            .then(|| Varying::read(&parts.headers, &route.forward_headers)),
        body: request_body,
        deadline,
    };
    let n = route.backends.len();
    let mut progress = Progress {
        outcomes: (0..n).map(|_| None).collect(),
        answers: if route.plan.has_dependencies() {
            vec![None; n]
        } else {
            Vec::new()
        },
        // Without dependencies nobody waits, and no countdown is needed.
        waits: if route.plan.has_dependencies() {
            route.plan.waits().to_vec()
        } else {
            Vec::new()
        },
        ready: route.plan.starts().collect(),
    };
    // Made at the first call: a request answered from the cache needs none.
    let mut calls = None;
    loop {
        while let Some(i) = progress.ready.pop() {
            let input = RenderInput {
                params,
                query: parts.uri.query(),
                headers: &parts.headers,
                answers: &progress.answers,
                item: None,
            };
            let backend = &route.backends[i];
            match target(route, backend, &input) {
                Ok(Target::One(url)) => {
                    // A fresh hit is answered here: no call future, no wake-up.
                    let began = Instant::now();
                    match lookup(&scope, backend, &url).await {
                        Lookup::Hit(entry) => {
                            let result = from_hit(entry, backend, route.plan.is_read(i));
                            let elapsed = began.elapsed();
                            progress.finish(route, i, Outcome { result, elapsed })?;
                        }
                        Lookup::Call(key) => calls
                            .get_or_insert_with(FuturesUnordered::new)
                            .push(Box::pin(run(&scope, i, Target::One(url), key))),
                    }
                }
                Ok(target) => calls
                    .get_or_insert_with(FuturesUnordered::new)
                    .push(Box::pin(run(&scope, i, target, None))),
                Err(error) => progress.finish(route, i, Outcome::failed(error))?,
            }
        }
        // Dropping `calls` (when a required backend fails) cancels those still running.
        let Some(running) = calls.as_mut() else {
            break;
        };
        let Some((i, outcome)) = running.next().await else {
            break;
        };
        progress.finish(route, i, outcome)?;
    }
    let outcomes: Vec<Outcome> = progress
        .outcomes
        .into_iter()
        .map(|o| o.expect("every backend ran: the plan has no cycle"))
        .collect();
    respond::respond(route, &outcomes)
}

impl Outcome {
    fn failed(error: BackendError) -> Self {
        Self {
            result: Err(error),
            elapsed: Duration::ZERO,
        }
    }
}

impl Progress {
    /// Records a backend's outcome and readies the backends that waited for it. A
    /// required backend's failure ends the request.
    fn finish(
        &mut self,
        route: &AggregateRoute,
        i: usize,
        mut outcome: Outcome,
    ) -> Result<(), GatewayError> {
        let backend = &route.backends[i];
        match &mut outcome.result {
            Err(error) => {
                tracing::warn!(backend = %backend.spec.name, code = error.code(), error = %error, "backend failed");
                if backend.spec.required {
                    route.metrics.backend(
                        &route.label,
                        &backend.label,
                        &backend.series,
                        error.code(),
                        outcome.elapsed,
                    );
                    return Err(match error {
                        // A value the client did not send is the client's mistake.
                        BackendError::Render(e) if e.from_request => GatewayError::BadRequest {
                            backend: Some(backend.spec.name.clone()),
                            message: e.to_string(),
                        },
                        _ => GatewayError::Backend {
                            backend: backend.spec.name.clone(),
                            error: error.clone(),
                        },
                    });
                }
            }
            Ok(answer) => {
                if let Some(raw) = answer.raw.take() {
                    self.answers[i] = Some(raw);
                }
            }
        }
        for &reader in route.plan.readers(i) {
            self.waits[reader] -= 1;
            if self.waits[reader] == 0 {
                self.ready.push(reader);
            }
        }
        self.outcomes[i] = Some(outcome);
        Ok(())
    }
}

/// Renders a backend's URL, or one per element of its `for_each` array.
fn target(
    route: &AggregateRoute,
    backend: &Backend,
    input: &RenderInput<'_>,
) -> Result<Target, BackendError> {
    let base = &backend.upstream.spec.base;
    let Some(each) = &backend.spec.for_each else {
        return Ok(Target::One(backend.spec.path.render(base, input)?));
    };
    let answer = input.answers[each.backend].as_ref();
    let array = match &each.path {
        None => answer,
        Some(path) => answer.and_then(|a| path.get(a)),
    };
    let what = || {
        let name = &route.backends[each.backend].spec.name;
        match &each.path {
            None => name.clone(),
            Some(path) => format!("{name}.{path}"),
        }
    };
    let fail = |problem| RenderError {
        what: what(),
        problem,
        from_request: false,
    };
    let items = match array {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(fail(Problem::NotAnArray).into()),
        None => return Err(fail(Problem::Missing).into()),
    };
    if items.len() > each.max_items {
        return Err(BackendError::TooManyItems {
            array: what(),
            count: items.len(),
            max: each.max_items,
        });
    }
    let urls = items
        .iter()
        .map(|item| {
            let input = RenderInput {
                item: Some(item),
                ..*input
            };
            backend.spec.path.render(base, &input)
        })
        .collect();
    Ok(Target::Each(urls))
}

/// Runs one backend's call (or calls) and times it. `key`: the cache key a `lookup`
/// already computed for a single call.
async fn run<'s>(
    scope: &'s RequestScope<'s>,
    i: usize,
    target: Target,
    key: Option<CacheKey>,
) -> (usize, Outcome) {
    let began = Instant::now();
    let backend = &scope.route.backends[i];
    let keep = scope.route.plan.is_read(i);
    let result = match (target, &backend.spec.for_each) {
        (Target::Each(urls), Some(each)) => {
            // Boxed: most backends make one call and need not carry this state.
            Box::pin(for_each::run(scope, backend, each, urls, keep)).await
        }
        (Target::One(url), _) => call_upstream(scope, backend, url, key, keep).await,
        (Target::Each(_), None) => unreachable!("only a for_each backend has several targets"),
    };
    let outcome = Outcome {
        result,
        elapsed: began.elapsed(),
    };
    (i, outcome)
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
