//! Dependent calls over real sockets: backends that read another backend's answer
//! (`{user.address.city}`), `for_each` fan-outs, their failures and their timing.
//! Timing tests run on tokio's paused clock: the mock's latencies and the arrival times it
//! records are virtual, so "c started 100 ms after a" holds exactly on any machine.

use crate::common;

use common::{MockUpstream, Reply, get_json, start_gateway, upstream_toml};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// The request target (path and query) of every request to `mock` whose path starts
/// with `prefix`, in arrival order.
fn targets(mock: &MockUpstream, prefix: &str) -> Vec<String> {
    mock.requests()
        .into_iter()
        .map(|r| r.target)
        .filter(|t| t.starts_with(prefix))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_dependent_starts_when_its_answer_arrives_not_when_a_wave_ends() {
    let mock = MockUpstream::builder()
        .route("/a", Reply::json(r#"{"next":"x"}"#).latency(MS(100)))
        .route("/b", Reply::json(r#"{"v":"b"}"#).latency(MS(400)))
        .route("/c/x", Reply::json(r#"{"v":"c"}"#).latency(MS(100)))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/chain"
  [[routes.backends]]
  name = "a"
  upstream = "m"
  path = "/a"
  [[routes.backends]]
  name = "b"
  upstream = "m"
  path = "/b"
  [[routes.backends]]
  name = "c"
  upstream = "m"
  path = "/c/{{a.next}}"
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let started = Instant::now();
    let (status, headers, body) = get_json(&gw.url("/chain")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"a": {"next": "x"}, "b": {"v": "b"}, "c": {"v": "c"}})
    );
    assert_eq!(headers["x-fanout-complete"], "true");
    let arrived = |path: &str| {
        mock.requests()
            .into_iter()
            .find(|r| r.target == path)
            .map(|r| r.arrived)
            .unwrap()
    };
    // c was called as soon as a answered (~100 ms), while b (400 ms) was still running:
    // waves would have held it back until b's answer.
    let c_after_b = arrived("/c/x").duration_since(arrived("/b"));
    assert!(
        c_after_b < MS(300),
        "c started {c_after_b:?} after b: it waited for more than a's answer"
    );
    assert!(
        arrived("/c/x") >= arrived("/a") + MS(100),
        "c started before a answered"
    );
    // About 400 ms; waves would take 500, calls one after another 600.
    assert!(elapsed >= MS(400), "took {elapsed:?}");
    assert!(elapsed < MS(750), "took {elapsed:?}");
}

#[tokio::test]
async fn answers_are_read_before_shaping_and_encoded() {
    let mock = MockUpstream::builder()
        .route(
            "/users/7",
            Reply::json(
                r#"{"id":7,"name":"Ada","vip":true,"address":{"city":"São Paulo/SP"},"score":1.5}"#,
            ),
        )
        .route("*", Reply::json(r#"{"temp":21}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/u/{{id}}"
  [[routes.backends]]
  name = "user"
  upstream = "m"
  path = "/users/{{id}}"
  select = ["name"]
  [[routes.backends]]
  name = "weather"
  upstream = "m"
  path = "/weather/{{user.address.city}}?id={{user.id}}&vip={{user.vip}}&s={{user.score}}"
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let (status, _, body) = get_json(&gw.url("/u/7")).await;
    assert_eq!(status, 200, "{body}");
    // `select` hid the city from the merged body, not from the dependent call.
    assert_eq!(
        body,
        json!({"user": {"name": "Ada"}, "weather": {"temp": 21}})
    );
    assert_eq!(
        targets(&mock, "/weather"),
        ["/weather/S%C3%A3o%20Paulo%2FSP?id=7&vip=true&s=1.5"]
    );
}

#[tokio::test]
async fn a_value_that_is_not_there_is_missing_value() {
    let mock = MockUpstream::builder()
        .route("/users/1", Reply::json(r#"{"address":{"city":"Oslo"}}"#))
        .route("/users/2", Reply::json(r#"{"address":{}}"#))
        .route(
            "/users/3",
            Reply::json(r#"{"address":{"city":{"name":"Oslo"}}}"#),
        )
        .route("/users/4", Reply::json(r#"{"address":{"city":null}}"#))
        .route("/users/5", Reply::json("{}").status(500))
        .route("*", Reply::json(r#"{"temp":21}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/u/{{id}}"
errors_field = "_errors"
  [[routes.backends]]
  name = "user"
  upstream = "m"
  path = "/users/{{id}}"
  [[routes.backends]]
  name = "weather"
  upstream = "m"
  path = "/weather/{{user.address.city}}"
  default = {{ temp = "unknown" }}
  [[routes.backends]]
  name = "site"
  upstream = "m"
  path = "/site"
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let (status, headers, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(
        (status.as_u16(), &headers["x-fanout-complete"]),
        (200, &"true".parse().unwrap())
    );
    assert_eq!(body["weather"], json!({"temp": 21}));
    for (id, message) in [
        ("2", "user.address.city is missing"),
        (
            "3",
            "user.address.city is an object, not a string, number or boolean",
        ),
        (
            "4",
            "user.address.city is null, not a string, number or boolean",
        ),
        // The user backend failed: it has no answer to read.
        ("5", "user.address.city is missing"),
    ] {
        let (status, headers, body) = get_json(&gw.url(&format!("/u/{id}"))).await;
        assert_eq!(status, 200, "user {id}: {body}");
        assert_eq!(headers["x-fanout-complete"], "false");
        assert_eq!(body["weather"], json!({"temp": "unknown"}), "user {id}");
        assert_eq!(
            common::without_duration(&body["_errors"]["weather"]),
            json!({"code": "missing_value", "message": message}),
            "user {id}"
        );
        let timing = headers["server-timing"].to_str().unwrap();
        assert!(
            timing.contains(r#"weather;dur=0.0;desc="default""#),
            "{timing}"
        );
    }
    // Only the one call that had its value went out.
    assert_eq!(targets(&mock, "/weather"), ["/weather/Oslo"]);
}

#[tokio::test]
async fn a_required_dependent_without_its_value_fails_the_route() {
    let mock = MockUpstream::builder()
        .route("/users/1", Reply::json(r#"{"name":"no address"}"#))
        .route("/orders", Reply::json("[]"))
        .route("*", Reply::json(r#"{"temp":21}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/u/{{id}}"
  [[routes.backends]]
  name = "user"
  upstream = "m"
  path = "/users/{{id}}"
  [[routes.backends]]
  name = "orders"
  upstream = "m"
  path = "/orders"
  [[routes.backends]]
  name = "weather"
  upstream = "m"
  path = "/weather/{{user.address.city}}"
  required = true
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let (status, _, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body,
        json!({"error": {
            "code": "bad_gateway",
            "backend": "weather",
            "message": "required backend failed: user.address.city is missing",
        }})
    );
    assert!(targets(&mock, "/weather").is_empty());
}

#[tokio::test]
async fn a_required_backend_failing_cancels_its_dependents() {
    let mock = MockUpstream::builder()
        .route("/users/1", Reply::json("{}").status(503).latency(MS(50)))
        .route("*", Reply::json(r#"{"temp":21}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/u/{{id}}"
  [[routes.backends]]
  name = "user"
  upstream = "m"
  path = "/users/{{id}}"
  required = true
  [[routes.backends]]
  name = "weather"
  upstream = "m"
  path = "/weather/{{user.city}}"
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let (status, _, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["backend"], "user");
    assert!(targets(&mock, "/weather").is_empty());
}

#[tokio::test]
async fn a_chain_of_three_passes_values_along() {
    let mock = MockUpstream::builder()
        .route("/a", Reply::json(r#"{"to":"b1"}"#))
        .route("/b/b1", Reply::json(r#"{"to":"c 1"}"#))
        .route("/c/c%201", Reply::json(r#"{"end":true}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/abc"
  [[routes.backends]]
  name = "c"
  upstream = "m"
  path = "/c/{{b.to}}"
  [[routes.backends]]
  name = "b"
  upstream = "m"
  path = "/b/{{a.to}}"
  [[routes.backends]]
  name = "a"
  upstream = "m"
  path = "/a"
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let (status, _, body) = get_json(&gw.url("/abc")).await;
    assert_eq!(status, 200, "{body}");
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["c", "b", "a"], "declaration order, not call order");
    assert_eq!(body["c"], json!({"end": true}));
}

#[tokio::test]
async fn a_cached_and_shaped_backend_still_feeds_its_dependents() {
    let mock = MockUpstream::builder()
        .route("/users/1", Reply::json(r#"{"name":"Ada","city":"Oslo"}"#))
        .route("*", Reply::json(r#"{"temp":21}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/u/{{id}}"
  [[routes.backends]]
  name = "user"
  upstream = "m"
  path = "/users/{{id}}"
  cache_ttl = "60s"
  omit = ["city"]
  [[routes.backends]]
  name = "weather"
  upstream = "m"
  path = "/weather/{{user.city}}"
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    for round in ["ok", "hit"] {
        let (status, headers, body) = get_json(&gw.url("/u/1")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body,
            json!({"user": {"name": "Ada"}, "weather": {"temp": 21}}),
            "{round}"
        );
        let timing = headers["server-timing"].to_str().unwrap();
        assert!(timing.contains("user;dur="), "{timing}");
        assert!(timing.contains(&format!("desc=\"{round}\"")), "{timing}");
    }
    assert_eq!(
        mock.hits("/users/1"),
        1,
        "the second answer came from the cache"
    );
    assert_eq!(
        targets(&mock, "/weather"),
        ["/weather/Oslo", "/weather/Oslo"]
    );
}

fn friends_route(mock: &MockUpstream, extra: &str) -> String {
    format!(
        r#"{}
[[routes]]
path = "/u/{{id}}"
errors_field = "_errors"
  [[routes.backends]]
  name = "user"
  upstream = "m"
  path = "/users/{{id}}"
  select = ["name"]
  [[routes.backends]]
  name = "friends"
  upstream = "m"
  path = "/friends/{{item}}"
  for_each = "user.friend_ids"
  default = []
{extra}
"#,
        upstream_toml("m", &mock.url())
    )
}

#[tokio::test]
async fn for_each_calls_once_per_element_in_order() {
    let mock = MockUpstream::builder()
        .route(
            "/users/1",
            Reply::json(r#"{"name":"Ada","friend_ids":[3,"a b",2]}"#),
        )
        .route("/friends/3", Reply::json(r#"{"n":3}"#).latency(MS(150)))
        .route("/friends/a%20b", Reply::json(r#"{"n":"ab"}"#))
        .route("/friends/2", Reply::json(r#"{"n":2}"#).latency(MS(50)))
        .route("/users/2", Reply::json(r#"{"name":"Bo","friend_ids":[]}"#))
        .start()
        .await;
    let gw = start_gateway(&friends_route(&mock, "  select = [\"n\"]")).await;
    let (status, headers, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-fanout-complete"], "true");
    // In element order, though /friends/3 answered last; shaped element by element.
    assert_eq!(
        body,
        json!({"user": {"name": "Ada"}, "friends": [{"n": 3}, {"n": "ab"}, {"n": 2}], "_errors": {}})
    );
    let (status, _, body) = get_json(&gw.url("/u/2")).await;
    assert_eq!(status, 200);
    assert_eq!(body["friends"], json!([]), "an empty array makes no calls");
    assert_eq!(targets(&mock, "/friends").len(), 3);
}

#[tokio::test]
async fn for_each_reads_fields_of_object_elements() {
    let mock = MockUpstream::builder()
        .route(
            "/users/1",
            Reply::json(r#"{"name":"Ada","friends":[{"id":"x"},{"id":"y"},{"no":"id"}]}"#),
        )
        .route("/friends/x", Reply::json(r#""X""#))
        .route("/friends/y", Reply::json(r#""Y""#))
        .start()
        .await;
    let toml = friends_route(&mock, "")
        .replace(
            "path = \"/friends/{item}\"",
            "path = \"/friends/{item.id}\"",
        )
        .replace(
            "for_each = \"user.friend_ids\"",
            "for_each = \"user.friends\"",
        );
    let gw = start_gateway(&toml).await;
    let (status, headers, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["friends"], json!(["X", "Y", null]));
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(
        common::without_duration(&body["_errors"]["friends"]),
        json!({"code": "missing_value", "message": "1 of 3 element calls failed and are null; the first: item.id is missing"})
    );
}

#[tokio::test(start_paused = true)]
async fn for_each_runs_at_most_concurrency_calls_at_once() {
    let ids: Vec<String> = (0..12).map(|i| i.to_string()).collect();
    let user = format!(r#"{{"name":"Ada","friend_ids":[{}]}}"#, ids.join(","));
    let users = MockUpstream::builder()
        .route("/users/1", Reply::json(user.clone()))
        .route(
            "/users/2",
            Reply::json(format!(
                r#"{{"friend_ids":[{}],"more":[{}]}}"#,
                ids.join(","),
                ids.join(",")
            )),
        )
        .start()
        .await;
    let limited = MockUpstream::builder()
        .route("*", Reply::json("1").latency(MS(100)))
        .start()
        .await;
    let default = MockUpstream::builder()
        .route("*", Reply::json("1").latency(MS(100)))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}{}{}
[[routes]]
path = "/u/{{id}}"
  [[routes.backends]]
  name = "user"
  upstream = "users"
  path = "/users/{{id}}"
  [[routes.backends]]
  name = "three"
  upstream = "limited"
  path = "/f/{{item}}"
  for_each = "user.friend_ids"
  concurrency = 3
  [[routes.backends]]
  name = "eight"
  upstream = "default"
  path = "/f/{{item}}"
  for_each = "user.friend_ids"
"#,
        upstream_toml("users", &users.url()),
        upstream_toml("limited", &limited.url()),
        upstream_toml("default", &default.url()),
    ))
    .await;
    let started = Instant::now();
    let (status, _, body) = get_json(&gw.url("/u/1")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["three"], json!(vec![1; 12]));
    assert_eq!(body["eight"], json!(vec![1; 12]));
    assert_eq!(limited.total_hits(), 12);
    assert_eq!(limited.peak_in_flight(), 3);
    assert_eq!(default.peak_in_flight(), 8, "the default concurrency");
    // 12 calls of 100 ms, 3 at a time: four rounds.
    assert!(elapsed >= MS(400), "took {elapsed:?}");
    assert!(elapsed < MS(1100), "took {elapsed:?}: not concurrent");
}

#[tokio::test]
async fn a_failed_element_is_null_or_fails_the_backend() {
    let mock = MockUpstream::builder()
        .route(
            "/users/1",
            Reply::json(r#"{"name":"Ada","friend_ids":[1,2,3]}"#),
        )
        .route("/friends/1", Reply::json("1"))
        .route("/friends/2", Reply::json("{}").status(500))
        .route("/friends/3", Reply::json("3"))
        .start()
        .await;
    let gw = start_gateway(&friends_route(&mock, "")).await;
    let (status, headers, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["friends"], json!([1, null, 3]));
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(body["_errors"]["friends"]["code"], "bad_status");

    let gw = start_gateway(&friends_route(&mock, "  for_each_fail = \"all\"")).await;
    let (status, headers, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["friends"], json!([]), "the backend's default");
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(body["_errors"]["friends"]["code"], "bad_status");
    let timing = headers["server-timing"].to_str().unwrap();
    assert!(
        timing.contains(r#"friends;dur="#) && timing.contains(r#"desc="error""#),
        "{timing}"
    );
}

#[tokio::test]
async fn for_each_refuses_more_than_max_items_and_non_arrays() {
    let mock = MockUpstream::builder()
        .route(
            "/users/1",
            Reply::json(r#"{"name":"Ada","friend_ids":[1,2,3,4]}"#),
        )
        .route(
            "/users/2",
            Reply::json(r#"{"name":"Bo","friend_ids":{"1":true}}"#),
        )
        .route("/users/3", Reply::json(r#"{"name":"Cy"}"#))
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = start_gateway(&friends_route(&mock, "  max_items = 3")).await;
    for (id, code, message) in [
        (
            "1",
            "too_many_items",
            "user.friend_ids has 4 elements, more than max_items = 3",
        ),
        ("2", "missing_value", "user.friend_ids is not an array"),
        ("3", "missing_value", "user.friend_ids is missing"),
    ] {
        let (status, _, body) = get_json(&gw.url(&format!("/u/{id}"))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["friends"], json!([]));
        assert_eq!(
            common::without_duration(&body["_errors"]["friends"]),
            json!({"code": code, "message": message}),
            "user {id}"
        );
    }
    assert!(
        targets(&mock, "/friends").is_empty(),
        "the upstream was spared"
    );
}

/// The array of a for_each backend is one answer, held to its upstream's `max_response`:
/// the element answer that passes it fails the backend, and no element call starts after.
#[tokio::test]
async fn for_each_answers_together_are_held_to_the_upstreams_max_response() {
    let element = format!(r#""{}""#, "x".repeat(398));
    let mock = MockUpstream::builder()
        .route(
            "/users/1",
            Reply::json(r#"{"name":"Ada","friend_ids":[1,2,3,4,5]}"#),
        )
        .route(
            "/users/2",
            Reply::json(r#"{"name":"Bo","friend_ids":[1,2]}"#),
        )
        .route("*", Reply::json(element.clone()))
        .start()
        .await;
    // 1 KiB holds two answers of 400 bytes, not three; one call at a time, so the
    // fourth and fifth are never asked.
    let toml = friends_route(&mock, "  concurrency = 1").replace(
        "timeout = \"2s\"\n",
        "timeout = \"2s\"\nmax_response = \"1KiB\"\n",
    );
    let gw = start_gateway(&toml).await;
    let (status, headers, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["friends"], json!([]), "the backend's default");
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(
        common::without_duration(&body["_errors"]["friends"]),
        json!({
            "code": "too_large",
            "message": "the answers of its elements pass max_response = 1024 bytes together"
        })
    );
    assert_eq!(
        targets(&mock, "/friends"),
        ["/friends/1", "/friends/2", "/friends/3"]
    );

    let (status, headers, body) = get_json(&gw.url("/u/2")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-fanout-complete"], "true", "{body}");
    let text = element.trim_matches('"');
    assert_eq!(body["friends"], json!([text, text]));
}

#[tokio::test]
async fn a_for_each_answer_can_be_read_by_another_backend() {
    let mock = MockUpstream::builder()
        .route("/users/1", Reply::json(r#"{"friend_ids":[5,6]}"#))
        .route("/friends/5", Reply::json(r#"{"team":"red","secret":1}"#))
        .route("/friends/6", Reply::json(r#"{"team":"blue","secret":2}"#))
        .route("*", Reply::json(r#""flag""#))
        .start()
        .await;
    let toml = friends_route(&mock, "  omit = [\"secret\"]")
        + r#"
  [[routes.backends]]
  name = "team"
  upstream = "m"
  path = "/teams/{friends.1.team}"
"#;
    let gw = start_gateway(&toml).await;
    let (status, _, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["friends"], json!([{"team": "red"}, {"team": "blue"}]));
    assert_eq!(body["team"], json!("flag"));
    assert_eq!(targets(&mock, "/teams"), ["/teams/blue"]);
}

/// The `desc` of `backend`'s `Server-Timing` entry.
fn timing_desc(headers: &reqwest::header::HeaderMap, backend: &str) -> String {
    let timing = headers["server-timing"].to_str().unwrap();
    let entry = timing
        .split(", ")
        .find(|e| e.starts_with(&format!("{backend};")))
        .unwrap_or_else(|| panic!("no {backend} in {timing}"));
    entry
        .rsplit("desc=")
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

#[tokio::test]
async fn for_each_elements_are_cached_one_by_one() {
    let mock = MockUpstream::builder()
        .route(
            "/users/1",
            Reply::json(r#"{"name":"Ada","friend_ids":[1,2]}"#),
        )
        .route(
            "/users/2",
            Reply::json(r#"{"name":"Bo","friend_ids":[2,3]}"#),
        )
        .route("/friends/1", Reply::json("1"))
        .route("/friends/2", Reply::json("2"))
        .route("/friends/3", Reply::json("{}").status(500))
        .start()
        .await;
    let gw = start_gateway(&friends_route(&mock, "  cache_ttl = \"60s\"")).await;
    let (_, headers, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(body["friends"], json!([1, 2]));
    assert_eq!(timing_desc(&headers, "friends"), "ok");
    let (_, headers, body) = get_json(&gw.url("/u/1")).await;
    assert_eq!(body["friends"], json!([1, 2]));
    assert_eq!(
        timing_desc(&headers, "friends"),
        "hit",
        "every element was cached"
    );
    assert_eq!((mock.hits("/friends/1"), mock.hits("/friends/2")), (1, 1));
    // Element 2 is shared with user 2's list: one call, not two. A failed element is
    // never a hit, so the backend is not one either.
    for _ in 0..2 {
        let (_, headers, body) = get_json(&gw.url("/u/2")).await;
        assert_eq!(body["friends"], json!([2, null]));
        assert_eq!(timing_desc(&headers, "friends"), "ok");
    }
    assert_eq!(mock.hits("/friends/2"), 1);
}
