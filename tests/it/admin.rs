//! The admin listener over real sockets: health, readiness, metrics, the redacted
//! config, reload, cache purge, and the admin token.

use crate::common;

use common::{GatewayProcess, MockUpstream, Reply, client, get_json, start_reloadable};
use std::net::SocketAddr;

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
        serde_json::json!({"health": "unchecked", "circuit": "closed"})
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
        "fanout_requests_total{route=\"unmatched\",status=\"404\"} 1",
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
        .bearer_auth("t0ken")
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
    let get_reload = client()
        .get(format!("http://{}/reload", gw.admin))
        .bearer_auth("t0ken")
        .send()
        .await
        .unwrap();
    assert_eq!(get_reload.status(), 405);
}

/// GETs an admin endpoint, with the token when one is given.
async fn admin_get(admin: SocketAddr, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client().get(format!("http://{admin}{path}"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    request.send().await.unwrap()
}

/// A config whose secrets are all in the file: an upstream URL with credentials, a
/// header, and query values in backend, proxy and health-check paths.
fn secret_config(up: &MockUpstream, server: &str) -> String {
    let url = up.url().replace("http://", "http://svc:url-pa55word@");
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{server}\n\
         [upstreams.up]\nurl = \"{url}\"\nheaders = {{ authorization = \"Bearer header-secret\" }}\n\
         health_check = {{ path = \"/health?key=probe-secret\", interval = \"1m\" }}\n\
         [[routes]]\npath = \"/r/{{id}}\"\n[[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data?id={{id}}&api_key=query-secret\"\n\
         [[routes]]\npath = \"/p\"\nproxy = {{ upstream = \"up\", path = \"/x?sig=proxy-secret\" }}\n"
    )
}

const SECRETS: &[&str] = &[
    "url-pa55word",
    "svc:",
    "header-secret",
    "probe-secret",
    "query-secret",
    "proxy-secret",
];

#[tokio::test]
async fn config_never_shows_a_secret_and_needs_the_token() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let token = "file-token-0123456789abcdef";
    // The token written in the file, and the same config with the token from the
    // environment instead.
    let from_file =
        GatewayProcess::start(&secret_config(&up, &format!("admin_token = \"{token}\"")));
    let from_env = GatewayProcess::start_env(
        &secret_config(&up, ""),
        &[],
        &[("FANOUT__SERVER__ADMIN_TOKEN", token)],
    );
    for gw in [&from_file, &from_env] {
        let admin = gw.admin_addr();
        // Open to all: liveness and readiness.
        assert_eq!(admin_get(admin, "/health", None).await.status(), 200);
        assert_eq!(admin_get(admin, "/ready", None).await.status(), 200);
        // Everything else needs the token.
        for path in ["/config", "/metrics", "/nowhere"] {
            assert_eq!(admin_get(admin, path, None).await.status(), 401, "{path}");
            assert_eq!(
                admin_get(admin, path, Some("wrong")).await.status(),
                401,
                "{path}"
            );
        }
        let response = admin_get(admin, "/config", Some(token)).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        for secret in SECRETS.iter().chain([&token]) {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let doc = &config["config"];
        assert_eq!(doc["server"]["admin_token"], "[redacted]");
        assert!(
            doc["upstreams"]["up"]["url"]
                .as_str()
                .unwrap()
                .starts_with("http://[redacted]@127.0.0.1:"),
            "{doc}"
        );
        assert_eq!(
            doc["upstreams"]["up"]["health_check"]["path"],
            "/health?key=[redacted]"
        );
        assert_eq!(
            doc["routes"][0]["backends"][0]["path"],
            "/data?id={id}&api_key=[redacted]"
        );
        assert_eq!(doc["routes"][1]["proxy"]["path"], "/x?sig=[redacted]");
        let metrics = admin_get(admin, "/metrics", Some(token)).await;
        assert_eq!(metrics.status(), 200);
    }
}

/// FNV-1a, 64 bits: the config hash an attacker could recompute before.
fn fnv1a(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

#[tokio::test]
async fn a_guessed_secret_cannot_be_checked_against_the_hash() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    // A two-letter secret: 676 guesses. With a fast hash of the config, one of them
    // reproduces the hash that /ready shows to anyone.
    let toml = |secret: &str| {
        format!(
            "[upstreams.up]\nurl = \"{}\"\nheaders = {{ authorization = \"{secret}\" }}\n\
             [[routes]]\npath = \"/r\"\nproxy = {{ upstream = \"up\" }}\n",
            up.url()
        )
    };
    let gw = start_reloadable(&toml("qz")).await;
    let (_, _, ready) = get_json(&format!("http://{}/ready", gw.admin)).await;
    let hash = ready["config_hash"].as_str().unwrap().to_string();
    let (_, _, config) = get_json(&format!("http://{}/config", gw.admin)).await;
    assert_eq!(config["hash"], hash.as_str());
    let shown = config["config"].clone();
    let letters = || (b'a'..=b'z').map(char::from);
    for guess in letters().flat_map(|a| letters().map(move |b| format!("{a}{b}"))) {
        let mut candidate = shown.clone();
        candidate["upstreams"]["up"]["headers"]["authorization"] = guess.clone().into();
        let bytes = serde_json::to_vec(&candidate).unwrap();
        let sha = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let sha: String = sha.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            fnv1a(&bytes) != hash && sha != hash,
            "the secret {guess} was recovered from the hash"
        );
    }
    // The hash still follows the secret, and is what `fanout check` prints.
    assert_ne!(
        fanout::config::compile(&toml("qy"), &fanout::config::Env::default())
            .unwrap()
            .hash,
        hash
    );
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(&gw.path)
        .env_clear()
        .output()
        .unwrap();
    let stdout = String::from_utf8(check.stdout).unwrap();
    assert!(stdout.contains(&format!("(hash {hash})")), "{stdout}");
}

