//! Cluster-scoped limits (`scope = "cluster"`): one GCRA bucket per key in the
//! `[cluster]` store, shared by every instance, so N instances together admit what one
//! would. One store call per request; when it fails or runs late (or the store's breaker
//! is open), `on_error` decides: `local` counts the request in an in-process limiter at
//! the limit divided by `expected_instances`, `allow` lets it through, `deny` refuses it.
//!
//! A bucket's key is the same in every instance: the route's identity (a digest of its
//! path pattern and methods, so two routes never share buckets) and the client's key,
//! whose header values and identities are digested with SHA-256, not with the per-process
//! seeds the local limiter uses.

use super::{ClientKey, LimitKey, Rate, RouteLimit, Verdict};
use crate::cluster::{Cluster, GcraAnswer, GcraLimit, key_digest};
use crate::config::OnStoreError;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// What a request gets when the store cannot say.
#[derive(Debug)]
pub enum Fallback {
    /// This instance's share of the limit.
    Local(RouteLimit),
    Allow,
    Deny,
}

/// The decision for one request under a cluster-scoped limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterVerdict {
    /// From the store, or from the local fallback.
    Decided(Verdict),
    /// The store could not say and `on_error = "allow"`: let through, nothing counted,
    /// so no `RateLimit-Remaining` to tell.
    Allowed,
}

/// One cluster-scoped limit: a route's (keyed by client) or an upstream's (one bucket).
#[derive(Debug)]
pub struct ClusterLimit {
    pub key: LimitKey,
    /// The bucket size, for `RateLimit-Limit`.
    pub burst: u32,
    gcra: GcraLimit,
    /// `key_prefix` + `rl:` + the owner's identity + `:`: each request's key is this and
    /// the client's.
    prefix: String,
    fallback: Fallback,
    cluster: Arc<Cluster>,
}

impl ClusterLimit {
    /// A limit of `rate` (bursts of `burst`, default the rate's count) in `cluster`,
    /// owned by `owner` (a route's `path` and methods, or `upstream:NAME`).
    pub fn new(
        cluster: Arc<Cluster>,
        owner: &str,
        rate: Rate,
        burst: Option<NonZeroU32>,
        key: LimitKey,
        max_keys: usize,
    ) -> Self {
        let burst_size = burst.unwrap_or(rate.count);
        let spec = cluster.spec();
        let fallback = match spec.on_error {
            OnStoreError::Allow => Fallback::Allow,
            OnStoreError::Deny => Fallback::Deny,
            OnStoreError::Local => {
                let n = spec.expected_instances;
                // The rate divided exactly (the period multiplied), the burst rounded
                // down but never below 1.
                let share = Rate {
                    count: rate.count,
                    per: rate.per.saturating_mul(n.get()),
                };
                let share_burst =
                    NonZeroU32::new(burst_size.get() / n.get()).unwrap_or(NonZeroU32::MIN);
                Fallback::Local(RouteLimit::new(
                    share,
                    Some(share_burst),
                    key.clone(),
                    max_keys,
                ))
            }
        };
        let prefix = cluster.key("rl", &format!("{}:", key_digest(&[owner.as_bytes()], 8)));
        Self {
            key,
            burst: burst_size.get(),
            gcra: GcraLimit {
                interval: (rate.per / rate.count.get()).max(Duration::from_micros(1)),
                burst: burst_size.get(),
            },
            prefix,
            fallback,
            cluster,
        }
    }

    /// Whether this limit is in `cluster` (the same store object): a reload that kept
    /// the store keeps the limit.
    pub fn is_in(&self, cluster: &Arc<Cluster>) -> bool {
        Arc::ptr_eq(&self.cluster, cluster)
    }

    /// Counts one request for `key` (made with [`ClientKey::stable`]) in the store, or
    /// applies `on_error`.
    pub async fn check(&self, key: &ClientKey) -> ClusterVerdict {
        let mut store_key = String::with_capacity(self.prefix.len() + 40);
        store_key.push_str(&self.prefix);
        write_client(&mut store_key, key);
        match self.cluster.throttle(&store_key, self.gcra).await {
            Ok(GcraAnswer::Allowed { remaining }) => {
                ClusterVerdict::Decided(Verdict::Allowed { remaining })
            }
            Ok(GcraAnswer::Limited { retry_after }) => {
                ClusterVerdict::Decided(Verdict::Limited { retry_after })
            }
            Err(_) => match &self.fallback {
                Fallback::Local(limit) => ClusterVerdict::Decided(limit.check(key)),
                Fallback::Allow => ClusterVerdict::Allowed,
                Fallback::Deny => ClusterVerdict::Decided(Verdict::Limited {
                    retry_after: Duration::from_secs(1),
                }),
            },
        }
    }

    /// Forgets the local fallback's full buckets (see [`RouteLimit::prune`]).
    pub fn prune(&self) {
        if let Fallback::Local(limit) = &self.fallback {
            limit.prune();
        }
    }
}

/// A client's key as text, the same in every instance.
fn write_client(out: &mut String, key: &ClientKey) {
    let _ = match key {
        ClientKey::Ip(ip) => write!(out, "ip:{ip}"),
        ClientKey::Value(v) => write!(out, "v:{v:032x}"),
        ClientKey::Anonymous => write!(out, "anonymous"),
        ClientKey::Global => write!(out, "global"),
    };
}

impl ClientKey {
    /// The key of a header value or identity for a cluster-scoped limit: 128 bits of
    /// SHA-256, the same in every instance (unlike [`ClientKey::value`], whose seeds are
    /// per process), and not something a client can aim at another's bucket.
    pub fn stable(bytes: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest.as_ref()[..16]);
        ClientKey::Value(u128::from_be_bytes(first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stable_key_is_the_same_for_the_same_value_and_differs_otherwise() {
        assert_eq!(ClientKey::stable(b"alice"), ClientKey::stable(b"alice"));
        assert_ne!(ClientKey::stable(b"alice"), ClientKey::stable(b"bob"));
        let mut text = String::new();
        write_client(&mut text, &ClientKey::stable(b"alice"));
        assert_eq!(text.len(), 2 + 32);
        let mut ip = String::new();
        write_client(&mut ip, &ClientKey::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(ip, "ip:2001:db8::1");
    }

    #[test]
    fn a_route_identity_is_a_short_digest() {
        assert_eq!(key_digest(&[b"/a GET"], 8).len(), 16);
        assert_ne!(key_digest(&[b"/a GET"], 8), key_digest(&[b"/b GET"], 8));
    }
}
