//! What the shipped deployments rely on: the configs under `docker/` and
//! `deploy/kubernetes/` pass `fanout check`, and the config watcher follows a
//! Kubernetes ConfigMap volume's update (the kubelet swaps a `..data` symlink; the
//! config file's own name sees no event).

use crate::common;

use common::{MockUpstream, Reply, eventually, get_json};
use fanout::config::{Env, compile_file};
use fanout::gateway::Gateway;
use fanout::reload::Reloader;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn check(config: &str, env: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(config);
    let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fanout check -c {config}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_compose_cluster_config_passes_check() {
    check("docker/cluster.toml", &[]);
}

#[test]
fn the_kubernetes_config_passes_check() {
    check(
        "deploy/kubernetes/gateway.toml",
        &[
            ("REDIS_URL", "redis://:secret@redis:6379/0"),
            ("FANOUT_ADMIN_TOKEN", "4f9c1e0b7a2d8e6f3c5b9a1d0e7f2c4b"),
        ],
    );
}

fn config(up: &MockUpstream, path: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "off"

[upstreams.up]
url = "{}"

[[routes]]
path = "{path}"
[[routes.backends]]
name = "b"
upstream = "up"
path = "/x"
"#,
        up.url()
    )
}

/// Writes `toml` as the kubelet's atomic writer updates a ConfigMap volume: the files
/// go to a new timestamped directory, a `..data_tmp` symlink to it is renamed over
/// `..data`; `gateway.toml` is a symlink to `..data/gateway.toml` that never changes.
fn kubelet_write(volume: &Path, generation: u32, toml: &str) {
    let version = format!("..2026_12_02_09_00_0{generation}.000000001");
    std::fs::create_dir(volume.join(&version)).unwrap();
    std::fs::write(volume.join(&version).join("gateway.toml"), toml).unwrap();
    std::os::unix::fs::symlink(&version, volume.join("..data_tmp")).unwrap();
    std::fs::rename(volume.join("..data_tmp"), volume.join("..data")).unwrap();
    let link = volume.join("gateway.toml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/gateway.toml", &link).unwrap();
    }
}

#[tokio::test]
async fn the_file_watcher_follows_a_configmap_update() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let volume = common::scratch_dir("configmap");
    kubelet_write(&volume, 1, &config(&up, "/a"));
    let path = volume.join("gateway.toml");
    let compiled = compile_file(&path, &Env::default()).unwrap();
    let live: fanout::gateway::LiveGateway = Arc::new(arc_swap::ArcSwap::from_pointee(
        Gateway::build(compiled, None).unwrap(),
    ));
    let reloader = Reloader::new(&path, live.clone());
    let gateway = common::serve(live).await;
    let _watcher = fanout::reload::watch(reloader.clone()).unwrap();
    assert_eq!(get_json(&gateway.url("/a")).await.0, 200);

    kubelet_write(&volume, 2, &config(&up, "/b"));
    let url = gateway.url("/b");
    eventually("the ConfigMap update to be reloaded", async || {
        get_json(&url).await.0 == 200
    })
    .await;
    assert_eq!(reloader.status().trigger, "file");
    assert_eq!(get_json(&gateway.url("/a")).await.0, 404);
}
