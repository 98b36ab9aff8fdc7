//! The orchestrator of an aggregate request, the one file that knows every stage: it
//! reads the request body when a backend sends it on or reads it (parsing it as JSON
//! once), makes the request's scope, has
//! `execute` run the route's plan with a [`Launch`] wired to `fetch` and `for_each`, and
//! hands the outcomes to `respond`.

use super::error::{AggregateError, BackendError};
use super::execute::{Launch, Started, execute};
use super::fetch::{self, CacheLookup};
use super::for_each;
use super::read;
use super::respond::{BackendOutcomes, respond};
use super::scope::{AggregateRoute, BackendAnswer, CallRequest, Outcome, RequestScope};
use crate::auth::Identity;
use crate::body::{Body, BodyError, ClientBody, check_declared_length, read_limited};
use crate::config::MAX_DEPTH_LIMIT;
use crate::connection::ClientConnection;
use crate::template::{Answered, RenderInput};
use crate::trace::TraceContext;
use http::{HeaderValue, Response, request};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::time::Instant;

/// Answers one request on an aggregate route; every backend call carries `request_id`
/// and a `traceparent` of its own, a child of `trace`'s server span.
/// With the answer, each backend's outcome code when the access log is on.
// The request's parts and what the gateway derived for it, each borrowed as it is held.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    route: &AggregateRoute,
    parts: &request::Parts,
    params: &matchit::Params<'_, '_>,
    body: ClientBody,
    request_id: &HeaderValue,
    trace: &TraceContext,
    identity: Option<&Identity>,
    connection: &ClientConnection,
) -> Result<(Response<Body>, Option<BackendOutcomes>), AggregateError> {
    let deadline = Instant::now() + route.timeout;
    // The body is read only when a backend sends it on or reads it (a template or a
    // `when`), and never past max_body; parsed once, when one reads it as JSON.
    let request_body = if route.body.read {
        let read = read_limited(body, &parts.headers, route.max_body);
        let bytes = tokio::time::timeout_at(deadline, read)
            .await
            .map_err(|_| AggregateError::BodyDeadline)??;
        Some(bytes)
    } else {
        check_declared_length(&parts.headers, route.max_body)?;
        None
    };
    let json_body = match (&request_body, route.body.parse) {
        (Some(bytes), true) => parse_body(bytes, route.max_body_values)?,
        _ => None,
    };
    let scope = RequestScope::new(
        route,
        parts,
        request_id,
        trace,
        request_body,
        json_body,
        deadline,
        identity,
        connection,
    );
    let launch = Launcher {
        scope: &scope,
        params,
        body: scope.json_body.as_ref(),
    };
    let outcomes = execute(route, &launch).await;
    // A failed backend's request is exported whatever the sampler said.
    if let Some(log) = &trace.log
        && outcomes
            .as_ref()
            .map_or(true, |o| o.iter().any(Outcome::failed_backend))
    {
        log.mark_failed();
    }
    respond(route, &outcomes?, scope.picks())
}

/// Parses the client's body as JSON, no deeper than answers may nest and holding at
/// most `max_values` values (413 beyond); an empty body is no body (placeholders reading
/// it are missing).
fn parse_body(bytes: &[u8], max_values: usize) -> Result<Option<Value>, AggregateError> {
    if bytes.trim_ascii().is_empty() {
        return Ok(None);
    }
    read::parse_json(bytes, MAX_DEPTH_LIMIT, max_values)
        .map(Some)
        .map_err(|e| match e {
            BackendError::TooManyValues { count, max } => {
                AggregateError::Body(BodyError::TooManyValues { count, max })
            }
            BackendError::InvalidJson(why) => AggregateError::BodyNotJson(why),
            other => AggregateError::BodyNotJson(other.to_string()),
        })
}

/// Starts the backends of one request: decides a backend's `when`, renders its URL (or
/// one per `for_each` element), answers a fresh cache hit in place, and otherwise makes
/// the call.
struct Launcher<'s, 'p> {
    scope: &'s RequestScope<'s>,
    params: &'s matchit::Params<'p, 'p>,
    /// The request body as JSON, when a template or a `when` reads it.
    body: Option<&'s Value>,
}

impl<'s> Launch for Launcher<'s, '_> {
    /// Boxed: the calls differ in type (one URL, one per element) and in size, and a
    /// call is held in the route's set of running calls until it ends.
    type Call = Pin<Box<dyn Future<Output = Outcome> + Send + 's>>;

    async fn start(&self, i: usize, answers: &[Option<Answered>]) -> Started<Self::Call> {
        let scope = self.scope;
        let route = scope.route;
        let backend = &route.backends[i];
        // Another backend reads this one's answer: keep it unshaped too.
        let keep = route.plan.is_read(i);
        let input = RenderInput {
            method: &scope.parts.method,
            params: self.params,
            query: scope.parts.uri.query(),
            headers: &scope.parts.headers,
            body: self.body,
            answers,
            item: None,
            auth: scope.identity,
            client_cert: scope.connection.client_cert(),
        };
        if let Some(when) = &backend.spec.when {
            match when.evaluate(&input) {
                Ok(true) => {}
                Ok(false) => return Started::Done(Outcome::skipped(&backend.spec.default)),
                Err(error) => return Started::Done(Outcome::failed(error.into())),
            }
        }
        // The request's pick of this backend's canary: counted now it is called.
        let pick = scope.pick(i);
        if let Some(canary) = &backend.canary {
            canary.count(pick);
        }
        if let Some(each) = &backend.spec.for_each {
            return match for_each::calls(route, backend, each, pick, &input) {
                Ok(requests) => {
                    let call = move |request| fetch::call(scope, backend, request, keep);
                    let max_bytes = backend.upstream_at(pick).spec.max_response;
                    let calls = for_each::run(backend, each, requests, keep, max_bytes, call);
                    Started::Running(Box::pin(timed(calls)))
                }
                Err(error) => Started::Done(Outcome::failed(error)),
            };
        }
        // Rendered whole before anything is sent: a bad value sends nothing.
        let request = match CallRequest::render(backend, pick, &input) {
            Ok(request) => request,
            Err(error) => return Started::Done(Outcome::failed(error.into())),
        };
        // A fresh hit is answered here: no call future, no wake-up.
        let began = Instant::now();
        match fetch::lookup(scope, backend, &request).await {
            CacheLookup::Hit(entry) => Started::Done(Outcome {
                result: fetch::from_hit(entry, backend, pick, keep),
                elapsed: began.elapsed(),
            }),
            CacheLookup::Call(key) => {
                let call = fetch::call_upstream(scope, backend, request, key, keep);
                Started::Running(Box::pin(timed(call)))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A backend's call (or calls), timed from its first poll. A struct rather than an
    /// `async fn`: an async wrapper would copy the whole call future once more when it
    /// awaits it, for every backend of every request.
    struct Timed<F> {
        #[pin]
        call: F,
        began: Option<Instant>,
    }
}

fn timed<F>(call: F) -> Timed<F> {
    Timed { call, began: None }
}

impl<F: Future<Output = Result<BackendAnswer, BackendError>>> Future for Timed<F> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.project();
        let began = *this.began.get_or_insert_with(Instant::now);
        let result = ready!(this.call.poll(cx));
        Poll::Ready(Outcome {
            result,
            elapsed: began.elapsed(),
        })
    }
}
