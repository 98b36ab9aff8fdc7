//! Error policies and the answer's status and headers over real sockets: `on_error`
//! (`fail`, `default`, `omit`) with backends that fail in each way (a 500, a timeout,
//! an answer that is not JSON), `errors_field` entries with `status` and
//! `duration_ms`, `status_from` and `headers_from`, and what `fanout check` says of
//! them. Timing runs on tokio's paused clock: latencies and durations are virtual.

use crate::common;

use common::{
    Close, MockUpstream, RawUpstream, Reply, client, get_json, raw_request, start_gateway,
    upstream_toml,
};
use serde_json::json;
use std::time::Duration;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A mock whose `/ok` answers, and whose other paths fail each in its own way: `/500`
/// answers 500, `/slow` never answers (the backend's 1 s timeout ends it), `/garbage`
/// answers text that is not JSON.
async fn failing_mock() -> MockUpstream {
    MockUpstream::builder()
        .route("/ok", Reply::json(r#"{"v":1}"#))
        .route(
            "/500",
            Reply::json(r#"{"error":"down"}"#)
                .status(500)
                .latency(MS(30)),
        )
        .route("/slow", Reply::hang())
        .route("/garbage", Reply::raw("<html>oops</html>"))
        .start()
        .await
}

/// A route `/r` with backend `ok` and one backend per failure, each with `policy`.
fn policy_route(mock: &MockUpstream, policy: &str, route_extra: &str) -> String {
    let mut toml = format!(
        "{}\n[[routes]]\npath = \"/r\"\n{route_extra}\n\
         [[routes.backends]]\nname = \"ok\"\nupstream = \"m\"\npath = \"/ok\"\n",
        upstream_toml("m", &mock.url())
    );
    for name in ["500", "slow", "garbage"] {
        toml.push_str(&format!(
            "[[routes.backends]]\nname = \"b{name}\"\nupstream = \"m\"\npath = \"/{name}\"\n\
             timeout = \"1s\"\non_error = \"{policy}\"\ndefault = {{ fallback = true }}\n"
        ));
    }
    toml
}

#[tokio::test(start_paused = true)]
async fn on_error_default_puts_the_default_under_the_key() {
    let mock = failing_mock().await;
    let gw = start_gateway(&policy_route(&mock, "default", "")).await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"ok": {"v": 1}, "b500": {"fallback": true}, "bslow": {"fallback": true},
               "bgarbage": {"fallback": true}})
    );
    assert_eq!(headers["x-fanout-complete"], "false");
}

#[tokio::test(start_paused = true)]
async fn on_error_omit_leaves_the_key_out_whatever_the_failure() {
    let mock = failing_mock().await;
    let gw = start_gateway(&policy_route(&mock, "omit", "errors_field = \"_errors\"")).await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["ok", "_errors"], "{body}");
    let errors = &body["_errors"];
    assert_eq!(errors["b500"]["code"], "bad_status");
    assert_eq!(errors["bslow"]["code"], "timeout");
    assert_eq!(errors["bgarbage"]["code"], "invalid_json");
    assert_eq!(headers["x-fanout-complete"], "false");
    // Still timed, as a failure.
    let timing = headers["server-timing"].to_str().unwrap();
    assert!(timing.contains("bslow;dur="), "{timing}");
    assert!(timing.contains("desc=\"timeout\""), "{timing}");
}

