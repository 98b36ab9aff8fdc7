//! The response cache: one moka store per process, weighted by the bytes it holds,
//! holding answers ready to serve (a hit parses nothing). Concurrent misses for one key
//! wait for one upstream call, and share its answer only if it was stored: an answer the
//! upstream says is not to be stored goes to the request that made it, each waiter makes
//! its own call, and a marker makes later requests for the key skip the wait while it
//! lasts (Varnish's hit-for-miss). Stale entries are served while one background refresh
//! runs (stale-while-revalidate) or when a refresh fails (stale-if-error).
//!
//! What is stored owns its bytes: an answer read from a socket is a slice of a receive
//! buffer, which a stored slice would keep alive whole, so keys, headers and bodies are
//! copied into allocations of their own size when (and only when) they are stored.
//!
//! Freshness is judged on tokio's clock (testable with `tokio::time::pause`); moka's own
//! expiry only evicts entries once no window can use them any more.

use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::{HeaderMap, HeaderValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
mod entry;
mod key;
#[doc(hidden)]
pub mod purge_events;
mod shared;
mod shared_value;
use entry::ENTRY_OVERHEAD;
pub use entry::{CacheOutcome, CachePolicy, Entry, Fetched, Stored};
pub use key::{CacheKey, KeyQuery, KeyedBy, StoredForm, Varying, owned_value};
pub use purge_events::{FOLLOW_EVERY, PURGE_OUTCOMES, PurgeFollower, announce as announce_purge};
use shared::{Read, WallClock};
pub use shared::{SHARED_OUTCOMES, SecondLevel, SharedLabels, purge as purge_shared};
pub use shared_value::{DecodeError, SharedEntry, decode, encode};

/// Counters for metrics: clones share their counts, so the registry holds the same ones.
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    pub hits: Counter,
    pub misses: Counter,
    pub stale: Counter,
    pub coalesced: Counter,
    /// The second level's outcomes, by [`SHARED_OUTCOMES`].
    pub shared: Family<SharedLabels, Counter>,
    /// The purge stream's events here, by [`PURGE_OUTCOMES`].
    pub purge_events: Family<SharedLabels, Counter>,
}

/// How a fill's answer came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Fetched here and stored.
    Stored,
    /// Fetched here, not to be stored: the answer is the fetching request's alone.
    NotStored,
    /// Another instance's answer, read from the second level.
    Shared,
}

impl Settled {
    fn of(stored: bool) -> Self {
        if stored {
            Self::Stored
        } else {
            Self::NotStored
        }
    }
}

type Fill<E> = Shared<BoxFuture<'static, Result<(Arc<Entry>, Settled), E>>>;

/// A fetch failure, as the cache needs to know it.
pub trait FetchError: Clone + Send + Sync + 'static {
    /// Whether the failure carries what an upstream answered (a status and a body): that
    /// belongs to the request that made the call, so requests that waited on it make
    /// their own calls. A failure without an answer (no connection, a timeout, a refusal
    /// by the gateway) is shared: it says nothing about the request, and sharing it spares
    /// a failing upstream the stampede.
    fn carries_answer(&self) -> bool;
}

/// How a request takes part in a fill.
enum Part<F, E> {
    /// It started the fill: the fill's result is its own.
    Leads(Fill<E>),
    /// It waits on another request's fill, keeping its own fetch (and key) in case the
    /// result is not one to share.
    Waits(Fill<E>, F, CacheKey),
}

/// Hashes cache keys: foldhash, seeded per process. A key is hashed on every lookup, and
/// foldhash is several times cheaper than std's SipHash on a URL.
type KeyHasher = foldhash::fast::RandomState;

/// The process-wide cache. Cheap to share: clone the `Arc`.
pub struct ResponseCache {
    store: moka::future::Cache<CacheKey, Arc<Entry>, KeyHasher>,
    /// Fills under way, by key; the lock is never held across an await.
    inflight: Mutex<HashMap<CacheKey, Box<dyn std::any::Any + Send>>>,
    stats: CacheStats,
    /// The clock second-level entries' times travel on.
    clock: WallClock,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.store.entry_count())
            .field("bytes", &self.store.weighted_size())
            .finish()
    }
}

