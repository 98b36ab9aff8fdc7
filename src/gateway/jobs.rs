//! Async routes on the request path (README, "Async routes"): a request to a route with
//! `async` is admitted as any other, its body read whole (`max_body`, else the
//! server's), then its handler runs as a spawned job under `job_timeout` and the
//! client gets `202 Accepted` with the status URL at once; requests to a status path
//! read (`GET`) or cancel (`DELETE`) a job. Status paths are matched before the route
//! table (validation keeps them off every route's path). A reload keeps the jobs (the
//! store carries over; a running job holds the snapshot it started on), and a status
//! path the new config drops still answers until its jobs' answers expire.
//!
//! Answers on a status URL, to the job's owner (anyone else: 404, as for an unknown id):
//! - pending: `202 {"job": ID, "status": "pending"}` with `Retry-After: 1`;
//! - done: the answer the route would have given synchronously (status, headers, body;
//!   a streamed proxy answer is read whole, up to the upstream's `max_response`, else
//!   502), until `result_ttl`; then 404;
//! - cancelled: 410 `job_cancelled`, until `result_ttl`;
//! - interrupted by a shutdown: 503 `job_interrupted`, until `result_ttl`;
//! - `DELETE` of a pending job: its future is dropped (its upstream calls with it) and
//!   `200 {"job": ID, "status": "cancelled"}`; of a finished one: its answer is
//!   forgotten, `204`.

use super::serve::{Admitted, Summary};
use super::status_paths::StatusPath;
use super::{Gateway, Handler};
use crate::auth::Identity;
use crate::body::{Body, ClientBody, GatherError, full, gather_within, read_limited};
use crate::cache::Stored;
use crate::config::AsyncSpec;
use crate::connection::ClientConnection;
use crate::error::{GatewayError, JOBS_RETRY_SECS};
use crate::jobs::{JobRecord, JobState, Owner, is_id, new_id};
use crate::router::RouteMatch;
use crate::trace::TraceContext;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;

/// How long past `job_timeout` a job may still run (storing its answer, a handler
/// whose own deadline fired late) before it is ended as timed out.
const DEADLINE_SLACK: Duration = Duration::from_secs(5);

/// A status request's URI for the access log: each segment that is a job id is
/// `REDACTED` (the id is all an ownerless job's reader needs), the query dropped.
pub(super) fn without_job_id(uri: &Uri) -> Uri {
    let path: Vec<&str> = uri
        .path()
        .split('/')
        .map(|s| if is_id(s) { "REDACTED" } else { s })
        .collect();
    path.join("/")
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"))
}

