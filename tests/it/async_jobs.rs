//! Async routes (`async = { status_path = "/jobs/{job}", ... }`): the 202 and its status
//! URL, the job's lifecycle (pending, done, expired), its answer against a twin
//! synchronous route's, cancel, owners, `max_jobs`, a shutdown with a running job, and
//! jobs in the `[cluster]` store read from another instance.

use crate::common::redis::RedisServer;
use crate::common::{
    Gate, GatewayProcess, MockUpstream, Reply, client, eventually, eventually_some, json_of,
    start_gateway, start_reloadable,
};
use reqwest::StatusCode;
use std::time::Duration;

/// An upstream section with a long timeout: jobs wait on gates and hanging answers.
fn upstream(url: &str) -> String {
    format!("[upstreams.reports]\nurl = \"{url}\"\ntimeout = \"1h\"\n")
}

/// Async routes and their synchronous twins over `up`: `POST /report` (proxy to
/// `/report`), `GET /summary` (aggregate of `/a` and `/b`), `POST /echo`; `async`
/// takes `settings` (`job_timeout = ...`).
fn config(up: &MockUpstream, settings: &str, before: &str) -> String {
    let async_ = format!("async = {{ status_path = \"/jobs/{{job}}\", {settings} }}");
    format!(
        r#"{before}
{upstream}
[[routes]]
path = "/report"
methods = ["POST"]
proxy = {{ upstream = "reports", path = "/report" }}
{async_}

[[routes]]
path = "/report-now"
methods = ["POST"]
proxy = {{ upstream = "reports", path = "/report" }}

[[routes]]
path = "/summary"
{async_}
  [[routes.backends]]
  name = "a"
  upstream = "reports"
  path = "/a"
  [[routes.backends]]
  name = "b"
  upstream = "reports"
  path = "/b"

[[routes]]
path = "/summary-now"
  [[routes.backends]]
  name = "a"
  upstream = "reports"
  path = "/a"
  [[routes.backends]]
  name = "b"
  upstream = "reports"
  path = "/b"

[[routes]]
path = "/echo"
methods = ["POST"]
proxy = {{ upstream = "reports", path = "/echo" }}
{async_}
"#,
        upstream = upstream(&up.url()),
    )
}

/// Starts a job: asserts the 202 and its headers, returns the status URL.
async fn start(url: String, authorization: Option<&str>) -> String {
    let mut request = client().post(url).body("{}");
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["retry-after"], "1");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body = json_of(response).await;
    let id = body["job"].as_str().unwrap();
    assert_eq!(id.len(), 32, "128 bits in hex: {id}");
    assert_eq!(location, format!("/jobs/{id}"));
    assert_eq!(body["status"], "pending");
    assert_eq!(body["status_url"], location);
    location
}

async fn status_of(url: String, authorization: Option<&str>) -> reqwest::Response {
    let mut request = client().get(url);
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    request.send().await.unwrap()
}

