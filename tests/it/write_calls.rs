//! Write calls over real sockets: backends with `method`, a JSON `body` template and
//! `headers` templates, reading the client's JSON body and earlier answers; injection
//! attempts; retries only for idempotent calls. The mock records each call's method,
//! body and headers.

use crate::common;

use common::{MockUpstream, Recorded, Reply, client, json_of, start_gateway, upstream_toml};
use serde_json::{Value, json};

/// The calls `mock` received at `path`, in arrival order.
fn calls(mock: &MockUpstream, path: &str) -> Vec<Recorded> {
    mock.requests()
        .into_iter()
        .filter(|r| r.target == path)
        .collect()
}

fn body_of(call: &Recorded) -> Value {
    serde_json::from_slice(&call.body)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&call.body)))
}

async fn post(url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = client()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, json_of(response).await)
}

/// A checkout: an order POST from the client's body, then a charge POST chained on
/// the order's answer, with header templates.
const CHECKOUT: &str = r#"
[[routes]]
path = "/checkout"
methods = ["POST"]
errors_field = "_errors"
  [[routes.backends]]
  name = "order"
  upstream = "m"
  path = "/orders"
  method = "POST"
  required = true
  body = { user_id = "{body.user.id}", items = "{body.items}", gift = "{body.gift}", note = "for {body.user.name} ({body.user.id})", source = "web", version = 2 }
  headers = { "x-user" = "{body.user.id}", "x-note" = "n-{body.user.name}" }
  [[routes.backends]]
  name = "charge"
  upstream = "m"
  path = "/charges"
  method = "PUT"
  body = { order_id = "{order.id}", amount = "{order.total}", memo = "order {order.id}", status = "{responses.order.status}", lines = ["{order.id}", 1] }
  headers = { "Idempotency-Key" = "charge-{order.id}", "x-order-url" = "{responses.order.headers.Location}" }
"#;

async fn checkout_mock() -> MockUpstream {
    MockUpstream::builder()
        .route(
            "/orders",
            Reply::json(r#"{"id": 981, "total": 12.5}"#)
                .status(201)
                .header("location", "/orders/981"),
        )
        .route("/charges", Reply::json(r#"{"ok": true}"#))
        .start()
        .await
}

#[tokio::test]
async fn a_write_call_sends_typed_values_and_text_and_a_chained_call_reads_its_answer() {
    let mock = checkout_mock().await;
    let gw = start_gateway(&format!("{}{CHECKOUT}", upstream_toml("m", &mock.url()))).await;
    let client_body =
        json!({"user": {"id": 42, "name": "Ann"}, "items": [{"sku": "a", "qty": 2}], "gift": null});
    let (status, body) = post(&gw.url("/checkout"), client_body.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"order": {"id": 981, "total": 12.5}, "charge": {"ok": true}, "_errors": {}})
    );

    let order = &calls(&mock, "/orders")[0];
    assert_eq!(order.method, "POST");
    assert_eq!(order.headers["content-type"], "application/json");
    assert_eq!(order.headers["x-user"], "42");
    assert_eq!(order.headers["x-note"], "n-Ann");
    assert_eq!(
        body_of(order),
        json!({"user_id": 42, "items": [{"sku": "a", "qty": 2}], "gift": null, "note": "for Ann (42)", "source": "web", "version": 2})
    );
    let charge = &calls(&mock, "/charges")[0];
    assert_eq!(charge.method, "PUT");
    assert_eq!(charge.headers["idempotency-key"], "charge-981");
    assert_eq!(charge.headers["x-order-url"], "/orders/981");
    assert_eq!(
        body_of(charge),
        json!({"order_id": 981, "amount": 12.5, "memo": "order 981", "status": 201, "lines": [981, 1]})
    );
    assert!(
        charge.arrived >= order.arrived,
        "the charge waited for the order"
    );
}

#[tokio::test]
async fn a_client_body_that_is_not_json_is_a_bad_request_and_calls_nothing() {
    let mock = checkout_mock().await;
    let gw = start_gateway(&format!("{}{CHECKOUT}", upstream_toml("m", &mock.url()))).await;
    for bad in ["{\"user\": ", "user=42", "[1,2", "\u{0}"] {
        let (status, body) = post(&gw.url("/checkout"), bad).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not JSON"),
            "{body}"
        );
    }
    // Deeper than 128 levels: refused before any value is built from it.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert_eq!(post(&gw.url("/checkout"), deep).await.0, 400);
    // An empty body is no body: the required order's values are missing, the client's
    // mistake.
    let (status, body) = post(&gw.url("/checkout"), "").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("body.user.id"),
        "{body}"
    );
    assert_eq!(mock.total_hits(), 0, "nothing was sent upstream");
}