#[tokio::test(start_paused = true)]
async fn on_error_omit_with_merge_root_spreads_nothing() {
    let mock = MockUpstream::builder()
        .route("/ok", Reply::json(r#"{"v":1}"#))
        .route("/500", Reply::json(r#"{"x":2}"#).status(500))
        .route("/profile", Reply::json(r#"{"name":"ann"}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/r"
  [[routes.backends]]
  name = "ok"
  upstream = "m"
  path = "/ok"
  [[routes.backends]]
  name = "extra"
  upstream = "m"
  path = "/500"
  merge = "root"
  on_error = "omit"
  default = {{ extra_default = true }}
  [[routes.backends]]
  name = "profile"
  upstream = "m"
  path = "/profile"
  merge = "root"
  on_error = "omit"
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    // The failed root backend spreads neither its answer nor its default; the one that
    // answered spreads as usual.
    assert_eq!(body, json!({"ok": {"v": 1}, "name": "ann"}));
}

#[tokio::test(start_paused = true)]
async fn on_error_fail_fails_the_route_for_each_kind_of_failure() {
    let mock = failing_mock().await;
    for (name, status) in [("500", 502), ("slow", 504), ("garbage", 502)] {
        for policy in ["on_error = \"fail\"", "required = true"] {
            let gw = start_gateway(&format!(
                "{}\n[[routes]]\npath = \"/r\"\n\
                 [[routes.backends]]\nname = \"ok\"\nupstream = \"m\"\npath = \"/ok\"\n\
                 [[routes.backends]]\nname = \"b\"\nupstream = \"m\"\npath = \"/{name}\"\n\
                 timeout = \"1s\"\n{policy}\n",
                upstream_toml("m", &mock.url())
            ))
            .await;
            let (got, _, body) = get_json(&gw.url("/r")).await;
            assert_eq!(got, status, "/{name} with {policy}: {body}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn errors_field_entries_carry_the_status_and_the_duration() {
    let mock = failing_mock().await;
    let gw = start_gateway(&policy_route(
        &mock,
        "default",
        "errors_field = \"_errors\"",
    ))
    .await;
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    let errors = &body["_errors"];
    // The 500 came after its 30 ms latency (virtual time: exact on any machine).
    let b500 = &errors["b500"];
    assert_eq!(b500["code"], "bad_status");
    assert_eq!(b500["status"], 500);
    let took = b500["duration_ms"].as_f64().expect("a number");
    assert!((30.0..100.0).contains(&took), "{b500}");
    // A timeout has no status; it took the backend's timeout.
    let slow = &errors["bslow"];
    assert_eq!(slow["code"], "timeout");
    assert!(slow.get("status").is_none(), "{slow}");
    let took = slow["duration_ms"].as_f64().expect("a number");
    assert!((1000.0..1100.0).contains(&took), "{slow}");
    // An answer that is not JSON: no refused status, a duration.
    let garbage = &errors["bgarbage"];
    assert!(garbage.get("status").is_none(), "{garbage}");
    assert!(garbage["duration_ms"].is_number(), "{garbage}");
}

/// A checkout route: `order` posts the client's body and answers with its status and
/// headers; `stock` is read alongside.
fn checkout(mock: &MockUpstream, order_extra: &str) -> String {
    format!(
        r#"{}
[[routes]]
path = "/checkout"
methods = ["POST"]
status_from = "order"
headers_from = {{ order = ["location", "etag"] }}
  [[routes.backends]]
  name = "order"
  upstream = "m"
  path = "/orders"
  forward_body = true
  {order_extra}
  [[routes.backends]]
  name = "stock"
  upstream = "m"
  path = "/stock"
"#,
        upstream_toml("m", &mock.url())
    )
}

#[tokio::test]
async fn status_from_answers_201_with_the_location_headers_from_copies() {
    let mock = MockUpstream::builder()
        .route(
            "/orders",
            Reply::json(r#"{"id":7}"#)
                .status(201)
                .header("location", "/orders/7")
                .header("etag", "\"v1\"")
                .header("set-cookie", "session=from-order")
                .header("x-internal", "secret"),
        )
        .route(
            "/stock",
            Reply::json(r#"{"left":3}"#).header("location", "/stock"),
        )
        .start()
        .await;
    let gw = start_gateway(&checkout(&mock, "")).await;
    let response = client()
        .post(gw.url("/checkout"))
        .header("content-type", "application/json")
        .body(r#"{"sku":"a"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let headers = response.headers().clone();
    assert_eq!(headers["location"], "/orders/7");
    assert_eq!(
        headers.get_all("location").iter().count(),
        1,
        "only order's"
    );
    assert_eq!(headers["etag"], "\"v1\"");
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        headers.get("set-cookie").is_none(),
        "not listed: not copied"
    );
    assert!(
        headers.get("x-internal").is_none(),
        "not listed: not copied"
    );
    let body = common::json_of(response).await;
    assert_eq!(body, json!({"order": {"id": 7}, "stock": {"left": 3}}));
    let order = mock.requests().into_iter().find(|r| r.target == "/orders");
    assert_eq!(order.unwrap().body.as_ref(), br#"{"sku":"a"}"#.as_slice());
}

#[tokio::test]
async fn status_from_204_answers_an_empty_body_without_a_type() {
    let mock = MockUpstream::builder()
        .route(
            "/orders",
            Reply::raw("").status(204).header("etag", "\"v2\""),
        )
        .route("/stock", Reply::json(r#"{"left":3}"#))
        .start()
        .await;
    let gw = start_gateway(&checkout(&mock, "")).await;
    let request = "POST /checkout HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\
                   Connection: close\r\n\r\n{}";
    let raw = raw_request(gw.addr, request).await;
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole answer");
    assert!(head.starts_with("HTTP/1.1 204"), "{raw}");
    assert_eq!(body, "", "{raw}");
    let head = head.to_ascii_lowercase();
    assert!(!head.contains("content-type"), "{raw}");
    assert!(!head.contains("content-length"), "{raw}");
    assert!(head.contains("etag: \"v2\""), "{raw}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_status_from_backend_leaves_the_usual_200() {
    let mock = MockUpstream::builder()
        .route(
            "/orders",
            Reply::json("{}").status(503).header("location", "/nope"),
        )
        .route("/stock", Reply::json(r#"{"left":3}"#))
        .start()
        .await;
    let gw = start_gateway(&checkout(&mock, "")).await;
    let response = client()
        .post(gw.url("/checkout"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    let body = common::json_of(response).await;
    assert_eq!(body, json!({"order": null, "stock": {"left": 3}}));
}

#[tokio::test]
async fn a_hostile_header_from_an_upstream_is_copied_as_one_value_only() {
    // The order answers a Location with quotes, angle brackets and an encoded CR LF,
    // then a Set-Cookie of its own: only the named header reaches the client, whole.
    let up = RawUpstream::start(
        vec![
            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\
             Location: /orders/7?x=\"<script>%0d%0aSet-Cookie:%20a=b\r\n\
             Set-Cookie: session=stolen\r\nContent-Length: 8\r\n\r\n{\"id\":7}",
        ],
        1,
        Close::AfterAnswer,
    )
    .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/checkout"
methods = ["POST"]
status_from = "order"
headers_from = {{ order = ["location"] }}
  [[routes.backends]]
  name = "order"
  upstream = "m"
  path = "/orders"
  forward_body = true
"#,
        upstream_toml("m", &up.url())
    ))
    .await;
    let request = "POST /checkout HTTP/1.1\r\nHost: g\r\nContent-Length: 2\r\n\
                   Connection: close\r\n\r\n{}";
    let raw = raw_request(gw.addr, request).await;
    let (head, body) = raw.split_once("\r\n\r\n").expect("a whole answer");
    assert!(head.starts_with("HTTP/1.1 201"), "{raw}");
    let lower = head.to_ascii_lowercase();
    assert_eq!(lower.matches("\r\nlocation:").count(), 1, "{raw}");
    assert!(
        head.contains("\r\nlocation: /orders/7?x=\"<script>%0d%0aSet-Cookie:%20a=b\r\n"),
        "{raw}"
    );
    assert!(!lower.contains("\r\nset-cookie"), "{raw}");
    assert_eq!(body, r#"{"order":{"id":7}}"#);
}

#[tokio::test(start_paused = true)]
async fn a_get_backend_gives_its_status_and_headers_through_the_cache_too() {
    // A GET backend goes through the own HTTP/1 client; cached, its status and the
    // headers headers_from copies are stored with the answer and served on a hit.
    let mock = MockUpstream::builder()
        .route(
            "/job",
            Reply::json(r#"{"state":"queued"}"#)
                .status(202)
                .header("etag", "\"j1\"")
                .header("x-other", "no"),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/job"
status_from = "job"
headers_from = {{ job = ["etag"] }}
  [[routes.backends]]
  name = "job"
  upstream = "m"
  path = "/job"
  cache_ttl = "10s"
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    for round in ["miss", "hit"] {
        let (status, headers, body) = get_json(&gw.url("/job")).await;
        assert_eq!(status, 202, "{round}: {body}");
        assert_eq!(headers["etag"], "\"j1\"", "{round}");
        assert!(headers.get("x-other").is_none(), "{round}");
        assert_eq!(body, json!({"job": {"state": "queued"}}), "{round}");
    }
    assert_eq!(
        mock.hits("/job"),
        1,
        "the second answer came from the cache"
    );
}

#[test]
fn fanout_check_names_the_place_of_each_policy_problem() {
    let toml = r#"
[upstreams.m]
url = "http://127.0.0.1:9001"

[[routes]]
path = "/r"
status_from = "ordr"
headers_from = { order = ["location", "content-length", "connection", "bad name"], nobody = ["etag"] }
  [[routes.backends]]
  name = "order"
  upstream = "m"
  path = "/orders"
  required = true
  on_error = "omit"
  [[routes.backends]]
  name = "stock"
  upstream = "m"
  path = "/stock"
  required = false
  on_error = "fail"
"#;
    let dir = crate::common::scratch_dir("policy");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "routes[0].status_from: no backend \"ordr\" in this route; name one of: order, stock",
        "routes[0].headers_from.nobody: no backend \"nobody\" in this route; name one of: order, stock",
        "routes[0].headers_from.order[1]: \"content-length\" cannot be copied: the gateway frames the merged body itself",
        "routes[0].headers_from.order[2]: \"connection\" describes one connection, not the answer, and cannot be copied",
        "routes[0].headers_from.order[3]: \"bad name\" is not a valid header name",
        "routes[0].backends[0].on_error: \"omit\" disagrees with required = true (which means \"fail\"); remove required or on_error",
        "routes[0].backends[1].on_error: \"fail\" disagrees with required = false; remove required (on_error = \"fail\" makes the backend required)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("7 problems"), "{stderr}");
}
