//! The HTTP client of one upstream: hyper's pooled client over a connector that speaks
//! plain TCP or TLS (rustls, set up from the upstream's `tls` in `super::tls`; HTTP/2
//! when the server offers it through ALPN), or cleartext HTTP/2 with prior knowledge
//! (`h2c`), where concurrent requests share one connection. A request goes out as it is built here: its URI is
//! parsed once, and nothing is added but `Host` (and `Connection: close` on a HEAD).
//!
//! An HTTP/1 connection is kept for another request only after an answer whose end its
//! framing tells: not after a HEAD, 204 or 304, whose sender may still send a body, and
//! an answer framed two ways (`Transfer-Encoding` and `Content-Length`) is refused.

use crate::config::UpstreamSpec;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{HttpConnector, capture_connection};
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Any error a request body may fail with; `Limited`'s limit is found in its chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request to an upstream.
pub type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// A request body with nothing in it.
pub fn no_body() -> RequestBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body of these bytes.
pub fn bytes_body(bytes: Bytes) -> RequestBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// One upstream's connection pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, RequestBody>,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS: {0}")]
pub struct ClientError(#[from] rustls::Error);

/// The error of one request: refused, reset, timed out connecting, a malformed answer, or
/// an answer framed two ways.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Hyper(#[from] hyper_util::client::legacy::Error),
    /// An HTTP/1 answer with both `Transfer-Encoding` and `Content-Length` (RFC 9112
    /// §6.3): hyper reads it by the first, a client handed it would read the second.
    #[error("faulty framing: both Transfer-Encoding and Content-Length")]
    Framing,
    /// The own HTTP/1.1 client's failure (`Transport::send`).
    #[error(transparent)]
    Http1(#[from] crate::http1::client::ExchangeError),
    /// A URL hyper cannot send to.
    #[error("not a usable URL: {0}")]
    Url(#[from] http::uri::InvalidUri),
}

impl SendError {
    /// Whether no connection could be made.
    pub fn is_connect(&self) -> bool {
        match self {
            SendError::Hyper(e) => e.is_connect(),
            SendError::Http1(e) => matches!(e, crate::http1::client::ExchangeError::Connect(_)),
            SendError::Framing | SendError::Url(_) => false,
        }
    }
}

impl HttpClient {
    /// A pool as `spec` says. Redirects are never followed: an aggregate treats a 3xx as
    /// a failure and a proxy hands it to the client, as nginx does.
    pub fn new(spec: &UpstreamSpec) -> Result<Self, ClientError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(spec.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = spec.tls.as_ref();
        if tls.is_some_and(|tls| tls.insecure_skip_verify) {
            tracing::warn!(
                upstream = %spec.name,
                "upstream certificates are not verified (tls.insecure_skip_verify): for tests only"
            );
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(super::tls::client_config(tls)?)
            .https_or_http();
        // `server_name`: the SNI sent and the name checked, whatever the URL's host.
        let connector = match tls.and_then(|tls| tls.server_name.clone()) {
            Some(name) => connector.with_server_name_resolver(FixedServerNameResolver::new(name)),
            None => connector,
        };
        let connector = connector.enable_all_versions().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(spec.pool_idle_timeout)
            .pool_max_idle_per_host(spec.pool_idle_per_host)
            .http2_only(spec.h2c)
            .build(connector);
        Ok(Self { client })
    }

    /// Sends one request. `uri` is absolute (`http://host:port/path?query`).
    pub async fn send(
        &self,
        method: Method,
        uri: Uri,
        mut headers: HeaderMap,
        body: RequestBody,
    ) -> Result<Response<Incoming>, SendError> {
        if method == Method::HEAD {
            // hyper would pool the connection the moment the head is read, before a stray
            // body could arrive: asking for the close keeps it out of the pool from the
            // start. (HTTP/2 drops the field; its streams are framed.)
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let connection = capture_connection(&mut request);
        let response = self.client.request(request).await?;
        let headers = response.headers();
        let two_framings =
            headers.contains_key(TRANSFER_ENCODING) && headers.contains_key(CONTENT_LENGTH);
        let bodiless = matches!(
            response.status(),
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        );
        if (two_framings || bodiless)
            && response.version() != Version::HTTP_2
            && let Some(connected) = connection.connection_metadata().as_ref()
        {
            // Not reused: checked out again, the connection is dropped. (hyper may have
            // pooled it as the head arrived; this runs in the same poll that got the head.)
            connected.poison();
        }
        if two_framings {
            return Err(SendError::Framing);
        }
        Ok(response)
    }
}
