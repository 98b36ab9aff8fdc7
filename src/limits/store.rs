//! The keyed state of one route's rate limit, bounded: at most `max_keys` buckets, each
//! an 8-byte theoretical arrival time under a fixed-size key, evicting the least recently
//! used key when full, as nginx's fixed-size `limit_req` zone does. An evicted key starts
//! again with a full bucket, exactly as a key never seen.

use super::ClientKey;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use lru::LruCache;
use std::hash::BuildHasher;
use std::sync::Mutex;

type Hasher = foldhash::fast::RandomState;

/// Below this many keys the store is one LRU list; above it, 16 lists by key hash, so
/// concurrent requests rarely wait on one lock (the order is then least recently used
/// per list, which is the same thing for keys spread evenly).
const SHARD_ABOVE: usize = 16 * 1024;
const SHARDS: usize = 16;

pub struct LruStore {
    shards: Box<[Mutex<LruCache<ClientKey, u64, Hasher>>]>,
    per_shard: usize,
    hasher: Hasher,
}

impl LruStore {
    /// A store of at most `max_keys` keys (at least one).
    pub fn new(max_keys: usize) -> Self {
        let max_keys = max_keys.max(1);
        let shards = if max_keys >= SHARD_ABOVE { SHARDS } else { 1 };
        Self {
            // Unbounded lists that this store trims itself: a bounded one would allocate
            // its whole capacity up front.
            shards: (0..shards)
                .map(|_| Mutex::new(LruCache::unbounded_with_hasher(Hasher::default())))
                .collect(),
            per_shard: max_keys.div_ceil(shards),
            hasher: Hasher::default(),
        }
    }

    fn shard(&self, key: &ClientKey) -> &Mutex<LruCache<ClientKey, u64, Hasher>> {
        let i = if self.shards.len() == 1 {
            0
        } else {
            self.hasher.hash_one(key) as usize % self.shards.len()
        };
        &self.shards[i]
    }
}

impl StateStore for LruStore {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // The lock is held for one GCRA step, never across an await.
        let mut shard = self.shard(key).lock().expect("never poisoned");
        if let Some(tat) = shard.get_mut(key) {
            let (result, next) = f(Some(Nanos::from(*tat)))?;
            *tat = next.into();
            return Ok(result);
        }
        let (result, next) = f(None)?;
        if shard.len() >= self.per_shard {
            shard.pop_lru();
        }
        shard.push(*key, next.into());
        Ok(result)
    }
}

impl ShrinkableKeyedStateStore<ClientKey> for LruStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let drop_below = drop_below.as_u64();
        for shard in &self.shards {
            shard
                .lock()
                .expect("never poisoned")
                .retain(|_, tat| *tat > drop_below);
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("never poisoned").len())
            .sum()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
