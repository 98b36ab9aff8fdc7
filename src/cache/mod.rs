//! The response cache: one moka store per process, weighted by bytes, holding answers
//! ready to serve (a hit parses nothing). Concurrent misses for one key share one
//! upstream call; stale entries are served while one background refresh runs
//! (stale-while-revalidate) or when a refresh fails (stale-if-error).
//!
//! Freshness is judged on tokio's clock (testable with `tokio::time::pause`); moka's own
//! expiry only evicts entries once no window can use them any more.

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::{HeaderMap, HeaderValue, StatusCode};
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

mod key;
pub use key::{CacheKey, KeyQuery, Varying};

/// How long an answer may be served, and its stale windows (both after `ttl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CachePolicy {
    pub ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
}

impl CachePolicy {
    /// How long an entry can be of any use.
    fn retain(&self) -> Duration {
        self.ttl + self.stale_while_revalidate.max(self.stale_if_error)
    }
}

/// An answer as it is stored and served.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: StatusCode,
    /// Response headers to serve again (empty for aggregate backends).
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A stored answer and when it was stored.
#[derive(Debug)]
pub struct Entry {
    pub stored: Stored,
    stored_at: Instant,
    policy: CachePolicy,
}

impl Entry {
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
    /// Fetched now (possibly by another request for the same key); `stored` says
    /// whether it went into the cache.
    Miss { stored: bool },
}

/// Counters for metrics: clones share their counts, so the registry holds the same ones.
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    pub hits: Counter,
    pub misses: Counter,
    pub stale: Counter,
    pub coalesced: Counter,
}

type Fill<E> = Shared<BoxFuture<'static, Result<(Arc<Entry>, bool), E>>>;

/// Hashes cache keys: foldhash, seeded per process, several times cheaper than std's
/// SipHash on a URL (which was a tenth of a cached aggregate's instructions), and a key
/// is hashed on every lookup.
type KeyHasher = foldhash::fast::RandomState;

/// The process-wide cache. Cheap to share: clone the `Arc`.
pub struct ResponseCache {
    store: moka::future::Cache<CacheKey, Arc<Entry>, KeyHasher>,
    /// Fills under way, by key; the lock is never held across an await.
    inflight: Mutex<HashMap<CacheKey, Box<dyn std::any::Any + Send>>>,
    stats: CacheStats,
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
        Some(entry.policy.retain())
    }
}

impl ResponseCache {
    /// A cache holding at most `max_bytes` of keys and answers, counting into `stats`.
    pub fn new(max_bytes: u64, stats: CacheStats) -> Arc<Self> {
        let store = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &CacheKey, entry: &Arc<Entry>| {
                let headers: usize = entry
                    .stored
                    .headers
                    .iter()
                    .map(|(k, v)| k.as_str().len() + v.len())
                    .sum();
                u32::try_from(key.weight() + headers + entry.stored.body.len() + 64)
                    .unwrap_or(u32::MAX)
            })
            .expire_after(RetainFor)
            .build_with_hasher(KeyHasher::default());
        Arc::new(Self {
            store,
            inflight: Mutex::new(HashMap::new()),
            stats,
        })
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The entry for `key` if it is fresh: a hit, with nothing set up for a fetch. On
    /// `None`, `get_or_fetch` decides between stale, miss and coalescing.
    pub async fn fresh(&self, key: &KeyQuery<'_>) -> Option<Arc<Entry>> {
        let entry = self.store.get(key).await?;
        let age = Instant::now().saturating_duration_since(entry.stored_at);
        (age < entry.policy.ttl).then(|| {
            self.stats.hits.inc();
            entry
        })
    }

    /// Serves `key` from the cache when `policy` allows, else fetches it with `fetch`
    /// (once for all concurrent callers). `fetch` must own what it needs: it may run in
    /// the background after this call returns.
    pub async fn get_or_fetch<F, Fut, E>(
        self: &Arc<Self>,
        key: CacheKey,
        policy: CachePolicy,
        fetch: F,
    ) -> Result<(Arc<Entry>, CacheOutcome), E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Fetched, E>> + Send + 'static,
        E: Clone + Send + Sync + 'static,
    {
        let now = Instant::now();
        let mut fallback = None;
        if let Some(entry) = self.store.get(&key).await {
            let age = now.saturating_duration_since(entry.stored_at);
            if age < entry.policy.ttl {
                self.stats.hits.inc();
                return Ok((entry, CacheOutcome::Hit));
            }
            if age < entry.policy.ttl + entry.policy.stale_while_revalidate {
                self.stats.stale.inc();
                let refresh = self.fill(key, policy, fetch);
                tokio::spawn(async move {
                    let _ = refresh.await;
                });
                return Ok((entry, CacheOutcome::Stale));
            }
            if age < entry.policy.ttl + entry.policy.stale_if_error {
                fallback = Some(entry);
            }
        }
        self.stats.misses.inc();
        match self.fill(key, policy, fetch).await {
            Ok((entry, stored)) => Ok((entry, CacheOutcome::Miss { stored })),
            Err(e) => match fallback {
                Some(stale) => {
                    self.stats.stale.inc();
                    Ok((stale, CacheOutcome::Stale))
                }
                None => Err(e),
            },
        }
    }

    /// The fill under way for `key`, or a new one. A fill stores its answer before it
    /// leaves the in-flight map, so a caller arriving in between finds one or the other.
    fn fill<F, Fut, E>(self: &Arc<Self>, key: CacheKey, policy: CachePolicy, fetch: F) -> Fill<E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Fetched, E>> + Send + 'static,
        E: Clone + Send + Sync + 'static,
    {
        let mut inflight = self
            .inflight
            .lock()
            .expect("the in-flight map is never poisoned");
        if let Some(existing) = inflight.get(&key).and_then(|f| f.downcast_ref::<Fill<E>>()) {
            self.stats.coalesced.inc();
            return existing.clone();
        }
        let cache = self.clone();
        let owned_key = key.clone();
        let fill: Fill<E> = async move {
            let result = fetch().await;
            let out = match result {
                Ok(fetched) => {
                    let stored = fetched.cacheable
                        && fetched.stored.status.is_success()
                        && !policy.ttl.is_zero();
                    let entry = Arc::new(Entry {
                        stored: fetched.stored,
                        stored_at: Instant::now(),
                        policy,
                    });
                    if stored {
                        cache.store.insert(owned_key.clone(), entry.clone()).await;
                    }
                    Ok((entry, stored))
                }
                Err(e) => Err(e),
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
        fill
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
                let keys: Vec<Arc<CacheKey>> = self
                    .store
                    .iter()
                    .filter(|(k, _)| k.url() == url)
                    .map(|(k, _)| k)
                    .collect();
                for key in &keys {
                    self.store.invalidate(key.as_ref()).await;
                }
                keys.len() as u64
            }
        }
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
