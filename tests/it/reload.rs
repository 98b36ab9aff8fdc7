//! Live config over real sockets: atomic swaps, in-flight requests on their own config,
//! invalid edits, no failed request across reloads, state carried over, the file
//! watcher and SIGHUP.

use crate::common;

use common::{
    Gate, GatewayProcess, MockUpstream, Reply, client, eventually, eventually_some, get_json,
    start_reloadable,
};
fn config(up: &MockUpstream, routes: &str) -> String {
    format!(
        r#"[upstreams.up]
url = "{}"
{routes}"#,
        up.url()
    )
}

fn aggregate(path: &str, backend_path: &str, extra: &str) -> String {
    format!(
        r#"[[routes]]
path = "{path}"
{extra}
[[routes.backends]]
name = "b"
upstream = "up"
path = "{backend_path}"
"#
    )
}

#[tokio::test]
async fn in_flight_requests_finish_on_their_config_while_new_ones_see_the_new_one() {
    // The in-flight request's answer is held until the reload is done.
    let gate = Gate::default();
    let up = MockUpstream::builder()
        .route("/slow", Reply::json("1").gated(&gate))
        .route("/fast", Reply::json("2"))
        .start()
        .await;
    let gw = start_reloadable(&config(&up, &aggregate("/old", "/slow", ""))).await;
    let url = gw.gateway.url("/old");
    let in_flight = tokio::spawn(async move { get_json(&url).await });
    // Reload once the request is in flight: its upstream call has arrived.
    eventually("the in-flight request's call at the upstream", async || {
        up.hits("/slow") == 1
    })
    .await;

    gw.write(&config(&up, &aggregate("/new", "/fast", "")));
    let changes = gw.reloader.reload("test").unwrap();
    assert_eq!(changes.routes_added, ["GET /new"]);
    assert_eq!(changes.routes_removed, ["GET /old"]);

    assert_eq!(get_json(&gw.gateway.url("/new")).await.0, 200);
    assert_eq!(get_json(&gw.gateway.url("/old")).await.0, 404);
    assert!(
        !in_flight.is_finished(),
        "the in-flight request is still held"
    );
    gate.open();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(
        (status.as_u16(), body["b"].as_i64()),
        (200, Some(1)),
        "the old route answered its request"
    );
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_old_config_until_a_valid_one() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = start_reloadable(&config(&up, &aggregate("/a", "/x", ""))).await;
    let hash = gw.reloader.status().hash;

    gw.write(&config(&up, "[[routes]]\npath = \"/b\"\ntimeout = \"soon\"\n[[routes.backends]]\nname = \"b\"\nupstream = \"nope\"\npath = \"/\"\n"));
    let problems = gw.reloader.reload("test").unwrap_err();
    assert_eq!(
        problems,
        [
            "routes[0].timeout: invalid duration \"soon\"; write a number and a unit, such as \"250ms\", \"2s\" or \"5m\"",
            "routes[0].backends[0].upstream: no upstream \"nope\"; known: up",
        ]
    );
    let status = gw.reloader.status();
    assert!(!status.ok);
    assert_eq!(status.problems.len(), 2);
    assert_eq!(status.hash, hash, "the old config is still the one serving");
    assert_eq!(get_json(&gw.gateway.url("/a")).await.0, 200);

    gw.write(&config(&up, &aggregate("/b", "/x", "")));
    gw.reloader.reload("test").unwrap();
    assert_eq!(get_json(&gw.gateway.url("/b")).await.0, 200);
    let status = gw.reloader.status();
    assert!(status.ok);
    assert_ne!(status.hash, hash);
}

