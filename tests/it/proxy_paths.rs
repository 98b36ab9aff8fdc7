//! Route matching on the normalized path, over real sockets: a route's policy cannot be
//! bypassed by percent-encoding, doubled slashes or a trailing slash; path tricks are
//! refused before any upstream sees them; the upstream gets the path that was matched;
//! `{*rest}` matches an empty rest.

use crate::common;

use common::{MockUpstream, Reply, client, get_json, raw_request, start_gateway};

/// `/p/secret` limited to one request (one global bucket) next to the catch-all
/// `/p/{*rest}`, and an aggregate route `/a/secret`, all on `up`.
async fn guarded(up: &MockUpstream) -> common::TestGateway {
    start_gateway(&format!(
        r#"[upstreams.up]
url = "{}"
[[routes]]
path = "/p/secret"
rate_limit = {{ rate = "1/hour", key = "global" }}
proxy = {{ upstream = "up", path = "/secret" }}
[[routes]]
path = "/p/{{*rest}}"
proxy = {{ upstream = "up", path = "/{{rest}}" }}
[[routes]]
path = "/a/secret"
  [[routes.backends]]
  name = "s"
  upstream = "up"
  path = "/secret"
"#,
        up.url()
    ))
    .await
}

/// Sends `target` as it is (no client library normalizes it) and returns the status.
async fn status_of(gw: &common::TestGateway, target: &str) -> (u16, String) {
    let answer = raw_request(
        gw.addr,
        &format!("GET {target} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line for {target}: {answer:?}"));
    (status, answer)
}

#[tokio::test]
async fn encoded_doubled_and_trailing_slash_paths_meet_the_routes_limit() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = guarded(&up).await;
    assert_eq!(status_of(&gw, "/p/secret").await.0, 200);
    for target in [
        "/p/%73ecret",
        "/p/%73%65%63%72%65%74",
        "/p/secret/",
        "/p//secret",
        "/p/%73ecret/",
        "//p///secret//",
    ] {
        let (status, answer) = status_of(&gw, target).await;
        assert_eq!(
            status, 429,
            "{target} passed the limit of /p/secret: {answer}"
        );
    }
    assert_eq!(
        up.hits("/secret"),
        1,
        "only the first request reached /secret: {:?}",
        up.requests().iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    assert_eq!(up.total_hits(), 1);
}

#[tokio::test]
async fn path_tricks_are_refused_before_any_upstream_sees_them() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = guarded(&up).await;
    for target in [
        "/p/a%2Fb",
        "/p/a%2fb",
        "/p/a%5Cb",
        "/p/a\\b",
        "/p/..;/secret",
        "/p/secret;x=1",
        "/p/a%3Bb",
        "/p/a%00b",
        "/p/a%0Ab",
        "/p/a%7Fb",
        "/p/%2e%2e/x",
        "/p/x/%2E/y",
        "/p/x/../secret",
        "/p/a%zz",
        "/p/a%4",
        "/p/%C0%AF",
    ] {
        let (status, answer) = status_of(&gw, target).await;
        assert_eq!(status, 400, "{target}: {answer}");
        assert!(answer.contains("\"bad_request\""), "{target}: {answer}");
    }
    assert_eq!(
        up.total_hits(),
        0,
        "{:?}",
        up.requests().iter().map(|r| &r.target).collect::<Vec<_>>()
    );
    let (status, _) = status_of(&gw, "/p/fine").await;
    assert_eq!(status, 200, "the gateway keeps serving");
}

#[tokio::test]
async fn the_upstream_gets_the_normalized_path() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = guarded(&up).await;
    for (target, upstream) in [
        (
            "/p//a//b%7e%41/%c3%a9?q=%2F&r=a//b",
            "/a/b~A/%C3%A9?q=%2F&r=a//b",
        ),
        ("/p/caf\u{e9}/%40me/a%20b", "/caf%C3%A9/@me/a%20b"),
        ("/p/dir/", "/dir/"),
        ("/p/a%25b", "/a%25b"),
        ("/p/.well-known/x", "/.well-known/x"),
    ] {
        let (status, answer) = status_of(&gw, target).await;
        assert_eq!(status, 200, "{target}: {answer}");
        let seen = up.requests().last().unwrap().target.clone();
        assert_eq!(seen, upstream, "{target}");
    }
}

#[tokio::test]
async fn aggregate_routes_match_the_normalized_path_too() {
    let up = MockUpstream::builder()
        .route("/secret", Reply::json("7"))
        .start()
        .await;
    let gw = guarded(&up).await;
    for path in ["/a/secret", "/a/%73ecret", "/a//secret", "/a/secret/"] {
        let (status, _, body) = get_json(&gw.url(path)).await;
        assert_eq!(
            (status.as_u16(), &body["s"]),
            (200, &serde_json::json!(7)),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_empty_rest_reaches_the_upstream_as_the_mapped_prefix() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"[upstreams.up]
url = "{}"
[[routes]]
path = "/api/{{*rest}}"
proxy = {{ upstream = "up", path = "/v1/{{rest}}" }}
[[routes]]
path = "/own/{{*rest}}"
proxy = {{ upstream = "up", path = "/{{rest}}" }}
[[routes]]
path = "/own"
proxy = {{ upstream = "up", path = "/declared" }}
"#,
        up.url()
    ))
    .await;
    for (path, upstream) in [
        ("/api/", "/v1/"),
        ("/api", "/v1/"),
        ("/api/x/y", "/v1/x/y"),
        ("/own", "/declared"),
        ("/own/", "/declared"),
        ("/own/z", "/z"),
    ] {
        let response = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(up.requests().last().unwrap().target, upstream, "{path}");
    }
}

#[tokio::test]
async fn a_header_value_in_a_proxy_path_stays_one_segment() {
    // Found by fuzz/fuzz_targets/template.rs: a header's value was copied into a proxy
    // path as it came, so a client's `/` added path segments upstream.
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"[upstreams.up]
url = "{}"
[[routes]]
path = "/t/{{*rest}}"
proxy = {{ upstream = "up", path = "/tenants/{{header.x-tenant}}/{{rest}}" }}
"#,
        up.url()
    ))
    .await;
    let response = client()
        .get(gw.url("/t/a"))
        .header("x-tenant", "acme/admin x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let targets: Vec<String> = up.requests().iter().map(|r| r.target.clone()).collect();
    assert_eq!(targets, ["/tenants/acme%2Fadmin%20x/a"]);
}
