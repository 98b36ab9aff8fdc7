//! The last phase of a request: its metrics and its access log record, made of what
//! was taken from the request before the handler took it away (`Logged`, `Client`).

use super::Summary;
use crate::access_log::{AccessLogSpec, LogFormat, Record};
use crate::body::{Body, ClientBody};
use crate::cache::owned_value;
use crate::connection::ClientConnection;
use crate::gateway::Gateway;
use crate::request_id::Origin;
use crate::trace::TraceId;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

impl Gateway {
    /// Counts the request in the metrics and hands its access log record to the
    /// writer: copies and reference counts, no formatting and no system call here.
    /// `exported`: the trace's id when its spans went to the collector, the latency's
    /// exemplar, so a slow bucket links to a trace the collector has.
    pub(super) fn log(
        &self,
        summary: Summary<'_>,
        response: &Response<Body>,
        request: Logged,
        elapsed: Duration,
        exported: Option<TraceId>,
    ) {
        let status = response.status();
        self.metrics.request(
            summary.label,
            summary.series,
            status.as_u16(),
            elapsed,
            exported,
        );
        if !self.config.access_log.enabled {
            return;
        }
        let Logged {
            request_id,
            request_id_origin,
            trace_id,
            method,
            uri,
            client,
            user,
        } = request;
        self.access_log.submit(Record {
            time: SystemTime::now(),
            request_id: kept_request_id(request_id, request_id_origin),
            trace_id: Some(trace_id),
            client: client.addr,
            user,
            method,
            uri: if summary.job_id_in_path {
                crate::gateway::jobs::without_job_id(&uri)
            } else {
                detached(&uri)
            },
            redact_query: self.token_params.clone(),
            version: client.version,
            route: summary.label.clone(),
            status: status.as_u16(),
            bytes: body_length(response),
            duration: elapsed,
            backends: summary.backends.map(|b| b.0),
            referer: client.referer,
            user_agent: client.user_agent,
            client_cert: client.cert_subject,
            upstream: summary.canary.cloned(),
        });
    }
}

/// What the log needs of a request that the handler takes away.
pub(super) struct Logged {
    pub(super) request_id: HeaderValue,
    pub(super) request_id_origin: Origin,
    /// The request's trace, whether or not its spans are exported: upstreams that
    /// trace on their own log the same id.
    pub(super) trace_id: TraceId,
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) client: Client,
    /// The subject of the identity the request proved.
    pub(super) user: Option<Arc<str>>,
}

/// The client's side of an access log record, taken before the request moves on.
pub(super) struct Client {
    pub(super) addr: IpAddr,
    pub(super) version: Version,
    /// `Referer` and `User-Agent`, kept only when the `combined` format prints them.
    pub(super) referer: Option<HeaderValue>,
    pub(super) user_agent: Option<HeaderValue>,
    /// The verified client certificate's subject, on a TLS connection with one and the
    /// access log on.
    pub(super) cert_subject: Option<Arc<str>>,
}

impl Client {
    pub(super) fn of(
        log: &AccessLogSpec,
        request: &Request<ClientBody>,
        connection: &ClientConnection,
    ) -> Self {
        let combined = log.enabled && log.format == LogFormat::Combined;
        let kept = |name| {
            combined
                .then(|| request.headers().get(name).map(owned_value))
                .flatten()
        };
        Self {
            addr: connection.peer.ip(),
            version: request.version(),
            referer: kept(header::REFERER),
            user_agent: kept(header::USER_AGENT),
            cert_subject: log
                .enabled
                .then(|| connection.client_cert().map(|c| c.subject.clone()))
                .flatten(),
        }
    }
}

/// The response body's length when it is known before it is sent: a whole answer's
/// size, or what a stream declares (its size hint, or a passed-through
/// `Content-Length`); `None` for a stream of unknown length.
fn body_length(response: &Response<Body>) -> Option<u64> {
    use http_body::Body as _;
    response.body().size_hint().exact().or_else(|| {
        response
            .headers()
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    })
}

/// `uri` in bytes of its own. A request's target is a view into the buffer its head
/// was read into (4 KiB or more, up to 128 KiB for a large head): the record waits for
/// the log's writer thread up to its poll interval, and would keep that buffer alive as
/// long and free it on the writer's thread, so every logged request would take a fresh
/// buffer instead of reusing the one just freed; and while the writer is stalled (a
/// full pipe) the queue's 4,096 records would hold as many buffers. Copying the path
/// and query (tens of bytes) costs less. The header values a record keeps (the
/// client's request id, `Referer`, `User-Agent`) are such views too: [`owned_value`].
fn detached(uri: &Uri) -> Uri {
    let Some(target) = uri.path_and_query() else {
        return uri.clone();
    };
    Uri::from_maybe_shared(Bytes::copy_from_slice(target.as_str().as_bytes()))
        .unwrap_or_else(|_| uri.clone())
}

/// The request id as a record keeps it: the client's copied out of the request's
/// buffer, the gateway's own as it is.
fn kept_request_id(id: HeaderValue, origin: Origin) -> HeaderValue {
    match origin {
        Origin::Client => owned_value(&id),
        Origin::Gateway => id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request whose head was read into one buffer, as the HTTP/1.1 server reads it:
    /// its header values are views into that buffer.
    fn request_in_buffer() -> (Bytes, Request<ClientBody>) {
        let head =
            Bytes::from_static(b"x-request-id: abc\r\nreferer: http://r/\r\nuser-agent: curl\r\n")
                .to_vec();
        let buffer = Bytes::from(head);
        let view = |from: usize, to: usize| {
            HeaderValue::from_maybe_shared(buffer.slice(from..to)).unwrap()
        };
        let request = Request::builder()
            .header("x-request-id", view(14, 17))
            .header(header::REFERER, view(28, 37))
            .header(header::USER_AGENT, view(51, 55))
            .body(ClientBody::Empty)
            .unwrap();
        (buffer, request)
    }

    #[test]
    fn what_a_record_keeps_of_the_request_is_copied_out_of_its_buffer() {
        let (buffer, request) = request_in_buffer();
        let in_buffer = |v: &HeaderValue| buffer.as_ptr_range().contains(&v.as_bytes().as_ptr());
        assert!(
            in_buffer(&request.headers()["user-agent"]),
            "the test's premise"
        );
        let log = AccessLogSpec {
            enabled: true,
            path: crate::access_log::LogPath::Stderr,
            format: LogFormat::Combined,
            buffer: 64 << 10,
            flush: Duration::from_secs(1),
        };
        let connection = ClientConnection::plain(([127, 0, 0, 1], 1).into());
        let client = Client::of(&log, &request, &connection);
        let (referer, agent) = (client.referer.unwrap(), client.user_agent.unwrap());
        assert_eq!(
            (referer.to_str().unwrap(), agent.to_str().unwrap()),
            ("http://r/", "curl")
        );
        assert!(!in_buffer(&referer) && !in_buffer(&agent));

        let (id, origin) = crate::request_id::of(request.headers());
        assert_eq!((id.to_str().unwrap(), origin), ("abc", Origin::Client));
        let kept = kept_request_id(id.clone(), origin);
        assert_eq!(kept, id);
        assert!(in_buffer(&id) && !in_buffer(&kept));
        // The gateway's own id is kept as it is: no copy.
        let (made, origin) = crate::request_id::of(&http::HeaderMap::new());
        let made_at = made.as_bytes().as_ptr();
        assert_eq!(kept_request_id(made, origin).as_bytes().as_ptr(), made_at);
    }
}
