//! The admin listener over real sockets: health, readiness, metrics, the redacted
//! config, reload, cache purge, and the admin token.

use crate::common;

use common::{MockUpstream, Reply, client, get_json, start_reloadable};

fn config(up: &MockUpstream, extra_server: &str) -> String {
    format!(
        "[server]\n{extra_server}\n[upstreams.up]\nurl = \"{}\"\nheaders = {{ authorization = \"Bearer upstream-secret\" }}\n\
         circuit_breaker = {{ failures = 3, open_for = \"1m\" }}\n\
         [[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\ncache_ttl = \"1m\"\n",
        up.url()
    )
}

#[tokio::test]
async fn health_ready_and_config() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gw = start_reloadable(&config(&up, "")).await;
    let admin = |p: &str| format!("http://{}{p}", gw.admin);
    assert_eq!(
        get_json(&admin("/health")).await.2,
        serde_json::json!({"status": "ok"})
    );

    let (status, _, ready) = get_json(&admin("/ready")).await;
    assert_eq!(status, 200);
    assert_eq!(ready["ready"], true);
    assert_eq!(
        ready["upstreams"]["up"],
        serde_json::json!({"healthy": true, "circuit": "closed"})
    );
    let hash = ready["config_hash"].as_str().unwrap().to_string();

    let (_, _, config) = get_json(&admin("/config")).await;
    assert_eq!(config["hash"], hash.as_str());
    assert_eq!(config["config"]["routes"][0]["path"], "/r");
    assert_eq!(
        config["config"]["upstreams"]["up"]["headers"]["authorization"],
        "[redacted]"
    );
    assert!(!config.to_string().contains("upstream-secret"));
    assert_eq!(config["last_reload"]["ok"], true);
}

#[tokio::test]
async fn metrics_count_requests_backends_and_cache() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gw = start_reloadable(&config(&up, "")).await;
    for _ in 0..3 {
        get_json(&gw.gateway.url("/r")).await;
    }
    get_json(&gw.gateway.url("/nowhere")).await;
    let response = client()
        .get(format!("http://{}/metrics", gw.admin))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for line in [
        "fanout_requests_total{route=\"/r\",status=\"200\"} 3",
        "fanout_requests_total{route=\"\",status=\"404\"} 1",
        "fanout_request_duration_seconds_count{route=\"/r\"} 3",
        "fanout_backend_outcomes_total{route=\"/r\",backend=\"b\",code=\"ok\"} 1",
        "fanout_backend_outcomes_total{route=\"/r\",backend=\"b\",code=\"hit\"} 2",
        "fanout_cache_hits_total 2",
        "fanout_cache_misses_total 1",
        "fanout_requests_in_flight 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(text.contains(&format!(
        "fanout_config_info{{hash=\"{}\"}} 1",
        gw.reloader.status().hash
    )));
}

#[tokio::test]
async fn reload_and_purge_need_the_token_when_one_is_set() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gw = start_reloadable(&config(&up, "admin_token = \"t0ken\"")).await;
    let post = |p: &str, token: Option<&str>| {
        let mut request = client().post(format!("http://{}{p}", gw.admin));
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        request.send()
    };
    assert_eq!(post("/reload", None).await.unwrap().status(), 401);
    assert_eq!(post("/reload", Some("wrong")).await.unwrap().status(), 401);

    gw.write(
        &(config(&up, "admin_token = \"t0ken\"")
            + "[[routes]]\npath = \"/new\"\nproxy = { upstream = \"up\" }\n"),
    );
    let response = post("/reload", Some("t0ken")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = common::json_of(response).await;
    assert_eq!(
        body["changes"]["routes_added"],
        serde_json::json!(["* /new"])
    );
    let metrics = client()
        .get(format!("http://{}/metrics", gw.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("fanout_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );

    gw.write("not toml [");
    let response = post("/reload", Some("t0ken")).await.unwrap();
    assert_eq!(response.status(), 422);
    let body = common::json_of(response).await;
    assert_eq!(body["ok"], false);
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("config: not valid TOML")
    );

    // Purge: the cached answer is fetched again afterwards.
    get_json(&gw.gateway.url("/r")).await;
    get_json(&gw.gateway.url("/r")).await;
    assert_eq!(up.hits("/data"), 1);
    let purge = post(
        &format!("/cache/purge?url={}/data", up.url()),
        Some("t0ken"),
    )
    .await
    .unwrap();
    let body = common::json_of(purge).await;
    assert_eq!(body["purged"], 1);
    get_json(&gw.gateway.url("/r")).await;
    assert_eq!(up.hits("/data"), 2);
    assert_eq!(
        get_json(&format!("http://{}/reload", gw.admin)).await.0,
        405
    );
}
