//! `[cluster]`: the Redis store several gateway instances share (cluster-scoped rate
//! limits, the second cache level), as written and as compiled, and the `scope` a limit
//! or a cache names.

use super::CircuitBreakerConfig;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::time::Duration;

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[:PASSWORD@]HOST:PORT/DB` or `rediss://...` (TLS); a list of seed URLs
    /// is a Redis Cluster.
    pub redis: RedisUrls,
    /// Prefix of every key the gateway writes, so several deployments share one Redis.
    pub key_prefix: String,
    /// Longest wait for one store call; past it the call counts as failed (`on_error`).
    pub timeout: String,
    /// What a rate limit does when the store fails: `local` (the in-process limiter at
    /// the limit divided by `expected_instances`), `allow` or `deny`.
    pub on_error: String,
    /// Instances sharing the store: the `local` fallback admits the limit divided by it.
    pub expected_instances: u32,
    /// Failed store calls in a row that stop calling the store for `open_for`; then one
    /// probe call decides whether to go back to it.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Largest answer the shared cache stores in Redis; a larger one stays local only.
    pub max_entry: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis: RedisUrls::One(String::new()),
            key_prefix: "fanout:".into(),
            timeout: "5ms".into(),
            on_error: "local".into(),
            expected_instances: 1,
            circuit_breaker: CircuitBreakerConfig {
                failures: 3,
                open_for: "1s".into(),
            },
            max_entry: "1MiB".into(),
        }
    }
}

/// `redis = "redis://..."` or `redis = ["redis://a:6379", "redis://b:6379"]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RedisUrls {
    /// One server (standalone Redis).
    One(String),
    /// Seed nodes of a Redis Cluster.
    Many(Vec<String>),
}

impl RedisUrls {
    /// The URLs, in the order written.
    pub fn urls(&self) -> &[String] {
        match self {
            Self::One(url) => std::slice::from_ref(url),
            Self::Many(urls) => urls,
        }
    }
}

/// Where a rate limit's or a cache's state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// In this process only.
    #[default]
    Local,
    /// In the `[cluster]` store, shared by every instance.
    Cluster,
}

impl Scope {
    /// Parses `"local"` or `"cluster"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "local" => Ok(Self::Local),
            "cluster" => Ok(Self::Cluster),
            _ => Err(format!(
                "unknown scope \"{text}\"; use \"local\" (this instance) or \"cluster\" (shared through [cluster])"
            )),
        }
    }
}

/// What a cluster-scoped rate limit does when the store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStoreError {
    /// The in-process limiter, at the limit divided by `expected_instances`.
    Local,
    /// Admit the request.
    Allow,
    /// Refuse it (429).
    Deny,
}

/// The store's address: one server, or the seed nodes of a Redis Cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    Standalone(String),
    Cluster(Vec<String>),
}

/// `[cluster]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    /// The URLs as written after `${VAR}` (they may hold a password: never logged).
    pub topology: RedisTopology,
    /// Where the store is, for logs and `/ready`: `host:port` of each URL, no password.
    pub display: String,
    pub key_prefix: String,
    pub timeout: Duration,
    pub on_error: OnStoreError,
    pub expected_instances: NonZeroU32,
    /// Failures in a row that open the breaker, and how long it stays open.
    pub breaker: (u32, Duration),
    /// Bytes; answers larger than this are not written to the store.
    pub max_entry: u64,
}
