//! One upstream service: its transport (`transport`: the pooled clients requests reach
//! it through, one per upstream, shared by every route and backend that names it), its
//! own errors (`CallError`, with stable codes), its protection (guard, breaker,
//! retries, hedging, health checks), and one call to it bounded by a deadline.

mod breaker;
pub mod client;
mod decode;
mod guard;
pub mod health;
pub mod retry;
mod tls;
mod transport;

pub use crate::http1::is_idempotent;
pub use client::{HttpClient, RequestBody, SendError, bytes_body, no_body};
pub use guard::Guard;
pub use transport::{RequestTarget, Transport, UpstreamBody};

use crate::config::UpstreamSpec;
use crate::http1::client::ExchangeError;
use crate::http1::{Collected, declared_length};
use crate::trace::TraceParent;
use crate::trace::record::CallTrace;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::time::Instant;

/// A built upstream: the spec, how requests reach it and its admission guard.
#[derive(Debug)]
pub struct Upstream {
    pub spec: UpstreamSpec,
    pub transport: Transport,
    pub guard: Guard,
}

/// A 2xx (or, to retries, 5xx) answer, read whole and decoded from its content coding.
#[derive(Debug)]
pub struct WholeAnswer {
    pub status: StatusCode,
    pub body: Bytes,
    /// False when the upstream's `Cache-Control` says `no-store` or `private`.
    pub storable: bool,
    /// The response headers the caller asked to keep; empty (never allocated) when it
    /// asked for none.
    pub headers: HeaderMap,
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
    #[error("cannot decode the answer: {0}")]
    Decode(String),
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
            CallError::Decode(_) => "bad_encoding",
            CallError::Failed(_) => "request_failed",
            CallError::Overloaded(_) => "overloaded",
            CallError::CircuitOpen => "circuit_open",
            CallError::Unhealthy => "unhealthy",
        }
    }
}

impl From<ExchangeError> for CallError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Connect(message) => CallError::Connect(message),
            ExchangeError::TooLarge(limit) => CallError::TooLarge(limit),
            ExchangeError::Failed(message) => CallError::Failed(message),
        }
    }
}

impl Upstream {
    /// Its health as `/ready` and the dashboard show it: `unchecked` without a
    /// `health_check`, else `healthy` or `unhealthy`.
    pub fn health(&self) -> &'static str {
        match (&self.spec.health_check, self.guard.is_healthy()) {
            (None, _) => "unchecked",
            (Some(_), true) => "healthy",
            (Some(_), false) => "unhealthy",
        }
    }

    /// Builds the clients for `spec`.
    pub fn build(spec: UpstreamSpec) -> Result<Self, client::ClientError> {
        Self::build_in(spec, None)
    }

    /// Builds the clients for `spec`, its cluster-scoped rate limit (if any) counting
    /// in `cluster`.
    pub fn build_in(
        spec: UpstreamSpec,
        cluster: Option<&std::sync::Arc<crate::cluster::Cluster>>,
    ) -> Result<Self, client::ClientError> {
        let transport = Transport::build(&spec)?;
        let guard = Guard::in_cluster(&spec, cluster);
        Ok(Self {
            spec,
            transport,
            guard,
        })
    }

    /// Calls `url` and reads the whole answer, all before `deadline`. `body` is sent
    /// with its method; without one the call is a GET. The answer keeps the response
    /// headers named in `keep`. The call is retried and hedged only when the caller says
    /// it is `repeatable` (a GET, a forwarded idempotent method, a write call declared
    /// idempotent). Each try (a retry, a hedge) is a
    /// span of its own, a child of `trace`'s parent, and carries its `traceparent`.
    #[expect(
        clippy::too_many_arguments,
        reason = "each part comes from another place of the caller; fetch bundles its own (Sends)"
    )]
    pub async fn call(
        &self,
        url: String,
        headers: &HeaderMap,
        body: Option<(&Method, Bytes)>,
        keep: &[HeaderName],
        repeatable: bool,
        deadline: Instant,
        trace: &CallTrace,
    ) -> Result<WholeAnswer, CallError> {
        let target = self.transport.target(&url)?;
        let method = body.as_ref().map_or(&Method::GET, |(m, _)| *m);
        let tries = trace.tries(&self.spec.name, method, target.path());
        let once = |traceparent| self.call_once(&target, headers, body.as_ref(), keep, traceparent);
        match retry::run(self, repeatable, deadline, tries, once).await {
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
        target: &RequestTarget<'_>,
        headers: &HeaderMap,
        body: Option<&(&Method, Bytes)>,
        keep: &[HeaderName],
        trace: TraceParent,
    ) -> Result<WholeAnswer, CallError> {
        // A copy only for an upstream with headers of its own to add.
        let with_own;
        let headers = if self.spec.headers.is_empty() {
            headers
        } else {
            let mut all = headers.clone();
            for (k, v) in &self.spec.headers {
                all.insert(k, v.clone());
            }
            with_own = all;
            &with_own
        };
        let (method, body) = match body {
            None => (&Method::GET, None),
            Some((method, body)) => (*method, Some(body)),
        };
        self.transport
            .fetch_whole(
                method,
                target,
                headers,
                Some(&trace),
                body,
                self.spec.max_response,
                keep,
            )
            .await
    }
}

/// Parses a URL rendered from an upstream's base; the string becomes the Uri's bytes,
/// without a copy.
pub fn parse_uri(url: String) -> Result<Uri, CallError> {
    Uri::try_from(url).map_err(|e| CallError::Failed(format!("not a usable URL: {e}")))
}

/// Reads a whole answer body of at most `limit` bytes. An answer that arrives in one
/// piece (the usual small JSON) is kept as it came, without a copy.
pub async fn read_body<B>(mut body: B, headers: &HeaderMap, limit: u64) -> Result<Bytes, CallError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if declared_length(headers).is_some_and(|n| n > limit) {
        return Err(CallError::TooLarge(limit));
    }
    let mut whole = Collected::new(limit);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CallError::Failed(cause(&*e.into())))?;
        if let Ok(chunk) = frame.into_data() {
            whole.push(chunk).map_err(|_| CallError::TooLarge(limit))?;
        }
    }
    Ok(whole.finish())
}

/// The time left before `deadline`, in whole milliseconds, for messages that should
/// read like the config ("no answer within 300ms").
pub fn budget(deadline: Instant) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    Duration::from_millis(left.as_micros().div_ceil(1000) as u64)
}

/// The innermost cause of an error: it says what happened ("connection refused").
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// A failed request as a `CallError`: a connection that could not be made, or anything
/// else that went wrong (reset, malformed answer).
pub(crate) fn describe(e: SendError) -> CallError {
    match e {
        SendError::Http1(e) => e.into(),
        SendError::Url(e) => CallError::Failed(format!("not a usable URL: {e}")),
        e if e.is_connect() => CallError::Connect(cause(&e)),
        e => CallError::Failed(cause(&e)),
    }
}
