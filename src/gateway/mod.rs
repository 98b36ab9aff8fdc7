//! The gateway's runtime state: one immutable snapshot built from a compiled config
//! (route table, one client per upstream), swapped whole on reload, and the request path
//! through it.
//!
//! - `build`: [`Gateway::build`], the snapshot from a compiled config, keeping what a
//!   reload did not change (pools, breakers, rate-limit state, the cache).
//! - `jobs`: async routes: the 202, the job, and the answers on a status path.
//! - `status_paths`: the async routes' status paths, matched before the routes.
//! - `serve`: [`Gateway::handle`], one request as phases read top to bottom: admit,
//!   dispatch, finish the response, log.

mod auth;
mod build;
mod jobs;
mod serve;
mod status_paths;

pub use build::BuildError;

use crate::access_log::AccessLog;
use crate::aggregate::AggregateRoute;
use crate::cache::ResponseCache;
use crate::config::{Compiled, RateLimitSpec, ServerSpec};
use crate::limits::RouteLimit;
use crate::metrics::{Label, Metrics, RouteSeries};
use crate::proxy::ProxyRoute;
use crate::router::{Methods, RouteTable};
use crate::trace::Tracing;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The live config: requests load the current snapshot; a reload swaps it whole.
pub type LiveGateway = Arc<ArcSwap<Gateway>>;

/// An immutable snapshot of everything a request needs.
#[derive(Debug)]
pub struct Gateway {
    pub server: ServerSpec,
    /// The main listener's handshake settings (`[server.tls]`), rebuilt with every
    /// snapshot so a reload rotates certificates; `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The config this snapshot was built from: for diffs and `/config`.
    pub config: Compiled,
    pub routes: RouteTable<Route>,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    /// `[auth.NAME]` providers, carried over a reload that leaves one as it was.
    pub auth: BTreeMap<String, Arc<crate::auth::Provider>>,
    /// Every provider's `claims_to_headers` names: removed from every request.
    pub claim_headers: crate::auth::claim_headers::ClaimHeaders,
    /// The query parameters JWT providers read tokens from (`token_from =
    /// "query:NAME"`), redacted in the access log; `None` when there are none.
    pub token_params: Option<Arc<[String]>>,
    /// The response cache shared by every route.
    pub cache: Arc<ResponseCache>,
    /// The `[cluster]` store instances share (cluster-scoped limits, the shared cache),
    /// carried over a reload that leaves `[cluster]` as it was; `None`: no `[cluster]`.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The process's metrics: the same registry across reloads.
    pub metrics: Arc<Metrics>,
    /// The process's access log: the same writer across reloads, given each snapshot's
    /// `[access_log]` (`config.access_log`) as it is built.
    pub access_log: Arc<AccessLog>,
    /// Sampling and span export, kept across a reload that leaves `[tracing]` as it was.
    pub tracing: Arc<Tracing>,
    /// The metrics label of requests no route matched (made once, not per request).
    unmatched: Label,
    /// The metrics label of the main listener's health path.
    health: Label,
    /// Async routes' jobs: in memory, or in the `[cluster]` store; carried over reloads.
    pub jobs: Arc<crate::jobs::JobStore>,
    /// The async routes' status paths, matched before the routes; `None`: no async route.
    status_paths: Option<status_paths::StatusPaths>,
}

/// One route at runtime.
#[derive(Debug)]
pub struct Route {
    pub path: String,
    /// The path pattern as a metrics label.
    pub label: Label,
    pub series: RouteSeries,
    pub methods: Methods,
    /// Requests per client, and its spec (to carry the state over an unchanged reload).
    pub limit: Option<(RateLimitSpec, Arc<RouteLimit>)>,
    /// A `scope = "cluster"` limit instead (then `limit` is `None`): buckets in the
    /// `[cluster]` store, with its spec likewise.
    pub cluster_limit: Option<(RateLimitSpec, Arc<crate::limits::ClusterLimit>)>,
    /// The largest request body a client may declare; `None`: any (a proxy streams it).
    pub max_body: Option<u64>,
    /// Who may call it (`auth`); `None`: anyone, and the auth phase costs nothing.
    pub auth: Option<auth::RouteAuth>,
    pub handler: Handler,
    /// `async`: answered 202, the handler run as a job; `None`: answered as usual.
    pub async_job: Option<crate::jobs::AsyncRoute>,
}

/// What answers a route's requests.
#[derive(Debug)]
pub enum Handler {
    Aggregate(AggregateRoute),
    Proxy(ProxyRoute),
}

impl Handler {
    /// The mirrors of the proxy (`backend: None`) or of the aggregate's backend of
    /// this name; empty when there is none.
    pub fn mirrors(&self, backend: Option<&str>) -> &[Arc<crate::mirror::Mirror>] {
        match (self, backend) {
            (Handler::Proxy(p), None) => &p.mirrors,
            (Handler::Aggregate(a), Some(name)) => a
                .backends
                .iter()
                .find(|b| b.spec.name == name)
                .map_or(&[], |b| &b.mirrors),
            _ => &[],
        }
    }
}

impl Gateway {
    /// Forgets rate-limit keys whose buckets are full again (see [`RouteLimit::prune`]).
    pub fn prune_limits(&self) {
        for (_, limit) in self.routes.iter().filter_map(|r| r.limit.as_ref()) {
            limit.prune();
        }
        for (_, limit) in self.routes.iter().filter_map(|r| r.cluster_limit.as_ref()) {
            limit.prune();
        }
    }
}
