//! Unit tests of the second level: the value's encoding, and two-level lookups of
//! several caches (instances) sharing one in-memory store, on tokio's paused clock.
use super::super::shared_value::tests::sample;
use super::super::{CacheOutcome, CacheStats, ResponseCache, Stored, decode, encode};
use super::*;
use crate::cluster::{ClusterStore, GcraAnswer, GcraLimit, StoreError, StoreFuture};
use crate::config::{ClusterSpec, OnStoreError, RedisTopology};
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A store in memory, expiring on tokio's clock; `down` fails every call, `hung` never
/// answers one.
#[derive(Debug, Default)]
struct MemoryStore {
    values: Mutex<HashMap<String, (Bytes, Instant)>>,
    down: AtomicBool,
    hung: AtomicBool,
    /// `get`s asked for.
    gets: AtomicUsize,
}

impl MemoryStore {
    fn call<T: Send + 'static>(&self, f: impl FnOnce() -> T) -> StoreFuture<'_, T> {
        if self.hung.load(Ordering::SeqCst) {
            return futures_util::future::pending().boxed();
        }
        if self.down.load(Ordering::SeqCst) {
            let e = StoreError::Unreachable("connection refused".into());
            return futures_util::future::ready(Err(e)).boxed();
        }
        futures_util::future::ready(Ok(f())).boxed()
    }

    fn live(&self, key: &str) -> Option<Bytes> {
        let values = self.values.lock().unwrap();
        let (value, until) = values.get(key)?;
        (Instant::now() < *until).then(|| value.clone())
    }

    fn put(&self, key: &str, value: Bytes, ttl: Duration) {
        let until = Instant::now() + ttl;
        self.values
            .lock()
            .unwrap()
            .insert(key.to_owned(), (value, until));
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        let values = self.values.lock().unwrap();
        let now = Instant::now();
        values
            .iter()
            .filter(|(k, (_, until))| k.starts_with(prefix) && now < *until)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl ClusterStore for MemoryStore {
    fn throttle<'a>(&'a self, _: &'a str, _: GcraLimit) -> StoreFuture<'a, GcraAnswer> {
        self.call(|| GcraAnswer::Allowed { remaining: 0 })
    }
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.call(|| self.live(key))
    }
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        self.call(|| self.put(key, value, ttl))
    }
    fn lock<'a>(&'a self, key: &'a str, token: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        self.call(|| {
            let free = self.live(key).is_none();
            if free {
                self.put(key, Bytes::copy_from_slice(token.as_bytes()), ttl);
            }
            free
        })
    }
    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> StoreFuture<'a, ()> {
        self.call(|| {
            if self.live(key).as_deref() == Some(token.as_bytes()) {
                self.values.lock().unwrap().remove(key);
            }
        })
    }
    fn delete_prefixed<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, u64> {
        self.call(|| {
            let keys = self.keys(prefix);
            let mut values = self.values.lock().unwrap();
            for key in &keys {
                values.remove(key);
            }
            keys.len() as u64
        })
    }
    fn ping(&self) -> StoreFuture<'_, ()> {
        self.call(|| ())
    }
}

fn cluster(store: &Arc<MemoryStore>, max_entry: u64) -> Arc<Cluster> {
    let spec = ClusterSpec {
        topology: RedisTopology::Standalone("redis://127.0.0.1:1".into()),
        display: "127.0.0.1:1".into(),
        key_prefix: "fanout:".into(),
        timeout: Duration::from_millis(5),
        on_error: OnStoreError::Local,
        expected_instances: NonZeroU32::MIN,
        breaker: (3, Duration::from_secs(1)),
        max_entry,
    };
    Arc::new(Cluster::new(spec, store.clone()))
}

fn level(cluster: &Arc<Cluster>) -> Option<SecondLevel> {
    Some(SecondLevel {
        cluster: cluster.clone(),
        upstream_timeout: Duration::from_secs(2),
    })
}

fn policy(ttl: u64, swr: u64, sie: u64) -> CachePolicy {
    CachePolicy {
        ttl: Duration::from_secs(ttl),
        stale_while_revalidate: Duration::from_secs(swr),
        stale_if_error: Duration::from_secs(sie),
    }
}

fn key(url: &str) -> CacheKey {
    CacheKey::new(http::Method::GET, url, &HeaderMap::new(), &[])
}

