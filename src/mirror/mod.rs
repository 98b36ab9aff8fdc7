//! Traffic mirroring: copies of a proxy route's requests, or of an aggregate backend's
//! calls, sent to a shadow upstream, fire and forget. A copy never delays, changes or
//! fails the client's answer: it is sent from a task of its own, bounded by its own
//! timeout and by a count of copies in flight per mirror entry, taken when the request
//! starts (over it, the copy is dropped and counted, and no body is kept for it); its answer is read (up to the shadow's `max_response`) and
//! thrown away. Which requests are copied is a pure function of the request id
//! ([`sample`]). A streamed proxy body is teed ([`tee`]): the primary gets every chunk
//! as it comes, the copy leaves when the body has ended, whole (up to
//! `mirror_max_body`; a larger body is not copied).

mod sample;
mod send;
mod tee;

pub use sample::{BUCKETS, bucket, sampled};
pub use tee::Tee;

use crate::config::MirrorSpec;
use crate::metrics::{Label, Metrics, MirrorSeries};
use crate::template::{RenderInput, Template};
use crate::trace::{TraceContext, TraceParent};
use crate::upstream::Upstream;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The header every copy carries, so the shadow (and its logs) can tell a copy from
/// real traffic: `X-Fanout-Mirror: 1`.
pub static X_FANOUT_MIRROR: HeaderName = HeaderName::from_static("x-fanout-mirror");

/// One mirror entry of a route or backend, built with its shadow upstream.
#[derive(Debug)]
pub struct Mirror {
    pub upstream: Arc<Upstream>,
    /// `None`: the primary call's path.
    path: Option<Template>,
    /// Requests whose id's bucket is below this are copied.
    threshold: u32,
    timeout: Duration,
    max_body: u64,
    max_in_flight: usize,
    /// One permit per copy in flight, taken when the copy is made (before its body is
    /// kept); none left: the copy is dropped.
    permits: Arc<Semaphore>,
    /// Copies keep the client's credentials and the backend's own headers.
    credentials: bool,
    series: MirrorSeries,
}

impl Mirror {
    /// The mirror `spec` describes, for the route labelled `route`, sending to
    /// `upstream` (the upstream `spec` names). `previous`: the same entry in the
    /// snapshot a reload replaces; when it copies to the same shadow with the same
    /// `max_in_flight`, its copies still under way keep counting against the limit.
    pub fn new(
        spec: MirrorSpec,
        route: &Label,
        upstream: Arc<Upstream>,
        metrics: &Metrics,
        previous: Option<&Mirror>,
    ) -> Self {
        let series = metrics.mirror_series(route, &Label::new(&upstream.spec.name));
        let permits = previous
            .filter(|p| {
                p.upstream.spec.name == upstream.spec.name && p.max_in_flight == spec.max_in_flight
            })
            .map_or_else(
                || Arc::new(Semaphore::new(spec.max_in_flight)),
                |p| p.permits.clone(),
            );
        Self {
            timeout: spec.timeout.unwrap_or(upstream.spec.timeout),
            upstream,
            path: spec.path,
            threshold: spec.threshold,
            max_body: spec.max_body,
            max_in_flight: spec.max_in_flight,
            permits,
            credentials: spec.credentials,
            series,
        }
    }

    /// Whether the request with this id is copied.
    pub fn samples(&self, request_id: &HeaderValue) -> bool {
        sampled(request_id.as_bytes(), self.threshold)
    }
}

/// Where one mirror's copy of a request goes, decided while the request's template
/// input is at hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShadowPath {
    /// The primary call's path (and query), on the shadow's base URL.
    Primary,
    /// The mirror's own path template, rendered: the whole URL.
    Rendered(String),
    /// The mirror's template could not be rendered for this request: no copy.
    Unusable,
}

/// Renders the path of each of `mirrors` that has its own template. Empty (no
/// allocation) without mirrors; `Primary` for a mirror without a template.
pub fn render_paths(mirrors: &[Arc<Mirror>], input: &RenderInput<'_>) -> Vec<ShadowPath> {
    mirrors
        .iter()
        .map(|m| match &m.path {
            None => ShadowPath::Primary,
            Some(template) => match template.render(&m.upstream.spec.base, input) {
                Ok(url) => ShadowPath::Rendered(url),
                Err(error) => {
                    tracing::debug!(upstream = %m.upstream.spec.name, %error, "mirror path not rendered");
                    ShadowPath::Unusable
                }
            },
        })
        .collect()
}

/// The primary call a copy is made of: as sent to the primary upstream.
pub struct Primary<'a> {
    pub method: &'a Method,
    /// The primary URL, `base` + path and query.
    pub url: &'a str,
    /// The primary upstream: its base URL, and its own configured headers, which are
    /// not copied (they may carry the primary's credentials).
    pub upstream: &'a Upstream,
    /// The headers the primary call sends.
    pub headers: &'a HeaderMap,
    /// The headers an aggregate backend sets on its call itself (its `headers`
    /// templates): copied only to a mirror with `credentials = true`. Empty on a proxy.
    pub own_headers: &'a [(HeaderName, HeaderValue)],
    pub request_id: &'a HeaderValue,
    pub trace: &'a TraceContext,
}

