//! Memory over real sockets, measured on the gateway binary as its own process: what
//! the gateway keeps after a request (rate-limit keys, cache keys and entries) owns
//! bytes of its own size, never the receive buffer it was read from; and a body read
//! whole costs its size, however many chunks it came in.

use crate::common;

use common::{GatewayProcess, MockUpstream, Reply};
use futures_util::stream::{self, StreamExt};

const MIB: u64 = 1024 * 1024;

/// Sends `count` requests, 16 at a time, half `/m/{i}` (a limited aggregate route with a
/// cached backend, both keyed by `x-user-id`), half `/p/item/{i}` (a cached proxy
/// route): each with a distinct `x-user-id` and a 4 KiB header that is part of no key,
/// so each makes a distinct cache key and, on `/m`, a distinct rate-limit key.
async fn distinct_keys(gw: &GatewayProcess, prefix: &str, count: usize) {
    let client = common::client();
    let junk = "j".repeat(4096);
    stream::iter(0..count)
        .map(|i| {
            let (client, junk) = (client.clone(), junk.clone());
            let path = if i % 2 == 0 {
                format!("/m/{prefix}{i}")
            } else {
                format!("/p/item/{prefix}{i}")
            };
            let url = gw.url(&path);
            let user = format!("{prefix}-user-{i}");
            async move {
                let response = client
                    .get(url)
                    .header("x-user-id", user)
                    .header("x-junk", junk)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                response.bytes().await.unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_keys_with_large_headers_keep_memory_small() {
    let up = MockUpstream::builder()
        .route(
            "*",
            Reply::json(r#"{"v":1}"#)
                .header("cache-control", "max-age=600")
                .header("x-served-by", "mock-upstream-1"),
        )
        .start()
        .await;
    let gw = GatewayProcess::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[cache]\nmax_size = \"8MiB\"\n\
         [upstreams.up]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/m/{{id}}\"\nforward_headers = [\"x-user-id\"]\n\
         rate_limit = {{ rate = \"100/s\", key = \"header:x-user-id\" }}\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/item/{{id}}\"\ncache_ttl = \"10m\"\n\
         [[routes]]\npath = \"/p/{{*rest}}\"\ncache_ttl = \"10m\"\n\
         proxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        up.url()
    ));
    // Warm up: connection pools, buffers, the allocator's first pages.
    distinct_keys(&gw, "warm", 1_000).await;
    let before = gw.rss();
    distinct_keys(&gw, "k", 20_000).await;
    let grown = gw.rss().saturating_sub(before);
    eprintln!(
        "RSS {} -> {} MiB after 10,000 limiter keys and 20,000 cache entries",
        before / MIB,
        (before + grown) / MIB
    );
    assert!(
        grown < 25 * MIB,
        "20,000 distinct keys with 4 KiB headers grew RSS by {} MiB",
        grown / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_in_one_byte_chunks_costs_its_size_not_a_buffer_per_chunk() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = MockUpstream::builder()
        .route(
            "/echo",
            Reply::echo().header("content-type", "application/json"),
        )
        .start()
        .await;
    let gw = GatewayProcess::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body = \"4MiB\"\n\
         [upstreams.up]\nurl = \"{}\"\nmax_response = \"4MiB\"\n\
         [[routes]]\npath = \"/w\"\nmethods = [\"POST\"]\ntimeout = \"10m\"\n\
         [[routes.backends]]\nname = \"echo\"\nupstream = \"up\"\npath = \"/echo\"\nforward_body = true\n",
        up.url()
    ));
    // A JSON string of 2 MiB, each byte its own chunk: 12 MiB on the wire. The route's
    // deadline is far off: a debug build on a loaded machine takes a while over 2
    // million chunks, and this test is about memory, not time.
    const LEN: usize = 2 * 1024 * 1024;
    let mut wire = b"POST /w HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
                     transfer-encoding: chunked\r\nconnection: close\r\n\r\n1\r\n\"\r\n"
        .to_vec();
    for _ in 0..LEN - 2 {
        wire.extend_from_slice(b"1\r\nx\r\n");
    }
    wire.extend_from_slice(b"1\r\n\"\r\n0\r\n\r\n");
    let before = gw.rss();
    let addr = gw
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(&wire).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..2000.min(answer.len())])
    );
    assert!(answer.len() > LEN, "the echo came back whole");
    let grown = gw.peak_rss().saturating_sub(before);
    eprintln!("peak RSS {} MiB above {} MiB", grown / MIB, before / MIB);
    // Gathered, forwarded, echoed, parsed and merged: a few times 2 MiB. Kept as one
    // chunk each (http-body-util's Collected), the 2 million chunks cost ~100 MiB.
    assert!(grown < 48 * MIB, "peak RSS grew by {} MiB", grown / MIB);
}