/// Waits until the job at `url` is no longer pending; returns its answer.
async fn finished(url: String, authorization: Option<&str>) -> reqwest::Response {
    eventually_some("the job to finish", async || {
        let response = status_of(url.clone(), authorization).await;
        (response.status() != StatusCode::ACCEPTED).then_some(response)
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn a_job_is_pending_then_answers_as_the_route_would_then_expires() {
    let gate = Gate::default();
    let up = MockUpstream::builder()
        .route(
            "/report",
            Reply::json(r#"{"rows":3}"#)
                .status(201)
                .header("x-report", "r1")
                .gated(&gate),
        )
        .route("/a", Reply::json(r#"{"a":1}"#))
        .route("/b", Reply::json(r#"{"b":2}"#))
        .start()
        .await;
    let gw = start_reloadable(&config(
        &up,
        "job_timeout = \"1h\", result_ttl = \"1m\"",
        "",
    ))
    .await;
    let status_url = gw
        .gateway
        .url(&start(gw.gateway.url("/report"), None).await);
    let pending = status_of(status_url.clone(), None).await;
    assert_eq!(pending.status(), StatusCode::ACCEPTED);
    assert_eq!(pending.headers()["retry-after"], "1");
    let body = json_of(pending).await;
    assert_eq!(body["status"], "pending");
    eventually("the job's call to arrive", async || up.hits("/report") == 1).await;
    assert_eq!(metric(&gw.admin, "fanout_jobs{state=\"pending\"}").await, 1);

    gate.open();
    let done = finished(status_url.clone(), None).await;
    let sync = client()
        .post(gw.gateway.url("/report-now"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::CREATED);
    assert_eq!(done.status(), sync.status());
    for name in ["x-report", "content-type", "content-length"] {
        assert_eq!(done.headers()[name], sync.headers()[name], "{name}");
    }
    assert_eq!(done.text().await.unwrap(), sync.text().await.unwrap());
    // Read again while the result lives.
    let again = status_of(status_url.clone(), None).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(metric(&gw.admin, "fanout_jobs{state=\"pending\"}").await, 0);
    assert_eq!(
        metric(&gw.admin, "fanout_jobs_finished_total{state=\"done\"}").await,
        1
    );

    // The aggregate's job answers as its twin does.
    let summary_url = start_get(gw.gateway.url("/summary")).await;
    let done = finished(gw.gateway.url(&summary_url), None).await;
    let sync = client()
        .get(gw.gateway.url("/summary-now"))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), sync.status());
    assert_eq!(
        done.headers()["content-type"],
        sync.headers()["content-type"]
    );
    assert_eq!(json_of(done).await, json_of(sync).await);

    tokio::time::sleep(Duration::from_secs(61)).await;
    let expired = status_of(status_url, None).await;
    assert_eq!(expired.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_of(expired).await["error"]["code"], "job_not_found");
}

/// Starts a job with a GET (an aggregate route's method): the status URL.
async fn start_get(url: String) -> String {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The value of `series` on the admin listener at `admin`.
async fn metric(admin: &std::net::SocketAddr, series: &str) -> u64 {
    let text = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_request_body_is_read_before_the_202_and_sent_by_the_job() {
    let up = MockUpstream::builder()
        .route("/echo", Reply::echo())
        .start()
        .await;
    let gw = start_gateway(&config(&up, "max_jobs = 5", "[server]\nmax_body = \"64\"")).await;
    let response = client()
        .post(gw.url("/echo"))
        .body(r#"{"order":42}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let url = gw.url(response.headers()["location"].to_str().unwrap());
    let done = finished(url, None).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(done.text().await.unwrap(), r#"{"order":42}"#);
    assert_eq!(&up.requests()[0].body[..], br#"{"order":42}"#);
    // Over the limit: 413 before any job starts.
    let big = client()
        .post(gw.url("/echo"))
        .body(vec![b'x'; 65])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn a_cancel_drops_the_running_call() {
    let up = MockUpstream::builder()
        .route("/report", Reply::hang())
        .start()
        .await;
    let gw = start_gateway(&config(&up, "result_ttl = \"1m\"", "")).await;
    let url = gw.url(&start(gw.url("/report"), Some("Bearer a")).await);
    eventually("the job's call to arrive", async || up.hits("/report") == 1).await;
    // Another identity cannot cancel it.
    let refused = client()
        .delete(url.clone())
        .header("authorization", "Bearer b")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(up.cancelled(), 0);
    let cancelled = client()
        .delete(url.clone())
        .header("authorization", "Bearer a")
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    assert_eq!(json_of(cancelled).await["status"], "cancelled");
    eventually("the upstream to see its caller go", async || {
        up.cancelled() == 1
    })
    .await;
    let after = status_of(url.clone(), Some("Bearer a")).await;
    assert_eq!(after.status(), StatusCode::GONE);
    assert_eq!(json_of(after).await["error"]["code"], "job_cancelled");
    // A finished (here: cancelled) job's entry is forgotten by a second DELETE.
    let forgotten = client()
        .delete(url.clone())
        .header("authorization", "Bearer a")
        .send()
        .await
        .unwrap();
    assert_eq!(forgotten.status(), StatusCode::NO_CONTENT);
    let gone = status_of(url, Some("Bearer a")).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_identity_gets_the_unknown_jobs_404() {
    let up = MockUpstream::builder()
        .route("/report", Reply::json(r#"{"mine":true}"#))
        .start()
        .await;
    let gw = start_gateway(&config(&up, "max_jobs = 5", "")).await;
    let url = gw.url(&start(gw.url("/report"), Some("Bearer alice")).await);
    let done = finished(url.clone(), Some("Bearer alice")).await;
    assert_eq!(done.status(), StatusCode::OK);
    let unknown = status_of(
        gw.url("/jobs/00000000000000000000000000000000"),
        Some("Bearer alice"),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let unknown = unknown.text().await.unwrap();
    for other in [Some("Bearer mallory"), None] {
        let theirs = status_of(url.clone(), other).await;
        assert_eq!(theirs.status(), StatusCode::NOT_FOUND, "{other:?}");
        assert_eq!(theirs.text().await.unwrap(), unknown);
    }
    // A job started without credentials is anyone's who has its id.
    let open = gw.url(&start(gw.url("/report"), None).await);
    let done = finished(open, Some("Bearer anyone")).await;
    assert_eq!(done.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_auth_the_subject_owns_the_job_whatever_its_key() {
    let up = MockUpstream::builder()
        .route("/report", Reply::json(r#"{"mine":true}"#))
        .start()
        .await;
    let toml = format!(
        r#"[auth.keys]
api_keys = {{ keys = {{ ada = "ada-key-0123456789abcdef", bob = "bob-key-0123456789abcdef" }} }}
{upstream}
[[routes]]
path = "/report"
methods = ["POST"]
auth = "keys"
proxy = {{ upstream = "reports", path = "/report" }}
async = {{ status_path = "/jobs/{{job}}" }}
"#,
        upstream = upstream(&up.url())
    );
    let gw = start_gateway(&toml).await;
    let key = |k: &'static str| move |r: reqwest::RequestBuilder| r.header("x-api-key", k);
    let ada = key("ada-key-0123456789abcdef");
    let bob = key("bob-key-0123456789abcdef");
    let refused = client().post(gw.url("/report")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let started = ada(client().post(gw.url("/report"))).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let url = gw.url(started.headers()["location"].to_str().unwrap());
    let done = eventually_some("the job to finish", async || {
        let r = ada(client().get(url.clone())).send().await.unwrap();
        (r.status() != StatusCode::ACCEPTED).then_some(r)
    })
    .await;
    assert_eq!(done.status(), StatusCode::OK);
    let theirs = bob(client().get(url.clone())).send().await.unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    let anonymous = client().get(url.clone()).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::NOT_FOUND);
    let bad_key = client()
        .get(url)
        .header("x-api-key", "nope-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_key.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn over_max_jobs_a_route_answers_503_with_retry_after() {
    let up = MockUpstream::builder()
        .route("/report", Reply::hang())
        .start()
        .await;
    let gw = start_gateway(&config(&up, "max_jobs = 1", "")).await;
    let first = start(gw.url("/report"), None).await;
    let over = client()
        .post(gw.url("/report"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(over.headers()["retry-after"], "1");
    assert_eq!(json_of(over).await["error"]["code"], "upstream_overloaded");
    // Another async route has its own count; a cancel frees the place.
    start_get(gw.url("/summary")).await;
    let cancelled = client().delete(gw.url(&first)).send().await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    start(gw.url("/report"), None).await;
}

#[tokio::test(start_paused = true)]
async fn a_job_past_job_timeout_answers_as_the_routes_timeout() {
    let up = MockUpstream::builder()
        .route("/report", Reply::hang())
        .start()
        .await;
    let gw = start_gateway(&config(&up, "job_timeout = \"2s\"", "")).await;
    let url = gw.url(&start(gw.url("/report"), None).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let done = finished(url, None).await;
    assert_eq!(done.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json_of(done).await["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn jobs_survive_a_reload_that_removes_their_route_and_status_path() {
    let gate = Gate::default();
    let up = MockUpstream::builder()
        .route("/report", Reply::json(r#"{"kept":1}"#).gated(&gate))
        .route("/a", Reply::json("{}"))
        .route("/b", Reply::json("{}"))
        .start()
        .await;
    let gw = start_reloadable(&config(&up, "max_jobs = 5", "")).await;
    let url = gw
        .gateway
        .url(&start(gw.gateway.url("/report"), None).await);
    eventually("the job's call to arrive", async || up.hits("/report") == 1).await;
    // No async route left: the running job finishes, its status path still answers.
    let sync_only = format!(
        "[access_log]\nenabled = false\n{}\n[[routes]]\npath = \"/report-now\"\nmethods = [\"POST\"]\n\
         proxy = {{ upstream = \"reports\", path = \"/report\" }}\n",
        upstream(&up.url())
    );
    gw.write(&sync_only);
    gw.reloader.reload("test").expect("the reload is accepted");
    let gone = client()
        .post(gw.gateway.url("/report"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND, "the route is gone");
    let pending = status_of(url.clone(), None).await;
    assert_eq!(pending.status(), StatusCode::ACCEPTED);
    gate.open();
    let done = finished(url, None).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(done.text().await.unwrap(), r#"{"kept":1}"#);
}

/// A gateway config on the `[cluster]` store at `redis`.
fn clustered(up: &MockUpstream, redis: &str, settings: &str, before: &str) -> String {
    config(
        up,
        settings,
        &format!("{before}\n[cluster]\nredis = \"{redis}\"\ntimeout = \"1s\"\n"),
    )
}

#[tokio::test]
async fn with_a_cluster_any_instance_answers_and_cancels() {
    let redis = RedisServer::start();
    let gate = Gate::default();
    let up = MockUpstream::builder()
        .route("/report", Reply::json(r#"{"n":1}"#).gated(&gate))
        .route("/a", Reply::hang())
        .route("/b", Reply::json("{}"))
        .start()
        .await;
    let toml = clustered(&up, &redis.url(), "result_ttl = \"1m\"", "");
    let a = start_gateway(&toml).await;
    let b = start_gateway(&toml).await;
    let path = start(a.url("/report"), Some("Bearer x")).await;
    let on_b = status_of(b.url(&path), Some("Bearer x")).await;
    assert_eq!(on_b.status(), StatusCode::ACCEPTED, "pending, read on B");
    let theirs = status_of(b.url(&path), Some("Bearer y")).await;
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);
    gate.open();
    let done = finished(b.url(&path), Some("Bearer x")).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(done.text().await.unwrap(), r#"{"n":1}"#);
    let id = path.rsplit('/').next().unwrap();
    assert_eq!(redis.keys("fanout:job:*"), vec![format!("fanout:job:{id}")]);

    // A job running on A, cancelled on B: A reads the flag and drops the call.
    let path = start_get(a.url("/summary")).await;
    eventually("the job's call to arrive", async || up.hits("/a") == 1).await;
    let cancelled = client().delete(b.url(&path)).send().await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    eventually("A to drop the cancelled job's call", async || {
        up.cancelled() == 1
    })
    .await;
    let after = status_of(a.url(&path), None).await;
    assert_eq!(after.status(), StatusCode::GONE);
}

#[tokio::test]
async fn with_the_cluster_store_down_async_routes_answer_503_and_the_rest_serve() {
    let mut redis = RedisServer::start();
    let up = MockUpstream::builder()
        .route("/report", Reply::json("{}"))
        .start()
        .await;
    let gw = start_gateway(&clustered(&up, &redis.url(), "max_jobs = 5", "")).await;
    let path = start(gw.url("/report"), None).await;
    redis.stop();
    let refused = client()
        .post(gw.url("/report"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        json_of(refused).await["error"]["code"],
        "job_store_unavailable"
    );
    let status = status_of(gw.url(&path), None).await;
    assert_eq!(status.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        json_of(status).await["error"]["code"],
        "job_store_unavailable"
    );
    let sync = client()
        .post(gw.url("/report-now"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), StatusCode::OK);
}

#[tokio::test]
async fn on_sigterm_a_job_finishes_within_the_grace_or_is_stored_as_interrupted() {
    let redis = RedisServer::start();
    let gate = Gate::default();
    let up = MockUpstream::builder()
        .route(
            "/report",
            Reply::json(r#"{"late":"but done"}"#).gated(&gate),
        )
        .route("/a", Reply::hang())
        .route("/b", Reply::json("{}"))
        .start()
        .await;
    let toml = clustered(
        &up,
        &redis.url(),
        "result_ttl = \"1m\"",
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"",
    );
    let mut process = GatewayProcess::start(&toml);
    let finishing = start(process.url("/report"), None).await;
    let hanging = start_get(process.url("/summary")).await;
    eventually("both jobs' calls to arrive", async || {
        up.hits("/report") == 1 && up.hits("/a") == 1
    })
    .await;
    process.signal("TERM");
    eventually("the shutdown to start", async || {
        process.logs().iter().any(|l| l.contains("shutting down"))
    })
    .await;
    // Opened during the grace: that job finishes; the other never does.
    gate.open();
    let exited = tokio::task::spawn_blocking(move || process.terminate())
        .await
        .unwrap();
    assert!(exited.success(), "{exited:?}");
    let reader = start_gateway(&clustered(&up, &redis.url(), "max_jobs = 5", "")).await;
    let done = status_of(reader.url(&finishing), None).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(done.text().await.unwrap(), r#"{"late":"but done"}"#);
    let interrupted = status_of(reader.url(&hanging), None).await;
    assert_eq!(interrupted.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        json_of(interrupted).await["error"]["code"],
        "job_interrupted"
    );
}

#[test]
fn fanout_check_prints_an_async_problem_with_its_place() {
    let dir = crate::common::scratch_dir("async-check");
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        "[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"/r\"\n\
         proxy = { upstream = \"u\", path = \"/\" }\nasync = { status_path = \"/jobs\", max_jobs = 0 }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("routes[0].async.status_path: \"/jobs\" must hold exactly one parameter"),
        "{stderr}"
    );
    assert!(
        stderr.contains("routes[0].async.max_jobs: must be at least 1"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_demo_report_is_accepted_then_served_from_its_status_url() {
    use fanout::demo::{Sample, serve, serve_collector};
    let mut toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0");
    for (sample, fixed) in [
        (Sample::Users, "127.0.0.1:9101"),
        (Sample::Weather, "127.0.0.1:9103"),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        toml = toml.replace(fixed, &listener.local_addr().unwrap().to_string());
        tokio::spawn(serve(sample, listener));
    }
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    toml = toml.replace(
        "127.0.0.1:4318",
        &collector.local_addr().unwrap().to_string(),
    );
    tokio::spawn(serve_collector(collector));
    let gw = start_gateway(&toml).await;
    let url = gw.url(&start_get(gw.url("/api/users/1/report")).await);
    let done = finished(url, None).await;
    assert_eq!(done.status(), StatusCode::OK);
    let report = json_of(done).await;
    assert_eq!(report["user"]["id"], 1, "{report}");
    assert!(report["weather"].is_object(), "{report}");
}

#[tokio::test]
async fn a_job_cancelled_on_another_instance_never_answers_after_the_cancel() {
    let redis = RedisServer::start();
    let gate = Gate::default();
    let up = MockUpstream::builder()
        .route("/report", Reply::json(r#"{"n":1}"#).gated(&gate))
        .start()
        .await;
    let toml = clustered(&up, &redis.url(), "result_ttl = \"1m\"", "");
    let a = start_reloadable(&toml).await;
    let b = start_gateway(&toml).await;
    let path = start(a.gateway.url("/report"), None).await;
    eventually("the job's call to arrive", async || up.hits("/report") == 1).await;
    let cancelled = client().delete(b.url(&path)).send().await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    // A's call answers before A reads the cancel flag: its answer must not replace
    // the cancel B reported.
    gate.open();
    eventually("A's job to end", async || {
        metric(&a.admin, "fanout_jobs{state=\"pending\"}").await == 0
    })
    .await;
    for on in [a.gateway.url(&path), b.url(&path)] {
        let after = status_of(on, None).await;
        assert_eq!(after.status(), StatusCode::GONE);
    }
    assert_eq!(
        metric(&a.admin, "fanout_jobs_finished_total{state=\"done\"}").await,
        0
    );
}

#[tokio::test]
async fn an_async_canary_keeps_an_answer_up_to_the_picked_upstreams_max_response() {
    let up = MockUpstream::builder()
        .route(
            "/big",
            Reply::json(format!(r#"{{"x":"{}"}}"#, "y".repeat(200))),
        )
        .start()
        .await;
    // The first upstream (weight 0, never picked) keeps 64 bytes; the picked one 1 KiB.
    let toml = format!(
        r#"[upstreams.small]
url = "{url}"
max_response = "64"
[upstreams.large]
url = "{url}"
max_response = "1KiB"

[[routes]]
path = "/big"
proxy = {{ upstreams = [{{ name = "small", weight = 0 }}, {{ name = "large", weight = 1 }}], path = "/big" }}
async = {{ status_path = "/jobs/{{job}}" }}
"#,
        url = up.url()
    );
    let gw = start_gateway(&toml).await;
    let url = gw.url(&start_get(gw.url("/big")).await);
    let done = finished(url, None).await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(
        done.text().await.unwrap().len(),
        208,
        "over 64 bytes, whole"
    );
}

#[tokio::test]
async fn a_slow_upload_does_not_hold_one_of_max_jobs() {
    use tokio::io::AsyncWriteExt;
    let up = MockUpstream::builder()
        .route("/echo", Reply::echo())
        .start()
        .await;
    let gw = start_gateway(&config(&up, "max_jobs = 1", "")).await;
    // Headers and a first chunk, then nothing more.
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n",
    )
    .await
    .unwrap();
    slow.flush().await.unwrap();
    // Whatever the gateway did with it by now, the one place is still free.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = gw.url(&start(gw.url("/echo"), None).await);
    let done = finished(url, None).await;
    assert_eq!(done.status(), StatusCode::OK);
    drop(slow);
}

#[tokio::test]
async fn an_aggregate_jobs_answer_over_max_result_is_stored_as_502() {
    let up = MockUpstream::builder()
        .route(
            "/a",
            Reply::json(format!(r#"{{"x":"{}"}}"#, "y".repeat(300))),
        )
        .route("/b", Reply::json("{}"))
        .start()
        .await;
    let gw = start_gateway(&config(&up, "max_result = \"256\"", "")).await;
    let url = gw.url(&start_get(gw.url("/summary")).await);
    let done = finished(url, None).await;
    assert_eq!(done.status(), StatusCode::BAD_GATEWAY);
    let body = json_of(done).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("256 bytes"),
        "{body}"
    );
}
