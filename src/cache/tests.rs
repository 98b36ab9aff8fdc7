//! Unit tests of the response cache: keys, windows, coalescing, purging, capacity.
use super::entry::HEADER_SLOT;
use super::*;
use bytes::Bytes;
use http::StatusCode;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Test failures: those starting "answered" stand for an upstream's answer.
impl FetchError for String {
    fn carries_answer(&self) -> bool {
        self.starts_with("answered")
    }
}

impl ResponseCache {
    /// A lookup with no second level, as every test here makes.
    async fn get_or_fetch_local<F, Fut, E>(
        self: &Arc<Self>,
        key: CacheKey,
        policy: CachePolicy,
        fetch: F,
    ) -> Result<(Arc<Entry>, CacheOutcome), E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Fetched, E>> + Send + 'static,
        E: FetchError,
    {
        self.get_or_fetch(key, policy, None, fetch).await
    }
}

/// A fetch that counts its calls and, after `delay`, answers `body` (storable or not),
/// or fails with `error`.
fn answering(
    calls: &Arc<AtomicUsize>,
    body: String,
    cacheable: bool,
    error: Option<&'static str>,
    delay: Duration,
) -> impl FnOnce() -> BoxFuture<'static, Result<Fetched, String>> + Send + 'static {
    let calls = calls.clone();
    move || {
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            match error {
                Some(e) => Err(e.to_string()),
                None => Ok(Fetched {
                    stored: Stored {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        body: Bytes::from(body),
                    },
                    cacheable,
                }),
            }
        }
        .boxed()
    }
}

fn key(url: &str, auth: Option<&str>) -> CacheKey {
    let mut h = HeaderMap::new();
    if let Some(a) = auth {
        h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
    }
    CacheKey::new(http::Method::GET, url, &h, &[])
}

fn policy(ttl: u64, swr: u64, sie: u64) -> CachePolicy {
    CachePolicy {
        ttl: Duration::from_secs(ttl),
        stale_while_revalidate: Duration::from_secs(swr),
        stale_if_error: Duration::from_secs(sie),
    }
}

/// A fetch that counts its calls and answers `body` (or fails) after `delay`.
fn fetcher(
    calls: &Arc<AtomicUsize>,
    body: &'static str,
    ok: bool,
    delay: Duration,
) -> impl FnOnce() -> BoxFuture<'static, Result<Fetched, String>> + Send + 'static {
    let calls = calls.clone();
    move || {
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            if ok {
                Ok(Fetched {
                    stored: Stored {
                        status: StatusCode::OK,
                        headers: HeaderMap::new(),
                        body: Bytes::from_static(body.as_bytes()),
                    },
                    cacheable: true,
                })
            } else {
                Err("upstream down".to_string())
            }
        }
        .boxed()
    }
}

async fn get(
    cache: &Arc<ResponseCache>,
    k: &CacheKey,
    p: CachePolicy,
    calls: &Arc<AtomicUsize>,
    body: &'static str,
    ok: bool,
) -> Result<(String, CacheOutcome), String> {
    cache
        .get_or_fetch_local(k.clone(), p, fetcher(calls, body, ok, Duration::ZERO))
        .await
        .map(|(e, o)| (String::from_utf8(e.stored.body.to_vec()).unwrap(), o))
}

#[tokio::test(start_paused = true)]
async fn hits_until_the_ttl_then_fetches_again() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (k, p) = (key("http://u/a", None), policy(10, 0, 0));
    assert_eq!(
        get(&cache, &k, p, &calls, "v1", true).await,
        Ok(("v1".into(), CacheOutcome::Miss { stored: true }))
    );
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(
        get(&cache, &k, p, &calls, "v2", true).await,
        Ok(("v1".into(), CacheOutcome::Hit))
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        get(&cache, &k, p, &calls, "v2", true).await,
        Ok(("v2".into(), CacheOutcome::Miss { stored: true }))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.stats().hits.get(), 1);
    assert_eq!(cache.stats().misses.get(), 2);
}

