//! Test support: mock upstreams built per test (routes, latency, status, misbehaviour,
//! hit counts, recorded requests) and a gateway started from TOML on `127.0.0.1:0`.
#![allow(dead_code)]

use bytes::Bytes;
use fanout::config::{Env, load_str, validate};
use fanout::gateway::Gateway;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Clone, Debug)]
enum Behaviour {
    Answer,
    /// Never answers.
    Hang,
    /// Closes the connection without answering.
    Reset,
    /// Answers with the request body.
    Echo,
}

/// What a mock route answers.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    body: Bytes,
    latency: Duration,
    headers: Vec<(String, String)>,
    behaviour: Behaviour,
}

impl Reply {
    /// 200 with this JSON text.
    pub fn json(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: Bytes::from(body.into()),
            latency: Duration::ZERO,
            headers: vec![("content-type".into(), "application/json".into())],
            behaviour: Behaviour::Answer,
        }
    }

    /// 200 with these bytes and no content type.
    pub fn raw(body: impl Into<Bytes>) -> Self {
        Self {
            headers: Vec::new(),
            ..Self::json("").body_bytes(body.into())
        }
    }

    fn body_bytes(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }

    pub fn hang() -> Self {
        Self {
            behaviour: Behaviour::Hang,
            ..Self::json("")
        }
    }

    pub fn reset() -> Self {
        Self {
            behaviour: Behaviour::Reset,
            ..Self::json("")
        }
    }

    pub fn echo() -> Self {
        Self {
            behaviour: Behaviour::Echo,
            ..Self::json("")
        }
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// Path and query exactly as they arrived (still percent-encoded).
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
struct MockState {
    routes: Vec<(String, Reply)>,
    hits: Mutex<HashMap<String, usize>>,
    requests: Mutex<Vec<Recorded>>,
}

/// Builds a mock upstream: `MockUpstream::builder().route("/users/1", Reply::json(..))`.
#[derive(Default)]
pub struct MockBuilder {
    routes: Vec<(String, Reply)>,
}

impl MockBuilder {
    /// Answers requests whose path is exactly `path` (`*` matches every path).
    pub fn route(mut self, path: &str, reply: Reply) -> Self {
        self.routes.push((path.into(), reply));
        self
    }

    pub async fn start(self) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(MockState {
            routes: self.routes,
            ..Default::default()
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        MockUpstream { addr, state, task }
    }
}

/// A running mock upstream. Stops when dropped.
pub struct MockUpstream {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    task: JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received for `path` (query ignored).
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<MockState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |r| handle(state.clone(), r));
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    state: Arc<MockState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    state.requests.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let reply = state
        .routes
        .iter()
        .find(|(p, _)| *p == path)
        .or_else(|| state.routes.iter().find(|(p, _)| p == "*"))
        .map(|(_, r)| r.clone());
    let Some(reply) = reply else {
        let mut r = Response::new(Full::new(Bytes::from_static(
            br#"{"error":"no mock route"}"#,
        )));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    };
    tokio::time::sleep(reply.latency).await;
    let out = match reply.behaviour {
        Behaviour::Hang => std::future::pending::<Bytes>().await,
        Behaviour::Reset => return Err(std::io::Error::other("mock reset")),
        Behaviour::Echo => body,
        Behaviour::Answer => reply.body.clone(),
    };
    let mut response = Response::new(Full::new(out));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (k, v) in &reply.headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    Ok::<_, std::io::Error>(response)
}

/// A gateway serving on `127.0.0.1:0`.
pub struct TestGateway {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts graceful shutdown and returns the server task, which ends once drained.
    pub fn shutdown(&mut self) -> JoinHandle<std::io::Result<()>> {
        let _ = self.shutdown.take().map(|tx| tx.send(()));
        self.task.take().expect("shutdown once")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Loads, validates and serves `toml` (no environment) on an ephemeral port.
pub async fn start_gateway(toml: &str) -> TestGateway {
    let raw =
        load_str(toml, &Env::default()).unwrap_or_else(|e| panic!("config does not load:\n{e}"));
    let compiled = validate(&raw).unwrap_or_else(|e| panic!("config is not valid:\n{e}"));
    let gateway = Gateway::build(compiled).expect("gateway builds");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let live = Arc::new(arc_swap::ArcSwap::from_pointee(gateway));
    let task = tokio::spawn(fanout::server::run(listener, live, async {
        let _ = rx.await;
    }));
    TestGateway {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// A test HTTP client: no pooling surprises, no decompression, no redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// GETs `url` and returns status, headers and body parsed as JSON (or `Null`).
pub async fn get_json(url: &str) -> (StatusCode, HeaderMap, serde_json::Value) {
    let response = client().get(url).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

/// An address nothing listens on.
pub async fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// Sends `request` as raw bytes and returns everything the server sends back until it
/// closes the connection (for requests an HTTP client would refuse or normalize).
pub async fn raw_request(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