/// A JSON answer of the status URL's own.
fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `202` with `Retry-After`: the job runs.
fn pending(id: &str, status_url: Option<&str>) -> Response<Body> {
    let body = match status_url {
        Some(url) => format!(r#"{{"job":"{id}","status":"pending","status_url":"{url}"}}"#),
        None => format!(r#"{{"job":"{id}","status":"pending"}}"#),
    };
    let mut response = json(StatusCode::ACCEPTED, body);
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(JOBS_RETRY_SECS));
    if let Some(url) = status_url
        && let Ok(location) = HeaderValue::from_str(url)
    {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// A stored answer, served again.
fn served(stored: Stored) -> Response<Body> {
    let mut response = Response::new(full(stored.body));
    *response.status_mut() = stored.status;
    *response.headers_mut() = stored.headers;
    response
}

/// `response` read whole, up to `bound` bytes (a larger or failed body: 502), with the
/// headers that described its framing dropped (the served copy is framed anew).
async fn stored_of(response: Response<Body>, bound: u64) -> Stored {
    let (parts, body) = response.into_parts();
    match gather_within(body, bound).await {
        Ok(body) => {
            let mut headers = parts.headers;
            headers.remove(header::CONTENT_LENGTH);
            headers.remove(header::TRANSFER_ENCODING);
            Stored {
                status: parts.status,
                headers,
                body,
            }
        }
        Err(e) => {
            let message = match e {
                GatherError::TooLarge => {
                    format!("the answer is larger than {bound} bytes, the most a job keeps")
                }
                GatherError::Read(e) => format!("the answer could not be read whole: {e}"),
            };
            error_stored(GatewayError::JobAnswer(message)).await
        }
    }
}

/// An error's answer, whole (its body is in memory already).
async fn error_stored(error: GatewayError) -> Stored {
    let (parts, body) = error.into_response().into_parts();
    Stored {
        status: parts.status,
        headers: parts.headers,
        body: body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default(),
    }
}

/// What a job needs of its request, owned: it outlives the request's own task.
struct JobRequest {
    id: String,
    path: String,
    request: Request<ClientBody>,
    connection: ClientConnection,
    request_id: HeaderValue,
    trace: TraceContext,
    identity: Option<Arc<Identity>>,
    owner: Option<Owner>,
    spec: AsyncSpec,
}

impl Gateway {
    /// Starts the admitted request's job and answers 202; 503 over `max_jobs` or when
    /// the store cannot take it, 413 for a body over the limit.
    pub(super) async fn start_job<'s>(
        self: &'s Arc<Self>,
        admitted: &Admitted<'s, '_>,
        path: &str,
        request: Request<ClientBody>,
        connection: &ClientConnection,
        request_id: &HeaderValue,
        trace: &TraceContext,
    ) -> (Response<Body>, Summary<'s>) {
        let route = admitted.route;
        let summary = Summary::route(route, admitted.quota);
        let Some(async_route) = &route.async_job else {
            return (
                GatewayError::Internal("not an async route".into()).into_response(),
                summary,
            );
        };
        // The body first: a slow upload must not hold one of `max_jobs` meanwhile.
        let (parts, body) = request.into_parts();
        let limit = route.max_body.unwrap_or(self.server.max_body);
        let body = match read_limited(body, &parts.headers, limit).await {
            Ok(body) => body,
            Err(e) => return (GatewayError::from(e).into_response(), summary),
        };
        // Shutting down: a job started now would be neither waited for nor marked
        // interrupted by the drain, which has begun.
        if self.jobs.running().is_closing() {
            return (GatewayError::JobsFull.into_response(), summary);
        }
        let Some(route_slot) = async_route.try_slot() else {
            return (GatewayError::JobsFull.into_response(), summary);
        };
        let spec = async_route.spec.clone();
        let id = new_id();
        let owner = Owner::of(admitted.identity.as_deref(), &parts.headers);
        let record = JobRecord {
            owner,
            state: JobState::Pending,
        };
        let pending_ttl = spec.job_timeout + crate::jobs::PENDING_MARGIN;
        if let Err(e) = self.jobs.put(&id, &record, pending_ttl).await {
            tracing::warn!(route = %route.label.as_str(), error = %e, "job not started: the job store failed");
            return (GatewayError::JobStoreUnavailable.into_response(), summary);
        }
        let status_url = spec.status_url(&id);
        let job = JobRequest {
            id: id.clone(),
            path: path.to_owned(),
            request: Request::from_parts(parts, ClientBody::Whole(body)),
            connection: connection.clone(),
            request_id: request_id.clone(),
            trace: trace.clone(),
            identity: admitted.identity.clone(),
            owner,
            spec,
        };
        let result_ttl = job.spec.result_ttl;
        let (work, abort) = futures_util::future::abortable(Box::pin(self.clone().run_job(job)));
        let slot = self.jobs.running().start(
            &id,
            crate::jobs::RunningJob {
                abort,
                owner,
                result_ttl,
            },
            route_slot,
        );
        tokio::spawn(async move {
            let _ = work.await;
            drop(slot);
        });
        (pending(&id, Some(&status_url)), summary)
    }

    /// Runs one job: the route's handler as the synchronous request would, its answer
    /// read whole and stored for `result_ttl`. Ends early, storing nothing, when
    /// another instance cancels it.
    async fn run_job(self: Arc<Self>, job: JobRequest) {
        let JobRequest {
            id,
            path,
            request,
            connection,
            request_id,
            trace,
            identity,
            owner,
            spec,
        } = job;
        let method = request.method().clone();
        let work = async {
            let RouteMatch::Found(route, params) = self.routes.lookup(&method, &path) else {
                return error_stored(GatewayError::Internal("the job's route is gone".into()))
                    .await;
            };
            let admitted = Admitted {
                route,
                params,
                quota: None,
                identity,
            };
            let (response, summary) = self
                .dispatch(&admitted, request, &connection, &request_id, &trace)
                .await;
            let bound = match &route.handler {
                // A canary's answer is bounded by the upstream it picked.
                Handler::Proxy(p) => p
                    .canary
                    .as_ref()
                    .zip(summary.canary())
                    .and_then(|(canary, name)| canary.choices().iter().find(|c| c.name == *name))
                    .map_or(p.upstream.spec.max_response, |c| {
                        c.target.upstream.spec.max_response
                    })
                    .min(spec.max_result),
                Handler::Aggregate(_) => spec.max_result,
            };
            stored_of(response, bound).await
        };
        let deadline = spec.job_timeout + DEADLINE_SLACK;
        let answer = tokio::select! {
            answer = tokio::time::timeout(deadline, work) => match answer {
                Ok(answer) => answer,
                Err(_) => error_stored(GatewayError::AllBackendsFailed { timed_out: true }).await,
            },
            () = self.jobs.cancelled_elsewhere(&id) => return,
        };
        let state = if answer.status.is_server_error() {
            "failed"
        } else {
            "done"
        };
        let record = JobRecord {
            owner,
            state: JobState::Done(answer),
        };
        // Stored only over the pending entry: a cancel that got there first stands.
        match self.jobs.finish(&id, &record, spec.result_ttl).await {
            Ok(true) => self.jobs.stats.finished(state),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "a job's answer could not be stored; its pending entry expires");
            }
        }
    }

    /// Answers a request on a status path: the job's state or answer (`GET`, `HEAD`),
    /// or its cancel (`DELETE`).
    pub(super) async fn job_status<'s>(
        &'s self,
        status: &'s StatusPath,
        id: &str,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> (Response<Body>, Summary<'s>) {
        let summary = Summary::on_status_path(&status.label, &status.series);
        let answer = match self.job_answer(status, id, method, headers, uri).await {
            Ok(response) => response,
            Err(e) => e.into_response(),
        };
        (answer, summary)
    }

    async fn job_answer(
        &self,
        status: &StatusPath,
        id: &str,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Response<Body>, GatewayError> {
        let get = *method == Method::GET || *method == Method::HEAD;
        if !get && *method != Method::DELETE {
            return Err(GatewayError::MethodNotAllowed {
                allow: HeaderValue::from_static("GET, HEAD, DELETE"),
            });
        }
        if !is_id(id) {
            return Err(GatewayError::JobNotFound);
        }
        let identity = match &status.auth {
            None => None,
            Some(auth) => Box::pin(auth.check(headers, uri, &status.label))
                .await
                .map_err(GatewayError::from)?,
        };
        let owner = Owner::of(identity.as_deref(), headers);
        if *method == Method::DELETE
            && let Some((result_ttl, job_owner)) = self.jobs.running().cancel(id, owner)
        {
            // Running here: its future is dropped already.
            return self.cancelled(id, job_owner, result_ttl).await;
        }
        let record = match self.jobs.get(id).await {
            // A job without an owner is anyone's who has its id.
            Ok(Some(record)) if record.owner.is_none() || record.owner == owner => record,
            Ok(_) => return Err(GatewayError::JobNotFound),
            Err(e) => {
                tracing::warn!(error = %e, "job status unknown: the job store failed");
                return Err(GatewayError::JobStoreUnavailable);
            }
        };
        let job_owner = record.owner;
        match (get, record.state) {
            (true, JobState::Pending) => Ok(pending(id, None)),
            (true, JobState::Done(stored)) => Ok(served(stored)),
            (true, JobState::Cancelled) => Err(GatewayError::JobCancelled),
            (false, JobState::Pending) => {
                // Running on another instance: marked cancelled first (unless it
                // finished meanwhile), then it reads the flag and drops the job.
                let answer = self.cancelled(id, job_owner, status.result_ttl).await?;
                if answer.status() == StatusCode::OK {
                    self.jobs
                        .request_cancel(id, status.cancel_ttl)
                        .await
                        .map_err(|_| GatewayError::JobStoreUnavailable)?;
                }
                Ok(answer)
            }
            (false, _) => self.forget(id).await,
        }
    }

    /// Forgets a finished job's answer: `204`.
    async fn forget(&self, id: &str) -> Result<Response<Body>, GatewayError> {
        self.jobs
            .delete(id)
            .await
            .map_err(|_| GatewayError::JobStoreUnavailable)?;
        let mut response = Response::new(crate::body::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    }

    /// Records job `id` as cancelled, if it is still pending, and answers so; a job
    /// that finished first is a finished job's `DELETE` (its answer forgotten, `204`),
    /// so a `200 cancelled` is never followed by the job's answer.
    async fn cancelled(
        &self,
        id: &str,
        owner: Option<Owner>,
        result_ttl: Duration,
    ) -> Result<Response<Body>, GatewayError> {
        let record = JobRecord {
            owner,
            state: JobState::Cancelled,
        };
        match self.jobs.finish(id, &record, result_ttl).await {
            Ok(true) => self.jobs.stats.finished("cancelled"),
            Ok(false) => return self.forget(id).await,
            Err(e) => {
                self.jobs.stats.finished("cancelled");
                tracing::warn!(error = %e, "a cancelled job could not be marked so");
            }
        }
        Ok(json(
            StatusCode::OK,
            format!(r#"{{"job":"{id}","status":"cancelled"}}"#),
        ))
    }

    /// On shutdown: this instance's running jobs get `shutdown_grace` to finish; the
    /// rest are dropped and answer `job_interrupted`.
    pub async fn drain_jobs(&self) {
        let interrupted = error_stored(GatewayError::JobInterrupted).await;
        self.jobs
            .drain(self.server.shutdown_grace, interrupted)
            .await;
    }
}
