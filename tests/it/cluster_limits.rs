//! Cluster-wide state on a real `redis-server`: the Redis store behind `Cluster` (GCRA,
//! get/set, locks, purge by prefix), started while Redis is down and recovering when it
//! comes up; cluster-scoped rate limits over several gateway processes sharing one
//! Redis; what happens when Redis stops, hangs or comes back (the fallback, the breaker).

use crate::common::redis::RedisServer;
use crate::common::{eventually, eventually_some};
use bytes::Bytes;
use fanout::cluster::{Cluster, GcraAnswer, GcraLimit};
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

#[tokio::test]
async fn a_gateway_process_starts_and_serves_while_redis_is_down() {
    let upstream = crate::common::MockUpstream::builder()
        .route("/a", crate::common::Reply::json(r#"{"a":1}"#))
        .start()
        .await;
    let dead = crate::common::dead_url()
        .await
        .replace("http://", "redis://");
    let gateway = crate::common::GatewayProcess::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[cluster]\nredis = \"{dead}/0\"\n\n{}\n\
         [[routes]]\npath = \"/a\"\nproxy = {{ upstream = \"up\", path = \"/a\" }}\n",
        crate::common::upstream_toml("up", &upstream.url())
    ));
    let (status, _, body) = crate::common::get_json(&gateway.url("/a")).await;
    assert_eq!(status, 200);
    assert_eq!(body["a"], 1);
}
