//! Proxy routes over real sockets: pass-through, streaming both ways in bounded memory,
//! server-sent events and NDJSON as they happen, WebSockets, limits and failures.

use crate::common;

use common::{
    GatewayProcess, MockUpstream, Reply, client, dead_url, get_json, raw_request, start_gateway,
};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;
const GIB: u64 = 1024 * 1024 * 1024;

/// A gateway with `/p/{*rest}` proxied to `up`, with extra route keys.
async fn proxied(up: &MockUpstream, server: &str, route: &str) -> common::TestGateway {
    start_gateway(&proxy_toml(up, "127.0.0.1:0", server, route)).await
}

/// `route` may hold its own `proxy = {...}`; otherwise `/p/{*rest}` goes to `up` as is.
fn proxy_toml(up: &MockUpstream, listen: &str, server: &str, route: &str) -> String {
    let proxy = if route.contains("proxy =") {
        ""
    } else {
        "proxy = { upstream = \"up\", path = \"/{rest}\" }"
    };
    format!(
        "[server]\nlisten = \"{listen}\"\n{server}\n[upstreams.up]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/p/{{*rest}}\"\nmethods = [\"GET\", \"POST\", \"PUT\"]\n{route}\n{proxy}\n",
        up.url()
    )
}

#[tokio::test]
async fn proxy_routes_pass_requests_and_answers_through() {
    let up = MockUpstream::builder()
        .route(
            "/files/a%20b.txt",
            Reply::raw("hello")
                .status(201)
                .header("x-up", "1")
                .header("content-type", "text/plain"),
        )
        .route(
            "/redirect",
            Reply::raw("").status(302).header("location", "/elsewhere"),
        )
        .route("/echo", Reply::echo())
        .start()
        .await;
    let gw = proxied(&up, "", "").await;
    let r = client()
        .get(gw.url("/p/files/a%20b.txt?x=1&y=%2F"))
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-up"], "1");
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "hello");
    let seen = &up.requests()[0];
    assert_eq!(
        seen.target, "/files/a%20b.txt?x=1&y=%2F",
        "path encoding and query are kept"
    );
    assert!(
        seen.headers.get("x-hop").is_none(),
        "a header named by Connection is hop-by-hop"
    );
    assert_eq!(seen.headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(seen.headers["host"], up.addr.to_string());

    let r = client().get(gw.url("/p/redirect")).send().await.unwrap();
    assert_eq!(
        r.status(),
        302,
        "redirects are handed to the client, not followed"
    );
    assert_eq!(r.headers()["location"], "/elsewhere");

    let r = client()
        .put(gw.url("/p/echo"))
        .body(vec![7u8; 300_000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 300_000);
    let seen = up.requests().last().unwrap().clone();
    assert_eq!(seen.method, "PUT");
    assert_eq!(
        seen.headers["x-forwarded-for"], "127.0.0.1",
        "a request with a body (served by hyper) names its peer too"
    );
}

#[tokio::test]
async fn proxy_refuses_dot_segments() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = proxied(&up, "", "").await;
    let answer = raw_request(
        gw.addr,
        "GET /p/a/%2e%2e/%2e%2e/admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(up.total_hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn proxy_upstream_failures_are_json_errors() {
    let dead = dead_url().await;
    let up = MockUpstream::builder()
        .route("/slow", Reply::json("1").latency(MS(2000)))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.dead]\nurl = \"{dead}\"\n[upstreams.up]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/dead/{{*rest}}\"\nproxy = {{ upstream = \"dead\", path = \"/{{rest}}\" }}\n\
         [[routes]]\npath = \"/slow\"\ntimeout = \"200ms\"\nproxy = {{ upstream = \"up\", path = \"/slow\" }}\n",
        up.url()
    ))
    .await;
    let (status, _, body) = get_json(&gw.url("/dead/x")).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert_eq!(body["error"]["backend"], "dead");
    let started = Instant::now();
    let (status, _, body) = get_json(&gw.url("/slow")).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(1));
    let (status, _, _) = get_json(&gw.url("/dead/x")).await;
    assert_eq!(status, 502, "the gateway keeps serving");
}

