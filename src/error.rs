//! Every error that ends a request, and the one place that turns it into a status and a
//! JSON body (`{"error": {"code", "message", "backend"}}`) and logs it. Modules below
//! own their errors (`body::BodyError`, `upstream::CallError`, ...); [`GatewayError`]
//! wraps them as its `source` and decides what a client is told.

use crate::aggregate::{AggregateError, BackendError};
use crate::body::{Body, BodyError, full};
use crate::upstream::CallError;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

pub static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// An error that ends a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches this path")]
    RouteNotFound,
    #[error("this route does not answer this method")]
    MethodNotAllowed { allow: HeaderValue },
    /// No credentials, or credentials a provider refused (401). The description never
    /// holds the credential.
    #[error("{description}")]
    Unauthorized {
        description: std::borrow::Cow<'static, str>,
    },
    /// A proven identity the route's `require` refuses (403).
    #[error("this identity may not use this route")]
    Forbidden,
    /// A provider had a credential to check and no keys to check it with (503).
    #[error("the identity provider's keys are not available; retry later")]
    AuthUnavailable,
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64, limit: u32 },
    /// The request body was too large or could not be read.
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("{message}")]
    BadRequest {
        backend: Option<String>,
        message: String,
    },
    #[error("required backend failed: {error}")]
    Backend {
        backend: String,
        error: BackendError,
    },
    #[error("every backend failed")]
    AllBackendsFailed { timed_out: bool },
    #[error("upstream {upstream}: {error}")]
    Upstream {
        upstream: String,
        #[source]
        error: CallError,
    },
    #[error("internal error: {0}")]
    Internal(String),
    /// An async route runs `max_jobs` jobs already (503 `upstream_overloaded`).
    #[error("this route runs as many jobs as it may; retry later")]
    JobsFull,
    /// No job with this id, or not the caller's (404: the same answer for both).
    #[error("no such job")]
    JobNotFound,
    /// The `[cluster]` store holding jobs did not answer (503).
    #[error("the job store is not available; retry later")]
    JobStoreUnavailable,
    /// The job was cancelled (`DELETE` on its status URL) before it finished (410).
    #[error("the job was cancelled")]
    JobCancelled,
    /// The gateway shut down before the job finished (503, stored as the job's answer).
    #[error("the gateway shut down before the job finished; submit it again")]
    JobInterrupted,
    /// A job's answer could not be kept whole (larger than its bound, or a failed
    /// stream): 502.
    #[error("{0}")]
    JobAnswer(String),
}

/// `Retry-After` of a 503 from an async route or its store: jobs finish and the store
/// recovers on their own time, a second is the status URL's own pace.
pub const JOBS_RETRY_SECS: u64 = 1;

/// An aggregate route's failure, answered as the gateway's own errors are.
impl From<AggregateError> for GatewayError {
    fn from(e: AggregateError) -> Self {
        use AggregateError as A;
        let bad = |backend, message| GatewayError::BadRequest { backend, message };
        match e {
            A::Body(e) => GatewayError::Body(e),
            A::BodyDeadline | A::BodyNotJson(_) => bad(None, e.to_string()),
            A::Request { backend, error } => bad(Some(backend), error.to_string()),
            A::RequiredBackend { backend, error } => GatewayError::Backend { backend, error },
            A::AllBackendsFailed { timed_out } => GatewayError::AllBackendsFailed { timed_out },
        }
    }
}

