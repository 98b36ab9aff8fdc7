//! Aggregate routes over real sockets: concurrency, merging, every status rule, partial
//! answers, defaults, headers and template encoding. Tests with upstream timeouts or
//! latencies run on tokio's paused clock, so a 300 ms timeout is never hit by a slow
//! machine, only by a slow mock.

use crate::common;

use common::{MockUpstream, Reply, dead_url, get_json, start_gateway, upstream_toml};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

#[tokio::test(start_paused = true)]
async fn three_slow_backends_run_concurrently() {
    let slow = MockUpstream::builder()
        .route("/a", Reply::json(r#"{"v":"a"}"#).latency(MS(300)))
        .route("/b", Reply::json(r#"{"v":"b"}"#).latency(MS(300)))
        .route("/c", Reply::json(r#"{"v":"c"}"#).latency(MS(300)))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/dash"
  [[routes.backends]]
  name = "first"
  upstream = "s"
  path = "/a"
  [[routes.backends]]
  name = "second"
  upstream = "s"
  path = "/b"
  [[routes.backends]]
  name = "third"
  upstream = "s"
  path = "/c"
"#,
        upstream_toml("s", &slow.url())
    ))
    .await;
    let started = Instant::now();
    let (status, headers, body) = get_json(&gw.url("/dash")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"first": {"v": "a"}, "second": {"v": "b"}, "third": {"v": "c"}})
    );
    let keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["first", "second", "third"], "declaration order");
    assert_eq!(headers["x-fanout-complete"], "true");
    assert_eq!(headers["content-type"], "application/json");
    // Sequential calls would take 900 ms; concurrent ones about 300.
    assert!(
        elapsed < MS(750),
        "took {elapsed:?}: the calls did not run concurrently"
    );
    assert_eq!(slow.total_hits(), 3);
}

/// A route with a required `user` backend and an optional `extra` one, both on `up`.
async fn pair(
    user: Reply,
    extra: Reply,
    extra_settings: &str,
) -> (MockUpstream, common::TestGateway) {
    let up = MockUpstream::builder()
        .route("/user", user)
        .route("/extra", extra)
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"[upstreams.up]
url = "{}"
timeout = "300ms"
[[routes]]
path = "/r"
errors_field = "_errors"
  [[routes.backends]]
  name = "user"
  upstream = "up"
  path = "/user"
  required = true
  [[routes.backends]]
  name = "extra"
  upstream = "up"
  path = "/extra"
  {extra_settings}
"#,
        up.url()
    ))
    .await;
    (up, gw)
}

