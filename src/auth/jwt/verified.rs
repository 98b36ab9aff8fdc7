//! The verified-claims cache: a token checked once is not checked again until its
//! `exp`. Keyed by the token's SHA-256 (a hash collision can never let one token pass
//! for another), bounded in entries, and tied to the key set's generation so a rotated
//! or revoked set invalidates what was verified with the old one.

use super::super::Identity;
use moka::Expiry;
use moka::future::Cache;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most tokens remembered per provider.
pub const MAX_ENTRIES: u64 = 10_000;

/// A token's SHA-256.
pub type TokenHash = [u8; 32];

#[derive(Clone)]
struct Entry {
    identity: Arc<Identity>,
    /// The token's `exp` plus the leeway, in seconds since the epoch.
    valid_until: u64,
    /// The key set generation it was verified with.
    generation: u64,
}

/// Verified tokens by hash.
pub struct Verified {
    cache: Cache<TokenHash, Entry>,
}

impl std::fmt::Debug for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Verified({} tokens)", self.cache.entry_count())
    }
}

struct UntilExp;

impl Expiry<TokenHash, Entry> for UntilExp {
    fn expire_after_create(&self, _: &TokenHash, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(entry.valid_until.saturating_sub(now())))
    }
}

impl Default for Verified {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .expire_after(UntilExp)
                .build(),
        }
    }
}

impl Verified {
    /// The token's hash.
    pub fn hash(token: &str) -> TokenHash {
        let mut out = [0; 32];
        out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
        out
    }

    /// The identity a token of this hash was verified as, if it still holds: verified
    /// with the set of `generation` and not past its `exp` (with the leeway).
    pub async fn get(&self, hash: &TokenHash, generation: u64) -> Option<Arc<Identity>> {
        let entry = self.cache.get(hash).await?;
        if entry.generation != generation || entry.valid_until < now() {
            self.cache.invalidate(hash).await;
            return None;
        }
        Some(entry.identity)
    }

    /// Remembers a verified token until `valid_until` (seconds since the epoch).
    pub async fn insert(
        &self,
        hash: TokenHash,
        identity: Arc<Identity>,
        valid_until: u64,
        generation: u64,
    ) {
        let entry = Entry {
            identity,
            valid_until,
            generation,
        };
        self.cache.insert(hash, entry).await;
    }

    /// Forgets every token (the key set changed).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }
}

/// Seconds since the epoch, as `exp` counts them.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
