//! `fanout demo --redis URL`: the sample config's shared rate limit and cache, counted in
//! a Redis the user runs. The demo sets two variables before the config is loaded, so
//! every reload keeps them: `FANOUT__CLUSTER__REDIS` (the `[cluster]` store) and
//! [`DEMO_SCOPE_VAR`]` = "cluster"`, which `gateway.toml` reads as a route's limit
//! `scope` and its backend's `cache_scope` (`"${FANOUT_DEMO_SCOPE:-local}"`). The same
//! two variables turn it on for `fanout run`, which is how a second gateway joins.

use crate::config::{Compiled, Scope};
use std::net::SocketAddr;
use std::path::Path;

/// The variable the sample config reads as the scope of its shared limit and cache.
pub const DEMO_SCOPE_VAR: &str = "FANOUT_DEMO_SCOPE";

/// The override that gives the config its `[cluster]` store.
const CLUSTER_REDIS_VAR: &str = "FANOUT__CLUSTER__REDIS";

/// The environment `fanout demo --redis URL` runs the config with.
pub fn redis_env(url: &str) -> [(&'static str, String); 2] {
    [
        (CLUSTER_REDIS_VAR, url.to_string()),
        (DEMO_SCOPE_VAR, "cluster".to_string()),
    ]
}

/// Requests a route's cluster-scoped limit admits at once (its `burst`, by default the
/// rate's count), or `None` for a route whose limit is not cluster-scoped.
pub(super) fn cluster_burst(route: &crate::config::RouteSpec) -> Option<u32> {
    let limit = route.rate_limit.as_ref()?;
    (limit.scope == Scope::Cluster).then(|| limit.burst.unwrap_or(limit.rate.count).get())
}

/// A loop of `curl`s, two past a cluster-scoped limit of `burst`, printing each status:
/// to one target (`[curl options ]URL`), or in turn to several plain URLs.
pub(super) fn limit_loop(urls: &[String], burst: u32) -> String {
    let rounds = (burst + 2).div_ceil(urls.len() as u32);
    let target = match urls {
        [one] => format!("curl -s -o /dev/null -w '%{{http_code}} ' {one}"),
        many => format!(
            "for url in {}; do curl -s -o /dev/null -w '%{{http_code}} ' $url; done",
            many.join(" ")
        ),
    };
    format!(
        "for i in $(seq {rounds}); do {target}; done; echo   # 200 for the first {burst} in a minute, then 429: counted in Redis, for every gateway on it"
    )
}

/// What the demo prints after its curl lines about sharing through Redis. Serving with
/// `redis` (the URL given to `--redis`): how to start a second gateway on the same
/// Redis and the demo's sample upstreams (`fanout run`, listening one port up), a purge
/// on the first gateway's admin that empties the second's memory too, and a loop over
/// both gateways that one limit bounds. Without it, for a config that reads
/// [`DEMO_SCOPE_VAR`] (`config_text`): the one line saying how to try it. Nothing for
/// a TLS listener (the second gateway would need its certificate too) or a config with
/// no limit to share.
pub fn cluster_lines(
    compiled: &Compiled,
    config_path: &Path,
    config_text: &str,
    redis: Option<&str>,
    gateway: SocketAddr,
) -> Vec<String> {
    if compiled.server.tls.is_some() {
        return Vec::new();
    }
    let Some(redis) = redis else {
        if config_text.contains(&format!("${{{DEMO_SCOPE_VAR}")) {
            return vec![format!(
                "fanout demo --redis redis://127.0.0.1:6379/0 -c {}   # with a redis-server running: a rate limit and a cache shared by several gateways",
                config_path.display()
            )];
        }
        return Vec::new();
    };
    let Some((path, burst)) = compiled
        .routes
        .iter()
        .find_map(|route| Some((super::with_params(&route.path, "1"), cluster_burst(route)?)))
    else {
        return Vec::new();
    };
    let second = SocketAddr::new(gateway.ip(), gateway.port().wrapping_add(1));
    let urls = [gateway, second].map(|addr| format!("http://{addr}{path}"));
    let mut lines = vec![
        format!(
            "{CLUSTER_REDIS_VAR}='{redis}' {DEMO_SCOPE_VAR}=cluster FANOUT__SERVER__LISTEN={second} FANOUT__SERVER__ADMIN_LISTEN=off fanout run -c {}   # a second gateway on the same Redis and sample upstreams",
            config_path.display()
        ),
        format!(
            "curl -si {}   # on the second gateway: Server-Timing says \"shared\": the first one's answer, read from Redis",
            urls[1]
        ),
    ];
    if let Some(admin) = compiled.server.admin_listen {
        lines.push(format!(
            "curl -s -X POST http://{admin}/cache/purge; sleep 1; curl -si {}   # purged on the first gateway: the second's copy went too (Server-Timing \"ok\": called afresh)",
            urls[1]
        ));
    }
    lines.push(limit_loop(&urls, burst));
    lines
}
