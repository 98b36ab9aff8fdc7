//! A route's rate-limit state across a reload: the previous snapshot's buckets when
//! the same route (path and methods) keeps the same limit, new ones otherwise.

use crate::cluster::Cluster;
use crate::config::{RateLimitSpec, RouteSpec};
use crate::gateway::Gateway;
use crate::limits::{ClusterLimit, RouteLimit};
use std::sync::Arc;

/// The route's local limit `l` and its buckets.
pub(super) fn route_limit(
    previous: Option<&Gateway>,
    spec: &RouteSpec,
    l: RateLimitSpec,
) -> (RateLimitSpec, Arc<RouteLimit>) {
    let kept = previous.and_then(|p| {
        p.routes.iter().find_map(|r| match &r.limit {
            Some((was, limit)) if r.path == spec.path && r.methods == spec.methods && *was == l => {
                Some(limit.clone())
            }
            _ => None,
        })
    });
    let limit = kept
        .unwrap_or_else(|| Arc::new(RouteLimit::new(l.rate, l.burst, l.key.clone(), l.max_keys)));
    (l, limit)
}

/// The route's cluster-scoped limit `l`, its buckets in `store`.
pub(super) fn cluster_limit(
    previous: Option<&Gateway>,
    spec: &RouteSpec,
    l: RateLimitSpec,
    store: &Arc<Cluster>,
) -> (RateLimitSpec, Arc<ClusterLimit>) {
    let kept = previous.and_then(|p| {
        p.routes.iter().find_map(|r| match &r.cluster_limit {
            Some((was, limit))
                if r.path == spec.path
                    && r.methods == spec.methods
                    && *was == l
                    && limit.is_in(store) =>
            {
                Some(limit.clone())
            }
            _ => None,
        })
    });
    let limit = kept.unwrap_or_else(|| {
        // The route's identity in the store: its pattern and methods.
        let owner = format!("{} {:?}", spec.path, spec.methods);
        Arc::new(ClusterLimit::new(
            store.clone(),
            &owner,
            l.rate,
            l.burst,
            l.key.clone(),
            l.max_keys,
        ))
    });
    (l, limit)
}
