//! The verified-claims cache: a token checked once is not checked again until its
//! `exp`. Keyed by a 128-bit keyed hash of the token (seeds drawn once per process),
//! and each entry keeps the token itself, compared on a hit: a hash collision is a miss,
//! never one token passing for another. Bounded in bytes (the tokens and their claims,
//! estimated), and tied to the key set's generation so a rotated or revoked set
//! invalidates what was verified with the old one.
//!
//! Not a cryptographic digest: the lookup is on every request of an authenticated
//! route, and SHA-256 of a token was most of a cache hit's cost.

use super::super::Identity;
use moka::Expiry;
use moka::future::Cache;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most bytes of tokens and their claims remembered per provider, as [`weight`]
/// estimates them: some 17,000 tokens of 1 KiB, 1,200 of the longest accepted (16 KiB).
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A token's keyed 128-bit hash.
pub type TokenHash = u128;

#[derive(Clone)]
struct Entry {
    /// The token, compared on a hit.
    token: Arc<str>,
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

/// An entry's estimated size in bytes: the token it keeps; its claims, parsed from the
/// payload (three quarters of the token) into values of about three times their text;
/// and a fixed part for the entry, the identity and its headers.
fn weight(_: &TokenHash, entry: &Entry) -> u32 {
    let token = entry.token.len();
    u32::try_from(token + token * 9 / 4 + 512).unwrap_or(u32::MAX)
}

impl Default for Verified {
    fn default() -> Self {
        Self::with_max_bytes(MAX_BYTES)
    }
}

impl Verified {
    /// A cache holding about `max_bytes` of tokens and claims.
    fn with_max_bytes(max_bytes: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(weight)
                .expire_after(UntilExp)
                .build(),
        }
    }

    /// The token's hash: two 64-bit foldhash hashes under seeds drawn once per process.
    pub fn hash(token: &str) -> TokenHash {
        static SEEDS: LazyLock<[foldhash::quality::RandomState; 2]> =
            LazyLock::new(Default::default);
        let [high, low] = &*SEEDS;
        u128::from(high.hash_one(token)) << 64 | u128::from(low.hash_one(token))
    }

    /// The identity `token` (whose hash is `hash`) was verified as, if it still holds:
    /// the same token, verified with the set of `generation`, not past its `exp` (with
    /// the leeway).
    pub async fn get(
        &self,
        hash: &TokenHash,
        token: &str,
        generation: u64,
    ) -> Option<Arc<Identity>> {
        let entry = self.cache.get(hash).await?;
        if !same_token(&entry.token, token) {
            // Another token with the same hash: verified in full, and it takes the slot.
            return None;
        }
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
        token: &str,
        identity: Arc<Identity>,
        valid_until: u64,
        generation: u64,
    ) {
        let entry = Entry {
            token: token.into(),
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

/// Whether two tokens are the same, in time that depends only on their lengths.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

/// Seconds since the epoch, as `exp` counts them.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_path::Path;

    fn identity(sub: &str) -> Arc<Identity> {
        let claims = serde_json::json!({ "sub": sub });
        let claims = claims.as_object().cloned().unwrap_or_default();
        let no_headers: &[(http::HeaderName, Path)] = &[];
        Arc::new(Identity::new("p".into(), no_headers, claims).expect("has a sub"))
    }

    #[tokio::test]
    async fn a_hit_needs_the_same_token_the_same_generation_and_no_expiry() {
        let verified = Verified::default();
        let (token, later) = ("aaa.bbb.ccc", now() + 3600);
        let hash = Verified::hash(token);
        verified
            .insert(hash, token, identity("ann"), later, 1)
            .await;
        let hit = verified.get(&hash, token, 1).await.expect("a hit");
        assert_eq!(&*hit.subject, "ann");
        // Another token filed under the same hash (a collision) is a miss, never Ann.
        assert!(verified.get(&hash, "aaa.bbb.ccd", 1).await.is_none());
        assert!(verified.get(&hash, "aaa.bbb.cc", 1).await.is_none());
        // A newer key set's generation is a miss.
        assert!(verified.get(&hash, token, 2).await.is_none());
        let expired = Verified::default();
        expired
            .insert(hash, token, identity("ann"), now() - 1, 1)
            .await;
        assert!(expired.get(&hash, token, 1).await.is_none());
    }

    #[tokio::test]
    async fn long_tokens_are_held_to_the_byte_bound() {
        // 4 KiB tokens weigh 13,824 bytes each: four fit in 64 KiB, not twenty.
        let verified = Verified::with_max_bytes(64 * 1024);
        let later = now() + 3600;
        for k in 0..20 {
            let token = format!("{k:04}.{}", "x".repeat(4091));
            let hash = Verified::hash(&token);
            verified
                .insert(hash, &token, identity("ann"), later, 1)
                .await;
        }
        verified.cache.run_pending_tasks().await;
        assert!(verified.cache.weighted_size() <= 64 * 1024);
        let held = verified.cache.entry_count();
        assert!((1..=4).contains(&held), "{held} entries held");
    }

    #[test]
    fn the_hash_is_the_same_for_the_same_token_and_differs_for_another() {
        assert_eq!(Verified::hash("a.b.c"), Verified::hash("a.b.c"));
        assert_ne!(Verified::hash("a.b.c"), Verified::hash("a.b.d"));
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
    }
}
