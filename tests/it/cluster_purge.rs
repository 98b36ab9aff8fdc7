//! `POST /cache/purge` on one instance empties the others' memory too, through the
//! store's purge stream, over real sockets and a real `redis-server`. Each instance reads
//! the stream once a second, so the tests wait for the other instance's answer to change
//! (the call it makes once its copy is gone) rather than for a time; that nothing is
//! applied twice is seen over two and a half readings' time. Lost entries (the stream
//! written anew, deleted, or too far ahead) purge everything.

use crate::cluster_cache::{config, desc, instances, metric, page};
use crate::common;

use common::redis::RedisServer;
use common::{MockUpstream, ReloadableGateway, Reply, client, eventually, get_json};
use fanout::cache::FOLLOW_EVERY;
use serde_json::Value;

async fn purge(gateway: &ReloadableGateway, query: &str) -> Value {
    let url = format!("http://{}/cache/purge{query}", gateway.admin);
    common::json_of(client().post(url).send().await.unwrap()).await
}

/// `fanout_cache_purge_events_total{outcome}` on `gateway`.
async fn events(gateway: &ReloadableGateway, outcome: &str) -> u64 {
    let series = format!("fanout_cache_purge_events_total{{outcome=\"{outcome}\"}}");
    metric(gateway, &series).await
}

/// Waits until every instance has found where the purge stream ends (and purged what
/// its memory held then, which a test must not have filled yet).
async fn following(gateways: &[ReloadableGateway]) {
    for gateway in gateways {
        eventually("the purge stream followed", async || {
            events(gateway, "started").await == 1
        })
        .await;
    }
}

