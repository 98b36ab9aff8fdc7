//! Test support: mock upstreams built per test (routes, latency, status, misbehaviour,
//! streams, hit counts, recorded requests), a gateway started from TOML on
//! `127.0.0.1:0`, and the gateway binary as its own process for memory measurements.
//!
//! Times the mock records (arrivals, a gate's opening) are tokio instants: under a
//! paused clock (`#[tokio::test(start_paused = true)]`) they are the test's virtual time.

mod eventually;
pub mod otlp;
pub mod redis;
pub mod tls;

pub use eventually::{eventually, eventually_some};

use bytes::Bytes;
use fanout::config::{Env, compile, compile_file};
use fanout::gateway::Gateway;
use fanout::gateway::LiveGateway;
use fanout::reload::Reloader;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

#[derive(Clone, Debug)]
enum Behaviour {
    Answer,
    /// Never answers.
    Hang,
    /// Closes the connection without answering.
    Reset,
    /// Answers with the request body.
    Echo,
    /// Reads the request body as a stream, counting bytes: `{"received": N}`.
    Sink,
    /// Streams this many bytes, in 64 KiB chunks.
    Source(u64),
    /// Streams `count` chunks of `text` + index + newline, one every `every`.
    Events {
        count: usize,
        every: Duration,
        text: &'static str,
    },
    /// The n-th request to this path gets the n-th reply, cycling.
    Sequence(Vec<Reply>),
}

/// What a mock route answers.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    body: Bytes,
    latency: Duration,
    headers: Vec<(String, String)>,
    behaviour: Behaviour,
    /// `{header.NAME}` in the body and header values is the request's `NAME` values.
    templated: bool,
    /// The answer waits until this gate opens.
    gate: Option<Gate>,
}

/// Holds answers back until the test opens it, and remembers when it did, so a test can
/// tell requests that arrived before from those after (from the mock's arrival times).
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::watch::Sender<Option<Instant>>>);

impl Default for Gate {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl Gate {
    /// Lets every held answer go, and every later one through at once.
    pub fn open(&self) {
        self.0.send_replace(Some(Instant::now()));
    }

    /// When it was opened.
    pub fn opened(&self) -> Option<Instant> {
        *self.0.borrow()
    }

    async fn pass(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }
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
            templated: false,
            gate: None,
        }
    }

    /// 200 with these bytes and no content type.
    pub fn raw(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            headers: Vec::new(),
            ..Self::json("")
        }
    }

    fn with(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            headers: Vec::new(),
            ..Self::json("")
        }
    }

    pub fn hang() -> Self {
        Self::with(Behaviour::Hang)
    }

    pub fn reset() -> Self {
        Self::with(Behaviour::Reset)
    }

    pub fn echo() -> Self {
        Self::with(Behaviour::Echo)
    }

    pub fn sink() -> Self {
        Self::with(Behaviour::Sink)
    }

    pub fn source(bytes: u64) -> Self {
        Self::with(Behaviour::Source(bytes))
    }

    /// A stream of `count` chunks `"{text}{i}\n"`, one every `every` (server-sent events
    /// with `text = "data: "`, NDJSON with a JSON prefix).
    pub fn events(count: usize, every: Duration, text: &'static str, content_type: &str) -> Self {
        Self::with(Behaviour::Events { count, every, text }).header("content-type", content_type)
    }

    /// Answers each request to the path with the next of `replies`, starting over after
    /// the last (`[slow, fast]` is slow on every other call).
    pub fn sequence(replies: Vec<Reply>) -> Self {
        Self::with(Behaviour::Sequence(replies))
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

    /// Fills `{header.NAME}` in the body and header values with the request's values of
    /// `NAME`, joined by ", " (empty when it has none): an answer per caller.
    pub fn templated(mut self) -> Self {
        self.templated = true;
        self
    }

    /// Holds the answer until `gate` opens.
    pub fn gated(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }
}

/// `text` with each `{header.NAME}` replaced by the values of `NAME` in `headers`.
fn fill_template(text: &str, headers: &HeaderMap) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("{header.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 8..];
        let Some(end) = after.find('}') else {
            break;
        };
        let values: Vec<&str> = headers
            .get_all(&after[..end])
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        out.push_str(&values.join(", "));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// Path and query exactly as they arrived (still percent-encoded).
    pub target: String,
    pub headers: HeaderMap,
    /// Empty for sinks, which never hold a body.
    pub body: Bytes,
    /// When the request's head arrived.
    pub arrived: Instant,
}

