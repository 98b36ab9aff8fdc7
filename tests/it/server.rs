//! The listener over real sockets: health, 404/405, HEAD, h2c, CORS for dashboards,
//! compression, slow-header clients, clients that stop reading, and graceful shutdown.

use crate::common;

use common::{MockUpstream, Reply, client, eventually, get_json, start_gateway};
use std::io::Read;
use std::time::Duration;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

async fn simple(up: &MockUpstream, server: &str) -> common::TestGateway {
    start_gateway(&format!(
        r#"[server]
{server}
[upstreams.up]
url = "{}"
[[routes]]
path = "/r"
  [[routes.backends]]
  name = "a"
  upstream = "up"
  path = "/a"
[[routes]]
path = "/p/{{*rest}}"
methods = ["GET", "POST", "PUT"]
proxy = {{ upstream = "up", path = "/{{rest}}" }}
"#,
        up.url()
    ))
    .await
}

#[tokio::test]
async fn health_not_found_and_method_not_allowed() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = simple(&up, "health_path = \"/healthz\"").await;
    let (status, _, body) = get_json(&gw.url("/healthz")).await;
    assert_eq!(
        (status.as_u16(), body),
        (200, serde_json::json!({"status": "ok"}))
    );

    let (status, headers, body) = get_json(&gw.url("/nowhere")).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["error"]["code"], "route_not_found");

    let response = client().delete(gw.url("/r")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let body = common::json_of(response).await;
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(up.total_hits(), 0);
}

#[tokio::test]
async fn head_is_answered_by_a_get_route_without_a_body() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json(r#"{"x":1}"#))
        .start()
        .await;
    let gw = simple(&up, "").await;
    let response = client().head(gw.url("/r")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-length"],
        r#"{"a":{"x":1}}"#.len().to_string()
    );
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn speaks_h2c_with_prior_knowledge() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = simple(&up, "").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(gw.url("/r")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), r#"{"a":1}"#);
}

