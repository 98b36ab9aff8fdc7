//! How requests reach one upstream, chosen once when the upstream is built. A plain-http
//! upstream is served by the own HTTP/1.1 client (`http1::client`: bodiless requests,
//! and answers read whole), with hyper's pooled client for what that client does not
//! do (request bodies to stream, upgrades); a TLS upstream (HTTP/2 when it offers it)
//! and an `h2c` upstream (cleartext HTTP/2) by hyper's client alone. Callers make one call and never pick a client themselves.

use super::client::{ClientError, HttpClient, RequestBody, SendError, no_body};
use super::{CallError, WholeAnswer, decode, parse_uri, read_body};
use crate::config::UpstreamSpec;
use crate::http1::client::{AnswerBody, Pool};
use crate::trace::TraceParent;
use crate::trace::context::TRACEPARENT;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The clients of one upstream.
#[derive(Debug)]
pub enum Transport {
    /// A plain-http upstream: the own client first, hyper's for bodies and upgrades.
    Http1 { own: Arc<Pool>, hyper: HttpClient },
    /// A TLS or `h2c` upstream: hyper's client for everything.
    Hyper(HttpClient),
}

/// Where a request goes: the URL rendered from the upstream's base, either with the path
/// the own client puts on the request line as it is, or parsed (hyper's client, and a
/// URL the own client will not take unparsed).
#[derive(Debug)]
pub enum RequestTarget<'u> {
    /// A URL whose `path` (from the first `/` after the authority) is plain visible ASCII.
    Plain {
        url: &'u str,
        path: &'u str,
    },
    Uri(Uri),
}

impl RequestTarget<'_> {
    /// The request target on the request line.
    pub fn path(&self) -> &str {
        match self {
            RequestTarget::Plain { path, .. } => path,
            RequestTarget::Uri(uri) => uri.path_and_query().map_or("/", |p| p.as_str()),
        }
    }

    /// The absolute URI hyper's client takes.
    fn uri(&self) -> Result<Uri, SendError> {
        match self {
            RequestTarget::Plain { url, .. } => Ok(Uri::try_from(*url)?),
            RequestTarget::Uri(uri) => Ok(uri.clone()),
        }
    }
}

/// An answer's body streamed from whichever client fetched it.
#[derive(Debug)]
pub enum UpstreamBody {
    Http1(AnswerBody),
    Hyper(Incoming),
}

impl UpstreamBody {
    /// The whole body if it is already in memory (see [`AnswerBody::take_whole`]).
    pub fn take_whole(&mut self) -> Option<Bytes> {
        match self {
            UpstreamBody::Http1(body) => body.take_whole(),
            UpstreamBody::Hyper(_) => None,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Http1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Http1(body) => body.is_end_stream(),
            UpstreamBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Http1(body) => body.size_hint(),
            UpstreamBody::Hyper(body) => body.size_hint(),
        }
    }
}

impl Transport {
    /// The clients `spec` needs: the own one only for an `http://` base spoken as
    /// HTTP/1.1.
    pub fn build(spec: &UpstreamSpec) -> Result<Self, ClientError> {
        let hyper = HttpClient::new(spec)?;
        if spec.h2c {
            return Ok(Transport::Hyper(hyper));
        }
        let own = Pool::for_base(
            &spec.base,
            spec.pool_idle_per_host,
            spec.pool_idle_timeout,
            spec.connect_timeout,
        );
        Ok(match own {
            Some(own) => Transport::Http1 {
                own: Arc::new(own),
                hyper,
            },
            None => Transport::Hyper(hyper),
        })
    }

    /// The own client's idle connections and their limit; `None` for hyper's client
    /// alone (TLS, `h2c`), whose pool does not tell.
    pub fn idle_connections(&self) -> Option<(usize, usize)> {
        match self {
            Transport::Http1 { own, .. } => Some(own.idle_connections()),
            Transport::Hyper(_) => None,
        }
    }

