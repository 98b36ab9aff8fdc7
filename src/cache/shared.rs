//! The second level of the cache (`cache_scope = "cluster"`): answers shared by every
//! instance through the cluster store, behind each instance's moka.
//!
//! - Keys: `cluster.key("cache", "<url digest>:<key digest>")`, each digest the first 16
//!   bytes of a SHA-256 in hex, so no client byte reaches a store key and one URL's
//!   entries share a prefix (`POST /cache/purge?url=` deletes by it). The lock of a key
//!   is `cluster.key("lock", <the same rest>)`.
//! - Values: `shared_value`'s [`encode`]/[`decode`], a versioned binary layout of the writer's windows,
//!   when it stored the answer, the status, kept headers and body. A value that does not
//!   decode whole (truncated, garbage, another version) is a miss.
//! - Time: `stored_at` travels as Unix milliseconds of the writer's [`WallClock`], the
//!   system clock read once when the cache was made and advanced by tokio's monotonic
//!   clock since, so a jump of the system clock never ages an entry. A reader turns it
//!   back into an age on its own clock: instances' clocks must agree (NTP) to within
//!   what an age may be off by; an age below zero (the writer's clock ahead) counts as 0.
//!   Redis drops the value itself (`PX`) once no window can use it.
//! - Single flight across instances: on a miss in both levels one instance takes a short
//!   lock (`SET NX PX`, a random token) and calls the upstream; the others poll for its
//!   answer a few times, then call the upstream themselves rather than wait long.
//!
//! A store error or timeout is a miss: the upstream is called and nothing is written.

use super::shared_value::{decode, encode};
use super::{CacheKey, CachePolicy, Entry, FetchError, Fetched, Settled};
use crate::cluster::{Cluster, ClusterError, key_digest};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The longest a lock is held: the upstream's timeout, at most this.
const MAX_LOCK: Duration = Duration::from_secs(30);
/// The longest waiters poll for another instance's answer.
const MAX_POLL: Duration = Duration::from_secs(1);
/// The first poll's sleep; each next one doubles, up to [`MAX_POLL_STEP`].
const FIRST_POLL_STEP: Duration = Duration::from_millis(5);
const MAX_POLL_STEP: Duration = Duration::from_millis(200);

/// The second level for one lookup: the store, and the upstream call's timeout, which
/// bounds how long the lock is held and how long others wait for it.
#[derive(Debug, Clone)]
pub struct SecondLevel {
    pub cluster: Arc<Cluster>,
    pub upstream_timeout: Duration,
}

impl SecondLevel {
    /// The lock's `PX`: the upstream's timeout, capped, and never zero.
    fn lock_ttl(&self) -> Duration {
        self.upstream_timeout
            .clamp(Duration::from_millis(1), MAX_LOCK)
    }

    /// How long waiters poll: a quarter of the upstream's timeout, capped, so that a
    /// waiter that gives up still has most of its time for its own call.
    fn poll_budget(&self) -> Duration {
        (self.upstream_timeout / 4).min(MAX_POLL)
    }
}

/// `fanout_cache_shared_total{outcome}`: what the second level did.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SharedLabels {
    pub outcome: &'static str,
}

/// The outcomes counted, each at 0 from the start: `hit` (a usable answer read from the
/// store), `miss` (none there), `stored` (an answer written), `too_large` (over
/// `max_entry`, kept local), `waited` (another instance's answer arrived while polling),
/// `gave_up` (polling ran out; the upstream called here), `error` (a store call failed
/// or ran late: treated as a miss, nothing written).
pub const SHARED_OUTCOMES: [&str; 7] = [
    "hit",
    "miss",
    "stored",
    "too_large",
    "waited",
    "gave_up",
    "error",
];

pub(super) fn count(stats: &Family<SharedLabels, Counter>, outcome: &'static str) {
    stats.get_or_create(&SharedLabels { outcome }).inc();
}

/// The wall clock entries' `stored_at` travels on: the system clock read once, then
/// advanced by tokio's clock (monotonic, and paused in tests).
#[derive(Debug, Clone, Copy)]
pub(super) struct WallClock {
    unix_ms: u64,
    at: Instant,
}

impl WallClock {
    pub(super) fn new() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self {
            unix_ms,
            at: Instant::now(),
        }
    }

    /// Unix milliseconds at `instant`.
    pub(super) fn unix_ms(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.at).as_millis() as u64;
        let before = self.at.saturating_duration_since(instant).as_millis() as u64;
        (self.unix_ms + since).saturating_sub(before)
    }

    /// The local instant of Unix milliseconds `ms`, no later than now.
    pub(super) fn instant(&self, ms: u64) -> Instant {
        let now = Instant::now();
        let age = self.unix_ms(now).saturating_sub(ms);
        now.checked_sub(Duration::from_millis(age)).unwrap_or(now)
    }
}

/// What follows `cache:` (and `lock:`) for entries of `url`: the purge prefix.
pub fn url_prefix(url: &str) -> String {
    let mut rest = key_digest(&[url.as_bytes()], 16);
    rest.push(':');
    rest
}

/// The rest of a key's store keys: `<url digest>:<key digest>`.
pub(super) fn key_rest(key: &CacheKey) -> String {
    let mut rest = url_prefix(key.url());
    rest.push_str(&key_digest(&[&key.canonical()], 16));
    rest
}

/// What the cross-instance lock says a fetch is to do.
pub(super) enum Lock {
    /// This instance holds it (with its token): fetch, write, unlock.
    Held(String),
    /// Another instance's fresh answer arrived while waiting.
    Answered(Arc<Entry>),
    /// Fetch without it: the holder took too long (`write`: still write the answer), or
    /// the store failed (nothing written).
    Without { write: bool },
}

