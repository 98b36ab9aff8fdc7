//! Memory over real sockets, measured on the gateway binary as its own process: what
//! the gateway keeps after a request (rate-limit keys, cache keys and entries) owns
//! bytes of its own size, never the receive buffer it was read from.

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