#[tokio::test]
async fn a_gibibyte_streams_each_way_in_bounded_memory() {
    let up = MockUpstream::builder()
        .route("/download", Reply::source(GIB))
        .route("/upload", Reply::sink())
        .start()
        .await;
    // Its own process, so the measurement is the gateway's alone. The upload is answered
    // once the sink has read the whole GiB: the timeouts leave that all the time a loaded
    // machine needs (this test measures memory, not speed).
    let gw = GatewayProcess::start(&format!(
        r#"[server]
listen = "127.0.0.1:0"
request_timeout = "10m"
[upstreams.up]
url = "{}"
timeout = "10m"
[[routes]]
path = "/p/{{*rest}}"
methods = ["GET", "POST", "PUT"]
proxy = {{ upstream = "up", path = "/{{rest}}" }}
"#,
        up.url()
    ));

    // What the process holds before the first byte: mostly the binary's own pages (a
    // debug build's are ~30 MiB), which say nothing of how it streams.
    let at_start = gw.rss();
    let response = client().get(gw.url("/p/download")).send().await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "gateway log:\n{}",
        gw.logs().join("\n")
    );
    let mut stream = response.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        received += chunk.unwrap().len() as u64;
    }
    assert_eq!(received, GIB);

    let chunk = bytes::Bytes::from(vec![b'y'; 64 * 1024]);
    let upload = futures_util::stream::unfold(GIB, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let n = left.min(chunk.len() as u64);
                (Ok::<_, std::io::Error>(chunk.slice(..n as usize)), left - n)
            })
        }
    });
    let response = client()
        .put(gw.url("/p/upload"))
        .body(reqwest::Body::wrap_stream(upload))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        format!(r#"{{"received":{GIB}}}"#)
    );

    // The rise to the peak bounds what streaming took: buffering either body would
    // take a GiB, and an allocator that keeps what bodies freed (mimalloc's v2 line
    // rose 60-93 MiB here) fails too. 15-25 MiB is usual.
    let grown = gw.peak_rss().saturating_sub(at_start);
    println!(
        "gateway RSS {:.1} MiB at start, rose {:.1} MiB streaming 1 GiB each way",
        at_start as f64 / 1048576.0,
        grown as f64 / 1048576.0
    );
    assert!(
        grown < 40 * 1024 * 1024,
        "RSS rose {} MiB while streaming 2 GiB",
        grown / 1024 / 1024
    );
}

#[tokio::test]
async fn proxied_answers_are_not_compressed() {
    let json = format!("[{}1]", "1,".repeat(2000));
    let up = MockUpstream::builder()
        .route("/big", Reply::json(json.clone()))
        .start()
        .await;
    // A cached answer is whole in memory, as an aggregate's is: it too stays as it was.
    let cached = "cache_ttl = \"1m\"";
    for route in ["", cached] {
        let gw = proxied(&up, "compression_min_size = \"1\"", route).await;
        for _ in 0..2 {
            let r = client()
                .get(gw.url("/p/big"))
                .header("accept-encoding", "gzip, br")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(
                r.headers().get("content-encoding").is_none(),
                "{route}: a proxied answer is the upstream's, as nginx's gzip_proxied off"
            );
            assert_eq!(r.text().await.unwrap(), json);
        }
    }
}

/// Reads a streamed answer, noting when each chunk arrived.
async fn timed_chunks(url: &str) -> Vec<(Duration, String)> {
    let started = Instant::now();
    let response = client()
        .get(url)
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().get("content-encoding").is_none(),
        "a proxied stream is passed through as it is"
    );
    let mut stream = response.bytes_stream();
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| {
            panic!(
                "the stream broke at {:?} after {chunks:?}: {e:?}",
                started.elapsed()
            )
        });
        chunks.push((
            started.elapsed(),
            String::from_utf8(chunk.to_vec()).unwrap(),
        ));
    }
    chunks
}

