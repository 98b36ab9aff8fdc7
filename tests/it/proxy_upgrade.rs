//! Upgrades through proxy routes over real sockets: only allowed protocols pass (never
//! h2c), an idle tunnel is ended by `idle_timeout`, and graceful shutdown waits for open
//! tunnels up to its grace and then closes them.

use crate::common;

use common::start_gateway;
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// An upstream that accepts any upgrade it is asked for (as hypercorn accepts h2c): it
/// answers 101 and then echoes bytes; a request without `Upgrade` gets `200 plain`. It
/// keeps every request head it read.
async fn accepting_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    upstream_switching_to(None).await
}

/// Like [`accepting_upstream`], but with `Some(protocol)` its 101 switches to that
/// protocol whatever it was asked.
async fn upstream_switching_to(forced: Option<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                seen.lock().unwrap().push(head.clone());
                let upgrade = head
                    .lines()
                    .find_map(|l| l.strip_prefix("upgrade:"))
                    .map(|v| v.trim().to_string());
                match upgrade.map(|asked| forced.map_or(asked, str::to_string)) {
                    Some(protocol) => {
                        let answer = format!(
                            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                        let (mut r, mut w) = stream.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                    None => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nplain")
                            .await;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), heads)
}

#[tokio::test]
async fn h2c_upgrades_are_never_forwarded() {
    let (url, heads) = accepting_upstream().await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{url}\"\n[[routes]]\npath = \"/p/{{*rest}}\"\n\
         proxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n"
    ))
    .await;
    let answer = common::raw_request(
        gw.addr,
        "GET /p/x HTTP/1.1\r\nHost: g\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the upgrade went through: {answer}"
    );
    assert!(answer.ends_with("plain"), "{answer}");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(!heads[0].contains("upgrade"), "{}", heads[0]);
    assert!(!heads[0].contains("http2-settings"), "{}", heads[0]);
}

#[tokio::test]
async fn only_allowed_upgrades_pass() {
    let (url, heads) = accepting_upstream().await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{url}\"\n\
         [[routes]]\npath = \"/ws\"\nproxy = {{ upstream = \"up\", path = \"/ws\" }}\n\
         [[routes]]\npath = \"/none\"\nproxy = {{ upstream = \"up\", path = \"/none\", upgrade = [] }}\n"
    ))
    .await;
    let ask = |path: &str, protocol: &str, close: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: g\r\nConnection: Upgrade{close}\r\nUpgrade: {protocol}\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    // By default a route lets WebSocket through, and nothing else.
    let mut ws = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    ws.write_all(ask("/ws", "websocket", "").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = ws.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    ws.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    ws.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");

    for (path, protocol) in [("/ws", "mqtt"), ("/none", "websocket")] {
        let answer = common::raw_request(gw.addr, &ask(path, protocol, ", close")).await;
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{path} {protocol}: {answer}"
        );
    }
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 3);
    assert!(heads[0].contains("upgrade: websocket"), "{}", heads[0]);
    for head in &heads[1..] {
        assert!(!head.contains("upgrade"), "{head}");
    }
}

#[tokio::test]
async fn a_101_to_a_protocol_not_asked_for_is_502() {
    let (url, _) = upstream_switching_to(Some("h2c")).await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{url}\"\n[[routes]]\npath = \"/ws\"\n\
         proxy = {{ upstream = \"up\", path = \"/ws\" }}\n"
    ))
    .await;
    let answer = common::raw_request(
        gw.addr,
        "GET /ws HTTP/1.1\r\nHost: g\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(answer.contains("\"bad_gateway\""), "{answer}");
}

/// An echo WebSocket server.
async fn echo_ws() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Waits (at most `limit`) for the WebSocket to end; true if it did.
async fn ends_within<S>(ws: &mut S, limit: Duration) -> bool
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    tokio::time::timeout(limit, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(start_paused = true)]
async fn an_idle_websocket_is_ended_by_idle_timeout() {
    let url = echo_ws().await;
    let gw = start_gateway(&format!(
        "[upstreams.ws]\nurl = \"{url}\"\n[[routes]]\npath = \"/ws\"\n\
         proxy = {{ upstream = \"ws\", path = \"/\", idle_timeout = \"300ms\" }}\n"
    ))
    .await;
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    assert!(
        ends_within(&mut ws, Duration::from_secs(20)).await,
        "an idle tunnel stayed open past idle_timeout"
    );
}

#[tokio::test]
async fn graceful_shutdown_waits_for_websockets_then_closes_them() {
    let url = echo_ws().await;
    let toml = |grace: &str| {
        format!(
            "[server]\nshutdown_grace = \"{grace}\"\n[upstreams.ws]\nurl = \"{url}\"\n\
             [[routes]]\npath = \"/ws\"\nproxy = {{ upstream = \"ws\", path = \"/\" }}\n"
        )
    };

    // A tunnel closed by its client during the grace: the drain waits for it.
    let mut gw = start_gateway(&toml("60s")).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr))
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("before"));
    let server = gw.shutdown();
    ws.send(Message::text("during")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("during"),
        "an open tunnel keeps working while the server drains"
    );
    assert!(
        !server.is_finished(),
        "the drain ended while a WebSocket was open"
    );
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the drain ends once the tunnel has closed")
        .unwrap()
        .unwrap();

    // A tunnel still open when the grace ends is closed.
    let mut gw = start_gateway(&toml("300ms")).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr))
        .await
        .unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("x"));
    let server = gw.shutdown();
    assert!(
        ends_within(&mut ws, Duration::from_secs(20)).await,
        "the tunnel outlived the shutdown grace"
    );
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the server stopped")
        .unwrap()
        .unwrap();
}
