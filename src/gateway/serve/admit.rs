//! The admission phases of a request: the route match (404, 405), then the route's
//! rate limit, local or cluster-scoped (429, `RateLimit-*` quota), and the declared
//! body size (413), before any upstream is called.

use super::Summary;
use crate::auth::Identity;
use crate::body::check_declared_length;
use crate::connection::ClientConnection;
use crate::error::GatewayError;
use crate::gateway::{Gateway, Route};
use crate::limits::{
    ClientKey, ClusterLimit, ClusterVerdict, LimitKey, RouteLimit, Verdict, client_key,
    client_key_by,
};
use crate::router::RouteMatch;
use http::{HeaderMap, Method};
use std::sync::Arc;

/// What the route match found.
pub(super) enum Matched<'s, 'p> {
    Found(&'s Route, matchit::Params<'s, 'p>),
    /// 404 or 405, counted as the summary says.
    Refused(GatewayError, Summary<'s>),
}

/// What `admit` decided.
pub(super) enum Admission<'s, 'p> {
    Admitted(Admitted<'s, 'p>),
    /// Refused, counted as the summary says.
    Refused(GatewayError, Summary<'s>),
}

/// A request admitted to its route.
pub(in crate::gateway) struct Admitted<'s, 'p> {
    pub(in crate::gateway) route: &'s Route,
    pub(in crate::gateway) params: matchit::Params<'s, 'p>,
    pub(in crate::gateway) quota: Option<Quota>,
    /// Who the request comes from, when the route has `auth` and it proved an identity.
    pub(in crate::gateway) identity: Option<Arc<Identity>>,
}

/// A route's rate limit and the requests left in it, for `RateLimit-*` headers.
#[derive(Clone, Copy)]
pub(in crate::gateway) struct Quota {
    pub(super) limit: u32,
    pub(super) remaining: u32,
}

/// A limit's verdict as `RateLimit-*` headers, or 429 with `Retry-After`.
fn quota_of(verdict: Verdict, limit: u32) -> Result<Quota, GatewayError> {
    match verdict {
        Verdict::Allowed { remaining } => Ok(Quota { limit, remaining }),
        Verdict::Limited { retry_after } => Err(GatewayError::RateLimited {
            // Whole seconds, rounded up: a client that waits that long gets in.
            retry_after_secs: retry_after.as_nanos().div_ceil(1_000_000_000).max(1) as u64,
            limit,
        }),
    }
}

impl Gateway {
    /// Finds the route: 405 on a path whose routes do not answer the method (counted on
    /// the route whose path matched), 404 on `unmatched`.
    pub(super) fn route_for<'s, 'p>(&'s self, method: &Method, path: &'p str) -> Matched<'s, 'p> {
        match self.routes.lookup(method, path) {
            RouteMatch::Found(route, params) => Matched::Found(route, params),
            RouteMatch::MethodNotAllowed { allow, on_path, .. } => {
                let allow = allow.clone();
                Matched::Refused(
                    GatewayError::MethodNotAllowed { allow },
                    Summary::route(on_path, None),
                )
            }
            RouteMatch::NotFound => {
                Matched::Refused(GatewayError::RouteNotFound, Summary::on(&self.unmatched))
            }
        }
    }

    /// Lets a request its route's auth phase passed in: its client's rate limit (429,
    /// keyed by `identity` with an `auth:` key; `counted`: what a cluster-scoped limit
    /// already decided) and its declared body size (413).
    pub(super) fn admit<'s, 'p>(
        &'s self,
        route: &'s Route,
        params: matchit::Params<'s, 'p>,
        identity: Option<Arc<Identity>>,
        counted: Option<Result<Option<Quota>, GatewayError>>,
        headers: &HeaderMap,
        connection: &ClientConnection,
    ) -> Admission<'s, 'p> {
        let counted = match (counted, &route.limit) {
            (Some(counted), _) => counted,
            (None, Some((_, limit))) => self
                .take_quota(limit, headers, connection, identity.as_deref())
                .map(Some),
            (None, None) => Ok(None),
        };
        let quota = match counted {
            Ok(quota) => quota,
            Err(e) => {
                self.metrics.rate_limited(&route.label);
                return Admission::Refused(e, Summary::route(route, None));
            }
        };
        if let Some(limit) = route.max_body
            && let Err(e) = check_declared_length(headers, limit)
        {
            return Admission::Refused(e.into(), Summary::route(route, quota));
        }
        Admission::Admitted(Admitted {
            route,
            params,
            quota,
            identity,
        })
    }

    /// Counts a request against its route's limit: the requests left, or 429.
    fn take_quota(
        &self,
        limit: &RouteLimit,
        headers: &HeaderMap,
        connection: &ClientConnection,
        identity: Option<&Identity>,
    ) -> Result<Quota, GatewayError> {
        let key = match (&limit.key, connection.client_cert()) {
            (LimitKey::ClientCert, Some(cert)) => ClientKey::value(cert.subject.as_bytes()),
            _ => client_key(
                &limit.key,
                connection.peer.ip(),
                headers,
                &self.server.trusted_proxies,
                identity,
            ),
        };
        quota_of(limit.check(&key), limit.burst)
    }

    /// Counts a request against its route's cluster-scoped limit: the requests left
    /// (none to tell when the store failed and `on_error = "allow"`), or 429.
    pub(super) async fn take_cluster_quota(
        &self,
        limit: &ClusterLimit,
        headers: &HeaderMap,
        connection: &ClientConnection,
        identity: Option<&Identity>,
    ) -> Result<Option<Quota>, GatewayError> {
        let key = match (&limit.key, connection.client_cert()) {
            (LimitKey::ClientCert, Some(cert)) => ClientKey::stable(cert.subject.as_bytes()),
            _ => client_key_by(
                &limit.key,
                connection.peer.ip(),
                headers,
                &self.server.trusted_proxies,
                identity,
                ClientKey::stable,
            ),
        };
        match limit.check(&key).await {
            ClusterVerdict::Decided(verdict) => quota_of(verdict, limit.burst).map(Some),
            ClusterVerdict::Allowed => Ok(None),
        }
    }
}
