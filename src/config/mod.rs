//! The configuration as written in `gateway.toml`: raw serde structs, their defaults, and
//! the entry points that load and validate them into a [`Compiled`] config.

mod auth;
mod backend;
mod canary;
mod cluster;
mod compiled;
mod diff;
mod document;
mod env;
mod http2;
mod jobs;
mod load;
pub mod mirror;
mod plan;
mod route;
mod server;
mod tls;
mod units;
mod upstream;
mod validate;

pub use auth::{ApiKeysConfig, AuthProviderConfig, AuthProviders};
pub use backend::{BackendConfig, ForEachFail, MergeMode, OnError};
pub use canary::{CanarySpec, StickyKey, WeightedUpstreamConfig};
pub use cluster::{ClusterConfig, ClusterSpec, OnStoreError, RedisTopology, RedisUrls, Scope};
pub use compiled::{
    AggregateSpec, BackendSpec, Compiled, CorsSpec, ExportSpec, ForEachSpec, HealthCheckSpec,
    MAX_DEPTH_LIMIT, OtlpProtocol, ProxySpec, RateLimitSpec, RedirectPrefixes, RouteAuthSpec,
    RouteKind, RouteSpec, ServerSpec, Shape, TracingSpec, UpstreamLimitSpec, UpstreamSpec,
};
pub use diff::{ConfigDiff, ValueChange, diff};
pub use document::{REDACTED, SECRET_ROUNDS};
pub use env::Env;
pub use http2::{Http2Config, Http2Spec};
pub use jobs::{AsyncConfig, AsyncSpec, JobsConfig};
pub use load::{compile, compile_file, load_str};
pub use mirror::{MirrorConfig, MirrorSpec};
pub use plan::Plan;
pub use route::{ProxyConfig, RouteConfig, RouteRateLimitConfig};
pub use server::{AccessLogConfig, CacheConfig, CorsConfig, ServerConfig, TracingConfig};
pub use tls::{
    ClientAuthSpec, ServerCert, ServerTlsConfig, ServerTlsSpec, TlsCertConfig, TlsVersion,
    UpstreamTlsConfig, UpstreamTlsSpec,
};
pub use units::{parse_duration, parse_size};
pub use upstream::{
    CircuitBreakerConfig, HealthCheckConfig, UpstreamConfig, UpstreamRateLimitConfig,
};
pub use validate::validate;

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// One problem in a config: where it is (`routes[2].backends[1].upstream`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted place in the document, or `config` for the document as a whole.
    pub place: String,
    /// What is wrong and, where there is one, how to fix it.
    pub message: String,
}

impl ConfigProblem {
    pub fn new(place: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            place: place.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place, self.message)
    }
}

/// Every problem found in one config, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The whole document. Assembled section by section by the loader, so that a mistake in
/// one route does not hide the mistakes in the others.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayConfig {
    /// `[server]`: listener and process settings.
    pub server: ServerConfig,
    /// `[cache]`: the process-wide response cache.
    pub cache: CacheConfig,
    /// `[access_log]`: one line per request, written off the request path.
    pub access_log: AccessLogConfig,
    /// `[tracing]`: OpenTelemetry export of the gateway's spans.
    pub tracing: TracingConfig,
    /// `[cluster]`: the Redis store instances share; `None`: every instance on its own.
    pub cluster: Option<ClusterConfig>,
    /// `[jobs]`: what the in-memory job store may hold.
    pub jobs: JobsConfig,
    /// `[auth.NAME]`: identity providers routes name in `auth`.
    pub auth: BTreeMap<String, AuthProviderConfig>,
    /// `[upstreams.NAME]`: the services routes call, by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// `[[routes]]`: the route table, in declaration order.
    pub routes: Vec<RouteConfig>,
    /// Places whose strings came from `${VAR}`: redacted wherever the config is shown.
    #[serde(skip)]
    pub interpolated: Vec<String>,
}
