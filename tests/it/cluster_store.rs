//! The Redis store behind `Cluster`, on a real `redis-server` (and a Redis Cluster of
//! three masters): GCRA, get/set, locks, purge by prefix; made while Redis is down and
//! working once it is up; an open breaker sending nothing, a hung Redis costing the
//! timeout and then nothing.

use crate::common::redis::{HungRedis, RedisServer};
use crate::common::{eventually, eventually_some};
use bytes::Bytes;
use fanout::cluster::{Cluster, ClusterError, GcraAnswer, GcraLimit};
use fanout::config::{Env, compile};
use std::time::Duration;

/// A `Cluster` on `url` as `[cluster]` with these extra lines compiles it.
fn cluster_on(url: &str, extra: &str) -> Cluster {
    let toml = format!("[cluster]\nredis = \"{url}\"\n{extra}\n");
    let compiled = compile(&toml, &Env::default()).unwrap_or_else(|e| panic!("{e}"));
    Cluster::connect(compiled.cluster.expect("[cluster]")).unwrap()
}

#[tokio::test]
async fn the_redis_store_limits_caches_locks_and_purges_on_one_key_per_call() {
    let redis = RedisServer::start();
    let cluster = cluster_on(&redis.url(), "timeout = \"5s\"");
    cluster.ping().await.unwrap();

    // GCRA: a burst of 3, then one every hour.
    let limit = GcraLimit {
        interval: Duration::from_secs(3600),
        burst: 3,
    };
    let key = cluster.key("rl", "test:client");
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(cluster.throttle(&key, limit).await.unwrap());
    }
    assert_eq!(
        answers[..3],
        [
            GcraAnswer::Allowed { remaining: 2 },
            GcraAnswer::Allowed { remaining: 1 },
            GcraAnswer::Allowed { remaining: 0 },
        ]
    );
    let GcraAnswer::Limited { retry_after } = answers[3] else {
        panic!("the 4th of a burst of 3 was let through: {answers:?}");
    };
    assert!(
        retry_after > Duration::from_secs(3500) && retry_after <= Duration::from_secs(3600),
        "{retry_after:?}"
    );
    // The bucket is one key, gone when the bucket would be full again.
    assert_eq!(redis.keys("fanout:rl:*"), vec![key.clone()]);
    let ttl = redis.command(&["PTTL", &key]).integer().unwrap();
    assert!(ttl > 3 * 3_500_000 && ttl <= 3 * 3_600_000, "{ttl}");

    // get / set with a TTL.
    let entry = cluster.key("cache", "a");
    assert_eq!(cluster.get(&entry).await.unwrap(), None);
    cluster
        .set(
            &entry,
            Bytes::from_static(b"{\"a\":1}"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        cluster.get(&entry).await.unwrap(),
        Some(Bytes::from_static(b"{\"a\":1}"))
    );
    let ttl = redis.command(&["PTTL", &entry]).integer().unwrap();
    assert!(ttl > 25_000 && ttl <= 30_000, "{ttl}");

    // A lock is taken once; only its holder lets go of it.
    let lock = cluster.key("lock", "a");
    let ttl = Duration::from_secs(5);
    assert!(cluster.lock(&lock, "one", ttl).await.unwrap());
    assert!(!cluster.lock(&lock, "two", ttl).await.unwrap());
    cluster.unlock(&lock, "two").await.unwrap();
    assert!(
        !cluster.lock(&lock, "two", ttl).await.unwrap(),
        "a stranger unlocked it"
    );
    cluster.unlock(&lock, "one").await.unwrap();
    assert!(cluster.lock(&lock, "two", ttl).await.unwrap());

    // Purge by prefix: only the cache's keys, however many SCAN steps they take.
    for i in 0..1200 {
        let k = cluster.key("cache", &format!("k{i}"));
        cluster
            .set(&k, Bytes::from_static(b"x"), Duration::from_secs(60))
            .await
            .unwrap();
    }
    let prefix = cluster.key("cache", "");
    assert_eq!(cluster.delete_prefixed(&prefix).await.unwrap(), 1201);
    assert!(redis.keys("fanout:cache:*").is_empty());
    assert_eq!(redis.keys("fanout:rl:*"), vec![key]);
    assert_eq!(redis.keys("fanout:lock:*"), vec![lock]);
}