#[tokio::test]
async fn no_request_fails_across_twenty_reloads() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let one = config(&up, &aggregate("/r", "/one", ""));
    let two = config(&up, &aggregate("/r", "/two", r#"timeout = "5s""#));
    let gw = start_reloadable(&one).await;
    let url = gw.gateway.url("/r");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (url.clone(), stop.clone());
            tokio::spawn(async move {
                let http = client();
                let (mut ok, mut failed) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let good = match http.get(&url).send().await {
                        Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                        _ => false,
                    };
                    if good {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    eventually("a request served on the first config", async || {
        up.hits("/one") > 0
    })
    .await;
    for i in 0..20 {
        let (next, path) = if i % 2 == 0 {
            (&two, "/two")
        } else {
            (&one, "/one")
        };
        let before = up.hits(path);
        gw.write(next);
        gw.reloader.reload("test").unwrap();
        // Requests run on each config before the next reload.
        eventually("a request served on the new config", async || {
            up.hits(path) > before
        })
        .await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for task in load {
        let (o, f) = task.await.unwrap();
        ok += o;
        failed += f;
    }
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > 20, "only {ok} requests ran");
    assert!(
        up.hits("/one") > 0 && up.hits("/two") > 0,
        "both configs served"
    );
}

#[tokio::test]
async fn state_carries_over_for_what_did_not_change() {
    let up = MockUpstream::builder()
        .route("/cached", Reply::json("1"))
        .route("/broken", Reply::json("{}").status(500))
        .start()
        .await;
    let routes = |broken_timeout: &str| {
        aggregate("/c", "/cached", "").replace(
            "path = \"/cached\"\n",
            "path = \"/cached\"\ncache_ttl = \"1m\"\n",
        ) + &aggregate(
            "/limited",
            "/cached",
            "rate_limit = { rate = \"1/min\", key = \"global\" }",
        ) + &format!(
            "[upstreams.bad]\nurl = \"{}\"\ntimeout = \"{broken_timeout}\"\ncircuit_breaker = {{ failures = 1, open_for = \"1m\" }}\n\
                 [[routes]]\npath = \"/broken\"\n[[routes.backends]]\nname = \"b\"\nupstream = \"bad\"\npath = \"/broken\"\nrequired = true\n",
            up.url()
        )
    };
    let gw = start_reloadable(&config(&up, &routes("2s"))).await;
    let url = |p: &str| gw.gateway.url(p);
    get_json(&url("/c")).await;
    assert_eq!(get_json(&url("/limited")).await.0, 200);
    assert_eq!(get_json(&url("/broken")).await.0, 502);
    assert_eq!(
        get_json(&url("/broken")).await.0,
        503,
        "the circuit is open"
    );

    // An unrelated change: a new route.
    gw.write(&(config(&up, &routes("2s")) + &aggregate("/extra", "/cached", "")));
    let changes = gw.reloader.reload("test").unwrap();
    assert_eq!(changes.routes_added, ["GET /extra"]);
    assert!(
        changes.routes_changed.is_empty() && changes.upstreams_changed.is_empty(),
        "{changes:?}"
    );
    let (_, h, _) = get_json(&url("/c")).await;
    assert!(
        h["server-timing"].to_str().unwrap().contains("hit"),
        "cache entries survive"
    );
    assert_eq!(
        get_json(&url("/limited")).await.0,
        429,
        "rate-limit state survives"
    );
    assert_eq!(
        get_json(&url("/broken")).await.0,
        503,
        "circuit state survives"
    );
    assert_eq!(up.hits("/cached"), 2);

    // Changing the upstream starts it afresh: its circuit is closed again.
    gw.write(&config(&up, &routes("3s")));
    let changes = gw.reloader.reload("test").unwrap();
    assert_eq!(changes.upstreams_changed, ["bad"]);
    assert_eq!(
        get_json(&url("/broken")).await.0,
        502,
        "a new upstream calls again"
    );
}

#[tokio::test]
async fn listener_changes_are_reported_not_half_applied() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = start_reloadable(&config(&up, &aggregate("/a", "/x", ""))).await;
    gw.write(&format!(
        "[server]\nlisten = \"127.0.0.1:1\"\nhealth_path = \"/healthz\"\n{}",
        config(&up, &aggregate("/a", "/x", ""))
    ));
    let changes = gw.reloader.reload("test").unwrap();
    assert_eq!(changes.restart_needed, ["server.listen"]);
    assert_ne!(
        gw.live.load().server.listen.port(),
        1,
        "the listen address is not changed under a running listener"
    );
    assert_eq!(
        get_json(&gw.gateway.url("/healthz")).await.0,
        200,
        "what can change live does"
    );
}

#[tokio::test]
async fn the_file_watcher_reloads_after_an_editor_saves() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = start_reloadable(&config(&up, &aggregate("/a", "/x", ""))).await;
    let _watcher = fanout::reload::watch(gw.reloader.clone()).unwrap();
    gw.write(&config(&up, &aggregate("/b", "/x", "")));
    let url = gw.gateway.url("/b");
    eventually("the renamed-over edit to be picked up", async || {
        get_json(&url).await.0 == 200
    })
    .await;
    assert_eq!(gw.reloader.status().trigger, "file");

    // An in-place write (no rename) is seen too.
    std::fs::write(&gw.path, config(&up, &aggregate("/c", "/x", ""))).unwrap();
    let url = gw.gateway.url("/c");
    eventually("the in-place edit to be picked up", async || {
        get_json(&url).await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn sighup_reloads_the_running_binary() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = GatewayProcess::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}",
        config(&up, &aggregate("/a", "/x", ""))
    ));
    let next = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}",
        config(&up, &aggregate("/b", "/x", ""))
    );
    std::fs::write(&gw.path, next).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let url = gw.url("/b");
    eventually("the SIGHUP reload to serve /b", async || {
        get_json(&url).await.0 == 200
    })
    .await;
    // The watcher may have reloaded first; the SIGHUP reload is logged on its own.
    eventually("the SIGHUP reload in the log", async || {
        gw.logs().iter().any(|l| {
            l.contains("config reloaded") && l.contains("trigger=\"sighup\"")
                || l.contains("config reloaded") && l.contains("trigger=sighup")
        })
    })
    .await;
}

