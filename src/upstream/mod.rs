//! One upstream service: its pooled HTTP client (one per upstream, shared by every route
//! and backend that names it), its protection (guard, breaker, retries, hedging, health
//! checks), and one call to it bounded by a deadline.

mod breaker;
mod guard;
pub mod health;
pub mod retry;

pub use guard::Guard;

use crate::config::UpstreamSpec;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use std::time::Duration;
use tokio::time::Instant;

/// A built upstream: the spec, its connection pool and its admission guard.
#[derive(Debug)]
pub struct Upstream {
    pub spec: UpstreamSpec,
    pub client: reqwest::Client,
    pub guard: Guard,
}

/// A 2xx answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    /// False when the upstream's `Cache-Control` says `no-store` or `private`.
    pub storable: bool,
}

/// Why one call failed. Each has a stable code, used in `errors_field` and logs.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("answered {status}")]
    Status {
        status: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
    #[error("answer larger than {0} bytes")]
    TooLarge(u64),
    #[error("request failed: {0}")]
    Failed(String),
    #[error("upstream overloaded: {0}")]
    Overloaded(String),
    #[error("circuit open after repeated failures")]
    CircuitOpen,
    #[error("upstream failed its health check")]
    Unhealthy,
}

impl CallError {
    /// The stable code of this failure.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Timeout(_) => "timeout",
            CallError::Connect(_) => "connect_failed",
            CallError::Status { .. } => "bad_status",
            CallError::TooLarge(_) => "too_large",
            CallError::Failed(_) => "request_failed",
            CallError::Overloaded(_) => "overloaded",
            CallError::CircuitOpen => "circuit_open",
            CallError::Unhealthy => "unhealthy",
        }
    }
}

/// Methods that may be sent twice (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

impl Upstream {
    /// Builds the client for `spec`. Redirects are not followed: an aggregate treats a
    /// 3xx as a failure and a proxy hands it to the client, as nginx does.
    pub fn build(spec: UpstreamSpec) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(spec.connect_timeout)
            .pool_max_idle_per_host(spec.pool_idle_per_host)
            .pool_idle_timeout(spec.pool_idle_timeout)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()?;
        let guard = Guard::new(&spec);
        Ok(Self {
            spec,
            client,
            guard,
        })
    }

    /// Calls `url` and reads the whole answer, all before `deadline`. `body` is sent
    /// with its method; without one the call is a GET.
    pub async fn call(
        &self,
        url: &str,
        headers: &HeaderMap,
        body: Option<(&Method, Bytes)>,
        deadline: Instant,
    ) -> Result<Answer, CallError> {
        let repeatable = body.as_ref().is_none_or(|(m, _)| is_idempotent(m));
        let once = || self.call_once(url, headers.clone(), body.clone());
        match retry::run(self, repeatable, deadline, once).await {
            // A non-2xx answer is an error to the aggregate, once retries are spent.
            Ok(answer) if !answer.status.is_success() => Err(CallError::Status {
                status: answer.status,
                content_type: None,
                body: answer.body,
            }),
            other => other,
        }
    }

    async fn call_once(
        &self,
        url: &str,
        mut headers: HeaderMap,
        body: Option<(&Method, Bytes)>,
    ) -> Result<Answer, CallError> {
        for (k, v) in &self.spec.headers {
            headers.insert(k, v.clone());
        }
        let request = match body {
            None => self.client.get(url),
            Some((method, body)) => self.client.request(method.clone(), url).body(body),
        };
        let mut response = request.headers(headers).send().await.map_err(describe)?;
        let status = response.status();
        let storable = !crate::cache::forbids_storing(response.headers());
        let content_type = response.headers().get(http::header::CONTENT_TYPE).cloned();
        let body = read_body(&mut response, self.spec.max_response).await?;
        if status.is_success() || status.is_server_error() {
            // 5xx comes back as an answer so that retries and the breaker see its status.
            Ok(Answer {
                status,
                body,
                storable,
            })
        } else {
            Err(CallError::Status {
                status,
                content_type,
                body,
            })
        }
    }
}

/// Reads a whole answer body of at most `limit` bytes.
pub async fn read_body(response: &mut reqwest::Response, limit: u64) -> Result<Bytes, CallError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(CallError::TooLarge(limit));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(describe)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(CallError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The time left before `deadline`, in whole milliseconds, for messages that should
/// read like the config ("no answer within 300ms").
pub fn budget(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    Duration::from_millis(left.as_micros().div_ceil(1000) as u64)
}

/// reqwest's error text names the URL; keep the cause chain, which says what happened.
pub(crate) fn describe(e: reqwest::Error) -> CallError {
    let mut cause = String::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        cause = e.to_string();
    }
    if e.is_connect() {
        CallError::Connect(cause)
    } else if e.is_timeout() {
        CallError::Timeout(Duration::ZERO)
    } else {
        CallError::Failed(cause)
    }
}