#[tokio::test]
async fn different_credentials_never_share_an_entry() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let p = policy(60, 0, 0);
    get(
        &cache,
        &key("http://u/me", Some("Bearer alice")),
        p,
        &calls,
        "alice",
        true,
    )
    .await
    .unwrap();
    let bob = get(
        &cache,
        &key("http://u/me", Some("Bearer bob")),
        p,
        &calls,
        "bob",
        true,
    )
    .await
    .unwrap();
    assert_eq!(bob.0, "bob");
    let anonymous = get(&cache, &key("http://u/me", None), p, &calls, "anon", true)
        .await
        .unwrap();
    assert_eq!(anonymous.0, "anon");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_call() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (k, p) = (key("http://u/a", None), policy(60, 0, 0));
    let all = (0..50).map(|_| {
        cache.get_or_fetch_local(
            k.clone(),
            p,
            fetcher(&calls, "v", true, Duration::from_millis(50)),
        )
    });
    let results = futures_util::future::join_all(all).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().0.stored.body == "v")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().coalesced.get(), 49);
}

#[tokio::test(start_paused = true)]
async fn concurrent_failures_are_shared_too() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (k, p) = (key("http://u/a", None), policy(60, 0, 0));
    let all = (0..20).map(|_| {
        cache.get_or_fetch_local(
            k.clone(),
            p,
            fetcher(&calls, "v", false, Duration::from_millis(20)),
        )
    });
    let results = futures_util::future::join_all(all).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err() == "upstream down")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The failure is not remembered: the next call tries again.
    get(&cache, &k, p, &calls, "v", true).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_at_once_and_refreshes_once() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (k, p) = (key("http://u/a", None), policy(10, 30, 0));
    get(&cache, &k, p, &calls, "v1", true).await.unwrap();
    tokio::time::advance(Duration::from_secs(15)).await;
    // Five requests in the window: all get the stale value at once, one refresh runs.
    for _ in 0..5 {
        let slow = fetcher(&calls, "v2", true, Duration::from_secs(1));
        let (entry, outcome) = cache.get_or_fetch_local(k.clone(), p, slow).await.unwrap();
        assert_eq!(
            (&entry.stored.body[..], outcome),
            (&b"v1"[..], CacheOutcome::Stale)
        );
        assert!(entry.ttl_left(Instant::now()) < 0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "exactly one background refresh"
    );
    assert_eq!(
        get(&cache, &k, p, &calls, "v3", true).await,
        Ok(("v2".into(), CacheOutcome::Hit))
    );
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_the_old_answer_when_the_refresh_fails() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (k, p) = (key("http://u/a", None), policy(10, 0, 60));
    get(&cache, &k, p, &calls, "v1", true).await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        get(&cache, &k, p, &calls, "x", false).await,
        Ok(("v1".into(), CacheOutcome::Stale))
    );
    // A working upstream within the window gives a fresh answer, not the stale one.
    assert_eq!(
        get(&cache, &k, p, &calls, "v2", true).await,
        Ok(("v2".into(), CacheOutcome::Miss { stored: true }))
    );
    tokio::time::advance(Duration::from_secs(80)).await;
    assert_eq!(
        get(&cache, &k, p, &calls, "x", false).await,
        Err("upstream down".into()),
        "past the window"
    );
}

#[tokio::test]
async fn uncacheable_answers_are_served_but_not_stored() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let (k, p) = (key("http://u/a", None), policy(60, 0, 0));
    let private = || async {
        Ok::<_, String>(Fetched {
            stored: Stored {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::from_static(b"mine"),
            },
            cacheable: false,
        })
    };
    let (_, outcome) = cache
        .get_or_fetch_local(k.clone(), p, private)
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: false });
    let (_, outcome) = cache
        .get_or_fetch_local(k.clone(), p, private)
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: false });
}

#[tokio::test]
async fn purge_by_url_or_everything() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let p = policy(60, 0, 0);
    for (url, auth) in [
        ("http://u/a", None),
        ("http://u/a", Some("Bearer x")),
        ("http://u/b", None),
    ] {
        get(&cache, &key(url, auth), p, &calls, "v", true)
            .await
            .unwrap();
    }
    assert_eq!(cache.purge(Some("http://u/a")).await, 2);
    assert_eq!(
        get(&cache, &key("http://u/b", None), p, &calls, "v", true)
            .await
            .unwrap()
            .1,
        CacheOutcome::Hit
    );
    assert_eq!(
        get(&cache, &key("http://u/a", None), p, &calls, "v", true)
            .await
            .unwrap()
            .1,
        CacheOutcome::Miss { stored: true }
    );
    assert_eq!(cache.purge(None).await, 2);
    assert_eq!(
        get(&cache, &key("http://u/b", None), p, &calls, "v", true)
            .await
            .unwrap()
            .1,
        CacheOutcome::Miss { stored: true }
    );
}

