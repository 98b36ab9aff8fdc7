//! The main listener's HTTP/2 limits (`[server.http2]`, and `send_timeout` on a client
//! that opens no window), over real sockets: with the `h2` crate's client where it obeys
//! the protocol, and with frames written by hand (`common::raw_h2`) where the test plays a client
//! that does not (streams over the advertised limit, rapid resets), and how fields that
//! change on every answer are HPACK-encoded (never indexed).

use crate::common::raw_h2::{
    CANCEL, ENHANCE_YOUR_CALM, GOAWAY, HEADERS, PATIENCE, REFUSED_STREAM, RST_STREAM, RawH2,
    error_code, get_headers, hpack_kinds, rst_stream,
};
use crate::common::{self, Gate, MockUpstream, Reply, eventually, get_json, start_gateway};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpStream;

/// A gateway with `/p/{*rest}` proxied to `up`, and `[server.http2]` set to `http2`.
async fn gateway(up: &MockUpstream, server: &str, http2: &str) -> common::TestGateway {
    start_gateway(&format!(
        "[server]\n{server}\n[server.http2]\n{http2}\n[upstreams.up]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/p/{{*rest}}\"\nproxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        up.url()
    ))
    .await
}

/// An h2 client connection to `addr` (cleartext, prior knowledge).
async fn h2_client(
    addr: SocketAddr,
    builder: &h2::client::Builder,
) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = builder.handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    send
}

fn get(addr: SocketAddr, path: &str) -> http::Request<()> {
    http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap()
}

/// One GET over `send`; the status and the body, or the stream's error.
async fn h2_get(
    send: &h2::client::SendRequest<Bytes>,
    request: http::Request<()>,
) -> Result<(http::StatusCode, Vec<u8>), h2::Error> {
    let mut send = send.clone().ready().await?;
    let (answer, _) = send.send_request(request, true)?;
    let answer = answer.await?;
    let status = answer.status();
    let mut body = answer.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    Ok((status, got))
}

