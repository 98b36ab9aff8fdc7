//! The streams of one HTTP/2 connection, over real sockets with the `h2` crate's client:
//! they run on their connection's task, yet a held one holds back no other, a reset one
//! and those of a connection that ends cancel their upstream calls, and a graceful
//! shutdown lets the ones in flight finish.

use crate::common::{self, Gate, MockUpstream, Reply, eventually};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// A gateway with `/p/{*rest}` proxied to `up`; `server`: more `[server]` lines.
async fn gateway(up: &MockUpstream, server: &str) -> common::TestGateway {
    common::start_gateway(&format!(
        "[server]\n{server}\n[upstreams.up]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/p/{{*rest}}\"\nproxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        up.url()
    ))
    .await
}

/// An h2 client connection (cleartext, prior knowledge) and the task driving it, whose
/// abort closes the connection.
async fn connect(addr: SocketAddr) -> (h2::client::SendRequest<Bytes>, JoinHandle<()>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send.ready().await.unwrap(), driver)
}

/// Opens a GET of `path`: the answer to come, and the stream, which a drop resets.
fn open(
    send: &mut h2::client::SendRequest<Bytes>,
    addr: SocketAddr,
    path: &str,
) -> h2::client::ResponseFuture {
    let request = http::Request::get(format!("http://{addr}{path}"))
        .body(())
        .unwrap();
    send.send_request(request, true).unwrap().0
}

/// The status and body of an answer.
async fn read(answer: h2::client::ResponseFuture) -> (http::StatusCode, Vec<u8>) {
    let answer = answer.await.unwrap();
    let status = answer.status();
    let mut body = answer.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    (status, got)
}

#[tokio::test]
async fn a_held_stream_holds_back_no_other_and_ends_with_its_connection() {
    let gate = Gate::default();
    let up = MockUpstream::builder()
        .route("/hang", Reply::hang())
        .route("/held", Reply::json(r#"{"held":true}"#).gated(&gate))
        .route("/quick", Reply::json(r#"{"quick":true}"#))
        .start()
        .await;
    let gw = gateway(&up, "").await;
    let (mut send, driver) = connect(gw.addr).await;

    let hanging = open(&mut send, gw.addr, "/p/hang");
    let held = open(&mut send, gw.addr, "/p/held");
    eventually("both calls at the upstream", async || {
        up.hits("/hang") == 1 && up.hits("/held") == 1
    })
    .await;
    // Two streams wait on their upstreams; a third on the same connection is answered.
    let (status, body) = read(open(&mut send, gw.addr, "/p/quick")).await;
    assert_eq!(
        (status.as_u16(), &body[..]),
        (200, &br#"{"quick":true}"#[..])
    );
    gate.open();
    let (status, body) = read(held).await;
    assert_eq!(
        (status.as_u16(), &body[..]),
        (200, &br#"{"held":true}"#[..])
    );

    // A stream the client resets drops its call; the connection serves on.
    let reset = open(&mut send, gw.addr, "/p/hang");
    eventually("the second hanging call at the upstream", async || {
        up.hits("/hang") == 2
    })
    .await;
    drop(reset);
    eventually("the reset stream's call cancelled", async || {
        up.cancelled() == 1
    })
    .await;
    let (status, _) = read(open(&mut send, gw.addr, "/p/quick")).await;
    assert_eq!(status, 200);

    // The connection closed: the stream still waiting is dropped with it, and its call.
    driver.abort();
    drop((send, hanging));
    eventually(
        "the first hanging call cancelled with its connection",
        async || up.cancelled() == 2,
    )
    .await;
    let (mut send, _driver) = connect(gw.addr).await;
    let (status, _) = read(open(&mut send, gw.addr, "/p/quick")).await;
    assert_eq!(status, 200, "the gateway serves the next connection");
}

#[tokio::test(start_paused = true)]
async fn graceful_shutdown_lets_the_streams_in_flight_finish() {
    let up = MockUpstream::builder()
        .route(
            "/slow",
            Reply::json("1").latency(Duration::from_millis(500)),
        )
        .start()
        .await;
    let mut gw = gateway(&up, "shutdown_grace = \"5s\"").await;
    let (mut send, _driver) = connect(gw.addr).await;
    let first = open(&mut send, gw.addr, "/p/slow");
    let second = open(&mut send, gw.addr, "/p/slow");
    eventually("both calls at the upstream", async || up.hits("/slow") == 2).await;
    let server = gw.shutdown();
    for answer in [first, second] {
        let (status, body) = read(answer).await;
        assert_eq!((status.as_u16(), &body[..]), (200, &b"1"[..]));
    }
    tokio::time::timeout(Duration::from_secs(3), server)
        .await
        .expect("the server stopped after draining")
        .unwrap()
        .unwrap();
}
