//! `POST /cache/purge` on one instance empties the others' memory too, through the
//! store's purge stream, over real sockets and a real `redis-server`. Each instance reads
//! the stream once a second, so the tests wait for the other instance's answer to change
//! (the call it makes once its copy is gone) rather than for a time.

use crate::cluster_cache::{config, desc, instances, metric, page};
use crate::common;

use common::redis::RedisServer;
use common::{MockUpstream, ReloadableGateway, Reply, client, eventually, get_json};
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
    assert_eq!(
        redis.command(&["XLEN", "fanout:purges:"]).integer(),
        Some(1)
    );
    eventually("the second instance's copy of /data purged", async || {
        let (_, h, _) = get_json(&gws[1].gateway.url("/r")).await;
        desc(&h) == "ok"
    })
    .await;
    assert_eq!(up.hits("/data"), 2, "one call before the purge, one after");
    assert_eq!(events(&gws[1], "applied").await, 1);
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

#[tokio::test]
async fn purge_events_lost_from_the_store_purge_everything_here() {
    let redis = RedisServer::start();
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gws = instances(1, &config(&redis.url(), &up, "", "")).await;
    following(&gws).await;
    let data = format!("{}/data", up.url());
    // Another instance's purge of /data, as it writes one: the copy here goes, the
    // store's stays.
    get_json(&gws[0].gateway.url("/r")).await;
    redis.command(&["XADD", "fanout:purges:", "*", "url", &data]);
    eventually("the other instance's purge applied", async || {
        let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
        desc(&h) == "shared"
    })
    .await;
    assert_eq!(events(&gws[0], "applied").await, 1);
    let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
    assert_eq!(desc(&h), "hit");
    // The stream emptied and written again while this instance looked away: what the
    // entries in between purged is unknown, so every answer it holds goes.
    redis.command(&["DEL", "fanout:purges:"]);
    redis.command(&["XADD", "fanout:purges:", "*", "url", "/y"]);
    eventually("every copy purged", async || {
        let (_, h, _) = get_json(&gws[0].gateway.url("/r")).await;
        desc(&h) == "shared"
    })
    .await;
    assert_eq!(events(&gws[0], "lost").await, 1);
    assert_eq!(events(&gws[0], "applied").await, 1, "/y was not applied");
    assert_eq!(up.hits("/data"), 1, "the store kept it throughout");
}