#[tokio::test]
async fn streams_beyond_max_concurrent_streams_are_refused_while_the_others_are_served() {
    let gate = Gate::default();
    let up = MockUpstream::builder()
        .route("/held", Reply::json(r#"{"ok":true}"#).gated(&gate))
        .route("/quick", Reply::json(r#"{"ok":true}"#))
        .start()
        .await;
    let gw = gateway(&up, "", "max_concurrent_streams = 2").await;

    // A client that ignores the limit: the third stream at once is refused.
    let mut raw = RawH2::connect(gw.addr).await;
    let mut opening = get_headers(1, "/p/held");
    opening.extend(get_headers(3, "/p/held"));
    opening.extend(get_headers(5, "/p/held"));
    assert!(raw.send(&opening).await);
    let (mut refused, mut answered) = (None, Vec::new());
    while answered.len() < 2 {
        let (kind, _, stream, payload) = raw.next().await.expect("the connection stays open");
        match kind {
            RST_STREAM => refused = Some((stream, error_code(&payload, 0))),
            HEADERS => answered.push(stream),
            GOAWAY => panic!("the connection was closed: {:?}", error_code(&payload, 4)),
            _ => {}
        }
        if refused.is_some() && answered.is_empty() {
            eventually("both held calls at the upstream", async || {
                up.hits("/held") == 2
            })
            .await;
            gate.open();
        }
    }
    assert_eq!(refused, Some((5, REFUSED_STREAM)));
    answered.sort();
    assert_eq!(answered, [1, 3], "the streams within the limit are served");
    assert_eq!(
        up.hits("/held"),
        2,
        "the refused stream never reached the upstream"
    );
    assert!(raw.send(&get_headers(7, "/p/quick")).await);
    loop {
        match raw
            .next()
            .await
            .expect("the connection serves the next stream")
        {
            (HEADERS, _, 7, _) => break,
            (GOAWAY, ..) => panic!("closed"),
            _ => {}
        }
    }

    // A client that keeps the limit sees it in SETTINGS and holds its streams back.
    let gate = Gate::default();
    up.set_reply("/held", Reply::json(r#"{"ok":true}"#).gated(&gate));
    let send = h2_client(gw.addr, &h2::client::Builder::new()).await;
    let send = send.ready().await.unwrap();
    eventually("the gateway's SETTINGS", async || {
        send.current_max_send_streams() == 2
    })
    .await;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (send, request) = (send.clone(), get(gw.addr, "/p/held"));
            tokio::spawn(async move { h2_get(&send, request).await })
        })
        .collect();
    eventually("two calls at the upstream", async || up.hits("/held") == 4).await;
    gate.open();
    for call in calls {
        let (status, _) = call.await.unwrap().unwrap();
        assert_eq!(status, 200);
    }
    assert_eq!(up.hits("/held"), 7);
}

#[tokio::test]
async fn a_header_list_over_the_limit_gets_431_and_the_connection_serves_on() {
    let up = MockUpstream::builder()
        .route("/x", Reply::json(r#"{"ok":true}"#))
        .start()
        .await;
    let gw = gateway(&up, "", "max_header_list_size = \"4KiB\"").await;
    let send = h2_client(gw.addr, &h2::client::Builder::new()).await;

    let mut big = get(gw.addr, "/p/x");
    big.headers_mut()
        .insert("x-big", "a".repeat(6 * 1024).parse().unwrap());
    let (status, _) = h2_get(&send, big).await.unwrap();
    assert_eq!(status, 431);
    let (status, body) = h2_get(&send, get(gw.addr, "/p/x")).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        up.hits("/x"),
        1,
        "the refused request never reached the upstream"
    );

    // Far over the limit the connection ends, and a new one is served.
    let mut huge = get(gw.addr, "/p/x");
    huge.headers_mut()
        .insert("x-big", "a".repeat(64 * 1024).parse().unwrap());
    assert!(h2_get(&send, huge).await.is_err());
    let send = h2_client(gw.addr, &h2::client::Builder::new()).await;
    let (status, _) = h2_get(&send, get(gw.addr, "/p/x")).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(up.hits("/x"), 2);
}

#[tokio::test]
async fn rapid_resets_end_the_connection_with_goaway_after_a_bounded_number() {
    const PAIRS: u32 = 5000;
    let up = MockUpstream::builder()
        .route("/counted", Reply::json(r#"{"ok":true}"#))
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let mut raw = RawH2::connect(gw.addr).await;

    // HEADERS and RST_STREAM at once, stream after stream, in batches of 50 pairs.
    let closed = Arc::new(AtomicBool::new(false));
    let mut sent = 0;
    for batch in 0..PAIRS / 50 {
        let mut bytes = Vec::new();
        for i in 0..50 {
            let stream = 2 * (batch * 50 + i) + 1;
            bytes.extend(get_headers(stream, "/p/counted"));
            bytes.extend(rst_stream(stream, CANCEL));
        }
        if !raw.send(&bytes).await {
            closed.store(true, Ordering::SeqCst);
            break;
        }
        sent += 50;
    }
    let goaway = loop {
        match raw.next().await {
            Some((GOAWAY, _, _, payload)) => break Some(error_code(&payload, 4)),
            Some(_) => {}
            None => break None,
        }
    };
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "GOAWAY after {sent} pairs sent (closed while writing: {})",
        closed.load(Ordering::SeqCst)
    );
    assert!(
        raw.next().await.is_none(),
        "the connection is closed after GOAWAY"
    );
    let calls = up.hits("/counted");
    assert!(
        calls <= 200,
        "{calls} calls reached the upstream of {sent} reset streams"
    );
    let (status, _, _) = get_json(&gw.url("/p/counted")).await;
    assert_eq!(status, 200, "the gateway serves other clients");
}

#[tokio::test]
async fn a_client_that_opens_no_window_is_cut_after_send_timeout() {
    let up = MockUpstream::builder()
        .route("/big", Reply::source(8 * 1024 * 1024))
        .start()
        .await;
    let gw = gateway(&up, "send_timeout = \"300ms\"", "").await;
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(0);
    let send = h2_client(gw.addr, &builder).await;
    let mut send = send.ready().await.unwrap();
    let (answer, _) = send.send_request(get(gw.addr, "/p/big"), true).unwrap();
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    // No capacity is ever released: the gateway can send nothing, and cuts the stream.
    let end = tokio::time::timeout(PATIENCE, body.data())
        .await
        .expect("the stream is cut within 10 s");
    assert!(
        matches!(end, Some(Err(_))),
        "the stream ends with an error, not data: {end:?}"
    );
    eventually("the upstream call cancelled", async || up.cancelled() == 1).await;
    let (status, _, _) = get_json(&gw.url("/__health")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn answers_send_their_request_id_and_traceparent_as_never_indexed_literals() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let gw = gateway(&up, "", "").await;
    let mut raw = RawH2::connect(gw.addr).await;
    // Answers of a proxy route: the upstream's fields, then `x-request-id` and
    // `traceparent`, new values on every answer. Added to HPACK's dynamic table they
    // would only evict the fields that repeat.
    for stream in [1u32, 3, 5] {
        assert!(raw.send(&get_headers(stream, "/p/x")).await);
        let block = loop {
            match raw.next().await.expect("the connection stays open") {
                (HEADERS, _, id, block) if id == stream => break block,
                (GOAWAY, ..) => panic!("closed"),
                _ => {}
            }
        };
        let kinds = hpack_kinds(&block);
        assert_eq!(
            kinds.iter().filter(|&&k| k == 'n').count(),
            2,
            "stream {stream}: {kinds:?}"
        );
    }
}
