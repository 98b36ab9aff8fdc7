//! One upstream service: its pooled HTTP client (one per upstream, shared by every route
//! and backend that names it), its protection (guard, breaker, retries, hedging, health
//! checks), and one call to it bounded by a deadline.

mod breaker;
pub mod client;
mod decode;
mod guard;
pub mod h1;
pub mod health;
pub mod retry;

pub use client::{HttpClient, RequestBody, SendError, bytes_body, no_body};
pub use guard::Guard;

use crate::config::UpstreamSpec;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A built upstream: the spec, its connection pool and its admission guard.
#[derive(Debug)]
pub struct Upstream {
    pub spec: UpstreamSpec,
    pub client: HttpClient,
    /// The lean client for answers read whole, when the upstream is plain http.
    h1: Option<Arc<h1::H1Pool>>,
    pub guard: Guard,
}

/// A 2xx (or, to retries, 5xx) answer, read whole and decoded from its content coding.
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

/// Methods that may be sent twice (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

impl Upstream {
    /// Builds the client for `spec`.
    pub fn build(spec: UpstreamSpec) -> Result<Self, client::ClientError> {
        let client = HttpClient::new(&spec)?;
        let h1 = h1::H1Pool::for_base(
            &spec.base,
            spec.pool_idle_per_host,
            spec.pool_idle_timeout,
            spec.connect_timeout,
        )
        .map(Arc::new);
        let guard = Guard::new(&spec);
        Ok(Self {
            spec,
            client,
            h1,
            guard,
        })
    }

    /// The lean HTTP/1.1 client, when the upstream is plain http.
    pub fn h1(&self) -> Option<&Arc<h1::H1Pool>> {
        self.h1.as_ref()
    }

    /// Calls `url` and reads the whole answer, all before `deadline`. `body` is sent
    /// with its method; without one the call is a GET.
    pub async fn call(
        &self,
        url: String,
        headers: &HeaderMap,
        body: Option<(&Method, Bytes)>,
        deadline: Instant,
    ) -> Result<Answer, CallError> {
        let repeatable = body.as_ref().is_none_or(|(m, _)| is_idempotent(m));
        let target = match self.h1.as_ref().and_then(|h1| h1.path_of(&url)) {
            Some(path) => Target::Path(path),
            None => Target::Uri(parse_uri(url.clone())?),
        };
        let once = || self.call_once(&target, headers, body.clone());
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
        target: &Target<'_>,
        headers: &HeaderMap,
        body: Option<(&Method, Bytes)>,
    ) -> Result<Answer, CallError> {
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
        if let Some(h1) = &self.h1 {
            let (method, body) = match &body {
                None => (&Method::GET, None),
                Some((method, body)) => (*method, Some(body)),
            };
            let reply = h1
                .send(method, target.path(), headers, body, self.spec.max_response)
                .await?;
            let head = &reply.head;
            let storable = !crate::cache::forbids_storing(head.values("cache-control"));
            let codings = decode::codings(head.values("content-encoding"));
            let body = self.decoded(&codings, reply.body)?;
            return answer(head.status, storable, || head.value("content-type"), body);
        }
        let (method, body) = match body {
            None => (Method::GET, no_body()),
            Some((method, body)) => (method.clone(), bytes_body(body)),
        };
        let Target::Uri(uri) = target else {
            unreachable!("a URL is kept unparsed only for the own client")
        };
        let response = self
            .client
            .send(method, uri.clone(), headers.clone(), body)
            .await
            .map_err(describe)?;
        let (parts, body) = response.into_parts();
        let body = read_body(body, &parts.headers, self.spec.max_response).await?;
        let encoding = parts.headers.get_all(http::header::CONTENT_ENCODING);
        let body = self.decoded(
            &decode::codings(encoding.iter().map(|v| v.as_bytes())),
            body,
        )?;
        let storable = !crate::cache::forbids_storing(crate::cache::cache_control(&parts.headers));
        let content_type = || parts.headers.get(http::header::CONTENT_TYPE).cloned();
        answer(parts.status, storable, content_type, body)
    }
}

impl Upstream {
    /// An answer's body with its content codings undone, of at most `max_response`
    /// bytes decoded; a body without codings (the usual case) as it is.
    fn decoded(&self, codings: &[&[u8]], body: Bytes) -> Result<Bytes, CallError> {
        if codings.is_empty() || body.is_empty() {
            return Ok(body);
        }
        decode::decode(codings, body, self.spec.max_response)
    }
}

/// Where a call goes: for the own client, the rendered URL's path as it is; for hyper
/// (and a URL the own client will not take unparsed), the parsed `Uri`.
pub enum Target<'u> {
    Path(&'u str),
    Uri(Uri),
}

impl Target<'_> {
    /// The request target on the request line.
    pub fn path(&self) -> &str {
        match self {
            Target::Path(path) => path,
            Target::Uri(uri) => uri.path_and_query().map_or("/", |p| p.as_str()),
        }
    }
}

/// A whole answer as a try's outcome: 2xx and 5xx are answers (5xx so that retries and
/// the breaker see its status), anything else a `Status` error, with its content type.
fn answer(
    status: StatusCode,
    storable: bool,
    content_type: impl FnOnce() -> Option<HeaderValue>,
    body: Bytes,
) -> Result<Answer, CallError> {
    if status.is_success() || status.is_server_error() {
        Ok(Answer {
            status,
            body,
            storable,
        })
    } else {
        Err(CallError::Status {
            status,
            content_type: content_type(),
            body,
        })
    }
}

/// Parses a URL rendered from an upstream's base; the string becomes the Uri's bytes,
/// without a copy.
pub fn parse_uri(url: String) -> Result<Uri, CallError> {
    Uri::try_from(url).map_err(|e| CallError::Failed(format!("not a usable URL: {e}")))
}

/// Reads a whole answer body of at most `limit` bytes. An answer that arrives in one
/// piece (the usual small JSON) is kept as it came, without a copy.
pub async fn read_body(
    mut body: Incoming,
    headers: &HeaderMap,
    limit: u64,
) -> Result<Bytes, CallError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(CallError::TooLarge(limit));
    }
    let mut whole = h1::Collected::new(limit);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| CallError::Failed(cause(&e)))?;
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
    if e.is_connect() {
        CallError::Connect(cause(&e))
    } else {
        CallError::Failed(cause(&e))
    }
}
