//! Cluster-wide state on a real `redis-server`: the Redis store behind `Cluster` (GCRA,
//! get/set, locks, purge by prefix), started while Redis is down and recovering when it
//! comes up; cluster-scoped rate limits over several gateway processes sharing one
//! Redis; what happens when Redis stops, hangs or comes back (the fallback, the breaker).

use crate::common::redis::{HungRedis, RedisServer};
use crate::common::{
    GatewayProcess, MockUpstream, Reply, client, eventually, eventually_some, start_gateway,
    upstream_toml,
};
use bytes::Bytes;
use fanout::cluster::{Cluster, ClusterError, GcraAnswer, GcraLimit};
use fanout::config::{Env, compile};
use std::time::Duration;

/// A gateway config: `[cluster]` on `redis` with `cluster` lines, and routes `/cluster`
/// (scope cluster) and `/local` (scope local), each with `limit` (a rate and a key),
/// proxying to `upstream`.
fn limited_toml(redis: &str, cluster: &str, limit: &str, upstream: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[cluster]\nredis = \"{redis}\"\n{cluster}\n\n{}\n\
         [[routes]]\npath = \"/cluster\"\nrate_limit = {{ {limit}, scope = \"cluster\" }}\n\
         proxy = {{ upstream = \"up\", path = \"/a\" }}\n\n\
         [[routes]]\npath = \"/local\"\nrate_limit = {{ {limit} }}\n\
         proxy = {{ upstream = \"up\", path = \"/a\" }}\n",
        upstream_toml("up", upstream)
    )
}

async fn upstream() -> MockUpstream {
    MockUpstream::builder()
        .route("/a", Reply::json(r#"{"a":1}"#))
        .start()
        .await
}

/// The status and the named headers of a GET.
async fn get(url: &str) -> (u16, reqwest::header::HeaderMap) {
    let response = client().get(url).send().await.unwrap();
    (response.status().as_u16(), response.headers().clone())
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_owned())
}

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

/// The issue's acceptance test: three gateway processes on one Redis, 300 requests
/// round-robin against a limit of 100: exactly 100 admitted in all; the same limit with
/// local scope admits 100 per instance, 300. The rate is 100/hour, not 100/min: at
/// 100/min GCRA refills one request every 0.6 s of the run, so the count would depend on
/// the machine's speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_on_one_redis_admit_exactly_the_limit_together() {
    let redis = RedisServer::start();
    let up = upstream().await;
    let toml = limited_toml(
        &redis.url(),
        "timeout = \"5s\"",
        "rate = \"100/hour\", key = \"global\"",
        &up.url(),
    );
    let gateways: Vec<GatewayProcess> = (0..3).map(|_| GatewayProcess::start(&toml)).collect();
    for path in ["/cluster", "/local"] {
        let mut admitted = 0;
        let mut refused = 0;
        for i in 0..300 {
            let (status, headers) = get(&gateways[i % 3].url(path)).await;
            match status {
                200 => admitted += 1,
                429 => {
                    refused += 1;
                    assert!(header(&headers, "retry-after").is_some());
                }
                other => panic!("{path}: request {i} answered {other}"),
            }
        }
        let expected = if path == "/cluster" { 100 } else { 300 };
        assert_eq!((path, admitted, refused), (path, expected, 300 - expected));
    }
    // One bucket in Redis for the route's one global key.
    assert_eq!(redis.keys("fanout:rl:*").len(), 1);
}