#[tokio::test]
async fn the_store_is_made_while_redis_is_down_and_works_once_it_is_up() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();
    // Made at once, without Redis: calls fail (the caller's fallback), nothing hangs.
    let cluster = cluster_on(&url, "timeout = \"500ms\"");
    assert!(cluster.ping().await.is_err());
    let limit = GcraLimit {
        interval: Duration::from_secs(60),
        burst: 1,
    };
    let key = cluster.key("rl", "k");
    assert!(cluster.throttle(&key, limit).await.is_err());
    redis.restart();
    eventually("the store to reconnect", async || {
        cluster.ping().await.is_ok()
    })
    .await;
    // The script is sent again to a Redis that never saw it (EVALSHA, NOSCRIPT, load).
    let answer = eventually_some("a throttle answer", async || {
        cluster.throttle(&key, limit).await.ok()
    })
    .await;
    assert_eq!(answer, GcraAnswer::Allowed { remaining: 0 });
    assert!(matches!(
        cluster.throttle(&key, limit).await.unwrap(),
        GcraAnswer::Limited { .. }
    ));
}

#[tokio::test]
async fn a_password_from_the_url_is_sent() {
    let redis = RedisServer::start_with_password("pa55word");
    let cluster = cluster_on(&redis.url(), "timeout = \"5s\"");
    cluster.ping().await.unwrap();
    let wrong = cluster_on(
        &redis.url().replace("pa55word", "wrong"),
        "timeout = \"5s\"",
    );
    let error = wrong.ping().await.unwrap_err().to_string();
    assert!(!error.contains("wrong"), "{error}");
}

/// GCRA has no window: once a burst is spent, the next request is admitted one interval
/// later, one at a time, never a second burst at a window's edge (the 2x of fixed
/// windows in Envoy's ratelimit, Kong, APISIX).
#[tokio::test]
async fn gcra_admits_one_interval_at_a_time_after_a_burst_never_a_second_burst() {
    let redis = RedisServer::start();
    let cluster = cluster_on(&redis.url(), "timeout = \"5s\"");
    // 20/min with bursts of 5: one every 3 s.
    let limit = GcraLimit {
        interval: Duration::from_secs(3),
        burst: 5,
    };
    let key = cluster.key("rl", "edge");
    for left in (0..5).rev() {
        assert_eq!(
            cluster.throttle(&key, limit).await.unwrap(),
            GcraAnswer::Allowed { remaining: left }
        );
    }
    let GcraAnswer::Limited { retry_after } = cluster.throttle(&key, limit).await.unwrap() else {
        panic!("a sixth request in a burst of 5");
    };
    assert!(retry_after <= Duration::from_secs(3), "{retry_after:?}");
    // Many requests meanwhile change nothing: a refused request does not move the bucket.
    for _ in 0..20 {
        assert!(matches!(
            cluster.throttle(&key, limit).await.unwrap(),
            GcraAnswer::Limited { .. }
        ));
    }
    tokio::time::sleep(retry_after + Duration::from_millis(50)).await;
    assert_eq!(
        cluster.throttle(&key, limit).await.unwrap(),
        GcraAnswer::Allowed { remaining: 0 },
        "one request, one interval after the burst"
    );
    let GcraAnswer::Limited { retry_after } = cluster.throttle(&key, limit).await.unwrap() else {
        panic!("a second request right after the first refill: a second burst");
    };
    assert!(retry_after > Duration::from_secs(2), "{retry_after:?}");
}

/// While the breaker is open the store gets no call at all: Redis stopped (failures),
/// then back but not yet probed (open_for is long), sees no command from the limit.
#[tokio::test]
async fn an_open_breaker_sends_nothing_to_the_store() {
    let mut redis = RedisServer::start();
    let cluster = cluster_on(
        &redis.url(),
        "timeout = \"2s\"\ncircuit_breaker = { failures = 2, open_for = \"1h\" }",
    );
    let limit = GcraLimit {
        interval: Duration::from_secs(1),
        burst: 100,
    };
    let key = cluster.key("rl", "k");
    cluster.throttle(&key, limit).await.unwrap();
    assert_eq!(cluster.state(), "up");
    redis.stop();
    for _ in 0..2 {
        let e = cluster.throttle(&key, limit).await.unwrap_err();
        assert!(matches!(e, ClusterError::Store(_)), "{e}");
    }
    assert_eq!(cluster.state(), "open");
    redis.restart();
    redis.reset_stats();
    for _ in 0..20 {
        let e = cluster.throttle(&key, limit).await.unwrap_err();
        assert!(matches!(e, ClusterError::Skipped), "{e}");
    }
    assert_eq!(redis.calls("evalsha"), 0);
    assert_eq!(redis.calls("eval"), 0);
}

