//! Building a snapshot from a compiled config: one pooled client per upstream, shared by
//! every route, and each route's handler with what it needs resolved. A route's
//! rate-limit state carried over a reload: `limits.rs`.

mod limits;

use super::auth::RouteAuth;
use super::{Gateway, Handler, Route};
use crate::access_log::{AccessLog, AccessLogError, DropCounters};
use crate::aggregate::{AggregateRoute, Backend, BodyUse, cache_form};
use crate::auth::Provider;
use crate::auth::claim_headers::ClaimHeaders;
use crate::cache::ResponseCache;
use crate::canary::Canary;
use crate::cluster::Cluster;
use crate::config::Scope;
use crate::config::{AggregateSpec, Compiled, RouteKind};
use crate::metrics::{Label, Metrics};
use crate::mirror::Mirror;
use crate::proxy::{LocationRewrite, ProxyRoute, ProxyTarget};
use crate::router::RouteTable;
use crate::trace::Tracing;
use crate::upstream::{Upstream, health};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The snapshot could not be built: a TLS backend that failed to initialize, or a
/// compiled config that `validate()` should have refused (a route naming an unknown
/// upstream, two routes in conflict), reported rather than panicking.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("upstream {upstream}: cannot build its HTTP client: {source}")]
    Client {
        upstream: String,
        #[source]
        source: crate::upstream::client::ClientError,
    },
    #[error("route {route}: names upstream {upstream}, which is not declared")]
    UnknownUpstream { route: String, upstream: String },
    #[error("route {route}: names auth provider {provider}, which is not declared")]
    UnknownProvider { route: String, provider: String },
    #[error("route {route}: {conflict}")]
    RouteConflict { route: String, conflict: String },
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
    #[error("server.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ConnectError),
}

