//! Running an aggregate route: render every backend's URL, start every call at once, stop
//! early when a required backend fails, then merge and describe the outcome in headers.

use super::merge::{Failure, Piece, merge};
use super::shape::Shape;
use super::{AggregateRoute, Backend, BackendError};
use crate::body::{Body, check_declared_length, full, read_limited};
use crate::cache::{CacheKey, CacheOutcome, Fetched, Stored};
use crate::config::MergeMode;
use crate::error::GatewayError;
use crate::template::RenderInput;
use crate::upstream::{CallError, Upstream, budget};
use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, HeaderName, Method, Response, StatusCode, request};
use hyper::body::Incoming;
use std::borrow::Cow;
use std::fmt::Write;
use std::time::Duration;
use tokio::time::Instant;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FANOUT_COMPLETE: HeaderName = HeaderName::from_static("x-fanout-complete");
static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Each backend's outcome code (`user:ok orders:timeout`), for the access log.
#[derive(Debug, Clone)]
pub struct BackendOutcomes(pub String);

struct Outcome {
    /// The answer and its `Server-Timing` desc (`ok`, `hit` or `stale`).
    result: Result<(Bytes, &'static str), BackendError>,
    elapsed: Duration,
}

/// Answers one request on an aggregate route.
pub async fn serve(
    route: &AggregateRoute,
    parts: &request::Parts,
    params: &matchit::Params<'_, '_>,
    body: Incoming,
) -> Result<Response<Body>, GatewayError> {
    let start = Instant::now();
    let deadline = start + route.timeout;
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
    let input = RenderInput {
        params,
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let headers = forwarded(route, &parts.headers);

    let mut outcomes: Vec<Option<Outcome>> = route.backends.iter().map(|_| None).collect();
    let mut calls = FuturesUnordered::new();
    for (i, backend) in route.backends.iter().enumerate() {
        match backend
            .spec
            .path
            .render(&backend.upstream.spec.base, &input)
        {
            Ok(url) => {
                let own = backend
                    .spec
                    .timeout
                    .unwrap_or(backend.upstream.spec.timeout);
                let call_deadline = deadline.min(start + own);
                // Shared by every backend; only one that sends the body needs its own
                // copy, with the body's content type.
                let (headers, body) = match (&request_body, backend.spec.forward_body) {
                    (Some(bytes), true) => {
                        let mut own = headers.clone();
                        if let Some(ct) = parts.headers.get(CONTENT_TYPE) {
                            own.insert(CONTENT_TYPE, ct.clone());
                        }
                        (Cow::Owned(own), Some((parts.method.clone(), bytes.clone())))
                    }
                    _ => (Cow::Borrowed(&headers), None),
                };
                let request_headers = &parts.headers;
                calls.push(async move {
                    let began = Instant::now();
                    let result = call(
                        route,
                        backend,
                        url,
                        headers,
                        body,
                        call_deadline,
                        request_headers,
                    )
                    .await;
                    (
                        i,
                        Outcome {
                            result,
                            elapsed: began.elapsed(),
                        },
                    )
                });
            }
            // Every template value comes from the request, so a required one that is
            // missing is the client's mistake.
            Err(e) if backend.spec.required => {
                return Err(GatewayError::BadRequest {
                    backend: Some(backend.spec.name.clone()),
                    message: e.to_string(),
                });
            }
            Err(e) => {
                outcomes[i] = Some(Outcome {
                    result: Err(e.into()),
                    elapsed: Duration::ZERO,
                })
            }
        }
    }

    while let Some((i, outcome)) = calls.next().await {
        if let Err(error) = outcome.result {
            let backend = &route.backends[i];
            tracing::warn!(backend = %backend.spec.name, code = error.code(), error = %error, "backend failed");
            if backend.spec.required {
                route
                    .metrics
                    .backend(&route.label, &backend.label, error.code(), outcome.elapsed);
                // Dropping `calls` cancels the calls still running.
                return Err(GatewayError::Backend {
                    backend: backend.spec.name.clone(),
                    error,
                });
            }
            outcomes[i] = Some(Outcome {
                result: Err(error),
                elapsed: outcome.elapsed,
            });
        } else {
            outcomes[i] = Some(outcome);
        }
    }
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .map(|o| o.expect("every backend ran"))
        .collect();
    respond(route, &outcomes)
}

/// The headers every backend call carries: the route's `forward_headers` and the
/// request id, so one request can be followed across services.
fn forwarded(route: &AggregateRoute, incoming: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(route.forward_headers.len() + 1);
    for name in route
        .forward_headers
        .iter()
        .chain(std::iter::once(&X_REQUEST_ID))
    {
        for value in incoming.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// One backend call, through the cache when the backend has a `cache_ttl`.
async fn call(
    route: &AggregateRoute,
    backend: &Backend,
    url: String,
    headers: Cow<'_, HeaderMap>,
    body: Option<(Method, Bytes)>,
    deadline: Instant,
    request_headers: &HeaderMap,
) -> Result<(Bytes, &'static str), BackendError> {
    let (Some(policy), None) = (backend.spec.cache, &body) else {
        let reading = (backend.spec.merge, backend.spec.shape.as_deref());
        let (answer, _) =
            fetch_json(&backend.upstream, &url, &headers, body, reading, deadline).await?;
        return Ok((answer, "ok"));
    };
    let key = CacheKey::new(Method::GET, &url, request_headers, &route.forward_headers);
    let upstream = backend.upstream.clone();
    let (merge, ignore_upstream) = (backend.spec.merge, backend.spec.cache_ignore_upstream);
    let shape = backend.spec.shape.clone();
    // Owned by the fetch, which may outlive this request (a background refresh).
    let headers = headers.into_owned();
    // Owned: a stale-while-revalidate refresh runs on after this request is answered.
    let fetch = move || async move {
        // Stored shaped: a hit serves the bytes as they are.
        let reading = (merge, shape.as_deref());
        let (body, storable) =
            fetch_json(&upstream, &url, &headers, None, reading, deadline).await?;
        Ok::<_, BackendError>(Fetched {
            stored: Stored {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body,
            },
            cacheable: storable || ignore_upstream,
        })
    };
    let lookup = route.cache.get_or_fetch(key, policy, fetch);
    let (entry, outcome) = tokio::time::timeout_at(deadline, lookup)
        .await
        .map_err(|_| CallError::Timeout(budget(deadline)))??;
    let desc = match outcome {
        CacheOutcome::Hit => "hit",
        CacheOutcome::Stale => "stale",
        CacheOutcome::Miss { .. } => "ok",
    };
    Ok((entry.stored.body.clone(), desc))
}

/// Calls the upstream, checks that the answer is JSON, shapes it if the backend says so,
/// and checks it is an object for `merge = "root"`. Returns the answer and whether the
/// upstream allows storing it.
async fn fetch_json(
    upstream: &Upstream,
    url: &str,
    headers: &HeaderMap,
    body: Option<(Method, Bytes)>,
    (merge, shape): (MergeMode, Option<&Shape>),
    deadline: Instant,
) -> Result<(Bytes, bool), BackendError> {
    let body = body.as_ref().map(|(m, b)| (m, b.clone()));
    let answer = upstream.call(url, headers, body, deadline).await?;
    let raw = if answer.status == StatusCode::NO_CONTENT {
        Bytes::from_static(b"null")
    } else {
        answer.body
    };
    let invalid = |e: serde_json::Error| BackendError::InvalidJson(e.to_string());
    let json = match shape {
        None => {
            // Validates the whole document without building it: it is spliced as is.
            serde_json::from_slice::<serde::de::IgnoredAny>(&raw).map_err(invalid)?;
            raw
        }
        Some(shape) => {
            let value = serde_json::from_slice(&raw).map_err(invalid)?;
            let shaped = shape.apply(value).map_err(BackendError::Shape)?;
            Bytes::from(serde_json::to_vec(&shaped).expect("a JSON value serializes"))
        }
    };
    if merge == MergeMode::Root && json.trim_ascii_start().first() != Some(&b'{') {
        return Err(BackendError::NotAnObject);
    }
    Ok((json, answer.storable))
}

fn respond(route: &AggregateRoute, outcomes: &[Outcome]) -> Result<Response<Body>, GatewayError> {
    if outcomes.iter().all(|o| o.result.is_err()) {
        let timed_out = outcomes
            .iter()
            .all(|o| matches!(o.result, Err(BackendError::Call(CallError::Timeout(_)))));
        return Err(GatewayError::AllBackendsFailed { timed_out });
    }
    let messages: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(ToString::to_string))
        .collect();
    let mut pieces = Vec::with_capacity(outcomes.len());
    let mut failures = Vec::with_capacity(messages.len());
    let mut timing = String::with_capacity(outcomes.len() * 32);
    let mut outcome_codes = String::with_capacity(outcomes.len() * 16);
    let mut messages = messages.iter();
    for (backend, outcome) in route.backends.iter().zip(outcomes) {
        let spec = &backend.spec;
        let (json, desc): (&[u8], &str) = match &outcome.result {
            Ok((body, desc)) => (body, desc),
            Err(e) => {
                failures.push(Failure {
                    name: &spec.name,
                    code: e.code(),
                    message: messages.next().expect("one message per failure"),
                });
                (&spec.default, e.timing_desc())
            }
        };
        let code = match &outcome.result {
            Ok((_, desc)) => *desc,
            Err(e) => e.code(),
        };
        route
            .metrics
            .backend(&route.label, &backend.label, code, outcome.elapsed);
        if !outcome_codes.is_empty() {
            outcome_codes.push(' ');
        }
        let _ = write!(outcome_codes, "{}:{code}", spec.name);
        pieces.push(Piece {
            name: &spec.name,
            mode: spec.merge,
            json,
        });
        if !timing.is_empty() {
            timing.push_str(", ");
        }
        let ms = outcome.elapsed.as_secs_f64() * 1000.0;
        let _ = write!(timing, "{};dur={ms:.1};desc=\"{desc}\"", spec.name);
    }
    let errors = route
        .errors_field
        .as_deref()
        .map(|f| (f, failures.as_slice()));
    let body = merge(&pieces, errors);

    let mut response = Response::new(full(body));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let complete = if failures.is_empty() { "true" } else { "false" };
    h.insert(
        X_FANOUT_COMPLETE.clone(),
        HeaderValue::from_static(complete),
    );
    if let Ok(v) = HeaderValue::from_str(&timing) {
        h.insert(SERVER_TIMING.clone(), v);
    }
    response
        .extensions_mut()
        .insert(BackendOutcomes(outcome_codes));
    Ok(response)
}
