//! Live config: on a file change (debounced, renames included), SIGHUP, the admin
//! `POST /reload`, or a change to a `[server.tls]` certificate, key or client CA file,
//! the whole new config is loaded, validated and built first, then swapped in at once.
//! Requests in flight finish on the snapshot they started with; an invalid edit (or a
//! certificate that does not match its key) is logged with every problem and the old
//! config keeps serving.

use crate::config::{Compiled, Env, ServerSpec, compile_file};
pub use crate::config::{ConfigDiff, ValueChange, diff};
use crate::gateway::Gateway;
use crate::gateway::LiveGateway;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last reload's outcome, for `/config`.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    pub ok: bool,
    pub trigger: String,
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// The hash of the config now serving.
    pub hash: String,
    pub problems: Vec<String>,
    pub changes: ConfigDiff,
    /// When the config now serving was loaded (seconds since the Unix epoch): `at` of
    /// the last reload that took, or of the start.
    pub loaded_at: u64,
}

/// Reloads one config file into one live gateway.
pub struct Reloader {
    path: PathBuf,
    live: LiveGateway,
    /// Also serializes reloads; never held across an await (a reload has none).
    status: Mutex<ReloadStatus>,
}

impl Reloader {
    pub fn new(path: &Path, live: LiveGateway) -> Arc<Self> {
        let hash = live.load().config.hash.clone();
        let now = unix_now();
        let status = ReloadStatus {
            ok: true,
            trigger: "start".into(),
            at: now,
            hash,
            problems: Vec::new(),
            changes: ConfigDiff::default(),
            loaded_at: now,
        };
        Arc::new(Self {
            path: path.to_path_buf(),
            live,
            status: Mutex::new(status),
        })
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().expect("never poisoned").clone()
    }

    /// [`Reloader::reload`] on the runtime's blocking threads: compiling a config with
    /// secrets runs PBKDF2 for its hash (about 0.3 s of CPU), which must not stall a
    /// worker that serves requests.
    pub async fn reload_async(
        self: &Arc<Self>,
        trigger: &'static str,
    ) -> Result<ConfigDiff, Vec<String>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.reload(trigger))
            .await
            .unwrap_or_else(|e| Err(vec![format!("the reload did not finish: {e}")]))
    }

    /// Loads, validates and builds the file's config, then swaps it in. On any problem
    /// the running config stays and every problem is logged with its place.
    pub fn reload(&self, trigger: &str) -> Result<ConfigDiff, Vec<String>> {
        let mut status = self.status.lock().expect("never poisoned");
        let old = self.live.load_full();
        let loaded_at = status.loaded_at;
        let outcome = compile_file(&self.path, &Env::from_process())
            .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())
            .and_then(|mut compiled| {
                let changes = diff(&old.config, &compiled);
                // Not half-applied: listener settings stay as they are until a restart,
                // and `/config` shows them as serving, the file's values as pending.
                keep_listener_settings(&mut compiled.server, &old.server);
                hold_pending(&mut compiled, &old.config, &changes.restart_needed);
                let gateway =
                    Gateway::build(compiled, Some(&old)).map_err(|e| vec![e.to_string()])?;
                Ok((gateway, changes))
            });
        *status = match outcome {
            Ok((gateway, changes)) => {
                log_warnings(&gateway.config);
                let hash = gateway.config.hash.clone();
                self.live.store(Arc::new(gateway));
                let now = unix_now();
                tracing::info!(
                    trigger,
                    hash = %hash,
                    added = ?changes.routes_added,
                    removed = ?changes.routes_removed,
                    changed = ?changes.routes_changed,
                    upstreams_added = ?changes.upstreams_added,
                    upstreams_removed = ?changes.upstreams_removed,
                    upstreams_changed = ?changes.upstreams_changed,
                    values = ?changes.values.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "config reloaded"
                );
                for setting in &changes.restart_needed {
                    tracing::warn!(setting = %setting, "changed setting applies at the next restart");
                }
                ReloadStatus {
                    ok: true,
                    trigger: trigger.into(),
                    at: now,
                    hash,
                    problems: Vec::new(),
                    changes,
                    loaded_at: now,
                }
            }
            Err(problems) => {
                for problem in &problems {
                    tracing::warn!(trigger, problem = %problem, "config rejected; the running config stays");
                }
                ReloadStatus {
                    ok: false,
                    trigger: trigger.into(),
                    at: unix_now(),
                    hash: old.config.hash.clone(),
                    problems,
                    changes: ConfigDiff::default(),
                    loaded_at,
                }
            }
        };
        self.live.load().metrics.reload(status.ok);
        if status.ok {
            Ok(status.changes.clone())
        } else {
            Err(status.problems.clone())
        }
    }
}

/// Logs what the config's validation warned about (a certificate close to expiry).
pub fn log_warnings(config: &Compiled) {
    for warning in &config.warnings {
        tracing::warn!(place = %warning.place, warning = %warning.message, "config warning");
    }
}

fn keep_listener_settings(new: &mut ServerSpec, old: &ServerSpec) {
    // Turning TLS on or off changes what the listener speaks: a restart. Certificates
    // and client CAs change on a reload.
    if new.tls.is_some() != old.tls.is_some() {
        new.tls = old.tls.clone();
    }
    new.listen = old.listen;
    new.admin_listen = old.admin_listen;
    new.workers = old.workers;
    new.max_connections = old.max_connections;
    new.header_read_timeout = old.header_read_timeout;
    new.keepalive_timeout = old.keepalive_timeout;
    new.send_timeout = old.send_timeout;
    new.shutdown_grace = old.shutdown_grace;
    new.compression = old.compression;
    new.compression_min_size = old.compression_min_size;
    new.cors = old.cors.clone();
}

