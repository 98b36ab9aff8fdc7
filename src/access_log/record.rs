//! What the access log knows of one request: a [`Record`] the request's task fills with
//! values it already holds (refcounted clones, numbers, the clock), and nothing it has to
//! format. The writer thread turns it into a line (`format`).

use crate::metrics::Label;
use crate::trace::TraceId;
use http::{HeaderValue, Method, Uri, Version};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// One request, as the access log writes it. Cheap to make: every field is a copy, a
/// reference-count bump (`Uri`, `HeaderValue` and `Label` share their bytes) or the
/// backends' outcomes, which the aggregate collected anyway.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the answer was ready (nginx's `$time_local` is the end of the request too).
    pub time: SystemTime,
    /// The request id the request carried or was given.
    pub request_id: HeaderValue,
    /// The trace the request is part of, when tracing knows one.
    pub trace_id: Option<TraceId>,
    /// The peer's address (nginx's `$remote_addr`), not a forwarded one.
    pub client: IpAddr,
    /// The subject of the identity the route's `auth` proved (nginx's `$remote_user`);
    /// never a credential.
    pub user: Option<Arc<str>>,
    pub method: Method,
    /// The request target as the client sent it: path and query.
    pub uri: Uri,
    /// Query parameters that carry a credential (a JWT provider's `token_from =
    /// "query:NAME"`): their values are written as `REDACTED`. `None` when no provider
    /// reads a token from the query, the common case, which costs nothing.
    pub redact_query: Option<Arc<[String]>>,
    pub version: Version,
    /// The route's path pattern, or `unmatched` / `health`: the metrics label.
    pub route: Label,
    pub status: u16,
    /// The response body's length when it is known before it is sent: a whole answer's
    /// size, or a stream's declared `Content-Length`. `None`: a stream of unknown length.
    pub bytes: Option<u64>,
    /// From the request's arrival to its answer's head being ready.
    pub duration: Duration,
    /// Each aggregate backend's outcome, in the route's order; `None` for other routes.
    pub backends: Option<Box<[BackendOutcome]>>,
    /// `Referer`, kept only for the `combined` format.
    pub referer: Option<HeaderValue>,
    /// `User-Agent`, kept only for the `combined` format.
    pub user_agent: Option<HeaderValue>,
    /// The subject of the connection's verified client certificate (mutual TLS), in
    /// `json` and `text`; `None` on other connections.
    pub client_cert: Option<Arc<str>>,
    /// The upstream a proxy route's weighted canary picked (`"upstream"` in `json` and
    /// `text`); `None` on other routes.
    pub upstream: Option<Label>,
}

/// One aggregate backend's outcome: its name, its stable code (`ok`, `hit`, `shared`,
/// `timeout`, ...) and how long its call took.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendOutcome {
    pub name: Label,
    pub code: &'static str,
    pub elapsed: Duration,
    /// The upstream the backend's weighted canary picked; `None` without one.
    pub upstream: Option<Label>,
}

/// The message a writer thread receives: a record, or a nudge to look at its controls
/// (new settings, reopen, shutdown) when it would otherwise sleep.
/// A `Wake` takes a record's room in the queue: boxing the record instead would cost an
/// allocation per request, and wakes are rare.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Message {
    Line(Record),
    Wake,
}