struct RetainFor;

impl moka::Expiry<CacheKey, Arc<Entry>> for RetainFor {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        entry: &Arc<Entry>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        // An entry read from the second level is already as old as its writer's copy.
        let age = Instant::now().saturating_duration_since(entry.stored_at);
        Some(entry.policy.retain().saturating_sub(age))
    }
}

impl ResponseCache {
    /// A cache holding at most `max_bytes` of keys and answers, counting into `stats`.
    pub fn new(max_bytes: u64, stats: CacheStats) -> Arc<Self> {
        Self::with_clock(max_bytes, stats, WallClock::new())
    }

    /// As [`ResponseCache::new`], on `clock`: tests give instances one clock, since
    /// tokio's paused clock does not move the system's.
    fn with_clock(max_bytes: u64, stats: CacheStats, clock: WallClock) -> Arc<Self> {
        let store = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            // What the entry keeps resident: its key, the answer's headers and body,
            // the entry and moka's bookkeeping for it.
            .weigher(|key: &CacheKey, entry: &Arc<Entry>| {
                let size = key.weight()
                    + entry.stored.weight()
                    + std::mem::size_of::<Entry>()
                    + ENTRY_OVERHEAD;
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .expire_after(RetainFor)
            .build_with_hasher(KeyHasher::default());
        Arc::new(Self {
            store,
            inflight: Mutex::new(HashMap::new()),
            stats,
            clock,
        })
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Entries and the bytes they weigh now, for the dashboard: moka's counts, brought
    /// up to date by running its pending maintenance first.
    pub async fn usage(&self) -> (u64, u64) {
        self.store.run_pending_tasks().await;
        (self.store.entry_count(), self.store.weighted_size())
    }

    /// The entry for `key` if it is fresh: a hit, with nothing set up for a fetch. On
    /// `None`, `get_or_fetch` decides between stale, miss and coalescing.
    pub async fn fresh(&self, key: &KeyQuery<'_>) -> Option<Arc<Entry>> {
        let entry = self.store.get(key).await?;
        let age = Instant::now().saturating_duration_since(entry.stored_at);
        (!entry.pass && age < entry.policy.ttl).then(|| {
            self.stats.hits.inc();
            entry
        })
    }

    /// Serves `key` from the cache when `policy` allows, else fetches it with `fetch`
    /// (once for all concurrent callers). With a `shared` second level, a key with
    /// nothing fresh here is read from it first, and a fetch takes its lock and writes
    /// its answer there too (see `shared`). `fetch` must own what it needs: it may run
    /// in the background after this call returns.
    pub async fn get_or_fetch<F, Fut, E>(
        self: &Arc<Self>,
        key: CacheKey,
        policy: CachePolicy,
        shared: Option<SecondLevel>,
        fetch: F,
    ) -> Result<(Arc<Entry>, CacheOutcome), E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Fetched, E>> + Send + 'static,
        E: FetchError,
    {
        let mut local = self.store.get(&key).await;
        if let Some(entry) = &local {
            let age = Instant::now().saturating_duration_since(entry.stored_at);
            if entry.pass {
                if age < entry.policy.ttl {
                    // Not stored lately: nothing to wait for, each request calls.
                    self.stats.misses.inc();
                    let (entry, stored) = self.fetch_alone(key, policy, fetch).await?;
                    return Ok((entry, CacheOutcome::Miss { stored }));
                }
                local = None;
            } else if age < entry.policy.ttl {
                self.stats.hits.inc();
                return Ok((entry.clone(), CacheOutcome::Hit));
            }
        }
        // Nothing fresh here: another instance may have stored a fresher answer, unless
        // a refresh of a stale answer is under way here (it brings one to both levels).
        let refreshing = shared.is_some()
            && local.as_ref().is_some_and(|entry| {
                let age = Instant::now().saturating_duration_since(entry.stored_at);
                age < entry.policy.ttl + entry.policy.stale_while_revalidate
                    && self.is_filling(&key)
            });
        let mut second = None;
        if let Some(level) = shared.filter(|_| !refreshing) {
            let rest = shared::key_rest(&key);
            match self.read_shared(&level, &rest).await {
                Read::Found(found) => {
                    shared::count(&self.stats.shared, "hit");
                    if local.as_ref().is_none_or(|l| found.stored_at > l.stored_at) {
                        self.store.insert(key.clone(), found.clone()).await;
                        if found.is_fresh(Instant::now()) {
                            return Ok((found, CacheOutcome::SharedHit));
                        }
                        local = Some(found);
                    }
                    second = Some((level, rest));
                }
                Read::Missing => {
                    shared::count(&self.stats.shared, "miss");
                    second = Some((level, rest));
                }
                // The store is in trouble: no lock, no write for this fetch.
                Read::Failed => {}
            }
        }
        let mut fallback = None;
        if let Some(entry) = local {
            let age = Instant::now().saturating_duration_since(entry.stored_at);
            if age < entry.policy.ttl + entry.policy.stale_while_revalidate {
                self.stats.stale.inc();
                if let Part::Leads(refresh) = self.fill(key, policy, second, fetch) {
                    tokio::spawn(async move {
                        let _ = refresh.await;
                    });
                }
                return Ok((entry, CacheOutcome::Stale));
            }
            if age < entry.policy.ttl + entry.policy.stale_if_error {
                fallback = Some(entry);
            }
        }
        self.stats.misses.inc();
        let result = match self.fill(key, policy, second, fetch) {
            Part::Leads(fill) => fill.await,
            Part::Waits(fill, fetch, key) => match fill.await {
                // Shared: what was stored, and failures that carry no answer.
                Ok((entry, settled @ (Settled::Stored | Settled::Shared))) => Ok((entry, settled)),
                Err(e) if !e.carries_answer() => Err(e),
                // The answer was the other request's alone: this one makes its own call.
                Ok((_, Settled::NotStored)) | Err(_) => self
                    .fetch_alone(key, policy, fetch)
                    .await
                    .map(|(entry, stored)| (entry, Settled::of(stored))),
            },
        };
        match result {
            Ok((entry, Settled::Shared)) => Ok((entry, CacheOutcome::SharedHit)),
            Ok((entry, settled)) => Ok((
                entry,
                CacheOutcome::Miss {
                    stored: settled == Settled::Stored,
                },
            )),
            Err(e) => match fallback {
                Some(stale) => {
                    self.stats.stale.inc();
                    Ok((stale, CacheOutcome::Stale))
                }
                None => Err(e),
            },
        }
    }

    /// Whether a fill for `key` is under way.
    fn is_filling(&self, key: &CacheKey) -> bool {
        self.inflight
            .lock()
            .expect("the in-flight map is never poisoned")
            .contains_key(key)
    }

    /// Joins the fill under way for `key`, or starts one. A fill stores its answer (or
    /// its pass marker) before it leaves the in-flight map, so a caller arriving in
    /// between finds one or the other.
    fn fill<F, Fut, E>(
        self: &Arc<Self>,
        key: CacheKey,
        policy: CachePolicy,
        second: Option<(SecondLevel, String)>,
        fetch: F,
    ) -> Part<F, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Fetched, E>> + Send + 'static,
        E: FetchError,
    {
        let mut inflight = self
            .inflight
            .lock()
            .expect("the in-flight map is never poisoned");
        if let Some(existing) = inflight.get(&key).and_then(|f| f.downcast_ref::<Fill<E>>()) {
            self.stats.coalesced.inc();
            return Part::Waits(existing.clone(), fetch, key);
        }
        let cache = self.clone();
        let owned_key = key.clone();
        let fill: Fill<E> = async move {
            let out = match second {
                None => match fetch().await {
                    Ok(fetched) => {
                        let (entry, stored) = cache.settle(&owned_key, policy, fetched).await;
                        Ok((entry, Settled::of(stored)))
                    }
                    Err(e) => Err(e),
                },
                Some((level, rest)) => {
                    cache
                        .fill_shared(&owned_key, policy, &level, &rest, fetch)
                        .await
                }
            };
            cache
                .inflight
                .lock()
                .expect("the in-flight map is never poisoned")
                .remove(&owned_key);
            out
        }
        .boxed()
        .shared();
        inflight.insert(key, Box::new(fill.clone()));
        Part::Leads(fill)
    }

    /// One request's own call, waiting on no other: for a key whose answers are not
    /// stored, or after a fill whose answer was another request's.
    async fn fetch_alone<F, Fut, E>(
        &self,
        key: CacheKey,
        policy: CachePolicy,
        fetch: F,
    ) -> Result<(Arc<Entry>, bool), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, E>>,
    {
        let fetched = fetch().await?;
        Ok(self.settle(&key, policy, fetched).await)
    }

    /// Stores a fetched answer when it may be stored (an owned copy), and says whether it
    /// was. A success the upstream forbids storing leaves a pass marker for `ttl`.
    async fn settle(
        &self,
        key: &CacheKey,
        policy: CachePolicy,
        fetched: Fetched,
    ) -> (Arc<Entry>, bool) {
        let success = fetched.stored.status.is_success();
        let now = Instant::now();
        if policy.ttl.is_zero() || !success {
            return (Entry::new(fetched.stored, now, policy, false), false);
        }
        if !fetched.cacheable {
            let pass = CachePolicy {
                ttl: policy.ttl,
                ..CachePolicy::default()
            };
            let marker = Entry::new(Stored::empty(), now, pass, true);
            self.store.insert(key.clone(), marker).await;
            // Not copied: it goes only to the request that asked for it.
            return (Entry::new(fetched.stored, now, policy, false), false);
        }
        let entry = Entry::new(fetched.stored.to_owned_copy(), now, policy, false);
        self.store.insert(key.clone(), entry.clone()).await;
        (entry, true)
    }

    /// Removes the entries for `url` (any method and headers), or every entry.
    pub async fn purge(&self, url: Option<&str>) -> u64 {
        match url {
            None => {
                // entry_count() lags behind until pending tasks run; counting is exact.
                let n = self.store.iter().count() as u64;
                self.store.invalidate_all();
                self.store.run_pending_tasks().await;
                n
            }
            Some(url) => {
                self.purge_urls(&std::collections::HashSet::from([url]))
                    .await
            }
        }
    }

    /// Removes the entries for each of `urls` (any method and headers), in one pass.
    pub async fn purge_urls(&self, urls: &std::collections::HashSet<&str>) -> u64 {
        let keys: Vec<Arc<CacheKey>> = self
            .store
            .iter()
            .filter(|(k, _)| urls.contains(k.url()))
            .map(|(k, _)| k)
            .collect();
        for key in &keys {
            self.store.invalidate(key.as_ref()).await;
        }
        keys.len() as u64
    }
}

/// Whether an upstream's `Cache-Control` forbids a shared cache from storing its answer.
pub fn forbids_storing<'a>(cache_control: impl IntoIterator<Item = &'a [u8]>) -> bool {
    cache_control
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|d| d.split(|&b| b == b'=').next().unwrap_or(b"").trim_ascii())
        .any(|d| d.eq_ignore_ascii_case(b"no-store") || d.eq_ignore_ascii_case(b"private"))
}

/// The `Cache-Control` values of a `HeaderMap`, as [`forbids_storing`] reads them.
pub fn cache_control(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .map(HeaderValue::as_bytes)
}

#[cfg(test)]
mod tests;
