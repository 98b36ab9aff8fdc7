//! HTTP/1.1 over TLS on the gateway's own connection, over real sockets: what it serves
//! as on a plain socket and hyper served differently or not at all (the keep-alive
//! timeout, the refusal of `Content-Length` with `Transfer-Encoding`), pipelining with
//! more plaintext than one read takes, an upgrade through a proxy route, and the
//! connection's timeouts and refusals (send timeout, a half-sent head, garbage).

use crate::common;

use common::tls::{TestCa, TlsClient, TlsConn};
use common::{MockUpstream, Reply, TestGateway, eventually, scratch_dir};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A TLS gateway (certificate for `localhost`) proxying `/p/{*rest}` to `up`, with
/// `server` lines in `[server]`.
async fn gateway(up_url: &str, server: &str, name: &str) -> TestGateway {
    let dir = scratch_dir(name);
    let ca = TestCa::new(name);
    let (cert, key) = ca.server(&["localhost"]).write(&dir, "server");
    common::start_gateway(&format!(
        "[server]\n{server}\n\
         [server.tls]\ncert = \"{}\"\nkey = \"{}\"\n\
         [upstreams.up]\nurl = \"{up_url}\"\ntimeout = \"10s\"\n\
         [[routes]]\npath = \"/p/{{*rest}}\"\nproxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        cert.display(),
        key.display()
    ))
    .await
}

/// A TLS connection that negotiated HTTP/1.1.
async fn connect(gw: &TestGateway) -> TlsConn {
    let conn = TlsClient::new()
        .connect(gw.addr, "localhost")
        .await
        .unwrap();
    assert_eq!(conn.alpn().as_deref(), Some("http/1.1"));
    conn
}