/// A cluster-scoped limit answers with the same `RateLimit-*` and `Retry-After` headers
/// as the local limiter, from the script's answer.
#[tokio::test]
async fn the_headers_are_those_of_the_local_limiter() {
    let redis = RedisServer::start();
    let up = upstream().await;
    let gateway = start_gateway(&limited_toml(
        &redis.url(),
        "timeout = \"5s\"",
        "rate = \"3/hour\", key = \"ip\"",
        &up.url(),
    ))
    .await;
    let mut seen = Vec::new();
    for path in ["/cluster", "/local"] {
        let mut answers = Vec::new();
        for _ in 0..4 {
            let (status, h) = get(&gateway.url(path)).await;
            answers.push((
                status,
                header(&h, "ratelimit-limit"),
                header(&h, "ratelimit-remaining"),
                header(&h, "retry-after"),
            ));
        }
        seen.push(answers);
    }
    let some = |s: &str| Some(s.to_owned());
    // One request every 20 minutes: 1200 s to wait, rounded up (1199.99... s left).
    assert_eq!(
        seen[0],
        vec![
            (200, some("3"), some("2"), None),
            (200, some("3"), some("1"), None),
            (200, some("3"), some("0"), None),
            (429, some("3"), some("0"), some("1200")),
        ]
    );
    assert_eq!(seen[0], seen[1], "cluster and local scopes answer alike");
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

/// Redis stopped mid-run: no 5xx from any gateway; each `on_error` applies (`local`: this
/// instance's share, `allow`: admitted without `RateLimit-*`, `deny`: 429 with
/// `Retry-After: 1`); once Redis is back, the limits are counted in it again.
#[tokio::test]
async fn with_redis_stopped_each_on_error_applies_and_redis_is_used_again_once_back() {
    let mut redis = RedisServer::start();
    let up = upstream().await;
    let limit = "rate = \"10/hour\", key = \"global\"";
    let breaker = "timeout = \"2s\"\ncircuit_breaker = { failures = 1, open_for = \"100ms\" }";
    let start = async |mode: &str, extra: &str| {
        start_gateway(&limited_toml(
            &redis.url(),
            &format!("{breaker}\non_error = \"{mode}\"\n{extra}"),
            limit,
            &up.url(),
        ))
        .await
    };
    let local = start("local", "expected_instances = 2").await;
    let allow = start("allow", "").await;
    let deny = start("deny", "").await;
    // Up: counted in Redis, all three in one bucket (the same route in each).
    for gateway in [&local, &allow, &deny] {
        assert_eq!(get(&gateway.url("/cluster")).await.0, 200);
    }
    let (_, h) = get(&local.url("/cluster")).await;
    assert_eq!(header(&h, "ratelimit-remaining").as_deref(), Some("6"));

    redis.stop();
    // local: 10/hour shared by 2 instances is 5 here, then 429.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(get(&local.url("/cluster")).await.0);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    for _ in 0..5 {
        let (status, h) = get(&allow.url("/cluster")).await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "ratelimit-remaining"), None);
        let (status, h) = get(&deny.url("/cluster")).await;
        assert_eq!(status, 429);
        assert_eq!(header(&h, "retry-after").as_deref(), Some("1"));
    }

    redis.restart();
    // Back: the (empty) Redis counts again, in every gateway, after a probe.
    for gateway in [&local, &allow, &deny] {
        let remaining = eventually_some("Redis to count again", async || {
            let (status, h) = get(&gateway.url("/cluster")).await;
            assert!(status < 500, "{status}");
            let text = header(&h, "ratelimit-remaining")?;
            (status == 200 && redis.keys("fanout:rl:*").len() == 1).then_some(text)
        })
        .await;
        assert!(remaining.parse::<u32>().unwrap() < 10);
    }
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

/// The password in `cluster.redis` reaches Redis and nowhere else: not the log (even
/// when the store fails), not `/config`, not `/ready`.
#[tokio::test]
async fn the_password_is_never_in_logs_or_config() {
    let mut redis = RedisServer::start_with_password("Sup3rSecretPw");
    let up = upstream().await;
    let toml = limited_toml(
        &redis.url().replace("Sup3rSecretPw", "${REDIS_PASSWORD}"),
        "timeout = \"2s\"\ncircuit_breaker = { failures = 1, open_for = \"1h\" }",
        "rate = \"100/hour\", key = \"ip\"",
        &up.url(),
    );
    let gateway = GatewayProcess::start_env(&toml, &[], &[("REDIS_PASSWORD", "Sup3rSecretPw")]);
    let (status, h) = get(&gateway.url("/cluster")).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "ratelimit-remaining").as_deref(), Some("99"));
    assert_eq!(redis.keys("fanout:rl:*").len(), 1, "counted in Redis");
    redis.stop();
    assert_eq!(get(&gateway.url("/cluster")).await.0, 200);
    eventually("the breaker's log line", async || {
        gateway
            .logs()
            .iter()
            .any(|l| l.contains("cluster store failing"))
    })
    .await;
    let admin = gateway.admin_addr();
    let config = crate::common::get_text(&format!("http://{admin}/config")).await;
    let ready = crate::common::get_text(&format!("http://{admin}/ready")).await;
    assert!(ready.contains("\"state\":\"open\""), "{ready}");
    assert!(
        ready.contains(&format!("127.0.0.1:{}", redis.port())),
        "{ready}"
    );
    for (what, text) in [
        ("log", gateway.logs().join("\n")),
        ("/config", config),
        ("/ready", ready),
    ] {
        assert!(
            !text.contains("Sup3rSecretPw"),
            "the password in the {what}:\n{text}"
        );
    }
}