/// The answer when the gateway itself refused to call an upstream, to protect it.
fn refusal(e: &CallError) -> Option<(StatusCode, &'static str)> {
    match e {
        CallError::Overloaded(_) => Some((StatusCode::SERVICE_UNAVAILABLE, "upstream_overloaded")),
        CallError::CircuitOpen => Some((StatusCode::SERVICE_UNAVAILABLE, "circuit_open")),
        CallError::Unhealthy => Some((StatusCode::SERVICE_UNAVAILABLE, "upstream_unhealthy")),
        _ => None,
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'a str>,
}

impl GatewayError {
    /// The status and stable code this error is answered with.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use GatewayError::*;
        match self {
            RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            Body(BodyError::TooLarge { .. } | BodyError::TooManyValues { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            }
            Body(BodyError::Read(_)) => (StatusCode::BAD_REQUEST, "bad_request"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            AuthUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable"),
            Backend {
                error: BackendError::Call(e),
                ..
            }
            | Upstream { error: e, .. }
                if refusal(e).is_some() =>
            {
                refusal(e).expect("checked")
            }
            Backend { error, .. } => match error {
                BackendError::Call(CallError::Timeout(_)) => {
                    (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
                }
                BackendError::Call(CallError::Status { status, .. })
                    if status.is_client_error() =>
                {
                    (*status, "upstream_status")
                }
                _ => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            },
            AllBackendsFailed { timed_out: true } => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
            AllBackendsFailed { timed_out: false } => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            Upstream {
                error: CallError::Timeout(_),
                ..
            } => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
            Upstream { .. } => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            JobsFull => (StatusCode::SERVICE_UNAVAILABLE, "upstream_overloaded"),
            JobNotFound => (StatusCode::NOT_FOUND, "job_not_found"),
            JobStoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "job_store_unavailable"),
            JobCancelled => (StatusCode::GONE, "job_cancelled"),
            JobInterrupted => (StatusCode::SERVICE_UNAVAILABLE, "job_interrupted"),
            JobAnswer(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
        }
    }

    /// Logs the error and answers it. A required backend's 4xx is passed through with its
    /// own body, since the client's request is what the upstream refused.
    pub fn into_response(self) -> Response<Body> {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(code, error = %self, "request failed");
        } else {
            tracing::debug!(code, error = %self, "request refused");
        }
        if let GatewayError::Backend {
            error:
                BackendError::Call(CallError::Status {
                    status,
                    content_type,
                    body,
                }),
            ..
        } = &self
            && status.is_client_error()
        {
            let mut response = Response::new(full(body.clone()));
            *response.status_mut() = *status;
            if let Some(ct) = content_type {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, ct.clone());
            }
            return response;
        }
        let backend = match &self {
            GatewayError::Backend { backend, .. } => Some(backend.as_str()),
            GatewayError::BadRequest { backend, .. } => backend.as_deref(),
            GatewayError::Upstream { upstream, .. } => Some(upstream.as_str()),
            _ => None,
        };
        let message = match &self {
            // Internal details stay in the log.
            GatewayError::Internal(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        let body = serde_json::to_vec(&ErrorBody {
            error: ErrorFields {
                code,
                message,
                backend,
            },
        })
        .expect("error bodies serialize");
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            GatewayError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, allow);
            }
            GatewayError::RateLimited {
                retry_after_secs,
                limit,
            } => {
                let secs = HeaderValue::from(retry_after_secs);
                headers.insert(header::RETRY_AFTER, secs.clone());
                headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(limit));
                headers.insert(RATELIMIT_REMAINING.clone(), HeaderValue::from_static("0"));
                headers.insert(RATELIMIT_RESET.clone(), secs);
            }
            GatewayError::Unauthorized { description } => {
                headers.insert(header::WWW_AUTHENTICATE, www_authenticate(&description));
            }
            GatewayError::AuthUnavailable => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(AUTH_UNAVAILABLE_RETRY_SECS),
                );
            }
            GatewayError::JobsFull | GatewayError::JobStoreUnavailable => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(JOBS_RETRY_SECS));
            }
            _ => {}
        }
        response
    }
}

/// `Retry-After` of a 503 `auth_unavailable`: a provider without keys retries its
/// fetch on its own schedule; a client asked back sooner would only be refused again.
pub const AUTH_UNAVAILABLE_RETRY_SECS: u64 = 10;

/// RFC 6750's challenge: `Bearer error="invalid_token", error_description="..."`, the
/// description a quoted-string (`"` and `\` escaped; a byte a header cannot carry
/// becomes a space).
pub fn www_authenticate(description: &str) -> HeaderValue {
    let mut value = String::with_capacity(description.len() + 60);
    value.push_str("Bearer error=\"invalid_token\", error_description=\"");
    for c in description.chars() {
        match c {
            '"' | '\\' => {
                value.push('\\');
                value.push(c);
            }
            ' '..='~' => value.push(c),
            _ => value.push(' '),
        }
    }
    value.push('"');
    HeaderValue::from_str(&value).expect("printable ASCII only")
}

/// A request head refused by the own HTTP/1.1 connection is a 400, like any bad request.
impl From<crate::http1::Refusal> for GatewayError {
    fn from(why: crate::http1::Refusal) -> Self {
        GatewayError::BadRequest {
            backend: None,
            message: why.to_string(),
        }
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