/// The access log line of the request `id` in a process's stderr (the log's default
/// path), parsed.
async fn access_line(gw: &GatewayProcess, id: &str) -> serde_json::Value {
    let line = eventually_some(&format!("the access line of {id}"), async || {
        gw.logs()
            .into_iter()
            .find(|l| l.contains("\"request_id\"") && l.contains(id))
    })
    .await;
    assert_rounded(&line);
    serde_json::from_str(&line).unwrap()
}

#[tokio::test]
async fn every_request_is_logged_with_its_route_status_and_backends() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = GatewayProcess::start(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}",
        config(&up, &aggregate("/a", "/x", ""))
    ));
    let response = client()
        .get(gw.url("/a"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let entry = access_line(&gw, "req-42").await;
    assert_eq!(entry["route"], "/a");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["method"], "GET");
    assert_eq!(entry["backends"][0]["name"], "b");
    assert_eq!(entry["backends"][0]["code"], "ok");
    assert!(entry["backends"][0]["duration_ms"].is_f64(), "{entry}");
    assert!(entry["duration_ms"].is_f64(), "{entry}");

    // Answers no route gave are labelled for what they were.
    for (method, path, id, route, status) in [
        ("GET", "/nowhere", "req-404", "unmatched", 404),
        ("POST", "/a", "req-405", "/a", 405),
        ("GET", "/__health", "req-health", "health", 200),
    ] {
        client()
            .request(method.parse().unwrap(), gw.url(path))
            .header("x-request-id", id)
            .send()
            .await
            .unwrap();
        let entry = access_line(&gw, id).await;
        assert_eq!(entry["route"], route, "{entry}");
        assert_eq!(entry["status"], status, "{entry}");
        assert!(entry.get("backends").is_none(), "{entry}");
    }
}

/// The access line's `duration_ms` has at most three decimals (whole microseconds).
fn assert_rounded(line: &str) {
    let at = line.find("duration_ms").unwrap();
    let value: String = line[at + "duration_ms".len()..]
        .trim_start_matches(['=', '"', ':'])
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let decimals = value.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(
        !value.is_empty() && decimals <= 3,
        "duration_ms {value} in {line}"
    );
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}",
        config(&up, &aggregate("/a", "/x", ""))
    );
    let gw = GatewayProcess::start_with(&toml, &["--log-format", "json"]);
    client()
        .get(gw.url("/a"))
        .header("x-request-id", "req-json")
        .send()
        .await
        .unwrap();
    // The access log is its own, in its own format (`[access_log] format`).
    let entry = access_line(&gw, "req-json").await;
    assert_eq!(entry["route"], "/a");

    // A reload's lists are arrays too.
    let next = toml.replace("path = \"/a\"", "path = \"/b\"");
    std::fs::write(&gw.path, next).unwrap();
    let reloaded = eventually_some("the reload's line in the log", async || {
        gw.logs()
            .into_iter()
            .find(|l| l.contains("config reloaded"))
    })
    .await;
    let entry: serde_json::Value = serde_json::from_str(&reloaded).unwrap();
    assert_eq!(entry["fields"]["added"], serde_json::json!(["GET /b"]));
    assert_eq!(entry["fields"]["removed"], serde_json::json!(["GET /a"]));
    assert_eq!(entry["fields"]["changed"], serde_json::json!([]));
    assert!(
        gw.logs()
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
}