impl Gateway {
    /// Builds the snapshot: one pooled client per upstream, shared by every route.
    ///
    /// With a `previous` snapshot (a reload), what did not change carries over: an
    /// upstream with the same settings keeps its pool, breaker and health check; a route
    /// with the same path, methods and limit keeps its rate-limit state; the cache keeps
    /// its entries unless its size changed. The access log is the previous one, given
    /// the new `[access_log]` as the last step (a file that cannot be opened fails the
    /// build, and the log keeps its settings), or a new one started.
    pub fn build(compiled: Compiled, previous: Option<&Gateway>) -> Result<Self, BuildError> {
        let config = compiled.clone();
        let metrics = previous.map_or_else(Metrics::new, |p| p.metrics.clone());
        metrics.config_hash(&compiled.hash);
        metrics.tls_cert_expiry(&crate::tls::expiry_series(compiled.server.tls.as_ref()));
        // The store's connection (and the state in it) carries over a reload that leaves
        // `[cluster]` as it was; a new one connects in the background, never blocking.
        let cluster = match &compiled.cluster {
            None => None,
            Some(spec) => match previous
                .and_then(|p| p.cluster.as_ref())
                .filter(|c| c.spec() == spec)
            {
                Some(kept) => Some(kept.clone()),
                None => Some(Arc::new(
                    Cluster::connect(spec.clone())?.with_stats(metrics.cluster.clone()),
                )),
            },
        };
        let mut upstreams = BTreeMap::new();
        for (name, spec) in compiled.upstreams {
            let kept = previous
                .and_then(|p| p.upstreams.get(&name))
                .filter(|u| u.spec == spec && u.guard.counts_in(cluster.as_ref()));
            let up = match kept {
                Some(up) => up.clone(),
                None => {
                    let up = Upstream::build_in(spec, cluster.as_ref()).map_err(|source| {
                        BuildError::Client {
                            upstream: name.clone(),
                            source,
                        }
                    })?;
                    let up = Arc::new(up);
                    health::spawn(&up);
                    up
                }
            };
            upstreams.insert(name, up);
        }
        // With the names the gateway sets from the connection: a client's
        // `x-forwarded-client-cert` never reaches an upstream, TLS or not.
        let claim_headers = ClaimHeaders::of(compiled.auth.values())
            .and(crate::tls::client_cert::X_FORWARDED_CLIENT_CERT);
        let token_params = crate::auth::query_token_names(compiled.auth.values());
        // A provider whose `[auth.NAME]` did not change keeps its fetched key set and
        // its cache of verified tokens.
        let auth: BTreeMap<String, Arc<Provider>> = compiled
            .auth
            .into_iter()
            .map(|(name, spec)| {
                let kept = previous
                    .and_then(|p| p.auth.get(&name))
                    .filter(|a| a.spec == spec);
                let provider = match kept {
                    Some(provider) => provider.clone(),
                    None => Arc::new(Provider::build_with(&name, spec, &metrics.jwks)),
                };
                (name, provider)
            })
            .collect();
        let cache = match previous {
            Some(p) if p.config.cache_max_size == compiled.cache_max_size => p.cache.clone(),
            _ => ResponseCache::new(compiled.cache_max_size, metrics.cache.clone()),
        };
        let tracing = match previous {
            Some(p) if p.tracing.spec == compiled.tracing => p.tracing.clone(),
            _ => Arc::new(Tracing::new(
                compiled.tracing.clone(),
                metrics.spans_dropped.clone(),
            )),
        };
        let status_paths = super::status_paths::StatusPaths::build(
            &compiled.routes,
            &auth,
            &metrics,
            previous.and_then(|p| p.status_paths.as_ref()),
        );
        // In memory, ten times the jobs the routes may run at once (finished answers
        // wait for their clients); beyond it the oldest finished ones go.
        let job_capacity = compiled
            .routes
            .iter()
            .filter_map(|r| r.async_job.as_ref())
            .map(|a| a.max_jobs.saturating_mul(10))
            .fold(1000usize, usize::saturating_add);
        let jobs = crate::jobs::JobStore::for_snapshot(
            previous.map(|p| &p.jobs),
            cluster.as_ref(),
            job_capacity,
            compiled.jobs_max_memory,
            &metrics.jobs,
        );
        let mut routes = RouteTable::default();
        for spec in compiled.routes {
            // An async route's handler runs under `job_timeout` instead of `timeout`.
            let timeout = spec
                .async_job
                .as_ref()
                .map_or(spec.timeout, |a| a.job_timeout);
            let async_job = spec.async_job.as_ref().map(|a| {
                // A route kept by the reload keeps its count of running jobs.
                let running = previous
                    .and_then(|p| {
                        p.routes.iter().find_map(|r| match &r.async_job {
                            Some(was) if r.path == spec.path && r.methods == spec.methods => {
                                Some(was.running.clone())
                            }
                            _ => None,
                        })
                    })
                    .unwrap_or_default();
                crate::jobs::AsyncRoute {
                    spec: a.clone(),
                    running,
                }
            });
            // A cluster-scoped limit needs the store (validate makes sure there is one).
            let (local_spec, cluster_spec) = match (&spec.rate_limit, &cluster) {
                (Some(l), Some(c)) if l.scope == Scope::Cluster => (None, Some((l.clone(), c))),
                (l, _) => (l.clone(), None),
            };
            let limit = local_spec.map(|l| limits::route_limit(previous, &spec, l));
            let cluster_limit =
                cluster_spec.map(|(l, store)| limits::cluster_limit(previous, &spec, l, store));
            let label = Label::new(&spec.path);
            let upstream_of = |name: &str| {
                upstreams
                    .get(name)
                    .cloned()
                    .ok_or_else(|| BuildError::UnknownUpstream {
                        route: spec.path.clone(),
                        upstream: name.to_owned(),
                    })
            };
            // A mirror carries its copies in flight over from the same route's (and
            // backend's) entry in the snapshot this one replaces.
            let was = previous.and_then(|p| {
                p.routes
                    .iter()
                    .find(|r| r.path == spec.path && r.methods == spec.methods)
            });
            let mirrors = |list: &[crate::config::MirrorSpec], backend: Option<&str>| {
                let before = was.map_or(&[][..], |r| r.handler.mirrors(backend));
                list.iter()
                    .enumerate()
                    .map(|(i, m)| {
                        let shadow = upstream_of(&m.upstream)?;
                        let previous = before.get(i).map(AsRef::as_ref);
                        let mirror = Mirror::new(m.clone(), &label, shadow, &metrics, previous);
                        Ok(Arc::new(mirror))
                    })
                    .collect::<Result<Vec<_>, BuildError>>()
            };
            let handler = match spec.kind {
                RouteKind::Aggregate(AggregateSpec {
                    backends,
                    plan,
                    status_from,
                    headers_from,
                }) => Handler::Aggregate(AggregateRoute {
                    label: label.clone(),
                    metrics: metrics.clone(),
                    timeout,
                    max_body: spec.max_body.unwrap_or(compiled.server.max_body),
                    max_body_values: compiled.server.max_body_values,
                    body: BodyUse::of(&backends),
                    cache: cache.clone(),
                    cluster: cluster.clone(),
                    forward_headers: spec.forward_headers,
                    errors_field: spec.errors_field,
                    status_from,
                    headers_from,
                    access_log: compiled.access_log.enabled,
                    authenticated: spec.auth.is_some(),
                    canaries: backends.iter().any(|b| b.canary.is_some()),
                    backends: backends
                        .into_iter()
                        .enumerate()
                        .map(|(i, b)| {
                            let name = Label::new(&b.name);
                            // Each canary upstream is the shared one, pool and all: a
                            // reload that changes only weights touches no connection.
                            let canary = match &b.canary {
                                None => None,
                                Some(c) => {
                                    let targets = c
                                        .upstreams
                                        .iter()
                                        .map(|(n, _)| upstream_of(n))
                                        .collect::<Result<Vec<_>, _>>()?;
                                    Some(Canary::new(c, targets, |up| {
                                        metrics.canary_requests(&label, &b.name, up)
                                    }))
                                }
                            };
                            Ok(Backend {
                                series: metrics.backend_series(&label, &name),
                                label: name,
                                upstream: upstream_of(&b.upstream)?,
                                mirrors: mirrors(&b.mirror, Some(&b.name))?,
                                // Stored unshaped when another backend reads it.
                                cache_form: cache_form(&b, plan.is_read(i)),
                                spec: b,
                                canary,
                            })
                        })
                        .collect::<Result<_, BuildError>>()?,
                    // After `backends`, whose forms read it.
                    plan,
                }),
                RouteKind::Proxy(p) => {
                    let upstream = upstream_of(&p.upstream)?;
                    let canary = match &p.canary {
                        None => None,
                        Some(c) => {
                            let targets =
                                c.upstreams
                                    .iter()
                                    .map(|(n, _)| {
                                        let upstream = upstream_of(n)?;
                                        let redirects = p.redirects.as_ref().and_then(|m| {
                                            LocationRewrite::new(&upstream.spec.base, m)
                                        });
                                        Ok(ProxyTarget {
                                            upstream,
                                            redirects,
                                        })
                                    })
                                    .collect::<Result<Vec<_>, BuildError>>()?;
                            Some(Canary::new(c, targets, |up| {
                                metrics.canary_requests(&label, "", up)
                            }))
                        }
                    };
                    Handler::Proxy(ProxyRoute {
                        canary,
                        redirects: p
                            .redirects
                            .as_ref()
                            .and_then(|m| LocationRewrite::new(&upstream.spec.base, m)),
                        upstream,
                        path: p.path,
                        timeout,
                        idle_timeout: p.idle_timeout,
                        preserve_host: p.preserve_host,
                        max_body: spec.max_body,
                        cache: p.cache_ttl.map(|ttl| (cache.clone(), ttl)),
                        shared_cache: cluster
                            .clone()
                            .filter(|_| p.cache_scope == crate::config::Scope::Cluster),
                        upgrade: p.upgrade,
                        underscores_in_headers: spec.underscores_in_headers,
                        authenticated: spec.auth.is_some(),
                        mirrors: mirrors(&p.mirror, None)?,
                    })
                }
            };
            // An aggregate reads a body whole, so it always has a limit; a proxy
            // streams one, and has a limit only when the route sets one.
            let max_body = match &handler {
                Handler::Aggregate(agg) => Some(agg.max_body),
                Handler::Proxy(p) => p.max_body,
            };
            let auth = match spec.auth {
                Some(a) => Some(RouteAuth {
                    providers: a
                        .providers
                        .iter()
                        .map(|name| {
                            auth.get(name)
                                .cloned()
                                .ok_or_else(|| BuildError::UnknownProvider {
                                    route: spec.path.clone(),
                                    provider: name.clone(),
                                })
                        })
                        .collect::<Result<_, _>>()?,
                    optional: a.optional,
                    require: a.require,
                }),
                None => None,
            };
            let route = Route {
                auth,
                path: spec.path.clone(),
                series: metrics.route_series(&label, limit.is_some() || cluster_limit.is_some()),
                label,
                methods: spec.methods.clone(),
                limit,
                cluster_limit,
                max_body,
                handler,
                async_job,
            };
            routes
                .insert(&spec.path, &spec.methods, route)
                .map_err(|conflict| BuildError::RouteConflict {
                    route: spec.path.clone(),
                    conflict,
                })?;
        }
        let tls = match &compiled.server.tls {
            None => None,
            Some(spec) => {
                let before =
                    previous.and_then(|p| Some((p.config.server.tls.as_ref()?, p.tls.as_deref()?)));
                Some(crate::tls::server_config(spec, before)?)
            }
        };
        let access_log = match previous {
            Some(p) => {
                p.access_log.apply(&compiled.access_log)?;
                p.access_log.clone()
            }
            None => AccessLog::start(
                &compiled.access_log,
                DropCounters {
                    queue_full: metrics.access_log_dropped("queue_full"),
                    write_error: metrics.access_log_dropped("write_error"),
                },
            )?,
        };
        Ok(Self {
            server: compiled.server,
            tls,
            config,
            routes,
            upstreams,
            auth,
            claim_headers,
            token_params,
            cache,
            cluster,
            metrics,
            access_log,
            tracing,
            unmatched: Label::new("unmatched"),
            health: Label::new("health"),
            jobs,
            status_paths,
        })
    }
}

#[cfg(test)]
mod tests;