    /// Where `url` (rendered from this upstream's base) goes.
    pub fn target<'u>(&self, url: &'u str) -> Result<RequestTarget<'u>, CallError> {
        if let Transport::Http1 { own, .. } = self
            && let Some(path) = own.path_of(url)
        {
            return Ok(RequestTarget::Plain { url, path });
        }
        Ok(RequestTarget::Uri(parse_uri(url.to_owned())?))
    }

    /// Sends one request and reads the whole answer, of at most `limit` bytes once its
    /// content codings are undone. `body`: sent with `method`, else nothing is.
    /// `trace`: the call's `traceparent`, sent in place of any in `headers`. The answer
    /// keeps the response headers named in `keep` (none: no work, no allocation).
    #[allow(clippy::too_many_arguments)]
    pub async fn fetch_whole(
        &self,
        method: &Method,
        target: &RequestTarget<'_>,
        headers: &HeaderMap,
        trace: Option<&TraceParent>,
        body: Option<&Bytes>,
        limit: u64,
        keep: &[HeaderName],
    ) -> Result<WholeAnswer, CallError> {
        let hyper = match self {
            Transport::Http1 { own, .. } => {
                let reply = own
                    .send(method, target.path(), headers, trace, body, limit)
                    .await?;
                let head = &reply.head;
                let storable = !crate::cache::forbids_storing(head.values("cache-control"));
                let codings = decode::codings(head.values("content-encoding"));
                let body = decoded(&codings, reply.body, limit)?;
                let kept = head.kept(keep);
                let content_type = || head.value("content-type");
                return whole(head.status, storable, content_type, body, kept);
            }
            Transport::Hyper(hyper) => hyper,
        };
        let uri = target.uri().map_err(super::describe)?;
        let body = body.map_or_else(no_body, |b| super::bytes_body(b.clone()));
        let response = hyper
            .send(method.clone(), uri, with_trace(headers, trace), body)
            .await
            .map_err(super::describe)?;
        let (parts, body) = response.into_parts();
        let body = read_body(body, &parts.headers, limit).await?;
        let encoding = parts.headers.get_all(http::header::CONTENT_ENCODING);
        let codings = decode::codings(encoding.iter().map(|v| v.as_bytes()));
        let body = decoded(&codings, body, limit)?;
        let storable = !crate::cache::forbids_storing(crate::cache::cache_control(&parts.headers));
        let content_type = || parts.headers.get(http::header::CONTENT_TYPE).cloned();
        let mut kept = HeaderMap::new();
        for name in keep {
            for value in parts.headers.get_all(name) {
                kept.append(name.clone(), value.clone());
            }
        }
        whole(parts.status, storable, content_type, body, kept)
    }

    /// Sends one request and returns the answer once its head is in; the body streams.
    /// `trace`: the call's `traceparent`, sent in place of any in `headers`.
    /// `body`: a request body to stream; `upgrade`: the request asks to switch
    /// protocols. Either goes through hyper's client, which can stream an upload and
    /// hand over the connection.
    pub async fn send(
        &self,
        method: &Method,
        target: &RequestTarget<'_>,
        headers: &HeaderMap,
        trace: Option<TraceParent>,
        body: Option<RequestBody>,
        upgrade: bool,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let hyper = match self {
            Transport::Http1 { own, .. } if body.is_none() && !upgrade => {
                let answer = own
                    .open(method, target.path(), headers, trace.as_ref())
                    .await?;
                return Ok(answer.map(UpstreamBody::Http1));
            }
            Transport::Http1 { hyper, .. } | Transport::Hyper(hyper) => hyper,
        };
        let body = body.unwrap_or_else(no_body);
        let headers = with_trace(headers, trace.as_ref());
        let send = hyper.send(method.clone(), target.uri()?, headers, body);
        // Boxed: hyper's future is the largest, and the own client's calls should not
        // carry (and move) it.
        let answer = Box::pin(send).await?;
        Ok(answer.map(UpstreamBody::Hyper))
    }
}

/// The headers of a request through hyper's client (which takes them owned): `headers`
/// with the call's `traceparent` in place of any there.
fn with_trace(headers: &HeaderMap, trace: Option<&TraceParent>) -> HeaderMap {
    let mut headers = headers.clone();
    if let Some(trace) = trace {
        headers.insert(TRACEPARENT.clone(), trace.header_value());
    }
    headers
}

/// An answer's body with its content codings undone, of at most `limit` bytes decoded;
/// a body without codings (the usual case) as it is.
fn decoded(codings: &[&[u8]], body: Bytes, limit: u64) -> Result<Bytes, CallError> {
    if codings.is_empty() || body.is_empty() {
        return Ok(body);
    }
    decode::decode(codings, body, limit)
}

/// A whole answer as a try's outcome: 2xx and 5xx are answers (5xx so that retries and
/// the breaker see its status), anything else a `Status` error, with its content type.
fn whole(
    status: StatusCode,
    storable: bool,
    content_type: impl FnOnce() -> Option<HeaderValue>,
    body: Bytes,
    headers: HeaderMap,
) -> Result<WholeAnswer, CallError> {
    if status.is_success() || status.is_server_error() {
        Ok(WholeAnswer {
            status,
            body,
            storable,
            headers,
        })
    } else {
        Err(CallError::Status {
            status,
            content_type: content_type(),
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, compile};

    fn transport(url: &str) -> Transport {
        transport_with(url, "")
    }

    fn transport_with(url: &str, keys: &str) -> Transport {
        let toml = format!(
            "[upstreams.up]\nurl = \"{url}\"\n{keys}\n[[routes]]\npath = \"/r\"\n\
             proxy = {{ upstream = \"up\", path = \"/\" }}\n"
        );
        let compiled = compile(&toml, &Env::default()).unwrap();
        Transport::build(&compiled.upstreams["up"]).unwrap()
    }

    #[test]
    fn a_plain_http_upstream_takes_the_own_client_and_keeps_hyper_for_the_rest() {
        let plain = transport("http://127.0.0.1:9000/api");
        assert!(matches!(plain, Transport::Http1 { .. }));
        let target = plain.target("http://127.0.0.1:9000/api/a?b=1").unwrap();
        assert!(matches!(
            target,
            RequestTarget::Plain {
                path: "/api/a?b=1",
                ..
            }
        ));
        assert_eq!(target.path(), "/api/a?b=1");
        assert_eq!(
            target.uri().unwrap(),
            "http://127.0.0.1:9000/api/a?b=1",
            "an upload or upgrade goes to hyper with the whole URL"
        );
    }

    #[test]
    fn a_tls_upstream_takes_hyper_s_client_alone() {
        let tls = transport("https://example.com");
        assert!(matches!(tls, Transport::Hyper(_)));
        let target = tls.target("https://example.com/a?b=1").unwrap();
        assert!(matches!(target, RequestTarget::Uri(_)));
        assert_eq!(target.path(), "/a?b=1");
    }

    #[test]
    fn an_h2c_upstream_takes_hyper_s_client_alone() {
        let h2c = transport_with("http://127.0.0.1:9000", "h2c = true");
        assert!(matches!(h2c, Transport::Hyper(_)));
        let target = h2c.target("http://127.0.0.1:9000/a").unwrap();
        assert!(matches!(target, RequestTarget::Uri(_)));
    }
}
