//! What the cache holds: a stored answer ([`Stored`]), its entry (when stored, under
//! which policy, or a `pass` marker), their weights in bytes, and how an answer was
//! obtained ([`CacheOutcome`]).

use super::owned_value;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Bytes an entry costs beyond what its key and answer hold: moka's bookkeeping for it
/// (hash table slot, access and write order nodes, expiry timer), the `Arc`s and the
/// allocator's rounding. `tests::resident_bytes_per_entry` measures about 170; this
/// leaves room for the allocator's size classes.
pub(super) const ENTRY_OVERHEAD: usize = 256;
/// Bytes one slot of a stored `HeaderMap` costs besides the name and value bytes: its
/// bucket (hash, links, name, value: 104) and its index.
pub(super) const HEADER_SLOT: usize = 112;

/// How long an answer may be served, and its stale windows (both after `ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
}

impl CachePolicy {
    /// How long an entry can be of any use.
    pub(super) fn retain(&self) -> Duration {
        self.ttl + self.stale_while_revalidate.max(self.stale_if_error)
    }
}

/// An answer as it is stored and served.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub status: StatusCode,
    /// Response headers to serve again (empty for aggregate backends).
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Stored {
    /// A copy whose header values and body own allocations of their own size. Header
    /// names are the config's or owned copies already (`HeaderName` copies on parsing).
    pub fn to_owned_copy(&self) -> Self {
        let mut headers = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            headers.append(name.clone(), owned_value(value));
        }
        Self {
            status: self.status,
            headers,
            body: Bytes::copy_from_slice(&self.body),
        }
    }

    /// Bytes held: the body, each header's name and value, and the map's slots.
    pub fn weight(&self) -> usize {
        let fields: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        fields + self.headers.capacity() * HEADER_SLOT + self.body.len()
    }
}

/// A stored answer and when it was stored; or a marker that the key's answers are not
/// to be stored (`pass`), so requests for it call the upstream without waiting on each
/// other.
#[derive(Debug)]
pub struct Entry {
    pub stored: Stored,
    pub(super) stored_at: Instant,
    pub(super) policy: CachePolicy,
    pub(super) pass: bool,
}

impl Stored {
    pub(super) fn empty() -> Self {
        Self {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

impl Entry {
    pub(super) fn new(
        stored: Stored,
        stored_at: Instant,
        policy: CachePolicy,
        pass: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            stored,
            stored_at,
            policy,
            pass,
        })
    }

    /// Whether the entry is a stored answer within its `ttl`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        !self.pass && now.saturating_duration_since(self.stored_at) < self.policy.ttl
    }

    /// Seconds of freshness left; negative once stale.
    pub fn ttl_left(&self, now: Instant) -> i64 {
        let fresh_until = self.stored_at + self.policy.ttl;
        if now <= fresh_until {
            (fresh_until - now).as_secs() as i64
        } else {
            -((now - fresh_until).as_secs().max(1) as i64)
        }
    }
}

/// A fetched answer, and whether it may be stored (upstream `no-store`/`private` say no).
#[derive(Debug, Clone)]
pub struct Fetched {
    pub stored: Stored,
    pub cacheable: bool,
}

/// How an answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Fresh from the cache.
    Hit,
    /// Stale from the cache: a refresh runs in the background, or it failed.
    Stale,
    /// Fresh from the second level (`cache_scope = "cluster"`): another instance
    /// fetched it.
    SharedHit,
    /// Fetched now (possibly by another request for the same key); `stored` says
    /// whether it went into the cache.
    Miss { stored: bool },
}
