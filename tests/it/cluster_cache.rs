//! The shared cache (`cache_scope = "cluster"`) over real sockets and a real
//! `redis-server`: several gateways in this process, each with its own first level
//! (moka), sharing the second level in Redis.
//!
//! These run on the real clock: a store call is bounded by `[cluster] timeout`, a timer
//! that tokio's paused clock would fire at once while Redis answers over a socket. So
//! they assert what was called and counted, and bound ages by time measured in the test,
//! never by a margin. The windows on tokio's paused clock are unit tests in
//! `src/cache/shared_tests.rs`.

use crate::common;

use common::redis::{HungRedis, RedisServer};
use common::{
    Gate, MockUpstream, ReloadableGateway, Reply, client, eventually, get_json, start_reloadable,
};
use std::time::{Duration, Instant};

/// `[cluster]` on `redis` with a store timeout no loaded machine reaches, `/r` (one
/// backend `b` on `/data`, cached a minute, shared) and `/p/{*rest}` (a cached proxy
/// route, shared). `backend` adds keys to `b`, `cluster` to `[cluster]`.
pub(crate) fn config(redis: &str, up: &MockUpstream, cluster: &str, backend: &str) -> String {
    let timeout = if cluster.contains("timeout") {
        ""
    } else {
        "timeout = \"2s\""
    };
    format!(
        "[cluster]\nredis = \"{redis}\"\n{timeout}\n{cluster}\n\
         [upstreams.up]\nurl = \"{}\"\ntimeout = \"20s\"\n\
         [[routes]]\npath = \"/r\"\ntimeout = \"20s\"\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\n\
         cache_ttl = \"1m\"\ncache_scope = \"cluster\"\n{backend}\n\
         [[routes]]\npath = \"/p/{{*rest}}\"\ncache_ttl = \"1m\"\ncache_scope = \"cluster\"\n\
         timeout = \"20s\"\nproxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        up.url()
    )
}

pub(crate) async fn instances(n: usize, toml: &str) -> Vec<ReloadableGateway> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(start_reloadable(toml).await);
    }
    all
}

/// The `desc` of the one backend in a `Server-Timing` header.
pub(crate) fn desc(headers: &http::HeaderMap) -> String {
    let timing = headers["server-timing"].to_str().unwrap();
    let desc = timing.split("desc=\"").nth(1).unwrap();
    desc.trim_end_matches('"').to_string()
}

