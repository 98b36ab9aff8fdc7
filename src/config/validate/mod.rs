//! `validate()`: checks a loaded [`GatewayConfig`] as a whole and compiles it into the
//! types the gateway runs on. Every problem is collected, each with its place and a fix.

mod access_log;
mod auth;
mod auth_flow;
mod auth_jwt;
mod auth_keys;
mod backend;
mod canary;
mod client_cert;
mod cluster;
mod http2;
mod jobs;
mod mirror;
mod policy;
mod route;
mod route_auth;
mod server;
mod tls;
mod tracing;
mod upstream;
mod upstream_tls;
mod write;

use super::units::{parse_duration, parse_size};
use super::{Compiled, ConfigError, ConfigProblem, GatewayConfig, UpstreamSpec};
use crate::router::RouteTable;
use http::{HeaderName, Method};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use access_log::access_log;
use route::route;
use server::server;
use tracing::tracing;
use upstream::upstream;

/// Collects problems while compiling; `place` strings follow the document's own shape.
/// The second list holds warnings: reported, but the config is valid.
#[derive(Default)]
pub(super) struct Problems(Vec<ConfigProblem>, Vec<ConfigProblem>);

impl Problems {
    /// Something that works now but needs attention (a certificate about to expire).
    pub(super) fn warn(&mut self, place: impl Into<String>, message: impl Into<String>) {
        self.1.push(ConfigProblem::new(place, message));
    }

    pub(super) fn add(&mut self, place: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem::new(place, message));
    }

    pub(super) fn duration(&mut self, place: &str, text: &str) -> Duration {
        parse_duration(text).unwrap_or_else(|e| {
            self.add(place, e);
            Duration::from_secs(1)
        })
    }

    pub(super) fn size(&mut self, place: &str, text: &str) -> u64 {
        parse_size(text).unwrap_or_else(|e| {
            self.add(place, e);
            0
        })
    }

    pub(super) fn header_name(&mut self, place: &str, text: &str) -> Option<HeaderName> {
        let parsed = HeaderName::from_bytes(text.as_bytes()).ok();
        if parsed.is_none() {
            self.add(place, format!("\"{text}\" is not a valid header name"));
        }
        parsed
    }
}

/// Validates the whole config, reporting every problem at once.
pub fn validate(config: &GatewayConfig) -> Result<Compiled, ConfigError> {
    let mut p = Problems::default();
    let server = server(&config.server, &mut p);
    let cache_max_size = p.size("cache.max_size", &config.cache.max_size);
    let jobs_max_memory = jobs::max_memory(&config.jobs, &mut p);
    let access_log = access_log(&config.access_log, &mut p);
    let tracing = tracing(&config.tracing, &mut p);
    let cluster = config.cluster.as_ref().map(|c| cluster::cluster(c, &mut p));
    cluster::scopes_need_cluster(config, &mut p);
    let auth = auth::providers(&config.auth, &mut p);
    let upstreams: BTreeMap<String, UpstreamSpec> = config
        .upstreams
        .iter()
        .map(|(name, u)| (name.clone(), upstream(name, u, &mut p)))
        .collect();
    let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
    let providers: Vec<&str> = config.auth.keys().map(String::as_str).collect();
    let mut table = RouteTable::default();
    let mut routes = Vec::new();
    let mut route_places = Vec::new();
    let has_client_ca = config
        .server
        .tls
        .as_ref()
        .is_some_and(|t| t.client_ca.is_some());
    for (i, r) in config.routes.iter().enumerate() {
        let place = format!("routes[{i}]");
        if let Some(route) = route(
            &place, r, &server, &known, &providers, &mut p, &mut table, i,
        ) {
            auth_flow::identity_reads(&place, r, &route.kind, &mut p);
            client_cert::client_cert_reads(&place, &route, has_client_ca, &mut p);
            routes.push(route);
            route_places.push(i);
        }
    }
    auth_flow::claim_header_owners(&auth, &upstreams, &routes, &route_places, &mut p);
    jobs::status_paths(&routes, &route_places, &mut p);
    if cluster.is_none()
        && let Some(max_memory) = jobs_max_memory
    {
        jobs::results_fit(&routes, &route_places, max_memory, &mut p);
    }
    if p.0.is_empty() {
        let (document, hash) = super::document::document(config);
        Ok(Compiled {
            document: Arc::new(document),
            hash,
            pending_restart: serde_json::Map::new(),
            warnings: p.1,
            server,
            cache_max_size,
            // Set whenever there is no problem.
            jobs_max_memory: jobs_max_memory.unwrap_or(1),
            access_log,
            tracing,
            cluster,
            auth,
            upstreams,
            routes,
        })
    } else {
        Err(ConfigError(p.0))
    }
}

pub(super) fn method(place: &str, text: &str, p: &mut Problems) -> Option<Method> {
    const KNOWN: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    if KNOWN.contains(&text) {
        Method::from_bytes(text.as_bytes()).ok()
    } else {
        p.add(
            place,
            format!(
                "unknown method \"{text}\"; use one of: {}",
                KNOWN.join(", ")
            ),
        );
        None
    }
}

pub(super) fn known_upstream(place: &str, name: &str, known: &[&str], p: &mut Problems) {
    if name.is_empty() {
        p.add(
            place,
            format!(
                "is required: the name of an [upstreams.NAME] section; known: {}",
                list(known)
            ),
        );
    } else if !known.contains(&name) {
        p.add(
            place,
            format!("no upstream \"{name}\"; known: {}", list(known)),
        );
    }
}

pub(super) fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none (add an [upstreams.NAME] section)".into()
    } else {
        names.join(", ")
    }
}