#[tokio::test]
async fn cors_preflight_is_answered_by_the_gateway() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = simple(
        &up,
        "[server.cors]\nallow_origins = [\"https://dash.example.com\"]\nmax_age = \"1h\"",
    )
    .await;
    let preflight = client()
        .request(reqwest::Method::OPTIONS, gw.url("/r"))
        .header("origin", "https://dash.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://dash.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET");
    assert_eq!(h["access-control-allow-headers"], "authorization");
    assert_eq!(h["access-control-max-age"], "3600");
    assert_eq!(up.total_hits(), 0, "a preflight never reaches an upstream");

    let actual = client()
        .get(gw.url("/r"))
        .header("origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        actual.headers()["access-control-allow-origin"],
        "https://dash.example.com"
    );
    let exposed = actual.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("server-timing") && exposed.contains("x-fanout-complete"),
        "{exposed}"
    );
    assert!(
        exposed.contains("traceparent"),
        "a dashboard reads its trace: {exposed}"
    );

    let stranger = client()
        .get(gw.url("/r"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        stranger
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn cors_alone_decides_on_proxied_answers() {
    // An upstream that echoes any origin and allows credentials.
    let up = MockUpstream::builder()
        .route(
            "/me",
            Reply::json("{\"user\":\"u1\"}")
                .header("access-control-allow-origin", "https://evil.example")
                .header("access-control-allow-credentials", "true")
                .header("access-control-expose-headers", "x-secret"),
        )
        .start()
        .await;
    let gw = simple(
        &up,
        "[server.cors]\nallow_origins = [\"https://dash.example.com\"]",
    )
    .await;
    let stranger = client()
        .get(gw.url("/p/me"))
        .header("origin", "https://evil.example")
        .header("cookie", "session=1")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 200);
    let h = stranger.headers();
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
    ] {
        assert!(h.get(name).is_none(), "{name}: {:?}", h.get(name));
    }
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    assert!(!exposed.contains("x-secret"), "{exposed}");
    let friend = client()
        .get(gw.url("/p/me"))
        .header("origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    let h = friend.headers();
    assert_eq!(h["access-control-allow-origin"], "https://dash.example.com");
    assert!(
        h.get("access-control-allow-credentials").is_none(),
        "fanout's policy allows no credentials, whatever the upstream says"
    );
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    assert!(!exposed.contains("x-secret"), "{exposed}");

    // Without [server.cors] the upstream's own headers pass, as any header does.
    let gw = simple(&up, "").await;
    let r = client()
        .get(gw.url("/p/me"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://evil.example"
    );
}

#[tokio::test]
async fn no_cors_headers_without_cors_config() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = simple(&up, "").await;
    let r = client()
        .get(gw.url("/r"))
        .header("origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn large_answers_are_compressed_for_clients_that_accept_it() {
    let big = format!("[{}0]", "1234567890,".repeat(300));
    let up = MockUpstream::builder()
        .route("/a", Reply::json(big.clone()))
        .start()
        .await;
    let gw = simple(&up, "compression_min_size = \"1KiB\"").await;
    let expected = format!(r#"{{"a":{big}}}"#);

    let gz = client()
        .get(gw.url("/r"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    let bytes = gz.bytes().await.unwrap();
    assert!(
        bytes.len() < expected.len() / 4,
        "{} bytes compressed",
        bytes.len()
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, expected);

    let br = client()
        .get(gw.url("/r"))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(br.headers()["content-encoding"], "br");
    let bytes = br.bytes().await.unwrap();
    let mut text = String::new();
    brotli::Decompressor::new(&bytes[..], 4096)
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, expected);

    let plain = client().get(gw.url("/r")).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.text().await.unwrap(), expected);
}

#[tokio::test]
async fn small_answers_and_disabled_compression_stay_plain() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json(format!("\"{}\"", "x".repeat(4000))))
        .start()
        .await;
    let gw = simple(&up, "compression_min_size = \"64KiB\"").await;
    let r = client()
        .get(gw.url("/r"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("content-encoding").is_none(),
        "below the threshold"
    );
    let gw = simple(&up, "compression = false").await;
    let r = client()
        .get(gw.url("/r"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("content-encoding").is_none(),
        "compression is off"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_header_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = simple(&up, "header_read_timeout = \"200ms\"").await;
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /r HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was left open");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Meanwhile the gateway serves everyone else.
    let (status, _, _) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200);
}

#[tokio::test(start_paused = true)]
async fn a_slow_head_after_a_served_request_is_cut_off_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    // The keep-alive wait is long; the head that follows must still be whole in 200 ms.
    let gw = simple(
        &up,
        "header_read_timeout = \"200ms\"\nkeepalive_timeout = \"30s\"",
    )
    .await;
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"GET /__health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    while !buf.ends_with(br#"{"status":"ok"}"#) {
        let mut chunk = [0u8; 1024];
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
    }
    tokio::time::sleep(MS(300)).await;
    conn.write_all(b"GET /r HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was left open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1").latency(MS(500)))
        .start()
        .await;
    let mut gw = simple(&up, "shutdown_grace = \"5s\"").await;
    let url = gw.url("/r");
    let in_flight = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    // Shut down once the request is in flight: its call has reached the upstream, which
    // answers 500 ms (of the paused clock) later.
    eventually("the in-flight request's call at the upstream", async || {
        up.hits("/a") == 1
    })
    .await;
    let server = gw.shutdown();
    let status = in_flight
        .await
        .unwrap()
        .expect("the in-flight request was answered");
    assert_eq!(status, 200);
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("the server stopped after draining")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_grace_bounds_the_drain() {
    let up = MockUpstream::builder()
        .route("/a", Reply::hang())
        .start()
        .await;
    let mut gw = simple(&up, "shutdown_grace = \"300ms\"\nrequest_timeout = \"30s\"").await;
    let url = gw.url("/r");
    let _in_flight = tokio::spawn(async move { client().get(url).send().await });
    eventually("the in-flight request's call at the upstream", async || {
        up.hits("/a") == 1
    })
    .await;
    let started = Instant::now();
    let server = gw.shutdown();
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("stopped")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

const GIB: u64 = 1 << 30;

/// Sends `request` and never reads; once the gateway has given up on the client, reads
/// what the socket holds and returns whether the gateway closed the connection.
async fn stalled_client_is_cut(request: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = MockUpstream::builder()
        .route("/big", Reply::source(GIB))
        .start()
        .await;
    let gw = simple(&up, "send_timeout = \"500ms\"").await;
    let mut stalled = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stalled.write_all(request.as_bytes()).await.unwrap();
    eventually(
        &format!("the upstream stream to be cancelled: {request:?}"),
        async || up.cancelled() == 1,
    )
    .await;
    let mut sink = vec![0u8; 1 << 20];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection was left open: {request:?}");
    // Everyone else is served meanwhile.
    assert_eq!(get_json(&gw.url("/__health")).await.0, 200);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_with_its_upstream_call() {
    stalled_client_is_cut("GET /p/big HTTP/1.1\r\nHost: g\r\n\r\n").await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_on_a_handed_off_connection_is_cut_too() {
    // A request with a body is served by hyper.
    stalled_client_is_cut("POST /p/big HTTP/1.1\r\nHost: g\r\nContent-Length: 1\r\n\r\nx").await;
}

#[tokio::test(start_paused = true)]
async fn an_http2_client_that_grants_no_window_is_cut_with_its_upstream_call() {
    let up = MockUpstream::builder()
        .route("/big", Reply::source(GIB))
        .start()
        .await;
    let gw = simple(&up, "send_timeout = \"500ms\"").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    // The answer's head is read, its body never: the client's window runs out.
    let response = h2.get(gw.url("/p/big")).send().await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    eventually("the upstream stream to be cancelled", async || {
        up.cancelled() == 1
    })
    .await;
    drop(response);
    assert_eq!(get_json(&gw.url("/__health")).await.0, 200);
}