/// Reads until `done` holds for what was read, or the stream ends; what was read.
async fn read_until(stream: &mut (impl AsyncRead + Unpin), done: impl Fn(&str) -> bool) -> String {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while !done(&String::from_utf8_lossy(&out)) {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the gateway ends the connection (EOF or an error) before `limit` passes,
/// reading and dropping whatever comes first.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), limit: Duration) -> bool {
    let mut sink = vec![0u8; 1 << 20];
    tokio::time::timeout(limit, async {
        while let Ok(1..) = stream.read(&mut sink).await {}
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn pipelined_requests_with_more_plaintext_than_one_read_are_answered_in_order() {
    let mut up = MockUpstream::builder();
    for i in 0..20 {
        up = up.route(&format!("/n{i}"), Reply::json(format!("{{\"n\":{i}}}")));
    }
    let up = up.start().await;
    let gw = gateway(&up.url(), "", "tls-h1-pipeline").await;
    let mut conn = connect(&gw).await;
    // Twenty heads of ~1.2 KB in one write: more than one TLS record and more than one
    // read of the connection, so decrypted requests wait inside the TLS session while
    // the socket has nothing more to read.
    let padding = "p".repeat(1200);
    let mut requests = String::new();
    for i in 0..20 {
        requests.push_str(&format!(
            "GET /p/n{i} HTTP/1.1\r\nHost: localhost\r\nX-Padding: {padding}\r\n\r\n"
        ));
    }
    conn.stream.write_all(requests.as_bytes()).await.unwrap();
    conn.stream.flush().await.unwrap();
    let out = read_until(&mut conn.stream, |text| text.ends_with("{\"n\":19}")).await;
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 20, "{out}");
    let order: Vec<usize> = (0..20)
        .map(|i| {
            out.find(&format!("{{\"n\":{i}}}"))
                .unwrap_or_else(|| panic!("n{i}: {out}"))
        })
        .collect();
    assert!(order.is_sorted(), "answers in request order: {order:?}");
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    let expected: Vec<String> = (0..20).map(|i| format!("/n{i}")).collect();
    assert_eq!(targets, expected);
}

#[tokio::test]
async fn a_request_that_came_with_the_handshake_s_last_flight_is_answered() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let gw = gateway(&up.url(), "", "tls-h1-first-flight").await;
    for _ in 0..3 {
        // Written before this task yields: the gateway reads the client's Finished and
        // the request in one read, and the request is decrypted before the handshake
        // ends, with nothing left on the socket.
        let mut conn = connect(&gw).await;
        conn.stream
            .write_all(b"GET /p/x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let out = read_until(&mut conn.stream, |_| false).await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.ends_with("{\"n\":1}"), "{out}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_tls_connection_is_closed_after_keepalive_timeout() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let gw = gateway(
        &up.url(),
        "keepalive_timeout = \"5s\"\nheader_read_timeout = \"600s\"",
        "tls-h1-keepalive",
    )
    .await;
    let mut conn = connect(&gw).await;
    conn.stream
        .write_all(b"GET /p/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let out = read_until(&mut conn.stream, |t| t.ends_with("{}")).await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    let idle = Instant::now();
    assert!(
        closed_within(&mut conn.stream, Duration::from_secs(120)).await,
        "the idle connection was left open"
    );
    let waited = idle.elapsed();
    assert!(waited >= Duration::from_secs(5), "closed early: {waited:?}");
}

#[tokio::test]
async fn a_request_with_both_content_length_and_transfer_encoding_is_refused_over_tls() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let gw = gateway(&up.url(), "", "tls-h1-smuggle").await;
    let mut conn = connect(&gw).await;
    conn.stream
        .write_all(
            b"POST /p/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\
              Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let out = read_until(&mut conn.stream, |_| false).await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(out.contains("\r\nconnection: close\r\n"), "{out}");
    assert_eq!(up.total_hits(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn garbage_after_the_handshake_gets_400_and_the_connection_closes() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let gw = gateway(&up.url(), "", "tls-h1-garbage").await;
    let mut conn = connect(&gw).await;
    conn.stream
        .write_all(b"\x01\x02 not http at all\r\n\r\n")
        .await
        .unwrap();
    let out = read_until(&mut conn.stream, |_| false).await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    // The read above ended: the gateway closed the connection. The listener serves on.
    let answer = connect(&gw).await.get("/p/x").await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(up.total_hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_half_sent_head_over_tls_is_cut_by_the_header_read_timeout() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let gw = gateway(
        &up.url(),
        "header_read_timeout = \"10s\"\nkeepalive_timeout = \"600s\"",
        "tls-h1-slow-head",
    )
    .await;
    let mut conn = connect(&gw).await;
    conn.stream
        .write_all(b"GET /p/x HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    conn.stream.flush().await.unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut conn.stream, Duration::from_secs(120)).await,
        "the connection was left open"
    );
    assert!(started.elapsed() >= Duration::from_secs(10), "closed early");
    assert_eq!(up.total_hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_tls_client_that_stops_reading_is_cut_with_its_upstream_call() {
    let up = MockUpstream::builder()
        .route("/big", Reply::source(1 << 30))
        .start()
        .await;
    let gw = gateway(&up.url(), "send_timeout = \"500ms\"", "tls-h1-stalled").await;
    let mut conn = connect(&gw).await;
    conn.stream
        .write_all(b"GET /p/big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    conn.stream.flush().await.unwrap();
    // The client reads nothing: the socket fills, and the gateway's writes wait.
    eventually("the upstream stream to be cancelled", async || {
        up.cancelled() == 1
    })
    .await;
    assert!(
        closed_within(&mut conn.stream, Duration::from_secs(30)).await,
        "the connection was left open"
    );
    let answer = connect(&gw).await.get("/__health").await.unwrap();
    assert_eq!(answer.status, 200);
}

/// An upstream that answers an `Upgrade` request 101 and then echoes bytes.
async fn echoing_upgrade_upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let head = read_until(&mut stream, |t| t.contains("\r\n\r\n")).await;
                if !head.to_ascii_lowercase().contains("upgrade: websocket") {
                    return;
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                    )
                    .await;
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_upgrade_through_a_proxy_route_tunnels_over_tls() {
    let url = echoing_upgrade_upstream().await;
    let gw = gateway(&url, "", "tls-h1-upgrade").await;
    let mut conn = connect(&gw).await;
    conn.stream
        .write_all(
            b"GET /p/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_until(&mut conn.stream, |t| t.contains("\r\n\r\n")).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    for word in ["ping", "pong"] {
        conn.stream.write_all(word.as_bytes()).await.unwrap();
        conn.stream.flush().await.unwrap();
        let echoed = read_until(&mut conn.stream, |t| t == word).await;
        assert_eq!(echoed, word);
    }
}