/// `fanout check` names each cluster problem's place: a cluster scope without
/// `[cluster]`, and a `[cluster]` with bad values.
#[test]
fn fanout_check_reports_cluster_problems_with_their_places() {
    let check = |toml: &str| {
        let dir = crate::common::scratch_dir("cluster-check");
        let path = dir.join("gateway.toml");
        std::fs::write(&path, toml).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr)
            .unwrap()
            .lines()
            .skip(1)
            .filter_map(|l| Some(l.trim().split_once(": ")?.0.to_owned()))
            .collect::<Vec<_>>()
    };
    let up = "[upstreams.up]\nurl = \"http://127.0.0.1:9\"\n";
    let route = |scope: &str| {
        format!(
            "[[routes]]\npath = \"/r\"\nrate_limit = {{ rate = \"10/s\", key = \"ip\", scope = \"{scope}\" }}\nproxy = {{ upstream = \"up\", path = \"/\" }}\n"
        )
    };
    assert_eq!(
        check(&format!(
            "[upstreams.up]\nurl = \"http://127.0.0.1:9\"\nrate_limit = {{ rate = \"10/s\", scope = \"cluster\" }}\n{}",
            route("cluster")
        )),
        [
            "upstreams.up.rate_limit.scope",
            "routes[0].rate_limit.scope"
        ]
    );
    assert_eq!(
        check(&format!(
            "[cluster]\nredis = \"http://x:6379\"\ntimeout = \"0ms\"\non_error = \"maybe\"\nexpected_instances = 0\n{up}{}",
            route("everywhere")
        )),
        [
            "cluster.redis",
            "cluster.timeout",
            "cluster.on_error",
            "cluster.expected_instances",
            "routes[0].rate_limit.scope"
        ]
    );
}

/// An upstream's `rate_limit` with `scope = "cluster"` is one bucket in Redis for every
/// instance: two gateways together call it as often as one would; refused calls are
/// refused as the local limit refuses them.
#[tokio::test]
async fn an_upstream_limit_in_cluster_scope_is_one_bucket_for_every_instance() {
    let redis = RedisServer::start();
    let up = upstream().await;
    let toml = |scope: &str| {
        format!(
            "[cluster]\nredis = \"{}\"\ntimeout = \"5s\"\n\n[upstreams.up]\nurl = \"{}\"\n\
             rate_limit = {{ rate = \"3/hour\", scope = \"{scope}\" }}\n\n\
             [[routes]]\npath = \"/p\"\nproxy = {{ upstream = \"up\", path = \"/a\" }}\n",
            redis.url(),
            up.url()
        )
    };
    for (scope, expected) in [("cluster", 3), ("local", 6)] {
        let before = up.hits("/a");
        let one = start_gateway(&toml(scope)).await;
        let two = start_gateway(&toml(scope)).await;
        let mut refused = Vec::new();
        for i in 0..10 {
            let gateway = if i % 2 == 0 { &one } else { &two };
            let (status, _) = get(&gateway.url("/p")).await;
            if status != 200 {
                refused.push(status);
            }
        }
        assert_eq!((scope, up.hits("/a") - before), (scope, expected));
        assert_eq!(refused.len(), 10 - expected);
        assert!(refused.iter().all(|s| *s == refused[0]), "{refused:?}");
    }
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
