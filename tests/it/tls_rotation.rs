//! Live rotation of the gateway's certificates over real sockets: the files are
//! replaced under a stream of new TLS connections, the new certificate serves without a
//! failed request, and a mismatched or expired pair written over them is kept out while
//! `fanout check` names it.

use crate::common;

use common::tls::{DAY, Issued, TestCa, TlsClient};
use common::{eventually, eventually_some, scratch_dir, start_reloadable};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::SystemTime;

/// Opens new TLS connections and sends a request on each until stopped, counting
/// answers and failures.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(addr: SocketAddr, client: TlsClient) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    match client.get(addr, "localhost", "/healthz").await {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        other => failed.lock().unwrap().push(format!("{other:?}")),
                    }
                }
            }
        });
        Load {
            stop,
            ok,
            failed,
            task,
        }
    }

    /// Waits until `n` more requests were answered (the load ran across what came before).
    async fn passes(&self, n: usize) {
        let from = self.ok.load(Ordering::SeqCst);
        eventually("requests under load", async || {
            self.ok.load(Ordering::SeqCst) >= from + n
        })
        .await;
    }

    async fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::SeqCst), failed)
    }
}

async fn served(addr: SocketAddr) -> Vec<u8> {
    let conn = TlsClient::new().connect(addr, "localhost").await.unwrap();
    common::tls::serial_of(&conn.peer_certificate().unwrap())
}

/// `fanout check` on `config`: exit code, stdout and stderr.
fn fanout_check(config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Writes `cert`'s certificate and `key`'s key over the files, as a deployment does.
fn replace_pair(cert: &Issued, key: &Issued, cert_path: &Path, key_path: &Path) {
    let mixed = Issued {
        key_pem: key.key_pem.clone(),
        ..cert.clone()
    };
    mixed.replace(cert_path, key_path);
}

/// The files are replaced while a client opens new connections in a loop: the new
/// certificate is served afterwards with no failed request, the reload says which
/// certificate changed, and the config text never changed. A mismatched pair, then an
/// expired pair, written over the files are refused by the reload (the rotated
/// certificate keeps serving) and by `fanout check`, each with its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_serves_the_new_pair_and_keeps_bad_ones_out() {
    let dir = scratch_dir("tls-rotate");
    let ca = TestCa::new("rotation CA");
    let first = ca.server(&["localhost"]);
    let (cert, key) = first.write(&dir, "tls");
    let gw = start_reloadable(&format!(
        "[access_log]\nenabled = false\n[server]\nhealth_path = \"/healthz\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;
    let _watch = fanout::reload::watch_tls(gw.reloader.clone()).unwrap();
    let addr = gw.gateway.addr;
    assert_eq!(served(addr).await, first.serial);
    let load = Load::start(addr, TlsClient::new().roots(&ca));
    load.passes(20).await;

    let second = ca.server(&["localhost"]);
    second.replace(&cert, &key);
    eventually_some("the new certificate to be served", async || {
        (served(addr).await == second.serial).then_some(())
    })
    .await;
    load.passes(20).await;
    let status = gw.reloader.status();
    assert!(status.ok, "{status:?}");
    assert_eq!(status.trigger, "tls_files");
    assert!(
        status
            .changes
            .values
            .iter()
            .any(|v| v.place == "server.tls.cert"),
        "{:?}",
        status.changes
    );

    let third = ca.server(&["localhost"]);
    let fourth = ca.server(&["localhost"]);
    replace_pair(&third, &fourth, &cert, &key);
    eventually("the mismatched pair to be refused", async || {
        let s = gw.reloader.status();
        !s.ok && s.trigger == "tls_files"
    })
    .await;
    assert!(
        gw.reloader
            .status()
            .problems
            .iter()
            .any(|p| p.starts_with("server.tls.key: ") && p.contains("is not the key of")),
        "{:?}",
        gw.reloader.status().problems
    );
    load.passes(20).await;
    assert_eq!(served(addr).await, second.serial);
    let (code, _, stderr) = fanout_check(&gw.path);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("server.tls.key: ") && stderr.contains("is not the key of"),
        "{stderr}"
    );

    // Back to a good pair, then over it an expired one.
    second.replace(&cert, &key);
    eventually("the good pair to be back", async || gw.reloader.status().ok).await;
    let now = SystemTime::now();
    let expired = ca.server_valid(&["localhost"], now - 60 * DAY, now - DAY);
    expired.replace(&cert, &key);
    eventually("the expired pair to be refused", async || {
        let s = gw.reloader.status();
        !s.ok && s.problems.iter().any(|p| p.contains("expired at"))
    })
    .await;
    load.passes(20).await;
    assert_eq!(served(addr).await, second.serial);
    let (code, _, stderr) = fanout_check(&gw.path);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("server.tls.cert: ") && stderr.contains("expired at"),
        "{stderr}"
    );

    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} failed of {}: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
}