#[tokio::test(start_paused = true)]
async fn server_sent_events_and_ndjson_arrive_as_they_are_sent() {
    let up = MockUpstream::builder()
        .route(
            "/sse",
            Reply::events(5, MS(300), "data: ", "text/event-stream"),
        )
        .route(
            "/ndjson",
            Reply::events(5, MS(300), "{\"n\":", "application/x-ndjson"),
        )
        .start()
        .await;
    // Compression on and the client accepting it must not hold a stream back either.
    let gw = proxied(
        &up,
        "compression_min_size = \"1\"",
        "proxy = { upstream = \"up\", path = \"/{rest}\", idle_timeout = \"1h\" }",
    )
    .await;
    // The paused clock jumps to the next timer whenever the runtime idles. While the mock
    // has a frame in flight its next sleep is not yet set, so the next timer would be the
    // route's idle timeout: a 10 ms ticker keeps every jump short. The runtime idles, and
    // the ticker moves the clock on, for as long as a frame takes to cross loopback, which
    // a loaded machine stretches: the idle timeout is out of reach of those steps (an
    // hour), and the assertions compare the stream's own spacing, which they only widen.
    let ticker = tokio::spawn(async {
        loop {
            tokio::time::sleep(MS(10)).await;
        }
    });
    for path in ["/p/sse", "/p/ndjson"] {
        let chunks = timed_chunks(&gw.url(path)).await;
        let text: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(text.lines().count(), 5, "{text}");
        let (first, _) = chunks[0];
        let (last, _) = chunks[chunks.len() - 1];
        // Sent 300 ms apart: streamed, the first event arrives at least 1.2 s before the
        // last; held back until the end, they would arrive together.
        assert!(
            last - first >= MS(1100),
            "{path}: the first event arrived at {first:?}, the last at {last:?}: not as they were sent"
        );
    }
    ticker.abort();
}