/// The client headers that are credentials: a copy carries them only to a mirror with
/// `credentials = true`.
pub static CREDENTIAL_HEADERS: [HeaderName; 4] = [
    http::header::AUTHORIZATION,
    http::header::COOKIE,
    http::header::PROXY_AUTHORIZATION,
    crate::tls::client_cert::X_FORWARDED_CLIENT_CERT,
];

/// A copy of one request for one mirror, ready but for its body.
pub struct Copy {
    mirror: Arc<Mirror>,
    /// Its place among the mirror's `max_in_flight`, held from the request's start, so
    /// no body is kept for a copy that would be dropped.
    _permit: OwnedSemaphorePermit,
    method: Method,
    url: String,
    headers: HeaderMap,
    /// The copy's own `traceparent`: a child of the request's server span, as every
    /// upstream call of the request is.
    traceparent: TraceParent,
}

impl Copy {
    /// Counts this copy as dropped for its body's size.
    fn too_large(self) {
        self.mirror.series.dropped_too_large.inc();
        tracing::debug!(upstream = %self.mirror.upstream.spec.name, "mirror dropped: body too large");
    }
}

/// The copies of `primary` its mirrors take: those whose share includes the request
/// id, whose path could be made and that got a place among their mirror's
/// `max_in_flight` (a copy without one is dropped and counted now, before any body is
/// kept for it). Empty (no allocation) when none does.
pub fn copies(mirrors: &[Arc<Mirror>], paths: &[ShadowPath], primary: &Primary<'_>) -> Vec<Copy> {
    let mut out = Vec::new();
    for (i, mirror) in mirrors.iter().enumerate() {
        if !mirror.samples(primary.request_id) {
            continue;
        }
        let shadow = &mirror.upstream.spec;
        if matches!(paths.get(i), Some(ShadowPath::Unusable)) {
            continue;
        }
        let Ok(permit) = mirror.permits.clone().try_acquire_owned() else {
            mirror.series.dropped_in_flight.inc();
            tracing::debug!(upstream = %shadow.name, "mirror dropped: max_in_flight reached");
            continue;
        };
        let url = match paths.get(i).unwrap_or(&ShadowPath::Primary) {
            ShadowPath::Rendered(url) => url.clone(),
            ShadowPath::Unusable => continue,
            ShadowPath::Primary => {
                let Some(path) = primary
                    .url
                    .strip_prefix(primary.upstream.spec.base.as_str())
                else {
                    // The URL is rendered from this base; never taken, but no copy
                    // beats a copy to a wrong path.
                    tracing::debug!(upstream = %shadow.name, "mirror dropped: primary URL not on its base");
                    continue;
                };
                format!("{}{path}", shadow.base)
            }
        };
        let mut headers = primary.headers.clone();
        for name in primary.upstream.spec.headers.keys() {
            headers.remove(name);
        }
        if !mirror.credentials {
            strip_credentials(&mut headers, primary.own_headers);
        }
        // The shadow's own Host; the length is the client's to set from the copy.
        headers.remove(HOST);
        headers.remove(CONTENT_LENGTH);
        for (name, value) in &shadow.headers {
            headers.insert(name, value.clone());
        }
        headers.insert(
            crate::request_id::X_REQUEST_ID.clone(),
            primary.request_id.clone(),
        );
        primary.trace.pass_on(&mut headers);
        headers.insert(X_FANOUT_MIRROR.clone(), HeaderValue::from_static("1"));
        out.push(Copy {
            mirror: mirror.clone(),
            _permit: permit,
            method: primary.method.clone(),
            url,
            headers,
            traceparent: primary.trace.server.child(),
        });
    }
    out
}

/// Removes from a copy's `headers` the client's credentials and the headers the
/// primary call set itself (`own`), which may be an API key of the backend's.
fn strip_credentials(headers: &mut HeaderMap, own: &[(HeaderName, HeaderValue)]) {
    for name in &CREDENTIAL_HEADERS {
        headers.remove(name);
    }
    for (name, _) in own {
        headers.remove(name);
    }
}

/// Sends each of `copies` with `body` (the whole request body, in chunks), each from a
/// task of its own. Never waits. A body over a mirror's `mirror_max_body` drops that
/// copy (counted); each copy already holds its place among `max_in_flight`.
pub fn send_all(copies: Vec<Copy>, body: &[Bytes]) {
    let size: u64 = body.iter().map(|c| c.len() as u64).sum();
    for copy in copies {
        if size > copy.mirror.max_body {
            copy.too_large();
            continue;
        }
        send::spawn(copy, body.to_vec());
    }
}

/// Counts `copies` dropped because the body is larger than their `mirror_max_body`.
fn all_too_large(copies: Vec<Copy>) {
    copies.into_iter().for_each(Copy::too_large);
}

/// The largest `mirror_max_body` of `copies`: the tee keeps a body no larger.
fn largest_max_body(copies: &[Copy]) -> u64 {
    copies.iter().map(|c| c.mirror.max_body).max().unwrap_or(0)
}