/// Another instance. They share one wall clock: tokio's paused clock, which the tests
/// advance, does not move the system's, which each instance would read when made.
fn instance() -> Arc<ResponseCache> {
    static CLOCK: std::sync::OnceLock<WallClock> = std::sync::OnceLock::new();
    let clock = *CLOCK.get_or_init(WallClock::new);
    ResponseCache::with_clock(1 << 20, CacheStats::default(), clock)
}

fn shared_count(cache: &ResponseCache, outcome: &'static str) -> u64 {
    cache
        .stats
        .shared
        .get_or_create(&SharedLabels { outcome })
        .get()
}

/// A fetch that counts its calls, waits `delay`, and answers `body` (or fails).
fn fetch(
    calls: &Arc<AtomicUsize>,
    body: &str,
    ok: bool,
    delay: Duration,
) -> impl FnOnce() -> BoxFuture<'static, Result<Fetched, String>> + Send + use<> {
    let calls = calls.clone();
    let body = Bytes::copy_from_slice(body.as_bytes());
    move || {
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            if !ok {
                return Err("upstream down".to_string());
            }
            let mut headers = HeaderMap::new();
            headers.insert("x-kept", HeaderValue::from_static("1"));
            Ok(Fetched {
                stored: Stored {
                    status: StatusCode::OK,
                    headers,
                    body,
                },
                cacheable: true,
            })
        }
        .boxed()
    }
}

#[test]
fn store_keys_hold_digests_and_group_one_urls_entries() {
    let a = key_rest(&key("http://u/a?x=\r\n*1"));
    let (url, whole) = a.split_once(':').unwrap();
    assert_eq!((url.len(), whole.len()), (32, 32));
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'));
    assert!(a.starts_with(&url_prefix("http://u/a?x=\r\n*1")));
    // Another user of the same URL: another key, the same URL prefix.
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer b"));
    let b = key_rest(&CacheKey::new(
        http::Method::GET,
        "http://u/a?x=\r\n*1",
        &headers,
        &[],
    ));
    assert_ne!(a, b);
    assert!(b.starts_with(url));
    assert!(!key_rest(&key("http://u/b")).starts_with(url));
}

