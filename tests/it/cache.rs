//! The response cache over real sockets: hits, safe keys, coalescing, upstream
//! Cache-Control, stale-while-revalidate, stale-if-error, and cached proxy routes.
//! Tests that wait for an entry to age run on tokio's paused clock: the cache measures age
//! with tokio's clock, so a TTL passes exactly when the test sleeps past it.

use crate::common;

use common::{MockUpstream, Reply, client, eventually, get_json, start_gateway};
use std::time::Duration;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// `/r` with one cached backend `b` on `/data` (plus `extra` backend keys).
/// A TTL long enough that no test, however slow its machine, sees an entry expire
/// unless it waits for that on purpose.
async fn cached_route(up: &MockUpstream, extra: &str) -> common::TestGateway {
    cached_route_ttl(up, "1m", extra).await
}

async fn cached_route_ttl(up: &MockUpstream, ttl: &str, extra: &str) -> common::TestGateway {
    start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\nforward_headers = [\"accept-language\"]\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\ncache_ttl = \"{ttl}\"\n{extra}\n",
        up.url()
    ))
    .await
}

fn desc(headers: &http::HeaderMap) -> String {
    let timing = headers["server-timing"].to_str().unwrap();
    timing
        .split("desc=\"")
        .nth(1)
        .unwrap()
        .trim_end_matches('"')
        .to_string()
}

async fn get_with(
    url: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, String) {
    let mut request = client().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    (
        response.status(),
        response.headers().clone(),
        response.text().await.unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_cached_backend_is_called_once_per_ttl() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json(r#"{"v":1}"#))
        .start()
        .await;
    // Long enough that the store never evicts the entry on its own (wall) clock first.
    let gw = cached_route_ttl(&up, "1m", "").await;
    let (_, h, body) = get_json(&gw.url("/r")).await;
    assert_eq!(
        (desc(&h).as_str(), body["b"]["v"].as_i64()),
        ("ok", Some(1))
    );
    let (_, h, body) = get_json(&gw.url("/r")).await;
    assert_eq!(
        (desc(&h).as_str(), body["b"]["v"].as_i64()),
        ("hit", Some(1))
    );
    assert_eq!(up.hits("/data"), 1);
    tokio::time::sleep(Duration::from_secs(61)).await;
    let (_, h, _) = get_json(&gw.url("/r")).await;
    assert_eq!(desc(&h), "ok", "expired after cache_ttl");
    assert_eq!(up.hits("/data"), 2);
}

#[tokio::test]
async fn users_never_share_cached_answers() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gw = cached_route(&up, "").await;
    let url = gw.url("/r");
    for headers in [
        vec![("authorization", "Bearer alice")],
        vec![("authorization", "Bearer bob")],
        vec![("cookie", "session=carol")],
        vec![("authorization", "Bearer alice"), ("accept-language", "fr")],
        vec![],
    ] {
        let (_, h, _) = get_with(&url, &headers).await;
        assert_eq!(
            desc(&h),
            "ok",
            "{headers:?} must not get another user's entry"
        );
    }
    assert_eq!(up.hits("/data"), 5);
    let (_, h, _) = get_with(&url, &[("authorization", "Bearer bob")]).await;
    assert_eq!(desc(&h), "hit", "the same user hits their own entry");
    assert_eq!(up.hits("/data"), 5);
}

#[tokio::test]
async fn fifty_concurrent_misses_make_one_upstream_call() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json(r#"{"v":1}"#).latency(MS(200)))
        .start()
        .await;
    let gw = cached_route(&up, "").await;
    let url = gw.url("/r");
    let requests = (0..50).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { get_json(&url).await })
    });
    for r in futures_util::future::join_all(requests).await {
        let (status, _, body) = r.unwrap();
        assert_eq!((status.as_u16(), body["b"]["v"].as_i64()), (200, Some(1)));
    }
    assert_eq!(up.hits("/data"), 1);
}