#[tokio::test]
async fn capacity_is_weighted_by_bytes() {
    let cache = ResponseCache::new(64 * 1024, CacheStats::default());
    for i in 0..100 {
        let k = key(&format!("http://u/{i}"), None);
        let big = || async {
            Ok::<_, String>(Fetched {
                stored: Stored {
                    status: StatusCode::OK,
                    headers: HeaderMap::new(),
                    body: Bytes::from(vec![b'x'; 8 * 1024]),
                },
                cacheable: true,
            })
        };
        cache
            .get_or_fetch_local(k, policy(60, 0, 0), big)
            .await
            .unwrap();
    }
    cache.store.run_pending_tasks().await;
    assert!(
        cache.store.weighted_size() <= 64 * 1024,
        "{} bytes held",
        cache.store.weighted_size()
    );
    assert!(cache.store.entry_count() <= 8);
}

#[tokio::test(start_paused = true)]
async fn waiters_get_their_own_call_when_the_answer_was_not_stored() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (k, p) = (key("http://u/me", None), policy(60, 0, 0));
    let all = ["alice", "bob", "carol"].map(|user| {
        let fetch = answering(
            &calls,
            format!("for {user}"),
            false,
            None,
            Duration::from_secs(1),
        );
        cache.get_or_fetch_local(k.clone(), p, fetch)
    });
    let results = futures_util::future::join_all(all).await;
    let bodies: Vec<_> = results
        .iter()
        .map(|r| String::from_utf8(r.as_ref().unwrap().0.stored.body.to_vec()).unwrap())
        .collect();
    assert_eq!(bodies, ["for alice", "for bob", "for carol"]);
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap().1 == CacheOutcome::Miss { stored: false })
    );
    assert_eq!(
        cache.stats().coalesced.get(),
        2,
        "bob and carol waited first"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3, "one call per request");
}

