//! Live config: on a file change (debounced, renames included), SIGHUP or the admin
//! `POST /reload`, the whole new config is loaded, validated and built first, then
//! swapped in at once. Requests in flight finish on the snapshot they started with; an
//! invalid edit is logged with every problem and the old config keeps serving.

use crate::config::{Compiled, Env, ServerSpec, compile_file};
use crate::gateway::Gateway;
use crate::server::LiveGateway;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    pub routes_added: Vec<String>,
    pub routes_removed: Vec<String>,
    pub routes_changed: Vec<String>,
    pub upstreams_changed: Vec<String>,
    /// Settings that changed in the file but apply only at the next start.
    pub restart_needed: Vec<String>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }
}

fn route_key(r: &crate::config::RouteSpec) -> String {
    format!("{} {}", r.methods, r.path)
}

/// What changes from `old` to `new`.
pub fn diff(old: &Compiled, new: &Compiled) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    for r in &new.routes {
        match old
            .routes
            .iter()
            .find(|o| o.path == r.path && o.methods == r.methods)
        {
            None => d.routes_added.push(route_key(r)),
            Some(o) if o != r => d.routes_changed.push(route_key(r)),
            Some(_) => {}
        }
    }
    for o in &old.routes {
        if !new
            .routes
            .iter()
            .any(|r| r.path == o.path && r.methods == o.methods)
        {
            d.routes_removed.push(route_key(o));
        }
    }
    let names: std::collections::BTreeSet<&String> =
        old.upstreams.keys().chain(new.upstreams.keys()).collect();
    let changed: Vec<String> = names
        .into_iter()
        .filter(|n| old.upstreams.get(*n) != new.upstreams.get(*n))
        .cloned()
        .collect();
    d.upstreams_changed = changed;
    d.restart_needed = restart_needed(&old.server, &new.server);
    d
}

/// Listener settings are read when the server starts.
fn restart_needed(old: &ServerSpec, new: &ServerSpec) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |name: &str, changed: bool| {
        if changed {
            out.push(format!("server.{name}"));
        }
    };
    check("listen", old.listen != new.listen);
    check("workers", old.workers != new.workers);
    check(
        "max_connections",
        old.max_connections != new.max_connections,
    );
    check(
        "header_read_timeout",
        old.header_read_timeout != new.header_read_timeout,
    );
    check(
        "keepalive_timeout",
        old.keepalive_timeout != new.keepalive_timeout,
    );
    check("shutdown_grace", old.shutdown_grace != new.shutdown_grace);
    check(
        "compression",
        old.compression != new.compression || old.compression_min_size != new.compression_min_size,
    );
    check("cors", old.cors != new.cors);
    out
}

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
        let status = ReloadStatus {
            ok: true,
            trigger: "start".into(),
            at: unix_now(),
            hash,
            problems: Vec::new(),
            changes: ConfigDiff::default(),
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

    /// Loads, validates and builds the file's config, then swaps it in. On any problem
    /// the running config stays and every problem is logged with its place.
    pub fn reload(&self, trigger: &str) -> Result<ConfigDiff, Vec<String>> {
        let mut status = self.status.lock().expect("never poisoned");
        let old = self.live.load_full();
        let outcome = compile_file(&self.path, &Env::from_process())
            .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())
            .and_then(|mut compiled| {
                let changes = diff(&old.config, &compiled);
                // Not half-applied: listener settings stay as they are until a restart.
                keep_listener_settings(&mut compiled.server, &old.server);
                let gateway =
                    Gateway::build(compiled, Some(&old)).map_err(|e| vec![e.to_string()])?;
                Ok((gateway, changes))
            });
        *status = match outcome {
            Ok((gateway, changes)) => {
                let hash = gateway.config.hash.clone();
                self.live.store(Arc::new(gateway));
                tracing::info!(
                    trigger,
                    hash = %hash,
                    added = ?changes.routes_added,
                    removed = ?changes.routes_removed,
                    changed = ?changes.routes_changed,
                    upstreams_changed = ?changes.upstreams_changed,
                    "config reloaded"
                );
                for setting in &changes.restart_needed {
                    tracing::warn!(setting = %setting, "changed setting applies at the next restart");
                }
                ReloadStatus {
                    ok: true,
                    trigger: trigger.into(),
                    at: unix_now(),
                    hash,
                    problems: Vec::new(),
                    changes,
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

fn keep_listener_settings(new: &mut ServerSpec, old: &ServerSpec) {
    new.listen = old.listen;
    new.workers = old.workers;
    new.max_connections = old.max_connections;
    new.header_read_timeout = old.header_read_timeout;
    new.keepalive_timeout = old.keepalive_timeout;
    new.shutdown_grace = old.shutdown_grace;
    new.compression = old.compression;
    new.compression_min_size = old.compression_min_size;
    new.cors = old.cors.clone();
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Quiet time after a change before reloading: an editor's save of several writes (or a
/// write to a temporary file and a rename) is one reload.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Watches the config file's directory (so that editors that replace the file by
/// rename are seen) and reloads after each burst of changes. Keep the returned watcher.
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
        if event
            .paths
            .iter()
            .any(|p| p.file_name().map(|n| n.to_os_string()) == file_name)
        {
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
            let _ = reloader.reload("file");
        }
    });
    Ok(watcher)
}

/// Reloads on every SIGHUP.
pub async fn on_sighup(reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload by file change or POST /reload");
            return;
        };
        while hup.recv().await.is_some() {
            let _ = reloader.reload("sighup");
        }
    }
    #[cfg(not(unix))]
    let _ = reloader;
}