#[tokio::test]
async fn upstream_no_store_and_private_are_respected_unless_ignored() {
    for cache_control in ["no-store", "private, max-age=60"] {
        let up = MockUpstream::builder()
            .route(
                "/data",
                Reply::json("1").header("cache-control", cache_control),
            )
            .start()
            .await;
        let gw = cached_route(&up, "").await;
        get_json(&gw.url("/r")).await;
        get_json(&gw.url("/r")).await;
        assert_eq!(up.hits("/data"), 2, "{cache_control} was stored");
        let gw = cached_route(&up, "cache_ignore_upstream = true").await;
        get_json(&gw.url("/r")).await;
        get_json(&gw.url("/r")).await;
        assert_eq!(
            up.hits("/data"),
            3,
            "cache_ignore_upstream stores it anyway"
        );
    }
}

#[tokio::test]
async fn failures_are_not_stored() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("{}").status(500))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\ncache_ttl = \"1m\"\ndefault = 0\n\
         [[routes.backends]]\nname = \"ok\"\nupstream = \"up\"\npath = \"/ok\"\n",
        up.url()
    ))
    .await;
    up.set_reply("/ok", Reply::json("1"));
    get_json(&gw.url("/r")).await;
    let (_, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(body["b"], 0);
    assert_eq!(up.hits("/data"), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_answers_at_once_and_refreshes_once() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json(r#"{"v":1}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\n\
         cache_ttl = \"500ms\"\nstale_while_revalidate = \"1m\"\n",
        up.url()
    ))
    .await;
    get_json(&gw.url("/r")).await;
    // The refresh takes 800 ms: every request in the window is answered long before.
    up.set_reply("/data", Reply::json(r#"{"v":2}"#).latency(MS(800)));
    tokio::time::sleep(MS(600)).await;
    for _ in 0..5 {
        let started = Instant::now();
        let (_, h, body) = get_json(&gw.url("/r")).await;
        assert_eq!(
            (desc(&h).as_str(), body["b"]["v"].as_i64()),
            ("stale", Some(1))
        );
        assert!(
            started.elapsed() < MS(500),
            "waited {:?} for the upstream",
            started.elapsed()
        );
    }
    // Once the one refresh has answered (800 ms after the first stale answer), its value
    // is served fresh.
    tokio::time::sleep(MS(800)).await;
    let fresh = common::eventually_some("the refreshed answer as a hit", async || {
        let (_, h, body) = get_json(&gw.url("/r")).await;
        (desc(&h) == "hit").then(|| body["b"]["v"].as_i64())
    })
    .await;
    assert_eq!(fresh, Some(2));
    assert_eq!(up.hits("/data"), 2, "exactly one background refresh");
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_the_old_answer_instead_of_a_failure() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json(r#"{"v":1}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\nrequired = true\n\
         cache_ttl = \"250ms\"\nstale_if_error = \"1m\"\n",
        up.url()
    ))
    .await;
    get_json(&gw.url("/r")).await;
    up.set_reply("/data", Reply::json("{}").status(503));
    tokio::time::sleep(MS(300)).await;
    let (status, h, body) = get_json(&gw.url("/r")).await;
    assert_eq!(
        status, 200,
        "a required backend with a stale answer does not fail the route"
    );
    assert_eq!(
        (desc(&h).as_str(), body["b"]["v"].as_i64()),
        ("stale", Some(1))
    );
    assert_eq!(up.hits("/data"), 2);
}

#[tokio::test]
async fn cached_proxy_routes_store_whole_answers_with_cache_status() {
    let up = MockUpstream::builder()
        .route(
            "/file",
            Reply::raw("contents")
                .status(203)
                .header("content-type", "text/plain")
                .header("etag", "\"v1\""),
        )
        .route(
            "/session",
            Reply::raw("yours").header("set-cookie", "session=secret"),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/p/{{*rest}}\"\nmethods = [\"GET\", \"POST\"]\n\
         cache_ttl = \"1m\"\nproxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        up.url()
    ))
    .await;
    let (status, h, body) = get_with(&gw.url("/p/file"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (203, "contents"));
    assert_eq!(h["cache-status"], "fanout; fwd=uri-miss; stored");
    let (status, h, body) = get_with(&gw.url("/p/file"), &[]).await;
    assert_eq!((status.as_u16(), body.as_str()), (203, "contents"));
    assert_eq!(
        (
            h["content-type"].to_str().unwrap(),
            h["etag"].to_str().unwrap()
        ),
        ("text/plain", "\"v1\"")
    );
    let cache_status = h["cache-status"].to_str().unwrap();
    assert!(
        cache_status.starts_with("fanout; hit; ttl=5"),
        "{cache_status}"
    );
    assert_eq!(up.hits("/file"), 1);

    for _ in 0..2 {
        let (_, h, _) = get_with(&gw.url("/p/session"), &[]).await;
        assert_eq!(
            h["cache-status"], "fanout; fwd=uri-miss",
            "an answer with Set-Cookie is never stored"
        );
    }
    assert_eq!(up.hits("/session"), 2);

    let post = client()
        .post(gw.url("/p/file"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert!(
        post.headers().get("cache-status").is_none(),
        "only GET is cached"
    );
    assert_eq!(up.hits("/file"), 2);
}

#[tokio::test]
async fn a_hit_and_a_call_in_one_request_both_answer_and_the_call_keeps_its_headers() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json(r#"{"v":1}"#))
        .route("/live", Reply::json(r#"{"n":2}"#))
        .start()
        .await;
    let extra = "[[routes.backends]]\nname = \"live\"\nupstream = \"up\"\npath = \"/live\"";
    let gw = cached_route(&up, extra).await;
    for round in ["ok", "hit"] {
        let (status, h, body) = get_with(
            &gw.url("/r"),
            &[("accept-language", "nb"), ("x-request-id", round)],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, r#"{"b":{"v":1},"live":{"n":2}}"#, "{round}");
        let timing = h["server-timing"].to_str().unwrap();
        assert!(timing.contains("b;dur="), "{timing}");
        assert!(timing.contains(&format!("desc=\"{round}\"")), "{timing}");
        // The uncached backend is called every time, with the headers calls carry,
        // also when the other backend's answer came from the cache.
        let seen = up
            .requests()
            .into_iter()
            .rfind(|r| r.target == "/live")
            .unwrap();
        assert_eq!(seen.headers["accept-language"], "nb", "{round}");
        assert_eq!(seen.headers["x-request-id"], round);
    }
    assert_eq!((up.hits("/data"), up.hits("/live")), (1, 2));
}

/// Sends alice's request, then (once her call is at the upstream, held by `gate`) bob's
/// and carol's, waits until both wait on her call, opens the gate and returns the three
/// answers. `header` carries the user's name.
async fn three_users_on_one_fill(
    gw: &common::ReloadableGateway,
    up: &MockUpstream,
    gate: &common::Gate,
    path: &str,
    header: &'static str,
) -> Vec<(http::StatusCode, http::HeaderMap, String)> {
    let url = gw.gateway.url(path);
    let coalesced = gw.live.load().cache.stats().coalesced.clone();
    let before = coalesced.get();
    let send = |user: &'static str| {
        let url = url.clone();
        tokio::spawn(async move { get_with(&url, &[(header, user)]).await })
    };
    let alice = send("alice");
    eventually("alice's call", async || up.total_hits() == 1).await;
    let (bob, carol) = (send("bob"), send("carol"));
    eventually("bob and carol to wait on alice's call", async || {
        coalesced.get() == before + 2
    })
    .await;
    gate.open();
    let mut answers = Vec::new();
    for task in [alice, bob, carol] {
        answers.push(task.await.unwrap());
    }
    answers
}

/// Asserts the upstream saw one call per user, and that bob's and carol's were made
/// after alice's was answered: they waited for it, then called for themselves.
fn one_call_each_after_the_first(up: &MockUpstream, gate: &common::Gate, header: &str) {
    let seen = up.requests();
    assert_eq!(seen.len(), 3, "one upstream call per waiter");
    let opened = gate.opened().unwrap();
    let user = |r: &common::Recorded| r.headers[header].to_str().unwrap().to_string();
    assert_eq!(user(&seen[0]), "alice");
    assert!(seen[0].arrived < opened);
    let mut later: Vec<String> = seen[1..].iter().map(user).collect();
    later.sort();
    assert_eq!(later, ["bob", "carol"]);
    assert!(seen[1..].iter().all(|r| r.arrived >= opened));
}

#[tokio::test]
async fn waiters_on_a_proxied_answer_that_is_not_stored_each_get_their_own() {
    let gate = common::Gate::default();
    let up = MockUpstream::builder()
        .route(
            "/me",
            Reply::raw("for {header.x-user}")
                .header("set-cookie", "session=for-{header.x-user}")
                .templated()
                .gated(&gate),
        )
        .start()
        .await;
    let gw = common::start_reloadable(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/p/{{*rest}}\"\n\
         cache_ttl = \"1m\"\nproxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        up.url()
    ))
    .await;
    let answers = three_users_on_one_fill(&gw, &up, &gate, "/p/me", "x-user").await;
    for ((status, h, body), user) in answers.iter().zip(["alice", "bob", "carol"]) {
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (200, &*format!("for {user}"))
        );
        assert_eq!(h["set-cookie"], format!("session=for-{user}").as_str());
        assert_eq!(h["cache-status"], "fanout; fwd=uri-miss");
    }
    one_call_each_after_the_first(&up, &gate, "x-user");
}

#[tokio::test]
async fn waiters_on_a_private_backend_answer_each_get_their_own() {
    let gate = common::Gate::default();
    let up = MockUpstream::builder()
        .route(
            "/me",
            Reply::json(r#"{"for":"{header.x-request-id}"}"#)
                .header("cache-control", "private")
                .templated()
                .gated(&gate),
        )
        .start()
        .await;
    let gw = common::start_reloadable(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/me\"\ncache_ttl = \"1m\"\n",
        up.url()
    ))
    .await;
    // The upstream sees the same call from each but for the request id, which it
    // answers with: each waiter must get the answer to its own call.
    let answers = three_users_on_one_fill(&gw, &up, &gate, "/r", "x-request-id").await;
    for ((status, h, body), user) in answers.iter().zip(["alice", "bob", "carol"]) {
        assert_eq!(status.as_u16(), 200, "{body}");
        assert_eq!(body, &format!(r#"{{"b":{{"for":"{user}"}}}}"#));
        assert_eq!(desc(h), "ok");
    }
    one_call_each_after_the_first(&up, &gate, "x-request-id");
}

#[tokio::test]
async fn after_an_answer_that_is_not_stored_requests_call_without_waiting() {
    let up = MockUpstream::builder()
        .route(
            "/me",
            Reply::raw("for {header.x-user}")
                .header("cache-control", "no-store")
                .templated(),
        )
        .start()
        .await;
    let gw = common::start_reloadable(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/p/{{*rest}}\"\n\
         cache_ttl = \"1m\"\nproxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        up.url()
    ))
    .await;
    get_with(&gw.gateway.url("/p/me"), &[("x-user", "first")]).await;
    // Ten at once, each with its own answer; none waited on another (hit-for-miss).
    up.set_reply(
        "/me",
        Reply::raw("for {header.x-user}")
            .header("cache-control", "no-store")
            .templated()
            .latency(MS(100)),
    );
    let requests = (0..10).map(|i| {
        let url = gw.gateway.url("/p/me");
        let user = format!("u{i}");
        tokio::spawn(async move { get_with(&url, &[("x-user", &user)]).await })
    });
    for (i, r) in futures_util::future::join_all(requests)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(r.unwrap().2, format!("for u{i}"));
    }
    assert_eq!(gw.live.load().cache.stats().coalesced.get(), 0);
    assert_eq!(up.hits("/me"), 11);
}

#[tokio::test]
async fn every_value_of_a_keyed_header_is_in_the_key() {
    let up = MockUpstream::builder()
        .route(
            "/data",
            Reply::json(r#"{"lang":"{header.x-lang}"}"#).templated(),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\nforward_headers = [\"x-lang\"]\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\ncache_ttl = \"1m\"\n",
        up.url()
    ))
    .await;
    let url = gw.url("/r");
    let (_, h, body) = get_with(&url, &[("x-lang", "en"), ("x-lang", "<script>")]).await;
    assert_eq!(
        (desc(&h).as_str(), body.as_str()),
        ("ok", r#"{"b":{"lang":"en, <script>"}}"#)
    );
    let (_, h, body) = get_with(&url, &[("x-lang", "en")]).await;
    assert_eq!(
        (desc(&h).as_str(), body.as_str()),
        ("ok", r#"{"b":{"lang":"en"}}"#),
        "a second value must not poison the entry of the first"
    );
    let (_, h, _) = get_with(&url, &[("x-lang", "en"), ("x-lang", "<script>")]).await;
    assert_eq!(desc(&h), "hit", "the same values hit their own entry");
    assert_eq!(up.hits("/data"), 2);
}

/// The body of a raw HTTP/1.1 answer.
fn body_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[tokio::test]
async fn the_clients_host_is_in_a_proxied_key() {
    let up = MockUpstream::builder()
        .route(
            "/page",
            Reply::raw("<a href=\"http://{header.x-forwarded-host}/next\">").templated(),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/p/{{*rest}}\"\n\
         cache_ttl = \"1m\"\nproxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        up.url()
    ))
    .await;
    let get =
        |host: &str| format!("GET /p/page HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let evil = common::raw_request(gw.addr, &get("evil.example")).await;
    assert_eq!(body_of(&evil), "<a href=\"http://evil.example/next\">");
    let good = common::raw_request(gw.addr, &get("api.example.com")).await;
    assert_eq!(
        body_of(&good),
        "<a href=\"http://api.example.com/next\">",
        "another Host must not poison the entry: {good}"
    );
    let again = common::raw_request(gw.addr, &get("api.example.com")).await;
    assert!(again.contains("cache-status: fanout; hit"), "{again}");
    assert_eq!(up.hits("/page"), 2);
}

#[tokio::test]
async fn two_backends_that_shape_one_url_differently_never_get_each_others_answer() {
    let up = MockUpstream::builder()
        .route("/item", Reply::json(r#"{"a":1,"b":2,"c":{"d":3}}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/a\"\n[[routes.backends]]\nname = \"x\"\nupstream = \"up\"\npath = \"/item\"\ncache_ttl = \"1m\"\nselect = [\"a\"]\n\
         [[routes]]\npath = \"/b\"\n[[routes.backends]]\nname = \"x\"\nupstream = \"up\"\npath = \"/item\"\ncache_ttl = \"1m\"\nselect = [\"b\"]\n\
         [[routes]]\npath = \"/c\"\n[[routes.backends]]\nname = \"x\"\nupstream = \"up\"\npath = \"/item\"\ncache_ttl = \"1m\"\nextract = \"c\"\n\
         [[routes]]\npath = \"/whole\"\n[[routes.backends]]\nname = \"x\"\nupstream = \"up\"\npath = \"/item\"\ncache_ttl = \"1m\"\n",
        up.url()
    ))
    .await;
    // Each route twice, so the second read is a hit on whatever the first stored.
    for _ in 0..2 {
        for (path, want) in [
            ("/a", serde_json::json!({"x": {"a": 1}})),
            ("/b", serde_json::json!({"x": {"b": 2}})),
            ("/c", serde_json::json!({"x": {"d": 3}})),
            (
                "/whole",
                serde_json::json!({"x": {"a": 1, "b": 2, "c": {"d": 3}}}),
            ),
        ] {
            let (status, _, body) = get_json(&gw.url(path)).await;
            assert_eq!(status, 200, "{path}");
            assert_eq!(body, want, "{path}");
        }
    }
    // One entry per shaping, each filled once and then hit.
    assert_eq!(up.hits("/item"), 4);
}