#[tokio::test]
async fn websockets_pass_through_both_ways() {
    use tokio_tungstenite::tungstenite::Message;
    // An echo WebSocket server as the upstream.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let gw = start_gateway(&format!(
        "[upstreams.ws]\nurl = \"http://{ws_addr}\"\n[[routes]]\npath = \"/ws\"\nproxy = {{ upstream = \"ws\", path = \"/\" }}\n"
    ))
    .await;
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn max_body_refuses_declared_and_streamed_uploads() {
    let up = MockUpstream::builder()
        .route("/upload", Reply::sink())
        .start()
        .await;
    let gw = proxied(&up, "", "max_body = \"1MiB\"").await;

    let declared = client()
        .put(gw.url("/p/upload"))
        .body(vec![0u8; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    let body = common::json_of(declared).await;
    assert_eq!(body["error"]["code"], "body_too_large");
    assert_eq!(
        up.total_hits(),
        0,
        "a declared length over the limit never reaches the upstream"
    );

    let chunks = futures_util::stream::iter(
        (0..32).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 64 * 1024]))),
    );
    let streamed = client()
        .put(gw.url("/p/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    assert!(
        up.sunk() <= 1024 * 1024,
        "the upstream got {} bytes, past the limit",
        up.sunk()
    );

    let small = client()
        .put(gw.url("/p/upload"))
        .body(vec![0u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(small.text().await.unwrap(), r#"{"received":1000}"#);
}

#[tokio::test(start_paused = true)]
async fn idle_streams_are_ended() {
    let up = MockUpstream::builder()
        .route(
            "/stalls",
            Reply::events(3, MS(2000), "data: ", "text/event-stream"),
        )
        .start()
        .await;
    let gw = proxied(
        &up,
        "",
        "proxy = { upstream = \"up\", path = \"/{rest}\", idle_timeout = \"300ms\" }",
    )
    .await;
    let started = Instant::now();
    let response = client().get(gw.url("/p/stalls")).send().await.unwrap();
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"data: 0\n");
    // Cut, not finished: the client can tell the stream did not end on its own.
    let next = stream.next().await;
    assert!(matches!(next, Some(Err(_))), "the stream went on: {next:?}");
    assert!(
        started.elapsed() < MS(1500),
        "ended after {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_bounds_headers_not_the_stream() {
    let up = MockUpstream::builder()
        .route(
            "/long",
            Reply::events(4, MS(300), "data: ", "text/event-stream"),
        )
        .start()
        .await;
    let gw = proxied(&up, "", "timeout = \"200ms\"").await;
    let chunks = timed_chunks(&gw.url("/p/long")).await;
    let text: String = chunks.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(
        text, "data: 0\ndata: 1\ndata: 2\ndata: 3\n",
        "a 900 ms stream outlives a 200 ms route timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_leaves_cancels_the_upstream_stream() {
    let up = MockUpstream::builder()
        .route(
            "/forever",
            Reply::events(1000, MS(50), "data: ", "text/event-stream"),
        )
        .start()
        .await;
    let gw = proxied(&up, "", "").await;
    let response = client().get(gw.url("/p/forever")).send().await.unwrap();
    let mut stream = response.bytes_stream();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    common::eventually("the upstream stream to be cancelled", async || {
        up.cancelled() == 1
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_lets_running_streams_finish() {
    let up = MockUpstream::builder()
        .route(
            "/sse",
            Reply::events(5, MS(150), "data: ", "text/event-stream"),
        )
        .start()
        .await;
    let mut gw = proxied(&up, "shutdown_grace = \"5s\"", "").await;
    let response = client().get(gw.url("/p/sse")).send().await.unwrap();
    let mut stream = response.bytes_stream();
    let mut text = String::from_utf8(stream.next().await.unwrap().unwrap().to_vec()).unwrap();
    let server = gw.shutdown();
    while let Some(chunk) = stream.next().await {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    assert_eq!(text.lines().count(), 5, "{text}");
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn preserve_host_sends_the_clients_host() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = proxied(
        &up,
        "",
        "proxy = { upstream = \"up\", path = \"/{rest}\", preserve_host = true }",
    )
    .await;
    let r = client()
        .get(gw.url("/p/x"))
        .header("host", "api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests()[0].headers["host"], "api.example.com");
}

#[tokio::test]
async fn a_reset_upstream_is_502_and_the_gateway_keeps_serving() {
    let up = MockUpstream::builder()
        .route("/reset", Reply::reset())
        .route("/ok", Reply::raw("fine"))
        .start()
        .await;
    let gw = proxied(&up, "", "").await;
    let (status, _, body) = get_json(&gw.url("/p/reset")).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (502, Some("bad_gateway"))
    );
    let ok = client().get(gw.url("/p/ok")).send().await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "fine");
}

#[tokio::test]
async fn the_request_id_reaches_the_upstream_once_and_comes_back() {
    let up = MockUpstream::builder()
        .route("/plain", Reply::raw("a"))
        .route("/own", Reply::raw("b").header("x-request-id", "upstream-7"))
        .start()
        .await;
    let gw = proxied(&up, "", "").await;
    let ids_seen = |i: usize| -> Vec<String> {
        up.requests()[i]
            .headers
            .get_all("x-request-id")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    };

    // None sent: the gateway makes one, sends it upstream and answers with it.
    let r = client().get(gw.url("/p/plain")).send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID is made when the client sends none");
    assert_eq!(ids_seen(0), [id]);

    // Sent: the same one both ways.
    let r = client()
        .get(gw.url("/p/plain"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    assert_eq!(ids_seen(1), ["abc-123"]);

    // An upstream's own id on its answer is kept.
    let r = client()
        .get(gw.url("/p/own"))
        .header("x-request-id", "abc-124")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "upstream-7");
    assert_eq!(ids_seen(2), ["abc-124"]);
}

#[tokio::test]
async fn a_declared_body_over_max_body_is_refused_with_the_rate_limit_headers() {
    let up = MockUpstream::builder()
        .route("/upload", Reply::sink())
        .start()
        .await;
    let gw = proxied(
        &up,
        "",
        "max_body = \"1KiB\"\nrate_limit = { rate = \"10/min\", burst = 5 }",
    )
    .await;
    let r = client()
        .put(gw.url("/p/upload"))
        .body(vec![0u8; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["ratelimit-limit"], "5");
    assert_eq!(r.headers()["ratelimit-remaining"], "4");
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(common::json_of(r).await["error"]["code"], "body_too_large");
    assert_eq!(up.total_hits(), 0, "refused before the upstream is called");
}
