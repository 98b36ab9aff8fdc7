//! The gateway under test in the test's process: started from TOML on an ephemeral
//! port, reloadable from a file; scratch directories; the HTTP clients tests call it with.

use fanout::config::{Env, compile, compile_file};
use fanout::gateway::Gateway;
use fanout::gateway::LiveGateway;
use fanout::reload::Reloader;
use http::{HeaderMap, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