#[tokio::test(start_paused = true)]
async fn a_pass_marker_skips_the_wait_until_the_ttl_then_a_storable_answer_is_stored() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (k, p) = (key("http://u/me", None), policy(60, 0, 0));
    let slow = Duration::from_secs(1);
    let fetch = answering(&calls, "private".into(), false, None, slow);
    cache.get_or_fetch_local(k.clone(), p, fetch).await.unwrap();
    // Five at once: none waits on another, each calls.
    let all = (0..5).map(|i| {
        let fetch = answering(&calls, format!("{i}"), false, None, slow);
        cache.get_or_fetch_local(k.clone(), p, fetch)
    });
    let results = futures_util::future::join_all(all).await;
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.as_ref().unwrap().0.stored.body, format!("{i}"));
    }
    assert_eq!(cache.stats().coalesced.get(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    let none = Varying::read(&HeaderMap::new(), &[]);
    let fresh = KeyQuery::new(&http::Method::GET, "http://u/me", &none);
    assert!(cache.fresh(&fresh).await.is_none(), "a marker is no hit");
    // The upstream allows storing again: the answer replaces the marker.
    let fetch = answering(&calls, "public".into(), true, None, slow);
    let (_, outcome) = cache.get_or_fetch_local(k.clone(), p, fetch).await.unwrap();
    assert_eq!(outcome, CacheOutcome::Miss { stored: true });
    assert_eq!(
        get(&cache, &k, p, &calls, "x", true).await,
        Ok(("public".into(), CacheOutcome::Hit))
    );
    // A marker lasts the ttl: then waiting (coalescing) is back.
    let (k, p) = (key("http://u/other", None), policy(10, 0, 0));
    let fetch = answering(&calls, "private".into(), false, None, slow);
    cache.get_or_fetch_local(k.clone(), p, fetch).await.unwrap();
    tokio::time::advance(Duration::from_secs(11)).await;
    let all = (0..3).map(|_| {
        let fetch = answering(&calls, "public".into(), true, None, slow);
        cache.get_or_fetch_local(k.clone(), p, fetch)
    });
    futures_util::future::join_all(all).await;
    assert_eq!(cache.stats().coalesced.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn failures_with_an_answer_go_only_to_their_request() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let (k, p) = (key("http://u/me", None), policy(60, 0, 0));
    let all = (0..3).map(|_| {
        let fetch = answering(
            &calls,
            String::new(),
            true,
            Some("answered 403"),
            Duration::from_secs(1),
        );
        cache.get_or_fetch_local(k.clone(), p, fetch)
    });
    let results = futures_util::future::join_all(all).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().unwrap_err() == "answered 403")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn stored_answers_own_bytes_of_their_own_size() {
    let cache = ResponseCache::new(1 << 20, CacheStats::default());
    let buffer = Bytes::from(vec![b'x'; 64 * 1024]);
    let (body, value) = (buffer.slice(100..110), buffer.slice(200..205));
    let k = key("http://u/a", None);
    let fetch = move || async move {
        let mut headers = HeaderMap::new();
        headers.insert("x-tag", HeaderValue::from_maybe_shared(value).unwrap());
        Ok::<_, String>(Fetched {
            stored: Stored {
                status: StatusCode::OK,
                headers,
                body,
            },
            cacheable: true,
        })
    };
    let (entry, _) = cache
        .get_or_fetch_local(k, policy(60, 0, 0), fetch)
        .await
        .unwrap();
    let within = |p: *const u8| buffer.as_ptr_range().contains(&p);
    assert_eq!(entry.stored.body, "xxxxxxxxxx");
    assert!(!within(entry.stored.body.as_ptr()), "the body is a copy");
    assert!(!within(entry.stored.headers["x-tag"].as_bytes().as_ptr()));
    cache.store.run_pending_tasks().await;
    let weight = cache.store.weighted_size() as usize;
    assert!(weight >= ENTRY_OVERHEAD + 10 + 5 + HEADER_SLOT, "{weight}");
    assert!(
        weight < 2048,
        "{weight}: the weight is what is held, not the buffer"
    );
}

/// Calibrates `ENTRY_OVERHEAD`: resident bytes per entry beyond its key and answer,
/// measured on this process (run alone: `cargo test --lib resident_bytes -- --ignored
/// --nocapture`).
#[tokio::test]
#[ignore]
async fn resident_bytes_per_entry() {
    fn rss() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<usize>()
            .unwrap()
            * 1024
    }
    let cache = ResponseCache::new(1 << 40, CacheStats::default());
    let n = 200_000;
    let keys: Vec<CacheKey> = (0..n)
        .map(|i| key(&format!("http://u/{i:08}"), None))
        .collect();
    let key_bytes: usize = keys.iter().map(CacheKey::weight).sum();
    let before = rss();
    for k in keys {
        let fetch = || async {
            Ok::<_, String>(Fetched {
                stored: Stored {
                    status: StatusCode::OK,
                    headers: HeaderMap::new(),
                    body: Bytes::from_static(b"0123456789abcdef"),
                },
                cacheable: true,
            })
        };
        cache
            .get_or_fetch_local(k, policy(600, 0, 0), fetch)
            .await
            .unwrap();
    }
    cache.store.run_pending_tasks().await;
    let grown = rss() - before;
    let per_entry = grown / n;
    let beyond = (grown - key_bytes - 16 * n - n * std::mem::size_of::<Entry>()) / n;
    println!("{per_entry} bytes per entry; {beyond} beyond the key, body and Entry");
}

#[test]
fn cache_control() {
    let h = |v: &'static str| [v.as_bytes()];
    assert!(forbids_storing(h("no-store")));
    assert!(forbids_storing(h("max-age=60, Private")));
    assert!(forbids_storing(h(" private =\"set-cookie\"")));
    assert!(
        forbids_storing([&b"public"[..], b"no-store"]),
        "a later field"
    );
    assert!(!forbids_storing(h("public, max-age=60")));
    assert!(!forbids_storing(h("no-storex, privately")));
    assert!(
        !forbids_storing(h("no-cache")),
        "no-cache allows storing (with revalidation)"
    );
    assert!(!forbids_storing([]));
}