#[tokio::test(start_paused = true)]
async fn another_instance_serves_what_one_fetched() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 1 << 20);
    let (one, two) = (instance(), instance());
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("http://u/a");
    let (_, outcome) = one
        .get_or_fetch(
            k.clone(),
            policy(10, 0, 0),
            level(&cluster),
            fetch(&calls, "a", true, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: true });
    assert_eq!(shared_count(&one, "stored"), 1);
    tokio::time::advance(Duration::from_secs(4)).await;
    let (entry, outcome) = two
        .get_or_fetch(
            k.clone(),
            policy(10, 0, 0),
            level(&cluster),
            fetch(&calls, "b", true, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::SharedHit);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(entry.stored.body, "a");
    assert_eq!(entry.stored.headers["x-kept"], "1");
    // As old as the first instance's copy: 6 of 10 seconds left.
    assert_eq!(entry.ttl_left(Instant::now()), 6);
    // Now in the second instance's first level.
    let (_, outcome) = two
        .get_or_fetch(
            k,
            policy(10, 0, 0),
            level(&cluster),
            fetch(&calls, "b", true, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn windows_hold_on_another_instance_and_the_store_drops_the_value_after_them() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("http://u/a");
    let p = policy(10, 5, 0);
    let go = |cache: Arc<ResponseCache>, body: &str| {
        let (k, level) = (k.clone(), level(&cluster));
        let f = fetch(&calls, body, true, Duration::ZERO);
        async move { cache.get_or_fetch(k, p, level, f).await }
    };
    go(instance(), "first").await.unwrap();
    // Stale on a new instance: served as is, refreshed once in the background.
    tokio::time::advance(Duration::from_secs(12)).await;
    let two = instance();
    let (entry, outcome) = go(two.clone(), "second").await.unwrap();
    assert_eq!(
        (outcome, &entry.stored.body[..]),
        (CacheOutcome::Stale, &b"first"[..])
    );
    assert_eq!(entry.ttl_left(Instant::now()), -2);
    for _ in 0..100 {
        if calls.load(Ordering::SeqCst) == 2 && shared_count(&two, "stored") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The refresh went to the store: a third instance has it fresh.
    let (entry, outcome) = go(instance(), "third").await.unwrap();
    assert_eq!(
        (outcome, &entry.stored.body[..]),
        (CacheOutcome::SharedHit, &b"second"[..])
    );
    // Past every window the store has dropped it: a miss.
    tokio::time::advance(Duration::from_secs(16)).await;
    assert!(store.keys("fanout:cache:").is_empty());
    let (_, outcome) = go(instance(), "fourth").await.unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: true });
}

#[tokio::test(start_paused = true)]
async fn while_a_stale_answer_is_refreshed_here_the_store_is_not_read_again() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("http://u/a");
    let p = policy(10, 30, 0);
    let cache = instance();
    cache
        .get_or_fetch(
            k.clone(),
            p,
            level(&cluster),
            fetch(&calls, "v1", true, Duration::ZERO),
        )
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(15)).await;
    let gets = store.gets.load(Ordering::SeqCst);
    for n in 0..3 {
        let slow = fetch(&calls, "v2", true, Duration::from_secs(1));
        let (_, outcome) = cache
            .get_or_fetch(k.clone(), p, level(&cluster), slow)
            .await
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Stale);
        // The first reads the store (another instance may have refreshed it); the
        // others find the refresh it started under way.
        assert_eq!(store.gets.load(Ordering::SeqCst), gets + 1, "request {n}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_from_the_store_answers_when_the_upstream_fails() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key("http://u/a");
    let p = policy(10, 0, 30);
    instance()
        .get_or_fetch(
            k.clone(),
            p,
            level(&cluster),
            fetch(&calls, "old", true, Duration::ZERO),
        )
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(20)).await;
    let (entry, outcome) = instance()
        .get_or_fetch(
            k,
            p,
            level(&cluster),
            fetch(&calls, "", false, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(
        (outcome, &entry.stored.body[..]),
        (CacheOutcome::Stale, &b"old"[..])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_answer_over_max_entry_stays_local() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 100);
    let calls = Arc::new(AtomicUsize::new(0));
    let one = instance();
    let big = "x".repeat(100);
    let (_, outcome) = one
        .get_or_fetch(
            key("http://u/big"),
            policy(10, 0, 0),
            level(&cluster),
            fetch(&calls, &big, true, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: true });
    assert_eq!(shared_count(&one, "too_large"), 1);
    assert!(store.keys("fanout:cache:").is_empty());
    // Local still: a hit here, a miss on another instance.
    let (_, outcome) = one
        .get_or_fetch(
            key("http://u/big"),
            policy(10, 0, 0),
            level(&cluster),
            fetch(&calls, &big, true, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    let (_, outcome) = instance()
        .get_or_fetch(
            key("http://u/big"),
            policy(10, 0, 0),
            level(&cluster),
            fetch(&calls, &big, true, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: true });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_on_several_instances_make_one_call() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let instances = [instance(), instance(), instance()];
    let mut lookups = Vec::new();
    for cache in &instances {
        for _ in 0..5 {
            // Slow: the others find the lock taken and poll for its answer.
            let f = fetch(&calls, "once", true, Duration::from_millis(50));
            lookups.push(cache.get_or_fetch(
                key("http://u/a"),
                policy(10, 0, 0),
                level(&cluster),
                f,
            ));
        }
    }
    let answers = futures_util::future::join_all(lookups).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let mut shared = 0;
    for answer in answers {
        let (entry, outcome) = answer.unwrap();
        assert_eq!(entry.stored.body, "once");
        shared += usize::from(outcome == CacheOutcome::SharedHit);
    }
    // The four requests of each of the two waiting instances waited on one poll.
    assert_eq!(shared, 10);
    let waited: u64 = instances.iter().map(|c| shared_count(c, "waited")).sum();
    assert_eq!(waited, 2);
    // The holder let go of its lock.
    assert!(store.keys("fanout:lock:").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_lock_never_released_makes_waiters_call_after_a_short_poll() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 1 << 20);
    let k = key("http://u/a");
    // A holder that died: its lock stays for the whole lock time.
    let lock = cluster.key("lock", &key_rest(&k));
    store.put(&lock, Bytes::from_static(b"dead"), Duration::from_secs(60));
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = instance();
    let started = Instant::now();
    let (_, outcome) = cache
        .get_or_fetch(
            k.clone(),
            policy(10, 0, 0),
            level(&cluster),
            fetch(&calls, "mine", true, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: true });
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(shared_count(&cache, "gave_up"), 1);
    // It polled a quarter of the upstream's 2 s timeout, not the lock's minute.
    assert_eq!(started.elapsed(), Duration::from_millis(500));
    // And wrote its answer for the others.
    let (_, outcome) = instance()
        .get_or_fetch(
            k,
            policy(10, 0, 0),
            level(&cluster),
            fetch(&calls, "x", true, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::SharedHit);
}

#[tokio::test(start_paused = true)]
async fn a_store_down_or_hung_is_a_miss_and_no_write() {
    for hung in [false, true] {
        let store = Arc::new(MemoryStore::default());
        let cluster = cluster(&store, 1 << 20);
        store.down.store(!hung, Ordering::SeqCst);
        store.hung.store(hung, Ordering::SeqCst);
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = instance();
        let started = Instant::now();
        let (entry, outcome) = cache
            .get_or_fetch(
                key("http://u/a"),
                policy(10, 0, 0),
                level(&cluster),
                fetch(&calls, "up", true, Duration::ZERO),
            )
            .await
            .unwrap();
        assert_eq!(
            (outcome, &entry.stored.body[..]),
            (CacheOutcome::Miss { stored: true }, &b"up"[..])
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // One store call (the read), bounded by the store's timeout; no lock, no write.
        assert_eq!(shared_count(&cache, "error"), 1, "hung: {hung}");
        let paid = if hung {
            Duration::from_millis(5)
        } else {
            Duration::ZERO
        };
        assert_eq!(started.elapsed(), paid);
        store.down.store(false, Ordering::SeqCst);
        store.hung.store(false, Ordering::SeqCst);
        assert!(store.keys("fanout:").is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn a_garbage_value_in_the_store_is_a_miss_then_replaced() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 1 << 20);
    let k = key("http://u/a");
    let at = cluster.key("cache", &key_rest(&k));
    let value = encode(&sample(), policy(10, 0, 0), 0);
    store.put(&at, value.slice(..value.len() - 3), Duration::from_secs(60));
    let calls = Arc::new(AtomicUsize::new(0));
    let (_, outcome) = instance()
        .get_or_fetch(
            k.clone(),
            policy(10, 0, 0),
            level(&cluster),
            fetch(&calls, "new", true, Duration::ZERO),
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: true });
    let stored = decode(store.live(&at).unwrap()).unwrap();
    assert_eq!(stored.stored.body, "new");
}

#[tokio::test(start_paused = true)]
async fn a_pass_marker_stays_local() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let private = {
        let calls = calls.clone();
        move || {
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(Fetched {
                    stored: sample(),
                    cacheable: false,
                })
            }
            .boxed()
        }
    };
    let (_, outcome) = instance()
        .get_or_fetch(
            key("http://u/a"),
            policy(10, 0, 0),
            level(&cluster),
            private,
        )
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: false });
    assert!(store.keys("fanout:cache:").is_empty());
    assert!(store.keys("fanout:lock:").is_empty());
}

#[tokio::test(start_paused = true)]
async fn purge_deletes_one_urls_entries_or_all() {
    let store = Arc::new(MemoryStore::default());
    let cluster = cluster(&store, 1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = instance();
    for url in ["http://u/a", "http://u/a", "http://u/b"] {
        let mut headers = HeaderMap::new();
        // Two users of /a: two entries.
        let n = calls.load(Ordering::SeqCst).to_string();
        headers.insert("cookie", HeaderValue::from_str(&n).unwrap());
        let k = CacheKey::new(http::Method::GET, url, &headers, &[]);
        cache
            .get_or_fetch(
                k,
                policy(60, 0, 0),
                level(&cluster),
                fetch(&calls, "x", true, Duration::ZERO),
            )
            .await
            .unwrap();
    }
    store.put(
        "fanout:rl:someone",
        Bytes::from_static(b"1"),
        Duration::from_secs(60),
    );
    assert_eq!(purge(&cluster, Some("http://u/a")).await.unwrap(), 2);
    assert_eq!(store.keys("fanout:cache:").len(), 1);
    assert_eq!(purge(&cluster, None).await.unwrap(), 1);
    assert!(store.keys("fanout:cache:").is_empty());
    // Limits are not the cache's to purge.
    assert_eq!(store.keys("fanout:rl:").len(), 1);
}
