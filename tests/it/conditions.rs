//! Backend conditions (`when`) over real sockets: what a true or false condition calls,
//! skipping and its propagation to readers, conditions over the request, evaluation
//! failures (`condition_failed`), ordering, and `fanout check`'s refusals. Ordering runs
//! on tokio's paused clock: the arrival times the mock records are virtual.

use crate::common;

use common::{MockUpstream, Reply, get_json, json_of, start_gateway, upstream_toml};
use fanout::config::{Env, compile};
use serde_json::json;
use std::time::Duration;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// A route `/r` on mock `m` with `backends` (TOML of `[[routes.backends]]` tables).
fn route(mock: &MockUpstream, head: &str, backends: &str) -> String {
    format!(
        "{}\n[[routes]]\npath = \"/r\"\nerrors_field = \"_errors\"\n{head}\n{backends}",
        upstream_toml("m", &mock.url())
    )
}

/// The `desc` of each backend's `Server-Timing` entry, in order.
fn timing_descs(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers["server-timing"]
        .to_str()
        .unwrap()
        .split(", ")
        .map(|entry| {
            let name = entry.split(';').next().unwrap().to_string();
            let desc = entry.split("desc=\"").nth(1).unwrap().trim_end_matches('"');
            (name, desc.to_string())
        })
        .collect()
}

const USER_LOYALTY_POINTS: &str = r#"
  [[routes.backends]]
  name = "user"
  upstream = "m"
  path = "/user"
  [[routes.backends]]
  name = "loyalty"
  upstream = "m"
  path = "/loyalty"
  when = "user.plan == 'pro'"
  default = { points = 0 }
  [[routes.backends]]
  name = "points"
  upstream = "m"
  path = "/points/{loyalty.id}"
"#;