/// The `Cache-Status` of a proxied page on `gateway`.
async fn page_status(gateway: &ReloadableGateway) -> String {
    let answer = page(gateway.gateway.url("/p/page")).await;
    answer.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_purge_on_one_instance_empties_the_memory_of_the_others() {
    let redis = RedisServer::start();
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .route("/page", Reply::raw("page"))
        .start()
        .await;
    let gws = instances(2, &config(&redis.url(), &up, "", "")).await;
    following(&gws).await;
    // The first instance fetches both; the second reads them from the store and keeps
    // them in its own memory.
    get_json(&gws[0].gateway.url("/r")).await;
    page(gws[0].gateway.url("/p/page")).await;
    for want in ["shared", "hit"] {
        let (_, h, _) = get_json(&gws[1].gateway.url("/r")).await;
        assert_eq!(desc(&h), want);
    }
    assert!(page_status(&gws[1]).await.ends_with("detail=shared"));
    assert!(page_status(&gws[1]).await.starts_with("fanout; hit"));

    // One URL, purged on the first instance: the second drops its copy too.
    let body = purge(&gws[0], &format!("?url={}/data", up.url())).await;
    assert_eq!(
        (&body["purged"], &body["purged_shared"], &body["announced"]),
        (&Value::from(1), &Value::from(1), &Value::from(true)),
        "{body}"
    );
    let entries = redis.command(&["XLEN", "fanout:purges:"]).integer();
    assert!(
        matches!(entries, Some(2 | 3)),
        "the purge, after the first entry each follower that found no stream wrote \
         (one or both, started together): {entries:?}"
    );
    eventually("the second instance's copy of /data purged", async || {
        let (_, h, _) = get_json(&gws[1].gateway.url("/r")).await;
        desc(&h) == "ok"
    })
    .await;
    assert_eq!(up.hits("/data"), 2, "one call before the purge, one after");
    assert_eq!(events(&gws[1], "applied").await, 1);
    // Read once: later readings go on after it (XRANGE's start is inclusive), and the
    // copy the second instance now holds stays.
    tokio::time::sleep(FOLLOW_EVERY * 5 / 2).await;
    assert_eq!(events(&gws[1], "applied").await, 1);
    let (_, h, _) = get_json(&gws[1].gateway.url("/r")).await;
    assert_eq!(desc(&h), "hit");
    let status = page_status(&gws[1]).await;
    assert!(
        status.starts_with("fanout; hit") && !status.ends_with("detail=shared"),
        "another URL is kept: {status}"
    );

    // Everything, purged on the second instance: the first's memory empties too.
    assert!(page_status(&gws[0]).await.starts_with("fanout; hit"));
    let body = purge(&gws[1], "").await;
    assert_eq!(body["announced"], true, "{body}");
    eventually("the first instance's copy of /page purged", async || {
        page_status(&gws[0]).await.contains("fwd=uri-miss")
    })
    .await;
    assert_eq!(up.hits("/page"), 2);
}

/// A Redis, an upstream with `/data`, and one instance following the purge stream.
async fn one_following_instance() -> (RedisServer, MockUpstream, Vec<ReloadableGateway>) {
    let redis = RedisServer::start();
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gws = instances(1, &config(&redis.url(), &up, "", "")).await;
    following(&gws).await;
    (redis, up, gws)
}

/// Waits until `/r` on `gateway` is answered with `desc` (`shared`: its memory's copy
/// is gone, and the store's read).
async fn until_r_is(gateway: &ReloadableGateway, desc_wanted: &str, what: &str) {
    eventually(what, async || {
        let (_, h, _) = get_json(&gateway.gateway.url("/r")).await;
        desc(&h) == desc_wanted
    })
    .await;
}

/// Empties the stream and writes `url`'s purge into it as one command, as a store that
/// restarted empty and then took another instance's purge would hold it.
fn rewrite_stream(redis: &RedisServer, url: &str) {
    let script =
        "redis.call('DEL', KEYS[1]); return redis.call('XADD', KEYS[1], '*', 'url', ARGV[1])";
    redis.command(&["EVAL", script, "1", "fanout:purges:", url]);
}

#[tokio::test]
async fn purge_events_lost_from_the_store_purge_everything_here() {
    let (redis, up, gws) = one_following_instance().await;
    // No stream was there: the follower wrote its first entry, and starts on it.
    assert_eq!(
        redis.command(&["XLEN", "fanout:purges:"]).integer(),
        Some(1)
    );
    get_json(&gws[0].gateway.url("/r")).await;
    let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
    assert_eq!(desc(&h), "hit");
    // The stream written anew while this instance looked away: what the entries in
    // between purged is unknown, so every answer it holds goes.
    rewrite_stream(&redis, "/y");
    until_r_is(&gws[0], "shared", "every copy purged").await;
    assert_eq!(events(&gws[0], "lost").await, 1);
    assert_eq!(events(&gws[0], "applied").await, 0, "/y was not applied");

    // Then it follows the new stream: another instance's purge of /data, as it writes
    // one: the copy here goes, the store's stays.
    let data = format!("{}/data", up.url());
    redis.command(&["XADD", "fanout:purges:", "*", "url", &data]);
    until_r_is(&gws[0], "shared", "the other instance's purge applied").await;
    assert_eq!(events(&gws[0], "applied").await, 1);
    assert_eq!(events(&gws[0], "lost").await, 1);
    let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
    assert_eq!(desc(&h), "hit");

    // The stream gone altogether (the store restarted empty): everything goes again,
    // and the follower writes a first entry to go on from.
    redis.command(&["DEL", "fanout:purges:"]);
    until_r_is(&gws[0], "shared", "every copy purged again").await;
    assert_eq!(events(&gws[0], "lost").await, 2);
    assert_eq!(up.hits("/data"), 1, "the store kept it throughout");
}

#[tokio::test]
async fn a_follower_too_far_behind_purges_everything_and_goes_on_from_the_end() {
    let (redis, _up, gws) = one_following_instance().await;
    get_json(&gws[0].gateway.url("/r")).await;
    // 3,000 purges of other URLs at once (one script, so the follower reads them all
    // afterwards): more than a reading takes (8 round trips of 256).
    let script = "for i = 1, 3000 do redis.call('XADD', KEYS[1], '*', 'url', '/n' .. i) end";
    redis.command(&["EVAL", script, "1", "fanout:purges:"]);
    until_r_is(&gws[0], "shared", "every copy purged").await;
    assert_eq!(events(&gws[0], "lost").await, 1);
    assert_eq!(
        events(&gws[0], "applied").await,
        2048,
        "8 x 256 read, then given up"
    );
    // On from the stream's end: the rest is not read, and the copy now held stays.
    tokio::time::sleep(FOLLOW_EVERY * 5 / 2).await;
    assert_eq!(events(&gws[0], "applied").await, 2048);
    assert_eq!(events(&gws[0], "lost").await, 1);
    let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
    assert_eq!(desc(&h), "hit");
}
