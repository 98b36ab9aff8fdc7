//! Route rate limits over real sockets: 429 with its headers, keys by header, client
//! identity behind trusted proxies.

use crate::common;

use common::{MockUpstream, Reply, client, start_gateway};

async fn limited(up: &MockUpstream, server: &str, limit: &str) -> common::TestGateway {
    start_gateway(&format!(
        "[server]\n{server}\n[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\nrate_limit = {limit}\n\
         [[routes.backends]]\nname = \"a\"\nupstream = \"up\"\npath = \"/a\"\n",
        up.url()
    ))
    .await
}

async fn status_of(url: &str, headers: &[(&str, &str)]) -> (u16, http::HeaderMap) {
    let mut request = client().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.headers().clone())
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_and_ratelimit_headers() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = limited(&up, "", r#"{ rate = "2/min", key = "global" }"#).await;
    // The limiter runs on the wall clock (governor's), and Retry-After counts whole
    // seconds from the first request: the three go out on one client, back to back,
    // with nothing (such as building a client) between them.
    let http = client();
    let response = http.get(gw.url("/r")).send().await.unwrap();
    let (status, h) = (response.status().as_u16(), response.headers().clone());
    assert_eq!(
        (
            status,
            h["ratelimit-limit"].to_str().unwrap(),
            h["ratelimit-remaining"].to_str().unwrap()
        ),
        (200, "2", "1")
    );
    let response = http.get(gw.url("/r")).send().await.unwrap();
    let (status, h) = (response.status().as_u16(), response.headers().clone());
    assert_eq!(
        (status, h["ratelimit-remaining"].to_str().unwrap()),
        (200, "0")
    );
    let response = http.get(gw.url("/r")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    let h = response.headers().clone();
    assert_eq!(h["retry-after"], "30", "one request refills every 30 s");
    assert_eq!(h["ratelimit-limit"], "2");
    assert_eq!(h["ratelimit-remaining"], "0");
    assert_eq!(h["ratelimit-reset"], "30");
    let body = common::json_of(response).await;
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        up.hits("/a"),
        2,
        "a limited request never reaches an upstream"
    );
}

#[tokio::test]
async fn header_keys_limit_each_value_and_the_anonymous_together() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = limited(&up, "", r#"{ rate = "1/min", key = "header:x-user-id" }"#).await;
    let url = gw.url("/r");
    assert_eq!(status_of(&url, &[("x-user-id", "ann")]).await.0, 200);
    assert_eq!(status_of(&url, &[("x-user-id", "ann")]).await.0, 429);
    assert_eq!(
        status_of(&url, &[("x-user-id", "bob")]).await.0,
        200,
        "bob has his own bucket"
    );
    assert_eq!(status_of(&url, &[]).await.0, 200);
    assert_eq!(
        status_of(&url, &[]).await.0,
        429,
        "leaving the header out is not a way around the limit"
    );
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let limit = r#"{ rate = "1/min", key = "ip" }"#;
    // The test client connects from 127.0.0.1, which is not trusted here: it cannot
    // pick a fresh identity per request by sending X-Forwarded-For.
    let gw = limited(&up, "", limit).await;
    assert_eq!(
        status_of(&gw.url("/r"), &[("x-forwarded-for", "1.1.1.1")])
            .await
            .0,
        200
    );
    assert_eq!(
        status_of(&gw.url("/r"), &[("x-forwarded-for", "2.2.2.2")])
            .await
            .0,
        429
    );

    // Behind a trusted proxy, the address the proxy saw is the client's.
    let gw = limited(&up, r#"trusted_proxies = ["127.0.0.0/8"]"#, limit).await;
    assert_eq!(
        status_of(&gw.url("/r"), &[("x-forwarded-for", "1.1.1.1")])
            .await
            .0,
        200
    );
    assert_eq!(
        status_of(&gw.url("/r"), &[("x-forwarded-for", "2.2.2.2")])
            .await
            .0,
        200
    );
    assert_eq!(
        status_of(&gw.url("/r"), &[("x-forwarded-for", "9.9.9.9, 1.1.1.1")])
            .await
            .0,
        429,
        "the rightmost untrusted hop counts, not a forged one"
    );
}

#[tokio::test]
async fn forwarded_addresses_are_parsed_with_ports_and_made_canonical() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = limited(
        &up,
        r#"trusted_proxies = ["127.0.0.0/8"]"#,
        r#"{ rate = "1/min", key = "ip" }"#,
    )
    .await;
    let url = gw.url("/r");
    let from = |hop: &'static str| {
        let url = url.clone();
        async move { status_of(&url, &[("x-forwarded-for", hop)]).await.0 }
    };
    // Each pair names one client two ways: the second finds the first's bucket empty.
    for (first, second) in [
        ("9.9.9.9:1234", "9.9.9.9:4321"),
        ("6.6.6.6:1", "6.6.6.6:2"),
        ("8.8.8.8", "::ffff:8.8.8.8"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:7.7.7.7", "[::ffff:7.7.7.7]:80"),
    ] {
        assert_eq!(from(first).await, 200, "{first}");
        assert_eq!(from(second).await, 429, "{second} is {first}");
    }
    // The proxy's own bucket (a malformed hop ends the chain) is still apart from them.
    assert_eq!(from("not-an-address").await, 200);
}

#[tokio::test]
async fn a_dual_stack_listener_sees_ipv4_proxies_as_ipv4() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    // On [::], an IPv4 client's address arrives as ::ffff:127.0.0.1; the trusted range
    // is written as IPv4, as it would be.
    let gw = common::start_gateway_on(
        &format!(
            "[server]\ntrusted_proxies = [\"127.0.0.0/8\"]\n[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\n\
             rate_limit = {{ rate = \"1/min\", key = \"ip\" }}\n\
             [[routes.backends]]\nname = \"a\"\nupstream = \"up\"\npath = \"/a\"\n",
            up.url()
        ),
        "[::]:0",
    )
    .await;
    let url = format!("http://127.0.0.1:{}/r", gw.addr.port());
    assert_eq!(
        status_of(&url, &[("x-forwarded-for", "1.1.1.1")]).await.0,
        200
    );
    assert_eq!(
        status_of(&url, &[("x-forwarded-for", "2.2.2.2")]).await.0,
        200,
        "the proxy is trusted: each forwarded client has its own bucket"
    );
    assert_eq!(
        status_of(&url, &[("x-forwarded-for", "1.1.1.1")]).await.0,
        429
    );
}
