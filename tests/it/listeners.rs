//! Both listeners under pressure (security issue #17, item 9): the admin listener cuts
//! slow-header and idle clients as the main one does and serves a bounded number of
//! connections; out of file descriptors, neither listener spins, and both serve again
//! once descriptors are free.

use crate::common;

use common::{GatewayProcess, MockUpstream, Reply, eventually, start_reloadable};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the peer closes `stream` within 30 s, reading (and dropping) what it sends.
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

/// `GET path` on a new connection, with `Connection: close`: the status, or `None` if
/// the connection failed or nothing came within 2 s.
async fn status(addr: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.ok()?;
        String::from_utf8_lossy(&out)
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

async fn admin_gateway(server: &str) -> (MockUpstream, common::ReloadableGateway) {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = start_reloadable(&format!(
        "[server]\n{server}\n[upstreams.up]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"a\"\nupstream = \"up\"\npath = \"/a\"\n",
        up.url()
    ))
    .await;
    (up, gw)
}

#[tokio::test(start_paused = true)]
async fn the_admin_listener_cuts_slow_and_idle_clients() {
    let (_up, gw) = admin_gateway("header_read_timeout = \"300ms\"").await;
    // Silent from the start, a head that never ends, and idle after an answer.
    let mut silent = TcpStream::connect(gw.admin).await.unwrap();
    let mut slow = TcpStream::connect(gw.admin).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(gw.admin).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    for (name, stream) in [
        ("silent", &mut silent),
        ("slow", &mut slow),
        ("idle", &mut idle),
    ] {
        assert!(
            closed_by_peer(stream).await,
            "the {name} client was left connected"
        );
    }
    assert_eq!(status(gw.admin, "/health").await, Some(200));
}

#[tokio::test(start_paused = true)]
async fn the_admin_listener_serves_a_bounded_number_of_connections() {
    let (_up, gw) = admin_gateway("header_read_timeout = \"60s\"").await;
    let cap = fanout::admin::MAX_ADMIN_CONNECTIONS;
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(TcpStream::connect(gw.admin).await.unwrap());
    }
    // Each held connection is served (it answers), so all are accepted by now.
    for stream in &mut held {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 512];
        assert!(stream.read(&mut answer).await.unwrap() > 0);
    }
    // One more waits in the backlog: no answer while every slot is taken. (The paused
    // clock moves only once every task waits: the gateway had every chance to serve it.)
    let waiting = tokio::spawn(status(gw.admin, "/health"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served beyond the cap");
    // A slot frees, and the waiting one is served.
    held.pop();
    assert_eq!(waiting.await.unwrap(), Some(200));
}

/// Connections that hold descriptors until dropped.
async fn hold(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        if let Ok(stream) = TcpStream::connect(addr).await {
            held.push(stream);
        }
    }
    held
}

#[tokio::test]
async fn out_of_descriptors_neither_listener_spins_and_both_recover() {
    const LIMIT: u32 = 64;
    let gw = GatewayProcess::start_limited(
        "[server]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"120s\"\n",
        LIMIT,
    );
    let admin = gw.admin_addr();
    assert_eq!(status(gw.addr, "/__health").await, Some(200));
    assert_eq!(status(admin, "/health").await, Some(200));

    // Idle clients take every descriptor the gateway may open; more wait in the backlog.
    let mut held = hold(gw.addr, 2 * LIMIT as usize).await;
    eventually("the gateway to run out of descriptors", async || {
        gw.open_fds() >= LIMIT as usize - 1
    })
    .await;
    held.extend(hold(admin, 4).await);

    // Both listeners have connections they cannot accept: the gateway must wait, not spin.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (cpu, wall) = (gw.cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = gw.cpu_time() - cpu;
    assert!(
        used < wall.elapsed() / 4,
        "{used:?} of CPU in {:?} while out of descriptors",
        wall.elapsed()
    );

    // Descriptors free up: both listeners serve again.
    drop(held);
    eventually("the main listener to recover", async || {
        status(gw.addr, "/__health").await == Some(200)
    })
    .await;
    eventually("the admin listener to recover", async || {
        status(admin, "/health").await == Some(200)
    })
    .await;
    let logs = gw.logs().join("\n");
    assert!(logs.contains("accept failed; backing off"), "{logs}");
    assert!(logs.contains("accepting connections again"), "{logs}");
}