#[tokio::test(start_paused = true)]
async fn optional_failure_takes_its_default_and_is_reported() {
    let (_up, gw) = pair(
        Reply::json(r#"{"id":1}"#),
        Reply::json("{}").status(500),
        r#"default = { items = [] }"#,
    )
    .await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-fanout-complete"], "false");
    assert_eq!(
        common::without_durations(&body, "_errors"),
        json!({"user": {"id": 1}, "extra": {"items": []},
               "_errors": {"extra": {"code": "bad_status", "message": "answered 500 Internal Server Error", "status": 500}}})
    );
    let timing = headers["server-timing"].to_str().unwrap();
    assert!(timing.starts_with("user;dur="), "{timing}");
    assert!(timing.contains(r#"desc="ok", extra;dur="#), "{timing}");
    assert!(timing.ends_with(r#"desc="error""#), "{timing}");
}

#[tokio::test(start_paused = true)]
async fn optional_timeout_gives_null_default_and_timeout_desc() {
    let (_up, gw) = pair(Reply::json("1"), Reply::json("2").latency(MS(2000)), "").await;
    let started = Instant::now();
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert!(
        started.elapsed() < MS(1500),
        "the 300ms upstream timeout was not applied"
    );
    assert_eq!(status, 200);
    assert_eq!(body["extra"], json!(null));
    assert_eq!(
        common::without_duration(&body["_errors"]["extra"]),
        json!({"code": "timeout", "message": "no answer within 300ms"})
    );
    assert!(
        headers["server-timing"]
            .to_str()
            .unwrap()
            .ends_with(r#"desc="timeout""#)
    );
}

#[tokio::test(start_paused = true)]
async fn optional_garbage_and_reset_and_hang_are_failures() {
    for (reply, code) in [
        (Reply::raw("<html>oops</html>"), "invalid_json"),
        (Reply::raw(r#"{"a":1} trailing"#), "invalid_json"),
        (Reply::raw(""), "invalid_json"),
        (Reply::reset(), "request_failed"),
        (Reply::hang(), "timeout"),
    ] {
        let (_up, gw) = pair(Reply::json("1"), reply, "").await;
        let (status, _, body) = get_json(&gw.url("/r")).await;
        assert_eq!(status, 200);
        assert_eq!(body["_errors"]["extra"]["code"], code, "{body}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_answer_not_json_or_not_utf8_is_named_as_such() {
    for (reply, message) in [
        (
            Reply::raw(r#"{"a":1} trailing"#),
            "answer is not JSON: trailing characters at line 1 column 9",
        ),
        (
            Reply::raw("[1,]"),
            "answer is not JSON: expected value at line 1 column 4",
        ),
        // Spliced as it came, it would make the merged body invalid UTF-8.
        (
            Reply::raw(&b"{\"a\":\"\xff\xfe\"}"[..]),
            "answer is not JSON: its bytes are not UTF-8",
        ),
    ] {
        let (_up, gw) = pair(Reply::json("1"), reply, "").await;
        let (status, _, body) = get_json(&gw.url("/r")).await;
        assert_eq!(status, 200);
        assert_eq!(
            common::without_duration(&body["_errors"]["extra"]),
            json!({"code": "invalid_json", "message": message}),
            "{body}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn required_4xx_passes_through_with_its_body() {
    let (_up, gw) = pair(
        Reply::json(r#"{"error":"no such user"}"#).status(404),
        Reply::json("2"),
        "",
    )
    .await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"error": "no such user"}));
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test(start_paused = true)]
async fn required_timeout_is_504() {
    let (_up, gw) = pair(Reply::json("1").latency(MS(2000)), Reply::json("2"), "").await;
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert_eq!(body["error"]["backend"], "user");
}

#[tokio::test(start_paused = true)]
async fn required_5xx_garbage_and_reset_are_502() {
    for reply in [
        Reply::json("{}").status(503),
        Reply::raw("not json"),
        Reply::reset(),
    ] {
        let (_up, gw) = pair(reply, Reply::json("2"), "").await;
        let (status, _, body) = get_json(&gw.url("/r")).await;
        assert_eq!(status, 502);
        assert_eq!(body["error"]["code"], "bad_gateway");
        assert_eq!(body["error"]["backend"], "user");
    }
}

#[tokio::test]
async fn required_connection_refused_is_502() {
    let dead = dead_url().await;
    let gw = start_gateway(&format!(
        "{}[[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"user\"\nupstream = \"dead\"\npath = \"/u\"\nrequired = true\n",
        upstream_toml("dead", &dead)
    ))
    .await;
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "bad_gateway");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{body}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_required_failure_answers_without_waiting_for_slow_backends() {
    let (up, gw) = pair(
        Reply::json("{}").status(500),
        Reply::json("2").latency(MS(2000)),
        "",
    )
    .await;
    let started = Instant::now();
    let (status, _, _) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 502);
    assert!(
        started.elapsed() < MS(1000),
        "waited {:?} for a backend whose answer cannot matter",
        started.elapsed()
    );
    drop(up);
}

#[tokio::test(start_paused = true)]
async fn every_backend_failing_fails_the_route() {
    let up = MockUpstream::builder()
        .route("/slow", Reply::json("1").latency(MS(2000)))
        .route("/err", Reply::json("1").status(500))
        .start()
        .await;
    let route = |a: &str, b: &str| {
        format!(
            "[upstreams.up]\nurl = \"{}\"\ntimeout = \"100ms\"\n[[routes]]\npath = \"/r\"\n\
             [[routes.backends]]\nname = \"a\"\nupstream = \"up\"\npath = \"{a}\"\ndefault = 1\n\
             [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"{b}\"\ndefault = 2\n",
            up.url()
        )
    };
    let gw = start_gateway(&route("/slow", "/slow")).await;
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (504, Some("upstream_timeout"))
    );
    let gw = start_gateway(&route("/slow", "/err")).await;
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (502, Some("bad_gateway"))
    );
}

#[tokio::test(start_paused = true)]
async fn any_2xx_is_success_and_204_is_null() {
    let (_up, gw) = pair(
        Reply::json(r#"{"created":true}"#).status(201),
        Reply::raw("").status(204),
        "",
    )
    .await;
    let (status, headers, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-fanout-complete"], "true");
    assert_eq!(
        body,
        json!({"user": {"created": true}, "extra": null, "_errors": {}})
    );
}

#[tokio::test(start_paused = true)]
async fn answers_are_spliced_byte_for_byte() {
    let raw = r#"{ "price": 1.50, "n": 12345678901234567890 }"#;
    let (_up, gw) = pair(Reply::json(raw), Reply::json("[ 1 , 2 ]"), "").await;
    let text = common::get_text(&gw.url("/r")).await;
    assert_eq!(
        text,
        format!(r#"{{"user":{raw},"extra":[ 1 , 2 ],"_errors":{{}}}}"#)
    );
}

#[tokio::test]
async fn root_merge_spreads_fields_and_later_backends_win() {
    let up = MockUpstream::builder()
        .route("/profile", Reply::json(r#"{"name":"Ada","plan":"free"}"#))
        .route("/billing", Reply::json(r#"{"plan":"pro","due":0}"#))
        .route("/list", Reply::json("[1]"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "{}[[routes]]\npath = \"/r\"\n\
         [[routes.backends]]\nname = \"profile\"\nupstream = \"up\"\npath = \"/profile\"\nmerge = \"root\"\n\
         [[routes.backends]]\nname = \"billing\"\nupstream = \"up\"\npath = \"/billing\"\nmerge = \"root\"\n\
         [[routes.backends]]\nname = \"list\"\nupstream = \"up\"\npath = \"/list\"\nmerge = \"root\"\ndefault = {{ fallback = true }}\n",
        upstream_toml("up", &up.url())
    ))
    .await;
    let text = common::get_text(&gw.url("/r")).await;
    // `list` answered an array, which cannot be spread: it fails and its default is used.
    assert_eq!(
        text,
        r#"{"name":"Ada","plan":"pro","due":0,"fallback":true}"#
    );
}

#[tokio::test]
async fn oversized_answers_are_failures() {
    let big = format!("[{}1]", "1,".repeat(600));
    let up = MockUpstream::builder()
        .route("/big", Reply::json(big))
        .route("/small", Reply::json("1"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\nmax_response = \"1KiB\"\n[[routes]]\npath = \"/r\"\nerrors_field = \"e\"\n\
         [[routes.backends]]\nname = \"ok\"\nupstream = \"up\"\npath = \"/big\"\ndefault = 0\n\
         [[routes.backends]]\nname = \"x\"\nupstream = \"up\"\npath = \"/small\"\n",
        up.url()
    ))
    .await;
    let (_, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(body["e"]["ok"]["code"], "too_large");
}

#[tokio::test(start_paused = true)]
async fn the_route_deadline_clips_backend_timeouts() {
    let up = MockUpstream::builder()
        .route("/slow", Reply::json("1").latency(MS(3000)))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\ntimeout = \"10s\"\n[[routes]]\npath = \"/r\"\ntimeout = \"200ms\"\n\
         [[routes.backends]]\nname = \"s\"\nupstream = \"up\"\npath = \"/slow\"\ntimeout = \"5s\"\nrequired = true\n",
        up.url()
    ))
    .await;
    let started = Instant::now();
    let (status, _, _) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 504);
    assert!(started.elapsed() < MS(1500), "took {:?}", started.elapsed());
}

/// A route whose one backend echoes what it was sent, for template tests.
async fn template_route(path: &str, required: bool) -> (MockUpstream, common::TestGateway) {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "{}[[routes]]\npath = \"/a/{{id}}\"\nforward_headers = [\"authorization\"]\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"{path}\"\nrequired = {required}\n\
         [[routes.backends]]\nname = \"other\"\nupstream = \"up\"\npath = \"/other\"\n",
        upstream_toml("up", &up.url())
    ))
    .await;
    (up, gw)
}

fn targets(up: &MockUpstream) -> Vec<String> {
    let mut t: Vec<String> = up
        .requests()
        .into_iter()
        .map(|r| r.target)
        .filter(|t| t != "/other")
        .collect();
    t.sort();
    t
}

#[tokio::test]
async fn a_value_can_never_change_the_upstream_path() {
    let (up, gw) = template_route("/users/{id}", true).await;
    // An encoded slash never gets as far as a template: the path is refused.
    for path in ["/a/..%2Fadmin", "/a/x%2F..%2F..%2Fadmin"] {
        let (status, _, body) = get_json(&gw.url(path)).await;
        assert_eq!(
            (status.as_u16(), &body["error"]["code"]),
            (400, &json!("bad_request")),
            "{path}"
        );
    }
    for path in ["/a/%3Fq=1", "/a/..%3F"] {
        let (status, _, _) = get_json(&gw.url(path)).await;
        assert_eq!(status, 200, "{path}");
    }
    assert_eq!(targets(&up), ["/users/%3Fq%3D1", "/users/..%3F"]);
    assert_eq!(up.hits("/admin"), 0);
    // A bare dot segment would be normalized away by the URL parser: refused instead.
    // Sent raw, since an HTTP client would normalize it before sending.
    for path in ["/a/%2e%2e", "/a/.."] {
        let answer = common::raw_request(
            gw.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains(r#""code":"bad_request""#), "{answer}");
    }
    assert_eq!(up.hits("/"), 0);
}

#[tokio::test]
async fn query_and_header_values_are_encoded() {
    let (up, gw) = template_route("/s?q={query.q}&who={header.x-user}&id={id}", true).await;
    let response = common::client()
        .get(gw.url("/a/7?q=a%26b%3Dc%23d+e"))
        .header("x-user", "ann/bob")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(targets(&up), ["/s?q=a%26b%3Dc%23d%20e&who=ann%2Fbob&id=7"]);
}

#[tokio::test]
async fn a_missing_value_fails_a_required_backend_as_400_and_an_optional_one_with_its_default() {
    let (up, gw) = template_route("/s?limit={query.limit}", true).await;
    let (status, _, body) = get_json(&gw.url("/a/1")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    assert_eq!(body["error"]["message"], "query parameter limit is missing");
    assert_eq!(body["error"]["backend"], "b");
    assert_eq!(
        up.total_hits(),
        0,
        "no call may start for a request that cannot be answered"
    );

    let (up, gw) = template_route("/s?limit={query.limit}", false).await;
    let (status, headers, body) = get_json(&gw.url("/a/1")).await;
    assert_eq!(status, 200);
    assert_eq!(body["b"], json!(null));
    assert!(
        headers["server-timing"]
            .to_str()
            .unwrap()
            .starts_with(r#"b;dur=0.0;desc="default""#)
    );
    assert_eq!(up.hits("/s"), 0);
}

#[tokio::test]
async fn only_listed_headers_and_the_request_id_reach_backends() {
    let (up, gw) = template_route("/users/{id}", true).await;
    let response = common::client()
        .get(gw.url("/a/1"))
        .header("authorization", "Bearer t0k")
        .header("cookie", "session=secret")
        .send()
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        id.len(),
        36,
        "a UUID is generated when the client sends none"
    );
    let requests = up.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.headers["authorization"], "Bearer t0k");
        assert!(
            r.headers.get("cookie").is_none(),
            "cookie was not in forward_headers"
        );
        assert_eq!(r.headers["x-request-id"], id.as_str());
    }
    let response = common::client()
        .get(gw.url("/a/1"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    assert_eq!(
        up.requests().last().unwrap().headers["x-request-id"],
        "abc-123"
    );
}

#[tokio::test]
async fn upstream_headers_are_added_to_every_call() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}/base/\"\nheaders = {{ authorization = \"Bearer service\" }}\n\
         [[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/x\"\n",
        up.url()
    ))
    .await;
    let (status, _, _) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200);
    let r = &up.requests()[0];
    assert_eq!(r.target, "/base/x", "the URL's path prefixes every call");
    assert_eq!(r.headers["authorization"], "Bearer service");
}

async fn body_route(max_body: &str) -> (MockUpstream, common::TestGateway) {
    let up = MockUpstream::builder()
        .route(
            "/echo",
            Reply::echo().header("content-type", "application/json"),
        )
        .route("/plain", Reply::json(r#"{"plain":true}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[server]\nmax_body = \"{max_body}\"\n{}[[routes]]\npath = \"/r\"\nmethods = [\"POST\", \"PUT\"]\n\
         [[routes.backends]]\nname = \"echo\"\nupstream = \"up\"\npath = \"/echo\"\nforward_body = true\n\
         [[routes.backends]]\nname = \"plain\"\nupstream = \"up\"\npath = \"/plain\"\n",
        upstream_toml("up", &up.url())
    ))
    .await;
    (up, gw)
}

#[tokio::test]
async fn forward_body_sends_the_clients_method_and_body() {
    let (up, gw) = body_route("1KiB").await;
    let response = common::client()
        .post(gw.url("/r"))
        .header("content-type", "application/json")
        .body(r#"{"q":"search"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"echo":{"q":"search"},"plain":{"plain":true}}"#
    );
    let mut requests = up.requests();
    requests.sort_by(|a, b| a.target.cmp(&b.target));
    assert_eq!(
        (requests[0].method.as_str(), requests[0].target.as_str()),
        ("POST", "/echo")
    );
    assert_eq!(requests[0].headers["content-type"], "application/json");
    assert_eq!(
        (requests[1].method.as_str(), &requests[1].body[..]),
        ("GET", &b""[..]),
        "only forward_body backends get it"
    );
}

#[tokio::test]
async fn bodies_over_max_body_are_413() {
    let (up, gw) = body_route("1KiB").await;
    let declared = common::client()
        .put(gw.url("/r"))
        .body(vec![b'1'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status(), 413);
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'1'; 512]))),
    );
    let streamed = common::client()
        .put(gw.url("/r"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
    let body = common::json_of(streamed).await;
    assert_eq!(body["error"]["code"], "body_too_large");
    assert_eq!(
        up.total_hits(),
        0,
        "no backend is called for a refused request"
    );
}

#[tokio::test]
async fn routes_without_forward_body_still_refuse_declared_oversized_bodies() {
    let up = MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "{}[[routes]]\npath = \"/r\"\nmethods = [\"POST\"]\nmax_body = \"100\"\n\
         [[routes.backends]]\nname = \"a\"\nupstream = \"up\"\npath = \"/a\"\n",
        upstream_toml("up", &up.url())
    ))
    .await;
    let big = common::client()
        .post(gw.url("/r"))
        .body(vec![0u8; 101])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let small = common::client()
        .post(gw.url("/r"))
        .body(vec![0u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
}

#[tokio::test]
async fn answers_are_shaped_extract_select_omit_rename_and_merged() {
    let up = MockUpstream::builder()
        .route("/user", Reply::json(r#"{"id":7,"name":"Ada","email":"ada@x","address":{"city":"Oslo","zip":"0150"}}"#))
        .route(
            "/orders",
            Reply::json(r#"{"data":{"items":[{"id":1,"total":9.5,"internal":"x"},{"id":2,"total":3,"internal":"y"}]}}"#),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        "{}[[routes]]\npath = \"/r\"\nerrors_field = \"_errors\"\n\
         [[routes.backends]]\nname = \"user\"\nupstream = \"up\"\npath = \"/user\"\nmerge = \"root\"\n\
         omit = [\"email\", \"address.zip\"]\nrename = {{ name = \"full_name\" }}\n\
         [[routes.backends]]\nname = \"orders\"\nupstream = \"up\"\npath = \"/orders\"\n\
         extract = \"data.items\"\nselect = [\"id\", \"total\"]\n\
         [[routes.backends]]\nname = \"first\"\nupstream = \"up\"\npath = \"/orders\"\nextract = \"data.items.0.id\"\n\
         [[routes.backends]]\nname = \"odd\"\nupstream = \"up\"\npath = \"/orders\"\nextract = \"data.nothing\"\ndefault = []\n",
        upstream_toml("up", &up.url())
    ))
    .await;
    let text = common::get_text(&gw.url("/r")).await;
    assert_eq!(
        common::strip_durations(&text),
        r#"{"id":7,"full_name":"Ada","address":{"city":"Oslo"},"orders":[{"id":1,"total":9.5},{"id":2,"total":3}],"first":1,"odd":[],"_errors":{"odd":{"code":"missing_field","message":"cannot shape the answer: the answer has no \"data.nothing\""}}}"#
    );
}