#[tokio::test]
async fn a_get_route_with_body_templates_reading_nothing_from_the_client_works() {
    let mock = MockUpstream::builder()
        .route("/search", Reply::json(r#"{"hits": 3}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/find/{{kind}}"
  [[routes.backends]]
  name = "search"
  upstream = "m"
  path = "/search"
  method = "POST"
  idempotent = true
  body = {{ q = "{{query.q}}", kind = "{{kind}}", filters = [{{ field = "tag", values = ["a", "b"] }}], limit = 10 }}
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let response = client()
        .get(gw.url("/find/books?q=rust%20lang"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await, json!({"search": {"hits": 3}}));
    let call = &calls(&mock, "/search")[0];
    assert_eq!(call.method, "POST");
    assert_eq!(
        body_of(call),
        json!({"q": "rust lang", "kind": "books", "filters": [{"field": "tag", "values": ["a", "b"]}], "limit": 10})
    );
}

/// A route that copies the client's `v` into a body (typed and as text) and a header.
fn echo_route(mock: &MockUpstream) -> String {
    format!(
        r#"{}
[[routes]]
path = "/echo"
methods = ["POST"]
max_body = "4MiB"
errors_field = "_errors"
  [[routes.backends]]
  name = "typed"
  upstream = "m"
  path = "/typed"
  method = "POST"
  body = {{ v = "{{body.v}}", text = "<{{body.v}}>", admin = false }}
  [[routes.backends]]
  name = "header"
  upstream = "m"
  path = "/header"
  method = "POST"
  body = {{ ok = true }}
  headers = {{ "x-v" = "v={{body.v}}" }}
"#,
        upstream_toml("m", &mock.url())
    )
}

#[tokio::test]
async fn client_values_cannot_break_out_of_the_json_body() {
    let mock = MockUpstream::builder()
        .route("/typed", Reply::json("{}"))
        .route("/header", Reply::json("{}"))
        .start()
        .await;
    let gw = start_gateway(&echo_route(&mock)).await;
    let attempts = [
        "\", \"admin\": true, \"x\": \"".to_string(),
        "}, \"admin\": true}".to_string(),
        "a\\\"b".to_string(),
        "{body.v}".to_string(),
        "x".repeat(1024 * 1024),
    ];
    for (k, value) in attempts.iter().enumerate() {
        let (status, body) = post(&gw.url("/echo"), json!({ "v": value }).to_string()).await;
        assert_eq!(status, 200, "{body}");
        let sent = body_of(&calls(&mock, "/typed")[k]);
        assert_eq!(
            sent,
            json!({"v": value, "text": format!("<{value}>"), "admin": false})
        );
    }
}

#[tokio::test]
async fn cr_lf_in_a_header_value_fails_the_backend_and_sends_nothing() {
    let mock = MockUpstream::builder()
        .route("/typed", Reply::json("{}"))
        .route("/header", Reply::json("{}"))
        .start()
        .await;
    let gw = start_gateway(&echo_route(&mock)).await;
    let value = "a\r\nx-admin: true\r\n\r\nGET /evil HTTP/1.1";
    let (status, body) = post(&gw.url("/echo"), json!({ "v": value }).to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["_errors"]["header"]["code"], "invalid_value", "{body}");
    assert_eq!(body["header"], Value::Null);
    // The JSON body carries it escaped, as the exact string.
    assert_eq!(body_of(&calls(&mock, "/typed")[0])["v"], value);
    assert!(
        calls(&mock, "/header").is_empty(),
        "nothing reached the upstream"
    );
    assert!(mock.requests().iter().all(|r| r.target != "/evil"));
    // A header-safe value goes through.
    let (status, _) = post(&gw.url("/echo"), json!({ "v": "fine \"}" }).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(calls(&mock, "/header")[0].headers["x-v"], "v=fine \"}");
}

/// A route whose one required backend is a POST to an upstream with `retries = 2`.
fn retried_route(mock: &MockUpstream, idempotent: bool) -> String {
    format!(
        r#"[upstreams.m]
url = "{}"
retries = 2
[[routes]]
path = "/pay"
methods = ["POST"]
  [[routes.backends]]
  name = "pay"
  upstream = "m"
  path = "/pay"
  method = "POST"
  idempotent = {idempotent}
  required = true
  body = {{ amount = "{{body.amount}}" }}
"#,
        mock.url()
    )
}

#[tokio::test]
async fn a_write_call_is_retried_only_when_idempotent() {
    let flaky = || {
        Reply::sequence(vec![
            Reply::json("{}").status(503),
            Reply::json(r#"{"paid": true}"#),
        ])
    };
    let mock = MockUpstream::builder().route("/pay", flaky()).start().await;
    let gw = start_gateway(&retried_route(&mock, false)).await;
    let (status, body) = post(&gw.url("/pay"), r#"{"amount": 5}"#).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(mock.hits("/pay"), 1, "a POST is not sent twice");

    let mock = MockUpstream::builder()
        .route("/pay", Reply::reset())
        .start()
        .await;
    let gw = start_gateway(&retried_route(&mock, false)).await;
    assert_eq!(post(&gw.url("/pay"), r#"{"amount": 5}"#).await.0, 502);
    assert_eq!(mock.hits("/pay"), 1, "not after a reset either");

    let mock = MockUpstream::builder().route("/pay", flaky()).start().await;
    let gw = start_gateway(&retried_route(&mock, true)).await;
    let (status, body) = post(&gw.url("/pay"), r#"{"amount": 5}"#).await;
    assert_eq!((status, body), (200, json!({"pay": {"paid": true}})));
    let sent = calls(&mock, "/pay");
    assert_eq!(sent.len(), 2, "idempotent = true: retried");
    assert!(
        sent.iter().all(|c| body_of(c) == json!({"amount": 5})),
        "the same body each try"
    );
}

#[tokio::test]
async fn an_idempotent_write_call_is_cached_by_its_body() {
    let mock = MockUpstream::builder()
        .route("/quote", Reply::json(r#"{"price": 1}"#))
        .route("/log", Reply::json("{}"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/quote"
methods = ["POST"]
  [[routes.backends]]
  name = "quote"
  upstream = "m"
  path = "/quote"
  method = "POST"
  idempotent = true
  cache_ttl = "60s"
  body = {{ sku = "{{body.sku}}" }}
  [[routes.backends]]
  name = "log"
  upstream = "m"
  path = "/log"
  method = "POST"
  body = {{ sku = "{{body.sku}}" }}
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    for sku in ["a", "a", "b", "a"] {
        let (status, _) = post(&gw.url("/quote"), json!({ "sku": sku }).to_string()).await;
        assert_eq!(status, 200);
    }
    let quoted: Vec<Value> = calls(&mock, "/quote").iter().map(body_of).collect();
    assert_eq!(
        quoted,
        [json!({"sku": "a"}), json!({"sku": "b"})],
        "one call per body"
    );
    assert_eq!(
        mock.hits("/log"),
        4,
        "a write call that is not idempotent is never cached"
    );
}

#[tokio::test]
async fn a_for_each_write_call_sends_one_body_per_element() {
    let mock = MockUpstream::builder()
        .route(
            "/cart",
            Reply::json(r#"{"lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 3}]}"#),
        )
        .route("/reserve", Reply::json(r#"{"held": true}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/hold"
  [[routes.backends]]
  name = "cart"
  upstream = "m"
  path = "/cart"
  [[routes.backends]]
  name = "holds"
  upstream = "m"
  path = "/reserve"
  method = "POST"
  for_each = "cart.lines"
  concurrency = 1
  body = {{ sku = "{{item.sku}}", qty = "{{item.qty}}" }}
  headers = {{ "x-sku" = "{{item.sku}}" }}
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let response = client().get(gw.url("/hold")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        json_of(response).await["holds"],
        json!([{"held": true}, {"held": true}])
    );
    let sent: Vec<(String, Value)> = calls(&mock, "/reserve")
        .iter()
        .map(|c| (c.headers["x-sku"].to_str().unwrap().to_string(), body_of(c)))
        .collect();
    assert_eq!(
        sent,
        [
            ("a".to_string(), json!({"sku": "a", "qty": 1})),
            ("b".to_string(), json!({"sku": "b", "qty": 3}))
        ]
    );
}