/// What a read of the second level found.
pub(super) enum Read {
    /// An entry whose windows still allow some use, as a local entry.
    Found(Arc<Entry>),
    /// Nothing usable.
    Missing,
    /// The store failed or ran late: a miss, and nothing is to be written.
    Failed,
}

impl super::ResponseCache {
    /// Reads `key` from the second level: an entry some window can still use, made a
    /// local entry on this instance's clock.
    pub(super) async fn read_shared(&self, level: &SecondLevel, rest: &str) -> Read {
        let key = level.cluster.key("cache", rest);
        let value = match level.cluster.get(&key).await {
            Ok(Some(value)) => value,
            Ok(None) => return Read::Missing,
            Err(e) => {
                self.store_failed("get", &e);
                return Read::Failed;
            }
        };
        let entry = match decode(value) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::debug!(error = %e, "shared cache value unreadable, a miss");
                return Read::Missing;
            }
        };
        let stored_at = self.clock.instant(entry.stored_at_ms);
        if Instant::now().saturating_duration_since(stored_at) >= entry.policy.retain() {
            return Read::Missing;
        }
        Read::Found(Entry::new(entry.stored, stored_at, entry.policy, false))
    }

    /// Writes a stored entry to the second level for what it can still be used for,
    /// unless its value is over `max_entry` (it stays local).
    pub(super) async fn write_shared(&self, level: &SecondLevel, rest: &str, entry: &Entry) {
        let age = Instant::now().saturating_duration_since(entry.stored_at);
        let Some(left) = entry
            .policy
            .retain()
            .checked_sub(age)
            .filter(|d| !d.is_zero())
        else {
            return;
        };
        let value = encode(
            &entry.stored,
            entry.policy,
            self.clock.unix_ms(entry.stored_at),
        );
        if value.len() as u64 > level.cluster.spec().max_entry {
            count(&self.stats.shared, "too_large");
            return;
        }
        let key = level.cluster.key("cache", rest);
        match level.cluster.set(&key, value, left).await {
            Ok(()) => count(&self.stats.shared, "stored"),
            Err(e) => self.store_failed("set", &e),
        }
    }

    fn store_failed(&self, call: &'static str, e: &ClusterError) {
        count(&self.stats.shared, "error");
        tracing::debug!(call, error = %e, "shared cache store call failed, a miss");
    }

    /// A fill through the second level: takes the key's lock (or waits for the
    /// holder's answer), fetches, stores here and there, unlocks.
    pub(super) async fn fill_shared<F, Fut, E>(
        &self,
        key: &CacheKey,
        policy: CachePolicy,
        level: &SecondLevel,
        rest: &str,
        fetch: F,
    ) -> Result<(Arc<Entry>, Settled), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, E>>,
        E: FetchError,
    {
        let (token, write) = match self.lock_or_wait(level, rest).await {
            Lock::Answered(entry) => {
                self.store.insert(key.clone(), entry.clone()).await;
                return Ok((entry, Settled::Shared));
            }
            Lock::Held(token) => (Some(token), true),
            Lock::Without { write } => (None, write),
        };
        let out = match fetch().await {
            Ok(fetched) => {
                let (entry, stored) = self.settle(key, policy, fetched).await;
                if stored && write {
                    self.write_shared(level, rest, &entry).await;
                }
                Ok((entry, Settled::of(stored)))
            }
            Err(e) => Err(e),
        };
        if let Some(token) = token {
            self.unlock(level, rest, &token).await;
        }
        out
    }

    /// Takes the cross-instance lock of a key, or polls for the holder's answer a few
    /// times within the poll budget.
    async fn lock_or_wait(&self, level: &SecondLevel, rest: &str) -> Lock {
        let lock = level.cluster.key("lock", rest);
        let token = uuid::Uuid::new_v4().simple().to_string();
        match level.cluster.lock(&lock, &token, level.lock_ttl()).await {
            Ok(true) => return Lock::Held(token),
            Ok(false) => {}
            Err(e) => {
                self.store_failed("lock", &e);
                return Lock::Without { write: false };
            }
        }
        let until = Instant::now() + level.poll_budget();
        let mut step = FIRST_POLL_STEP;
        loop {
            let now = Instant::now();
            if now >= until {
                break;
            }
            tokio::time::sleep(step.min(until - now)).await;
            step = (step * 2).min(MAX_POLL_STEP);
            match self.read_shared(level, rest).await {
                Read::Found(entry) if entry.is_fresh(Instant::now()) => {
                    count(&self.stats.shared, "waited");
                    return Lock::Answered(entry);
                }
                Read::Found(_) | Read::Missing => {}
                Read::Failed => return Lock::Without { write: false },
            }
        }
        count(&self.stats.shared, "gave_up");
        Lock::Without { write: true }
    }

    /// Lets go of a lock this instance holds.
    async fn unlock(&self, level: &SecondLevel, rest: &str, token: &str) {
        let lock = level.cluster.key("lock", rest);
        if let Err(e) = level.cluster.unlock(&lock, token).await {
            self.store_failed("unlock", &e);
        }
    }
}

/// Deletes the second level's entries of `url`, or all of them: how many.
pub async fn purge(cluster: &Cluster, url: Option<&str>) -> Result<u64, ClusterError> {
    let rest = url.map(url_prefix).unwrap_or_default();
    cluster.delete_prefixed(&cluster.key("cache", &rest)).await
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
