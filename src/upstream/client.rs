//! The HTTP client of one upstream: hyper's pooled client over a connector that speaks
//! plain TCP or TLS (rustls, with the platform's certificate verifier; HTTP/2 when the
//! server offers it through ALPN). A request goes out as it is built here: its URI is
//! parsed once, and nothing is added but `Host`.

use crate::config::UpstreamSpec;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_platform_verifier::ConfigVerifierExt;

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

/// The error of one request: refused, reset, timed out connecting, or a malformed answer.
pub type SendError = hyper_util::client::legacy::Error;

impl HttpClient {
    /// A pool as `spec` says. Redirects are never followed: an aggregate treats a 3xx as
    /// a failure and a proxy hands it to the client, as nginx does.
    pub fn new(spec: &UpstreamSpec) -> Result<Self, ClientError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(spec.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let tls = rustls::ClientConfig::with_platform_verifier()?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(spec.pool_idle_timeout)
            .pool_max_idle_per_host(spec.pool_idle_per_host)
            .build(connector);
        Ok(Self { client })
    }

    /// Sends one request. `uri` is absolute (`http://host:port/path?query`).
    pub async fn send(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: RequestBody,
    ) -> Result<Response<Incoming>, SendError> {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        self.client.request(request).await
    }
}