/// A hung Redis (it accepts, never answers) costs a call its `timeout`; once the breaker
/// opens, calls fail at once and nothing more is sent to it.
#[tokio::test]
async fn a_hung_redis_costs_the_timeout_then_nothing_while_the_breaker_is_open() {
    let hung = HungRedis::start();
    let cluster = cluster_on(
        &hung.url(),
        "timeout = \"100ms\"\ncircuit_breaker = { failures = 3, open_for = \"1h\" }",
    );
    let limit = GcraLimit {
        interval: Duration::from_secs(1),
        burst: 10,
    };
    let key = cluster.key("rl", "k");
    for _ in 0..3 {
        let e = cluster.throttle(&key, limit).await.unwrap_err();
        assert!(matches!(e, ClusterError::Timeout(_)), "{e}");
    }
    eventually("the store to connect", async || hung.connections() > 0).await;
    let sent = hung.received();
    for _ in 0..50 {
        let e = cluster.throttle(&key, limit).await.unwrap_err();
        assert!(matches!(e, ClusterError::Skipped), "{e}");
    }
    assert_eq!(cluster.state(), "open");
    // Nothing of the 50 went out (what the first 3 sent is all there is).
    assert_eq!(hung.received(), sent);
}

/// On a Redis Cluster (three masters, given as seed URLs) every operation works, each
/// on one key wherever its slot lives, and a purge walks every master.
#[tokio::test]
async fn the_store_works_on_a_redis_cluster() {
    let redis = crate::common::redis::RedisCluster::start(3);
    let seeds = redis
        .urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let toml = format!("[cluster]\nredis = [{seeds}]\ntimeout = \"5s\"\n");
    let compiled = compile(&toml, &Env::default()).unwrap_or_else(|e| panic!("{e}"));
    let cluster = Cluster::connect(compiled.cluster.unwrap()).unwrap();
    eventually_some("the cluster to answer", async || cluster.ping().await.ok()).await;
    let limit = GcraLimit {
        interval: Duration::from_secs(3600),
        burst: 2,
    };
    for i in 0..30 {
        let key = cluster.key("rl", &format!("client{i}"));
        assert_eq!(
            cluster.throttle(&key, limit).await.unwrap(),
            GcraAnswer::Allowed { remaining: 1 }
        );
        assert_eq!(
            cluster.throttle(&key, limit).await.unwrap(),
            GcraAnswer::Allowed { remaining: 0 }
        );
        assert!(matches!(
            cluster.throttle(&key, limit).await.unwrap(),
            GcraAnswer::Limited { .. }
        ));
        let entry = cluster.key("cache", &format!("e{i}"));
        cluster
            .set(
                &entry,
                Bytes::from(format!("v{i}")),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!(
            cluster.get(&entry).await.unwrap(),
            Some(Bytes::from(format!("v{i}")))
        );
        let lock = cluster.key("lock", &format!("l{i}"));
        assert!(
            cluster
                .lock(&lock, "t", Duration::from_secs(5))
                .await
                .unwrap()
        );
        cluster.unlock(&lock, "t").await.unwrap();
    }
    // Keys landed on every master.
    let spread = redis.keys_per_node();
    assert!(spread.iter().all(|n| *n > 0), "{spread:?}");
    assert_eq!(spread.iter().sum::<i64>(), 60);
    let prefix = cluster.key("cache", "");
    assert_eq!(cluster.delete_prefixed(&prefix).await.unwrap(), 30);
    assert_eq!(
        redis.keys_per_node().iter().sum::<i64>(),
        30,
        "the limits' keys stay"
    );
}