/// Puts the serving values of `restart_needed` settings into `new`'s document (taken from
/// the snapshot serving now) and the file's values into its `pending_restart`.
fn hold_pending(new: &mut Compiled, serving: &Compiled, restart_needed: &[String]) {
    let mut document = (*new.document).clone();
    for place in restart_needed {
        let key = place.strip_prefix("server.").unwrap_or(place);
        let running = serving
            .document
            .get("server")
            .and_then(|s| s.get(key))
            .cloned()
            .unwrap_or_default();
        if let Some(slot) = document.get_mut("server").and_then(|s| s.get_mut(key)) {
            let loaded = std::mem::replace(slot, running);
            new.pending_restart.insert(place.clone(), loaded);
        }
    }
    new.document = Arc::new(document);
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Quiet time after a change before reloading: an editor's save of several writes (or a
/// write to a temporary file and a rename) is one reload.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The symlink a Kubernetes ConfigMap or Secret volume swaps on an update: its files
/// are links through `..data` to a hidden directory, and the kubelet renames a new
/// `..data` over the old one, so the config file's own name sees no event.
const KUBERNETES_DATA_LINK: &str = "..data";

/// Watches the config file's directory (so that editors that replace the file by
/// rename, and a ConfigMap volume's `..data` swap, are seen) and reloads after each
/// burst of changes. Keep the returned watcher.
pub fn watch(reloader: Arc<Reloader>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let file_name = reloader.path.file_name().map(|n| n.to_os_string());
    let dir = match reloader.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|p| {
            let name = p.file_name();
            name.map(|n| n.to_os_string()) == file_name
                || name.is_some_and(|n| n == KUBERNETES_DATA_LINK)
        }) {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Wait for the burst to end.
            loop {
                tokio::time::sleep(DEBOUNCE).await;
                if rx.try_recv().is_err() {
                    break;
                }
                while rx.try_recv().is_ok() {}
            }
            let _ = reloader.reload_async("file").await;
        }
    });
    Ok(watcher)
}

/// Quiet time after a change to a certificate file before reading it: a deployment
/// that writes the certificate and then its key (or swaps a directory symlink) is read
/// once, with both in place.
const TLS_DEBOUNCE: Duration = Duration::from_millis(500);

/// Watches the directories of the serving `[server.tls]` files (certificates, keys,
/// client CA) and reloads, with trigger `tls_files`, when their contents change. Whole
/// directories are watched so that a rename over a file (editors, `cert-manager`) and
/// Kubernetes' swap of a secret volume's `..data` symlink are both seen; the contents
/// are compared, so unrelated files in the directory, and a bad pair already refused,
/// cause no reload (a refused pair is logged once). The set of files is re-read from
/// the serving snapshot after every change, so a reload that names other files moves
/// the watch with it. The task owns the watcher; abort it to stop watching.
pub fn watch_tls(reloader: Arc<Reloader>) -> notify::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    let mut watched: Vec<PathBuf> = Vec::new();
    let mut files = tls_files(&reloader.live.load().server);
    watch_dirs(&mut watcher, &files, &mut watched)?;
    let mut seen = fingerprint(&files);
    Ok(tokio::spawn(async move {
        while rx.recv().await.is_some() {
            loop {
                tokio::time::sleep(TLS_DEBOUNCE).await;
                if rx.try_recv().is_err() {
                    break;
                }
                while rx.try_recv().is_ok() {}
            }
            let now = fingerprint(&files);
            if now != seen {
                seen = now;
                let _ = reloader.reload_async("tls_files").await;
            }
            let serving = tls_files(&reloader.live.load().server);
            if serving != files {
                files = serving;
                seen = fingerprint(&files);
                if let Err(e) = watch_dirs(&mut watcher, &files, &mut watched) {
                    tracing::warn!(error = %e, "cannot watch a TLS file's directory; rotate it with a reload");
                }
            }
        }
    }))
}

/// The files a reload reads for `[server.tls]`.
fn tls_files(server: &ServerSpec) -> Vec<PathBuf> {
    let Some(tls) = &server.tls else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = tls
        .certs
        .iter()
        .flat_map(|c| [c.cert_path.clone(), c.key_path.clone()])
        .collect();
    files.extend(tls.client_auth.as_ref().map(|a| a.ca_path.clone()));
    files
}

/// Watches the directory of each of `files` not watched yet.
fn watch_dirs(
    watcher: &mut notify::RecommendedWatcher,
    files: &[PathBuf],
    watched: &mut Vec<PathBuf>,
) -> notify::Result<()> {
    use notify::Watcher;
    for file in files {
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !watched.contains(&dir) {
            watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
            watched.push(dir);
        }
    }
    Ok(())
}

/// A digest of the files' contents (following symlinks); a missing file counts as such.
fn fingerprint(files: &[PathBuf]) -> Vec<u8> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for file in files {
        match std::fs::read(file) {
            Ok(bytes) => {
                digest.update(&(bytes.len() as u64).to_be_bytes());
                digest.update(&bytes);
            }
            Err(_) => digest.update(b"missing"),
        }
    }
    digest.finish().as_ref().to_vec()
}

/// Reloads on every SIGHUP. The handler is installed when this is called, not when the
/// returned future first runs: a SIGHUP that arrives after the listener is up must
/// reload, not end the process as the signal's default action does.
pub fn on_sighup(reloader: Arc<Reloader>) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let Ok(mut hup) = hup else {
                tracing::warn!("cannot listen for SIGHUP; reload by file change or POST /reload");
                return;
            };
            while hup.recv().await.is_some() {
                let _ = reloader.reload_async("sighup").await;
            }
        }
        #[cfg(not(unix))]
        let _ = reloader;
    }
}