#[tokio::test]
async fn ready_says_what_it_checks() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    // The upstreams of the README's example answer.
    let gw = start_reloadable(&format!(
        "[upstreams.users]\nurl = \"{0}\"\nhealth_check = {{ path = \"/health\", interval = \"1m\" }}\n\
         circuit_breaker = {{ failures = 5, open_for = \"10s\" }}\n\
         [upstreams.orders]\nurl = \"{0}\"\n\
         [[routes]]\npath = \"/r\"\nproxy = {{ upstream = \"users\" }}\n",
        up.url()
    ))
    .await;
    let (_, _, mut ready) = get_json(&format!("http://{}/ready", gw.admin)).await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("| `GET /ready` |"))
        .unwrap();
    let example = &line[line.find("`{").unwrap() + 1..];
    let example = &example[..example.find("}`").unwrap() + 1];
    let mut example: serde_json::Value = serde_json::from_str(example).unwrap();
    assert!(ready["config_hash"].as_str().is_some_and(|h| h.len() == 16));
    ready["config_hash"] = "…".into();
    example["config_hash"] = "…".into();
    assert_eq!(ready, example, "the README's example is the real answer");
}

#[tokio::test]
async fn config_shows_listener_settings_waiting_for_a_restart_as_pending() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let routes = format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\nproxy = {{ upstream = \"up\" }}\n",
        up.url()
    );
    let gw = start_reloadable(&routes).await;
    let (_, _, before) = get_json(&format!("http://{}/config", gw.admin)).await;
    let serving = before["config"]["server"]["listen"].clone();
    assert_eq!(before["pending_restart"], serde_json::json!({}));

    gw.write(&format!(
        "[server]\nlisten = \"127.0.0.1:1\"\nkeepalive_timeout = \"5s\"\nhealth_path = \"/hz\"\n{routes}"
    ));
    let reload = client()
        .post(format!("http://{}/reload", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let (_, _, after) = get_json(&format!("http://{}/config", gw.admin)).await;
    let server = &after["config"]["server"];
    assert_eq!(server["listen"], serving, "the listener serving");
    assert_eq!(server["keepalive_timeout"], "75s");
    assert_eq!(server["health_path"], "/hz", "applied live");
    assert_eq!(
        after["pending_restart"],
        serde_json::json!({"server.listen": "127.0.0.1:1", "server.keepalive_timeout": "5s"})
    );
    // A later reload that changes nothing else still shows them pending.
    let again = client()
        .post(format!("http://{}/reload", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let (_, _, later) = get_json(&format!("http://{}/config", gw.admin)).await;
    assert_eq!(later["pending_restart"], after["pending_restart"]);
    assert_eq!(later["config"]["server"]["listen"], serving);
}

#[tokio::test]
async fn metrics_label_every_answer_and_start_counters_at_zero() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gw = start_reloadable(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\n\
         rate_limit = {{ rate = \"100/s\" }}\n[[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\n",
        up.url()
    ))
    .await;
    let metrics = async || common::get_text(&format!("http://{}/metrics", gw.admin)).await;
    let text = metrics().await;
    for line in [
        "fanout_rate_limited_total{route=\"/r\"} 0",
        "fanout_reloads_total{result=\"ok\"} 0",
        "fanout_reloads_total{result=\"rejected\"} 0",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert_eq!(get_json(&gw.gateway.url("/nowhere")).await.0, 404);
    let post = client().post(gw.gateway.url("/r")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(get_json(&gw.gateway.url("/__health")).await.0, 200);
    let text = metrics().await;
    for line in [
        "fanout_requests_total{route=\"unmatched\",status=\"404\"} 1",
        "fanout_requests_total{route=\"/r\",status=\"405\"} 1",
        "fanout_requests_total{route=\"health\",status=\"200\"} 1",
        "fanout_request_duration_seconds_count{route=\"/r\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    assert!(
        !text.contains("route=\"\""),
        "no empty route label:\n{text}"
    );
}

#[tokio::test]
async fn metrics_answer_in_the_format_the_scraper_prefers() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gw = start_reloadable(&config(&up, "")).await;
    get_json(&gw.gateway.url("/r")).await;
    let scrape = async |accept: &str| {
        let response = client()
            .get(format!("http://{}/metrics", gw.admin))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        (content_type, response.text().await.unwrap())
    };

    // Prometheus 2.x/3.x: OpenMetrics, where exemplars are.
    let (content_type, text) = scrape(
        "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
         version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    )
    .await;
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(text.contains("# TYPE fanout_requests counter\n"), "{text}");
    assert!(text.ends_with("# EOF\n"), "{text}");

    // A scraper of the classic text format gets it: no `# EOF`, counter families named
    // as their samples, the same samples.
    let (content_type, text) = scrape("text/plain;version=0.0.4;q=1,*/*;q=0.1").await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        text.contains("# TYPE fanout_requests_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("fanout_requests_total{route=\"/r\",status=\"200\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("fanout_request_duration_seconds_count{route=\"/r\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    assert!(!text.contains(" # {"), "no exemplar: {text}");
}