#[derive(Default)]
struct MockState {
    routes: Mutex<Vec<(String, Reply)>>,
    hits: Mutex<HashMap<String, usize>>,
    requests: Mutex<Vec<Recorded>>,
    /// Streams whose reader went away before the end, and hanging answers whose
    /// caller closed the connection.
    cancelled: AtomicUsize,
    /// Bytes sinks have read so far.
    sunk: AtomicU64,
    /// Requests between arrival and their answer's headers.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// Counts a request in flight until its answer's headers are ready.
struct InFlight(Arc<MockState>);

impl InFlight {
    fn enter(state: &Arc<MockState>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
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
            routes: Mutex::new(self.routes),
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

    /// Changes what `path` answers from now on.
    pub fn set_reply(&self, path: &str, reply: Reply) {
        let mut routes = self.state.routes.lock().unwrap();
        routes.retain(|(p, _)| p != path);
        routes.insert(0, (path.into(), reply));
    }

    /// Response streams abandoned by their reader before the end, and hanging answers
    /// (`Reply::hang`) whose caller closed the connection.
    pub fn cancelled(&self) -> usize {
        self.state.cancelled.load(Ordering::SeqCst)
    }

    /// Bytes read by sinks so far.
    pub fn sunk(&self) -> u64 {
        self.state.sunk.load(Ordering::SeqCst)
    }

    /// The most requests this upstream has had in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.state.peak_in_flight.load(Ordering::SeqCst)
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
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn whole(bytes: Bytes) -> MockBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Counts a stream as cancelled if it is dropped before its end.
struct EndGuard {
    state: Arc<MockState>,
    finished: bool,
}

impl EndGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn handle(
    state: Arc<MockState>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, std::io::Error> {
    let arrived = Instant::now();
    let _in_flight = InFlight::enter(&state);
    let (parts, mut body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let nth = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let reply = {
        let routes = state.routes.lock().unwrap();
        routes
            .iter()
            .find(|(p, _)| *p == path)
            .or_else(|| routes.iter().find(|(p, _)| p == "*"))
            .map(|(_, r)| r.clone())
    };
    let reply = match reply {
        Some(Reply {
            behaviour: Behaviour::Sequence(replies),
            ..
        }) => Some(replies[(nth - 1) % replies.len()].clone()),
        other => other,
    };
    let sink = matches!(
        reply,
        Some(Reply {
            behaviour: Behaviour::Sink,
            ..
        })
    );
    let received = if sink {
        // Streamed: counted, never held.
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            if let Some(data) = frame.data_ref() {
                n += data.len() as u64;
                state.sunk.fetch_add(data.len() as u64, Ordering::SeqCst);
            }
        }
        Bytes::from(format!(r#"{{"received":{n}}}"#))
    } else {
        body.collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default()
    };
    state.requests.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body: if sink { Bytes::new() } else { received.clone() },
        arrived,
    });
    let Some(reply) = reply else {
        let mut r = Response::new(whole(Bytes::from_static(br#"{"error":"no mock route"}"#)));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    };
    tokio::time::sleep(reply.latency).await;
    if let Some(gate) = &reply.gate {
        gate.pass().await;
    }
    let reply = if reply.templated {
        Reply {
            body: Bytes::from(fill_template(
                std::str::from_utf8(&reply.body).unwrap(),
                &parts.headers,
            )),
            headers: reply
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), fill_template(v, &parts.headers)))
                .collect(),
            ..reply
        }
    } else {
        reply
    };
    let out = match reply.behaviour {
        Behaviour::Sequence(_) => unreachable!("a sequence was resolved to one of its replies"),
        Behaviour::Hang => {
            // Dropped only when the caller goes away: counted as cancelled.
            let _guard = EndGuard {
                state: state.clone(),
                finished: false,
            };
            std::future::pending::<MockBody>().await
        }
        Behaviour::Reset => return Err(std::io::Error::other("mock reset")),
        Behaviour::Echo | Behaviour::Sink => whole(received),
        Behaviour::Answer => whole(reply.body.clone()),
        Behaviour::Source(total) => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let guard = EndGuard {
                state: state.clone(),
                finished: false,
            };
            let stream = futures_util::stream::unfold((total, guard), move |(left, mut guard)| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        guard.finish();
                        return None;
                    }
                    let n = left.min(chunk.len() as u64);
                    let frame = Frame::data(chunk.slice(..n as usize));
                    Some((Ok::<_, std::io::Error>(frame), (left - n, guard)))
                }
            });
            StreamBody::new(stream).boxed()
        }
        Behaviour::Events { count, every, text } => {
            let guard = EndGuard {
                state: state.clone(),
                finished: false,
            };
            let stream =
                futures_util::stream::unfold((0usize, guard), move |(i, mut guard)| async move {
                    if i == count {
                        guard.finish();
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(every).await;
                    }
                    let frame = Frame::data(Bytes::from(format!("{text}{i}\n")));
                    Some((Ok::<_, std::io::Error>(frame), (i + 1, guard)))
                });
            StreamBody::new(stream).boxed()
        }
    };
    let mut response = Response::new(out);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (k, v) in &reply.headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    Ok(response)
}

/// An `[upstreams.NAME]` section for `url` with a 2 s timeout.
pub fn upstream_toml(name: &str, url: &str) -> String {
    format!("[upstreams.{name}]\nurl = \"{url}\"\ntimeout = \"2s\"\n")
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
    start_gateway_on(toml, "127.0.0.1:0").await
}

/// Like [`start_gateway`], listening on `listen` (`"[::]:0"`: dual-stack, where an IPv4
/// client's address arrives as `::ffff:a.b.c.d`).
pub async fn start_gateway_on(toml: &str, listen: &str) -> TestGateway {
    let mut compiled =
        compile(toml, &Env::default()).unwrap_or_else(|e| panic!("config is not valid:\n{e}"));
    quiet(&mut compiled, toml);
    let live = Arc::new(arc_swap::ArcSwap::from_pointee(
        Gateway::build(compiled, None).expect("gateway builds"),
    ));
    serve_on(live, listen).await
}

/// Turns the access log off for a gateway in the test process whose config does not
/// set `[access_log]`: its default, stderr, is the test runner's output.
fn quiet(compiled: &mut fanout::config::Compiled, toml: &str) {
    if !toml.contains("[access_log]") {
        compiled.access_log.enabled = false;
    }
}

pub async fn serve(live: LiveGateway) -> TestGateway {
    serve_on(live, "127.0.0.1:0").await
}

async fn serve_on(live: LiveGateway, listen: &str) -> TestGateway {
    let listener = TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(fanout::server::run(listener, live, async {
        let _ = rx.await;
    }));
    TestGateway {
        addr,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// A gateway serving a config file that can be edited and reloaded.
pub struct ReloadableGateway {
    pub gateway: TestGateway,
    /// The admin listener's address.
    pub admin: SocketAddr,
    pub reloader: Arc<Reloader>,
    pub live: LiveGateway,
    pub path: std::path::PathBuf,
}

impl ReloadableGateway {
    /// Replaces the config file as editors do: write a temporary file, rename it over.
    pub fn write(&self, toml: &str) {
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(&tmp, toml).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

/// The directory this test process keeps its files in: `fanout-tests-PID` under the
/// system's temporary directory. A test binary has no teardown to remove it, so the
/// first call removes the ones whose process is gone (on Linux, where `/proc` says).
pub fn scratch_root() -> &'static std::path::Path {
    static ROOT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if cfg!(target_os = "linux") {
            for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let gone = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("fanout-tests-"))
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
                if gone {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let root = tmp.join(format!("fanout-tests-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        root
    })
}

/// A new, empty directory for one test's files, named after `what` and unique in
/// the run, under [`scratch_root`].
pub fn scratch_dir(what: &str) -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = scratch_root().join(format!("{what}-{}", NEXT.fetch_add(1, Ordering::SeqCst)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The lines written to the file at `path` so far (none when it does not exist yet).
pub fn file_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Serves `toml` from a file of its own, with a reloader (and no watcher).
pub async fn start_reloadable(toml: &str) -> ReloadableGateway {
    let dir = scratch_dir("reload");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let mut compiled = compile_file(&path, &Env::default())
        .unwrap_or_else(|e| panic!("config is not valid:\n{e}"));
    quiet(&mut compiled, toml);
    let live: LiveGateway = Arc::new(arc_swap::ArcSwap::from_pointee(
        Gateway::build(compiled, None).unwrap(),
    ));
    let reloader = Reloader::new(&path, live.clone());
    let gateway = serve(live.clone()).await;
    let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = admin_listener.local_addr().unwrap();
    tokio::spawn(fanout::admin::run(
        admin_listener,
        live.clone(),
        reloader.clone(),
        std::future::pending(),
    ));
    ReloadableGateway {
        gateway,
        admin,
        reloader,
        live,
        path,
    }
}

/// A test HTTP client: no decompression, no redirects, no proxy.
pub fn client() -> reqwest::Client {
    // reqwest is built without a crypto provider of its own: use the gateway's (ring),
    // installed once per process (a second install is refused, harmlessly).
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// GETs `url` and returns the body as text.
pub async fn get_text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The body of `response`, parsed as JSON.
pub async fn json_of(response: reqwest::Response) -> serde_json::Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
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

/// The gateway binary, run as its own process so its memory can be measured apart from
/// the test's clients and mocks. Killed when dropped.
pub struct GatewayProcess {
    pub addr: SocketAddr,
    /// The config file it serves.
    pub path: std::path::PathBuf,
    child: std::process::Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl GatewayProcess {
    /// Starts `fanout run` on `toml`, whose listen address must be `127.0.0.1:0`; its
    /// admin listener goes to a free port too.
    pub fn start(toml: &str) -> Self {
        Self::start_with(toml, &[])
    }

    /// Like [`GatewayProcess::start`], with extra arguments before `run`.
    pub fn start_with(toml: &str, args: &[&str]) -> Self {
        Self::spawn(toml, args, &[], None)
    }

    /// Like [`GatewayProcess::start_with`], with these environment variables set.
    pub fn start_env(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(toml, args, env, None)
    }

    /// Like [`GatewayProcess::start`], allowed at most `nofile` open file descriptors
    /// (`ulimit -n` in a shell that then becomes the gateway).
    pub fn start_limited(toml: &str, nofile: u32) -> Self {
        Self::spawn(toml, &[], &[], Some(nofile))
    }

    fn spawn(toml: &str, args: &[&str], env: &[(&str, &str)], nofile: Option<u32>) -> Self {
        let toml = toml.replacen(
            "[server]\n",
            "[server]\nadmin_listen = \"127.0.0.1:0\"\n",
            1,
        );
        use std::io::BufRead;
        let dir = scratch_dir("proc");
        let path = dir.join("gateway.toml");
        std::fs::write(&path, &toml).unwrap();
        let binary = env!("CARGO_BIN_EXE_fanout");
        let mut command = match nofile {
            None => std::process::Command::new(binary),
            Some(n) => {
                let mut sh = std::process::Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(binary);
                sh
            }
        };
        let mut child = command
            .args(args)
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let addr = loop {
            let line = lines
                .next()
                .expect("the gateway exited before listening")
                .unwrap();
            logs.lock().unwrap().push(line.clone());
            // The admin listener logs its own address; skip its line.
            if line.contains("admin") {
                continue;
            }
            if let Some(addr) = logged_addr(&line) {
                break addr;
            }
        };
        // Keep draining its log so the process never blocks on a full pipe.
        let sink = logs.clone();
        std::thread::spawn(move || {
            lines
                .map_while(Result::ok)
                .for_each(|l| sink.lock().unwrap().push(l))
        });
        Self {
            addr,
            path,
            child,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The admin listener's address, once it has logged it (within 10 s).
    pub fn admin_addr(&self) -> SocketAddr {
        let started = std::time::Instant::now();
        loop {
            let found = self
                .logs()
                .iter()
                .filter(|l| l.contains("admin listening"))
                .find_map(|l| logged_addr(l));
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no admin listener in the log"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it has logged so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends it `signal` (`"USR1"`, `"TERM"`, ...), as `kill -SIGNAL PID` does.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Sends SIGTERM and waits for the process to exit (within its shutdown grace).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.wait().unwrap()
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// Resident memory now (VmRSS), in bytes.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// CPU time (user and system, every thread) used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // USER_HZ is 100 on every Linux the tests run on.
        Duration::from_millis(ticks * 10)
    }

    /// Open file descriptors now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }
}

/// The `addr=` of a log line, in text or JSON format.
fn logged_addr(line: &str) -> Option<SocketAddr> {
    if let Some(at) = line.find("addr=") {
        return line[at + 5..].split_whitespace().next()?.parse().ok();
    }
    let at = line.find("\"addr\":\"")?;
    line[at + 8..].split('"').next()?.parse().ok()
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A wire-level upstream for answers hyper's server would not write (chunks split across
/// writes, interim 1xx, no length, garbage, truncation, bodies where none belong). It
/// reads each request (its head, and a body of its `Content-Length`) and writes the
/// scripted pieces; after `per_connection` answers it closes the connection without
/// saying so, as an upstream with a short keep-alive does. With `Close::OnNextRequest`
/// the close waits until the next request has arrived: the race in which a pooled
/// connection is taken just as the upstream gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    AfterAnswer,
    OnNextRequest,
}

/// One piece of a scripted answer: written after a pause.
pub type Piece = (Duration, String);

/// What a scripted upstream writes for one request, given the request's head as text.
pub type Script = Arc<dyn Fn(&str) -> Vec<Piece> + Send + Sync>;

pub struct RawUpstream {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    written: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    /// Answers every request with `pieces`, 20 ms apart.
    pub async fn start(pieces: Vec<&'static str>, per_connection: usize, close: Close) -> Self {
        Self::scripted(per_connection, close, move |_| {
            pieces
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    (
                        Duration::from_millis(if i > 0 { 20 } else { 0 }),
                        p.to_string(),
                    )
                })
                .collect()
        })
        .await
    }

    /// Answers each request with what `script` makes of its head.
    pub async fn scripted(
        per_connection: usize,
        close: Close,
        script: impl Fn(&str) -> Vec<Piece> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let written = Arc::new(AtomicUsize::new(0));
        let script: Script = Arc::new(script);
        let (conns, seen) = (
            connections.clone(),
            Seen {
                requests: requests.clone(),
                heads: heads.clone(),
                written: written.clone(),
            },
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                // Each piece leaves when written, not when the last one is acknowledged.
                let _ = stream.set_nodelay(true);
                let (script, seen) = (script.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ =
                        raw_connection(&mut stream, per_connection, close, &script, &seen).await;
                });
            }
        });
        Self {
            addr,
            connections,
            requests,
            heads,
            written,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests answered (or being answered) so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The heads of the requests received so far, as text.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Scripted pieces written so far, on every connection.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }
}

/// What a [`RawUpstream`] counts, shared by its connections.
#[derive(Clone)]
struct Seen {
    requests: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    written: Arc<AtomicUsize>,
}

/// Serves one connection of a [`RawUpstream`]; an error or the peer's close ends it.
async fn raw_connection(
    stream: &mut tokio::net::TcpStream,
    per_connection: usize,
    close: Close,
    script: &Script,
    seen_by: &Seen,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    for answered in 0..=per_connection {
        if answered == per_connection && close == Close::AfterAnswer {
            return Ok(());
        }
        let head_end = loop {
            if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await? {
                0 => return Ok(()),
                n => seen.extend_from_slice(&chunk[..n]),
            }
        };
        if answered == per_connection {
            return Ok(());
        }
        let head = String::from_utf8_lossy(&seen[..head_end]).into_owned();
        let body_len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.trim().parse().unwrap());
        while seen.len() < head_end + body_len {
            match stream.read(&mut chunk).await? {
                0 => return Ok(()),
                n => seen.extend_from_slice(&chunk[..n]),
            }
        }
        // What follows this request (a pipelined one) stays for the next turn.
        seen.drain(..head_end + body_len);
        seen_by.requests.fetch_add(1, Ordering::SeqCst);
        seen_by.heads.lock().unwrap().push(head.clone());
        for (pause, piece) in script(&head) {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            stream.write_all(piece.as_bytes()).await?;
            seen_by.written.fetch_add(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An `errors_field` entry without its `duration_ms`, which a test cannot pin (the
/// call's real time); checked to be there, a number.
pub fn without_duration(entry: &serde_json::Value) -> serde_json::Value {
    let mut entry = entry.clone();
    let took = entry.as_object_mut().and_then(|e| e.remove("duration_ms"));
    assert!(
        took.as_ref().is_some_and(serde_json::Value::is_number),
        "{entry}"
    );
    entry
}

/// `body` with every entry of its `field` (an `errors_field`) [`without_duration`].
pub fn without_durations(body: &serde_json::Value, field: &str) -> serde_json::Value {
    let mut body = body.clone();
    if let Some(errors) = body.get_mut(field).and_then(|e| e.as_object_mut()) {
        for entry in errors.values_mut() {
            *entry = without_duration(entry);
        }
    }
    body
}

/// Merged body text with each `,"duration_ms":N` taken out, for tests that pin the
/// text byte for byte.
pub fn strip_durations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(",\"duration_ms\":") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 15..];
        let end = after.find(['}', ',']).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}
