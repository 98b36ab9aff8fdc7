//! `[cluster]` checked: the Redis URLs, the store's timeout and fallback; and every
//! `scope` / `cache_scope` that names the cluster, which needs the section.

use super::Problems;
use crate::config::{
    ClusterConfig, ClusterSpec, GatewayConfig, OnStoreError, RedisTopology, Scope,
};
use std::num::NonZeroU32;

/// Parses a `scope` or `cache_scope` value at `place`.
pub(super) fn scope(place: &str, text: &str, p: &mut Problems) -> Scope {
    Scope::parse(text).unwrap_or_else(|e| {
        p.add(place, e);
        Scope::Local
    })
}

/// `[cluster]`, compiled; `None` when the section is absent.
pub(super) fn cluster(c: &ClusterConfig, p: &mut Problems) -> ClusterSpec {
    let urls = c.redis.urls();
    if urls.is_empty() || urls.iter().all(String::is_empty) {
        p.add(
            "cluster.redis",
            "is required: the store's URL, such as \"redis://127.0.0.1:6379/0\", or a list of Redis Cluster seed URLs",
        );
    }
    let mut display = Vec::new();
    for (i, text) in urls.iter().enumerate() {
        let place = if urls.len() == 1 {
            "cluster.redis".to_owned()
        } else {
            format!("cluster.redis[{i}]")
        };
        match redis_address(text) {
            Ok(shown) => display.push(shown),
            Err(e) => p.add(place, e),
        }
    }
    if urls.len() > 1 {
        for (i, text) in urls.iter().enumerate() {
            if url::Url::parse(text).is_ok_and(|u| !matches!(u.path().trim_matches('/'), "" | "0"))
            {
                p.add(
                    format!("cluster.redis[{i}]"),
                    "a Redis Cluster has only database 0: remove the /DB from the URL",
                );
            }
        }
    }
    let timeout = p.duration("cluster.timeout", &c.timeout);
    if timeout.is_zero() {
        p.add("cluster.timeout", "must be more than 0, such as \"5ms\"");
    }
    let on_error = match c.on_error.as_str() {
        "local" => OnStoreError::Local,
        "allow" => OnStoreError::Allow,
        "deny" => OnStoreError::Deny,
        other => {
            p.add(
                "cluster.on_error",
                format!("unknown value \"{other}\"; use \"local\", \"allow\" or \"deny\""),
            );
            OnStoreError::Local
        }
    };
    let expected_instances = NonZeroU32::new(c.expected_instances).unwrap_or_else(|| {
        p.add(
            "cluster.expected_instances",
            "must be at least 1: the number of gateway instances sharing the store",
        );
        NonZeroU32::MIN
    });
    if c.circuit_breaker.failures == 0 {
        p.add(
            "cluster.circuit_breaker.failures",
            "must be at least 1: the failed store calls in a row that stop calling the store",
        );
    }
    let open_for = p.duration(
        "cluster.circuit_breaker.open_for",
        &c.circuit_breaker.open_for,
    );
    if c.key_prefix
        .chars()
        .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        p.add(
            "cluster.key_prefix",
            "must not hold spaces or control characters, such as \"fanout:\"",
        );
    }
    let topology = if urls.len() > 1 {
        RedisTopology::Cluster(urls.to_vec())
    } else {
        RedisTopology::Standalone(urls.first().cloned().unwrap_or_default())
    };
    ClusterSpec {
        topology,
        display: display.join(","),
        key_prefix: c.key_prefix.clone(),
        timeout,
        on_error,
        expected_instances,
        breaker: (c.circuit_breaker.failures.max(1), open_for),
        max_entry: p.size("cluster.max_entry", &c.max_entry),
    }
}

/// Checks one Redis URL; returns `host:port` to show (never the password).
fn redis_address(text: &str) -> Result<String, String> {
    let hint = "write redis://HOST:PORT/DB or rediss://HOST:PORT/DB (TLS), with a password as redis://:${REDIS_PASSWORD}@HOST:PORT/0";
    let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e}); {hint}"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "scheme \"{}\" is not redis or rediss; {hint}",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("has no host; {hint}"))?;
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!("database \"{db}\" is not a number; {hint}"));
    }
    Ok(format!("{host}:{}", url.port().unwrap_or(6379)))
}

/// Every cluster-scoped limit or cache needs `[cluster]`: an error at each such place.
pub(super) fn scopes_need_cluster(config: &GatewayConfig, p: &mut Problems) {
    if config.cluster.is_some() {
        return;
    }
    let fix = "\"cluster\" keeps its state in the [cluster] store: add a [cluster] section with redis = \"redis://HOST:PORT/0\", or use \"local\"";
    for (name, u) in &config.upstreams {
        if u.rate_limit.as_ref().is_some_and(|l| l.scope == "cluster") {
            p.add(format!("upstreams.{name}.rate_limit.scope"), fix);
        }
    }
    for (i, r) in config.routes.iter().enumerate() {
        if r.rate_limit.as_ref().is_some_and(|l| l.scope == "cluster") {
            p.add(format!("routes[{i}].rate_limit.scope"), fix);
        }
        if r.cache_scope == "cluster" {
            p.add(format!("routes[{i}].cache_scope"), fix);
        }
        for (j, b) in r.backends.iter().enumerate() {
            if b.cache_scope == "cluster" {
                p.add(format!("routes[{i}].backends[{j}].cache_scope"), fix);
            }
        }
    }
}