/// A Kubernetes secret volume: the files are symlinks through `..data`, and an update
/// swaps that one symlink to a new directory. The swap is seen and the new pair served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_secret_volume_symlink_rotates_the_certificate() {
    let dir = scratch_dir("tls-k8s");
    let ca = TestCa::new("k8s CA");
    let first = ca.server(&["localhost"]);
    let second = ca.server(&["localhost"]);
    for (version, issued) in [("..v1", &first), ("..v2", &second)] {
        std::fs::create_dir(dir.join(version)).unwrap();
        issued.write(&dir.join(version), "tls");
    }
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    for file in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).unwrap();
    }
    let gw = start_reloadable(&format!(
        "[access_log]\nenabled = false\n[server]\nhealth_path = \"/healthz\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("tls.crt").display(),
        dir.join("tls.key").display()
    ))
    .await;
    let _watch = fanout::reload::watch_tls(gw.reloader.clone()).unwrap();
    let addr = gw.gateway.addr;
    assert_eq!(served(addr).await, first.serial);

    // What kubelet does: a new symlink beside, renamed over `..data`.
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    eventually_some("the new certificate to be served", async || {
        (served(addr).await == second.serial).then_some(())
    })
    .await;
}

/// A certificate that expires within 14 days: `fanout check` exits 0 and prints a
/// warning with the place.
#[test]
fn check_prints_the_fourteen_day_warning_and_exits_0() {
    let dir = scratch_dir("tls-check-warning");
    let ca = TestCa::new("warning CA");
    let now = SystemTime::now();
    let soon = ca.server_valid(&["soon.test"], now - DAY, now + 5 * DAY);
    let (cert, key) = soon.write(&dir, "soon");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[[server.tls.certs]]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = fanout_check(&config);
    assert_eq!(code, Some(0), "{stderr}");
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning in {stdout}"));
    assert!(
        warning.starts_with("warning: server.tls.certs[0].cert: ")
            && warning.contains("renew it soon"),
        "{warning}"
    );
}

/// The binary: a certificate close to expiry is logged as a warning at start, and the
/// watch `fanout run` starts swaps in a replaced pair (trigger `tls_files`) without an
/// edit of the config.
#[tokio::test]
async fn the_binary_warns_at_start_and_rotates_on_a_file_change() {
    let dir = scratch_dir("tls-binary");
    let ca = TestCa::new("binary CA");
    let now = SystemTime::now();
    let soon = ca.server_valid(&["localhost"], now - DAY, now + 3 * DAY);
    let (cert, key) = soon.write(&dir, "tls");
    let gw = common::GatewayProcess::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nhealth_path = \"/healthz\"\n\
         [access_log]\nenabled = false\n\
         [server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let warned = |logs: &[String]| {
        logs.iter()
            .filter(|l| l.contains("config warning") && l.contains("server.tls.cert"))
            .count()
    };
    assert_eq!(warned(&gw.logs()), 1, "{:#?}", gw.logs());
    assert_eq!(served(gw.addr).await, soon.serial);

    let renewed = ca.server(&["localhost"]);
    renewed.replace(&cert, &key);
    eventually_some("the renewed certificate to be served", async || {
        (served(gw.addr).await == renewed.serial).then_some(())
    })
    .await;
    eventually("the reload to be logged", async || {
        gw.logs()
            .iter()
            .any(|l| l.contains("config reloaded") && l.contains("tls_files"))
    })
    .await;
    // The renewed certificate is far from expiry: no new warning.
    assert_eq!(warned(&gw.logs()), 1, "{:#?}", gw.logs());
}

/// A reload that leaves `[server.tls]` as it was keeps the sessions clients resume; one
/// that changes the certificate starts afresh, so no session outlives the certificate
/// it was made under.
#[tokio::test]
async fn sessions_resume_across_a_reload_until_the_certificate_changes() {
    let dir = scratch_dir("tls-resume");
    let ca = TestCa::new("resume CA");
    let (c1, k1) = ca.server(&["localhost"]).write(&dir, "one");
    let (c2, k2) = ca.server(&["localhost"]).write(&dir, "two");
    let config = |cert: &Path, key: &Path, health: &str| {
        format!(
            "[access_log]\nenabled = false\n[server]\nhealth_path = \"{health}\"\n\
             [server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        )
    };
    let gw = start_reloadable(&config(&c1, &k1, "/a")).await;
    let addr = gw.gateway.addr;
    let client = TlsClient::new().roots(&ca).resuming();
    let get = async |path| {
        let (response, resumed) = client.get(addr, "localhost", path).await.unwrap();
        (response.status, resumed)
    };
    assert_eq!(get("/a").await, (200, false));
    assert_eq!(get("/a").await, (200, true), "resumed before any reload");

    // The config changes, [server.tls] does not: the session store carries over.
    gw.write(&config(&c1, &k1, "/b"));
    gw.reloader.reload("test").unwrap();
    assert_eq!(get("/b").await, (200, true), "resumed across a reload");

    // A new certificate: a full handshake, then resumption again under it.
    gw.write(&config(&c2, &k2, "/b"));
    gw.reloader.reload("test").unwrap();
    assert_eq!(
        get("/b").await,
        (200, false),
        "a new certificate, a new handshake"
    );
    assert_eq!(get("/b").await, (200, true));
}