/// The value of `series` (a whole metric line's name and labels) on a gateway.
pub(crate) async fn metric(gateway: &ReloadableGateway, series: &str) -> u64 {
    let text = client()
        .get(format!("http://{}/metrics", gateway.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// GETs a proxied page as a load balancer passes it on: with the public host name, the
/// same on every instance (the host is in a proxy route's cache key).
pub(crate) async fn page(url: String) -> reqwest::Response {
    client()
        .get(url)
        .header("host", "api.example")
        .send()
        .await
        .unwrap()
}

fn shared(outcome: &str) -> String {
    format!("fanout_cache_shared_total{{outcome=\"{outcome}\"}}")
}

#[tokio::test]
async fn another_instance_serves_what_one_fetched() {
    let redis = RedisServer::start();
    let up = MockUpstream::builder()
        .route("/data", Reply::json(r#"{"v":1}"#))
        .route("/page", Reply::raw("page").header("x-kept", "1"))
        .start()
        .await;
    let gws = instances(2, &config(&redis.url(), &up, "", "")).await;

    let (status, h, body) = get_json(&gws[0].gateway.url("/r")).await;
    assert_eq!((status.as_u16(), desc(&h)), (200, "ok".into()));
    let (_, h, other) = get_json(&gws[1].gateway.url("/r")).await;
    assert_eq!(desc(&h), "shared", "a hit in the second level");
    assert_eq!(other, body);
    assert_eq!(up.hits("/data"), 1);
    // Now in the second instance's own first level.
    let (_, h, _) = get_json(&gws[1].gateway.url("/r")).await;
    assert_eq!(desc(&h), "hit");
    assert_eq!(metric(&gws[1], &shared("hit")).await, 1);
    assert_eq!(metric(&gws[0], &shared("stored")).await, 1);

    // A cached proxy route: status, kept headers and body, with its Cache-Status.
    let first = page(gws[0].gateway.url("/p/page")).await;
    assert_eq!(
        first.headers()["cache-status"],
        "fanout; fwd=uri-miss; stored"
    );
    let second = page(gws[1].gateway.url("/p/page")).await;
    let status = second.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        status.starts_with("fanout; hit; ttl=") && status.ends_with("; detail=shared"),
        "{status}"
    );
    assert_eq!(second.headers()["x-kept"], "1");
    assert_eq!(second.text().await.unwrap(), "page");
    assert_eq!(up.hits("/page"), 1);
    // No client byte in a store key: digests only.
    let keys = redis.keys("fanout:cache:*");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        let rest = key.strip_prefix("fanout:cache:").unwrap();
        assert!(
            rest.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
            "{key}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_with_twenty_concurrent_misses_each_make_one_call() {
    let redis = RedisServer::start();
    let gate = Gate::default();
    let up = MockUpstream::builder()
        .route("/data", Reply::json(r#"{"v":"once"}"#).gated(&gate))
        .start()
        .await;
    let gws = instances(3, &config(&redis.url(), &up, "", "")).await;
    redis.reset_stats();
    let http = client();
    let mut requests = Vec::new();
    for gw in &gws {
        for _ in 0..20 {
            let request = http.get(gw.gateway.url("/r")).send();
            requests.push(tokio::spawn(async move {
                let answer = request.await.unwrap();
                (answer.status(), common::json_of(answer).await)
            }));
        }
    }
    // Each instance's first miss has tried the lock (`SET NX PX`): one holds it and is
    // held at the gate, the other two poll. Only then may the answer come.
    eventually(
        "a lock attempt from each instance, the holder's call",
        async || redis.calls("set") >= 3 && up.hits("/data") >= 1,
    )
    .await;
    assert_eq!(up.hits("/data"), 1);
    gate.open();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["b"]["v"], "once");
    }
    assert_eq!(up.hits("/data"), 1, "one upstream call for 60 requests");
    let mut waited = 0;
    for gw in &gws {
        waited += metric(gw, &shared("waited")).await;
        assert_eq!(metric(gw, &shared("gave_up")).await, 0);
    }
    assert_eq!(
        waited, 2,
        "the two instances without the lock waited for its answer"
    );
    assert!(redis.keys("fanout:lock:*").is_empty(), "the holder let go");
}

#[tokio::test]
async fn another_instance_serves_with_the_age_and_stale_window_of_the_first() {
    let redis = RedisServer::start();
    let up = MockUpstream::builder()
        .route(
            "/data",
            Reply::sequence(vec![Reply::json("1"), Reply::json("2")]),
        )
        .route("/page", Reply::raw("page"))
        .start()
        .await;
    // `/r`: fresh 2 s, then stale for a minute while a refresh runs.
    let toml = config(&redis.url(), &up, "", "stale_while_revalidate = \"1m\"").replace(
        "cache_ttl = \"1m\"\ncache_scope = \"cluster\"\nstale",
        "cache_ttl = \"2s\"\ncache_scope = \"cluster\"\nstale",
    );
    let gws = instances(3, &toml).await;

    let stored = Instant::now();
    page(gws[0].gateway.url("/p/page")).await;
    let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
    assert_eq!(desc(&h), "ok");
    // Two seconds on: the second instance counts them in the entry's age.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let answer = page(gws[1].gateway.url("/p/page")).await;
    let elapsed = stored.elapsed().as_secs() as i64;
    let status = answer.headers()["cache-status"].to_str().unwrap();
    let ttl: i64 = status
        .strip_prefix("fanout; hit; ttl=")
        .and_then(|s| s.strip_suffix("; detail=shared"))
        .unwrap_or_else(|| panic!("{status}"))
        .parse()
        .unwrap();
    assert!(
        ttl <= 58 && ttl >= 60 - elapsed - 1,
        "ttl={ttl} after {elapsed} s"
    );

    // Past its 2 s on every instance: stale from the second level, refreshed once.
    let (_, h, body) = get_json(&gws[1].gateway.url("/r")).await;
    assert_eq!(
        (desc(&h), &body["b"]),
        ("stale".into(), &serde_json::json!(1))
    );
    eventually("the refresh", async || up.hits("/data") == 2).await;
    eventually("the refresh in the second level", async || {
        let (_, h, body) = get_json(&gws[2].gateway.url("/r")).await;
        desc(&h) == "shared" && body["b"] == 2
    })
    .await;
    assert_eq!(up.hits("/data"), 2);
}

#[tokio::test]
async fn an_answer_over_max_entry_stays_local() {
    let redis = RedisServer::start();
    let big = format!("\"{}\"", "x".repeat(2000));
    let up = MockUpstream::builder()
        .route("/data", Reply::json(big))
        .start()
        .await;
    let gws = instances(2, &config(&redis.url(), &up, "max_entry = \"1KiB\"", "")).await;
    let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
    assert_eq!(desc(&h), "ok");
    let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
    assert_eq!(desc(&h), "hit", "stored locally");
    let (_, h, _) = get_json(&gws[1].gateway.url("/r")).await;
    assert_eq!(desc(&h), "ok", "not in the second level");
    assert_eq!(up.hits("/data"), 2);
    assert!(redis.keys("fanout:cache:*").is_empty());
    assert_eq!(metric(&gws[0], &shared("too_large")).await, 1);
}

#[tokio::test]
async fn purge_empties_both_levels() {
    let redis = RedisServer::start();
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .route("/page", Reply::raw("page"))
        .start()
        .await;
    let gws = instances(2, &config(&redis.url(), &up, "", "")).await;
    get_json(&gws[0].gateway.url("/r")).await;
    page(gws[0].gateway.url("/p/page")).await;
    assert_eq!(redis.keys("fanout:cache:*").len(), 2);
    let purge = |query: String| {
        let admin = gws[0].admin;
        async move {
            let url = format!("http://{admin}/cache/purge{query}");
            common::json_of(client().post(url).send().await.unwrap()).await
        }
    };
    // One URL: its entries here and in the store, no other.
    let body = purge(format!("?url={}/data", up.url())).await;
    assert_eq!(
        (body["purged"].as_u64(), body["purged_shared"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(redis.keys("fanout:cache:*").len(), 1);
    let (_, h, _) = get_json(&gws[1].gateway.url("/r")).await;
    assert_eq!(desc(&h), "ok", "gone from the second level");
    let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
    assert_eq!(
        desc(&h),
        "shared",
        "gone from the first level, back in the second"
    );
    // Everything: the cache prefix only.
    redis.command(&["SET", "fanout:rl:someone", "1"]);
    let body = purge(String::new()).await;
    assert_eq!(
        (body["purged"].as_u64(), body["purged_shared"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(redis.keys("fanout:cache:*").is_empty());
    assert_eq!(redis.keys("fanout:rl:*"), ["fanout:rl:someone"]);
}

#[tokio::test]
async fn with_redis_down_or_hung_every_request_is_served_from_the_upstream() {
    let mut redis = RedisServer::start();
    let hung = HungRedis::start();
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .route("/a", Reply::raw("a"))
        .route("/b", Reply::raw("b"))
        .start()
        .await;
    let down = instances(1, &config(&redis.url(), &up, "", "")).await;
    // A store that never answers: each call ends at the store's timeout.
    let stalled = instances(1, &config(&hung.url(), &up, "timeout = \"50ms\"", "")).await;
    redis.stop();
    for gw in [&down[0], &stalled[0]] {
        let (status, _, body) = get_json(&gw.gateway.url("/r")).await;
        assert_eq!((status.as_u16(), &body["b"]), (200, &serde_json::json!(1)));
        for path in ["/p/a", "/p/b"] {
            let answer = page(gw.gateway.url(path)).await;
            assert_eq!(answer.status(), 200);
            assert_eq!(answer.text().await.unwrap(), path[3..]);
        }
        assert!(metric(gw, &shared("error")).await >= 1);
        assert_eq!(metric(gw, &shared("stored")).await, 0);
    }
    assert_eq!(up.hits("/data") + up.hits("/a") + up.hits("/b"), 6);
    // Back: the next miss is shared again.
    redis.restart();
    let mut n = 0;
    eventually("the store back", async || {
        // A new key each time: one stored locally is not read from the store again.
        n += 1;
        let url = down[0].gateway.url(&format!("/p/a?n={n}"));
        page(url).await.status() == 200 && !redis.keys("fanout:cache:*").is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_lock_holder_that_never_lets_go_holds_others_only_briefly() {
    let redis = RedisServer::start();
    let gate = Gate::default();
    // The first call hangs at the gate (its instance holds the lock all along); the
    // next answers at once.
    let up = MockUpstream::builder()
        .route(
            "/data",
            Reply::sequence(vec![Reply::json("1").gated(&gate), Reply::json("2")]),
        )
        .start()
        .await;
    let gws = instances(2, &config(&redis.url(), &up, "", "")).await;
    let holder = {
        let url = gws[0].gateway.url("/r");
        tokio::spawn(async move { get_json(&url).await })
    };
    eventually("the holder's call", async || up.hits("/data") == 1).await;
    assert_eq!(redis.keys("fanout:lock:*").len(), 1);
    let (status, h, body) = get_json(&gws[1].gateway.url("/r")).await;
    assert_eq!((status.as_u16(), desc(&h)), (200, "ok".into()));
    assert_eq!(body["b"], 2, "its own call, while the holder still waits");
    assert!(gate.opened().is_none());
    assert_eq!(metric(&gws[1], &shared("gave_up")).await, 1);
    gate.open();
    assert_eq!(holder.await.unwrap().0, 200);
}