#[tokio::test]
async fn a_false_condition_skips_the_backend_and_every_reader_of_it() {
    let mock = MockUpstream::builder()
        .route("/user", Reply::json(r#"{"plan":"free"}"#))
        .route("/loyalty", Reply::json(r#"{"id":"l1"}"#))
        .route("/points/l1", Reply::json(r#"{"n":5}"#))
        .start()
        .await;
    let gw = start_gateway(&route(&mock, "", USER_LOYALTY_POINTS)).await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"user": {"plan": "free"}, "loyalty": {"points": 0}, "points": null, "_errors": {}})
    );
    assert_eq!(mock.hits("/loyalty"), 0, "a skipped backend is not called");
    assert_eq!(mock.hits("/points/l1"), 0, "nor is a backend reading it");
    assert_eq!(
        headers["x-fanout-complete"], "true",
        "skipping is no failure"
    );
    assert_eq!(
        timing_descs(&headers),
        [
            ("user", "ok"),
            ("loyalty", "skipped"),
            ("points", "skipped")
        ]
        .map(|(n, d)| (n.to_string(), d.to_string()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_true_condition_calls_the_backend_once_the_answer_it_reads_arrives() {
    let mock = MockUpstream::builder()
        .route("/user", Reply::json(r#"{"plan":"pro"}"#).latency(MS(100)))
        .route("/loyalty", Reply::json(r#"{"id":"l1"}"#))
        .route("/points/l1", Reply::json(r#"{"n":5}"#))
        .start()
        .await;
    let gw = start_gateway(&route(&mock, "", USER_LOYALTY_POINTS)).await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"user": {"plan": "pro"}, "loyalty": {"id": "l1"}, "points": {"n": 5}, "_errors": {}})
    );
    assert_eq!(headers["x-fanout-complete"], "true");
    let arrived = |path: &str| {
        let requests = mock.requests();
        requests.iter().find(|r| r.target == path).unwrap().arrived
    };
    assert!(
        arrived("/loyalty") >= arrived("/user") + MS(100),
        "loyalty's condition was decided before user answered"
    );
}

#[tokio::test]
async fn conditions_read_the_requests_method_query_headers_and_body() {
    let mock = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let backend = |name: &str, when: &str| {
        format!(
            "  [[routes.backends]]\n  name = \"{name}\"\n  upstream = \"m\"\n  path = \"/a?{name}\"\n  when = \"{when}\"\n"
        )
    };
    let backends = [
        backend("post", "request.method == 'POST'"),
        backend("get", "request.method == 'GET'"),
        backend("gold_query", "request.query.tier == 'gold'"),
        backend("silver_query", "request.query.tier == 'silver'"),
        backend("gold_header", "request.headers['x-tier'] == 'gold'"),
        backend("big_order", "request.body.amount > 100"),
        backend("small_order", "request.body.amount <= 100"),
        backend("id", "request.params.id == '7'"),
    ]
    .concat();
    let toml = format!(
        "{}\n[[routes]]\npath = \"/r/{{id}}\"\nmethods = [\"GET\", \"POST\"]\n{backends}",
        upstream_toml("m", &mock.url())
    );
    let gw = start_gateway(&toml).await;
    let response = common::client()
        .post(gw.url("/r/7?tier=silver"))
        .header("x-tier", "gold")
        .body(r#"{"amount": 150}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = json_of(response).await;
    let called: Vec<&str> = [
        "post",
        "get",
        "gold_query",
        "silver_query",
        "gold_header",
        "big_order",
        "small_order",
        "id",
    ]
    .into_iter()
    .filter(|name| body[name] == json!(1))
    .collect();
    assert_eq!(
        called,
        ["post", "silver_query", "gold_header", "big_order", "id"]
    );
    let mut targets: Vec<String> = mock.requests().into_iter().map(|r| r.target).collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "/a?big_order",
            "/a?gold_header",
            "/a?id",
            "/a?post",
            "/a?silver_query"
        ],
        "only the backends whose condition held were called"
    );

    // A body a condition reads must be JSON.
    let response = common::client()
        .post(gw.url("/r/7"))
        .body("amount=150")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = json_of(response).await;
    assert_eq!(body["error"]["code"], "bad_request", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn a_route_whose_backends_are_all_skipped_answers_200_with_their_defaults() {
    let mock = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = start_gateway(&route(
        &mock,
        "",
        "  [[routes.backends]]\n  name = \"a\"\n  upstream = \"m\"\n  path = \"/a\"\n  when = \"request.method == 'POST'\"\n  default = []\n  required = true\n",
    ))
    .await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"a": [], "_errors": {}}));
    assert_eq!(headers["x-fanout-complete"], "true");
    assert_eq!(mock.total_hits(), 0);
}

#[tokio::test]
async fn a_condition_reading_a_backend_that_failed_is_condition_failed() {
    let mock = MockUpstream::builder()
        .route("/user", Reply::json("{}").status(500))
        .route("/loyalty", Reply::json(r#"{"id":"l1"}"#))
        .route("/other", Reply::json("2"))
        .start()
        .await;
    let gw = start_gateway(&route(
        &mock,
        "",
        r#"
  [[routes.backends]]
  name = "user"
  upstream = "m"
  path = "/user"
  [[routes.backends]]
  name = "loyalty"
  upstream = "m"
  path = "/loyalty"
  when = "user.plan == 'pro'"
  [[routes.backends]]
  name = "other"
  upstream = "m"
  path = "/other"
"#,
    ))
    .await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["loyalty"], json!(null));
    assert_eq!(body["other"], json!(2));
    assert_eq!(
        body["_errors"]["loyalty"]["code"], "condition_failed",
        "{body}"
    );
    assert!(
        body["_errors"]["loyalty"]["message"]
            .as_str()
            .unwrap()
            .contains("user, which has no answer"),
        "{body}"
    );
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(mock.hits("/loyalty"), 0);
    let descs = timing_descs(&headers);
    assert_eq!(descs[1], ("loyalty".to_string(), "error".to_string()));
}

#[tokio::test]
async fn a_required_backend_whose_condition_fails_fails_the_route() {
    let mock = MockUpstream::builder()
        .route("/user", Reply::json(r#"{"plan":"pro"}"#))
        .route("/charge", Reply::json("1"))
        .start()
        .await;
    let gw = start_gateway(&route(
        &mock,
        "",
        r#"
  [[routes.backends]]
  name = "user"
  upstream = "m"
  path = "/user"
  [[routes.backends]]
  name = "charge"
  upstream = "m"
  path = "/charge"
  required = true
  when = "user.card.valid"
"#,
    ))
    .await;
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["backend"], "charge", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("card"),
        "{body}"
    );
    assert_eq!(mock.hits("/charge"), 0);
}

fn problems(toml: &str) -> Vec<String> {
    match compile(toml, &Env::default()) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn fanout_check_refuses_bad_conditions_with_their_place() {
    let toml = r#"
[upstreams.m]
url = "http://127.0.0.1:9"
[[routes]]
path = "/syntax"
  [[routes.backends]]
  name = "a"
  upstream = "m"
  path = "/a"
  when = "request.method =="
[[routes]]
path = "/names"
  [[routes.backends]]
  name = "a"
  upstream = "m"
  path = "/a"
  [[routes.backends]]
  name = "b"
  upstream = "m"
  path = "/b"
  when = "usr.plan == 'pro'"
  [[routes.backends]]
  name = "c"
  upstream = "m"
  path = "/c"
  when = "c.x == 1"
[[routes]]
path = "/cycle"
  [[routes.backends]]
  name = "a"
  upstream = "m"
  path = "/a/{b.id}"
  [[routes.backends]]
  name = "b"
  upstream = "m"
  path = "/b"
  when = "a.ok"
"#;
    assert_eq!(
        problems(toml),
        [
            "routes[0].backends[0].when: syntax error at line 1, column 18: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}",
            "routes[1].backends[1].when: \"usr\" is not a name this condition can read; use one of: request, responses, a, b, c",
            "routes[1].backends[2].when: reads this backend's own answer (c); a condition decides before the call, so read another backend's",
            "routes[2].backends: their answers form a cycle (a → b → a): each waits for another's; remove one of these references",
        ]
    );
}

#[tokio::test]
async fn conditions_read_an_answers_status_and_the_headers_they_name() {
    let mock = MockUpstream::builder()
        .route(
            "/order",
            Reply::json(r#"{"id":9}"#)
                .status(201)
                .header("etag", "\"v1\""),
        )
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = start_gateway(&route(
        &mock,
        "",
        r#"
  [[routes.backends]]
  name = "order"
  upstream = "m"
  path = "/order"
  [[routes.backends]]
  name = "created"
  upstream = "m"
  path = "/a?created"
  when = "responses.order.status == 201 && responses.order.headers['etag'] == '\"v1\"'"
  [[routes.backends]]
  name = "ok"
  upstream = "m"
  path = "/a?ok"
  when = "responses.order.status == 200"
"#,
    ))
    .await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["created"], json!(1), "{body}");
    assert_eq!(body["ok"], json!(null), "{body}");
    assert_eq!(headers["x-fanout-complete"], "true");
    assert_eq!(mock.hits("/a"), 1);
}
