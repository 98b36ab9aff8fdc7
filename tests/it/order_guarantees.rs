//! The order and failure guarantees over real sockets: a backend that reads another's
//! answer starts only with it; after a required backend fails nothing more is started
//! (no charge after a failed order) and the calls in flight, reads and writes, are
//! cancelled (their connections closed), while the client gets the error at once.
//! A failing answer is held behind a `Gate` until the other calls are at the mock, so
//! what is "in flight" is so on any machine; times are on tokio's paused clock.

use crate::common;

use common::{Gate, MockUpstream, Reply, client, eventually, start_gateway, upstream_toml};
use serde_json::json;
use std::time::Duration;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// The order guarantees: `pay` reads `order`'s answer (its path), `notify` posts the
/// client's body after it, `audit` is independent and never answers.
fn ordered(mock: &MockUpstream) -> String {
    format!(
        r#"{}
[[routes]]
path = "/buy"
methods = ["POST"]
timeout = "30s"
  [[routes.backends]]
  name = "order"
  upstream = "m"
  path = "/orders"
  on_error = "fail"
  [[routes.backends]]
  name = "pay"
  upstream = "m"
  path = "/pay/{{order.id}}"
  [[routes.backends]]
  name = "notify"
  upstream = "m"
  path = "/notify/{{order.id}}"
  forward_body = true
  [[routes.backends]]
  name = "audit"
  upstream = "m"
  path = "/audit"
  timeout = "30s"
"#,
        upstream_toml("m", &mock.url())
    )
}

#[tokio::test(start_paused = true)]
async fn a_failed_required_backend_starts_nothing_more_and_cancels_what_runs() {
    // The order's failure is held until audit's call has reached the mock, so audit is
    // surely in flight when it comes.
    let gate = Gate::default();
    let mock = MockUpstream::builder()
        .route(
            "/orders",
            Reply::json(r#"{"error":"declined"}"#)
                .status(500)
                .gated(&gate),
        )
        .route("/pay/7", Reply::json("{}"))
        .route("/notify/7", Reply::json("{}"))
        .route("/audit", Reply::hang())
        .start()
        .await;
    let gw = start_gateway(&ordered(&mock)).await;
    let request = client()
        .post(gw.url("/buy"))
        .body(r#"{"card":"4242"}"#)
        .send();
    let answer = tokio::spawn(request);
    eventually("the order and audit calls at the mock", async || {
        let targets: Vec<String> = mock.requests().into_iter().map(|r| r.target).collect();
        targets.contains(&"/orders".to_string()) && targets.contains(&"/audit".to_string())
    })
    .await;
    gate.open();
    let response = answer.await.unwrap().unwrap();
    let elapsed = gate.opened().unwrap().elapsed();
    assert_eq!(response.status(), 502);
    let body = common::json_of(response).await;
    assert_eq!(body["error"]["backend"], "order", "{body}");
    // At once: when the order failed, not when audit's 30 s (virtual) ran out.
    assert!(
        elapsed < MS(1000),
        "answered {elapsed:?} after the order failed"
    );
    // Audit was in flight and is cancelled: its connection closed under it.
    eventually("the in-flight audit call to be cancelled", async || {
        mock.cancelled() == 1
    })
    .await;
    // Neither reader of the order was ever called: no charge after a failed order.
    let targets: Vec<String> = mock.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert_eq!(
        mock.hits("/pay/7") + mock.hits("/notify/7"),
        0,
        "{targets:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_successful_order_starts_its_readers_with_its_answer() {
    // The same route with the order answering: both readers run (the guarantee above
    // is about the failure, not a route that never calls them).
    let mock = MockUpstream::builder()
        .route("/orders", Reply::json(r#"{"id":7}"#).latency(MS(50)))
        .route("/pay/7", Reply::json(r#"{"paid":true}"#))
        .route("/notify/7", Reply::echo())
        .route("/audit", Reply::json("{}"))
        .start()
        .await;
    let gw = start_gateway(&ordered(&mock)).await;
    let response = client()
        .post(gw.url("/buy"))
        .body(r#"{"card":"4242"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = common::json_of(response).await;
    assert_eq!(body["pay"], json!({"paid": true}));
    assert_eq!(body["notify"], json!({"card": "4242"}));
    let order = mock
        .requests()
        .into_iter()
        .find(|r| r.target == "/orders")
        .unwrap();
    for reader in ["/pay/7", "/notify/7"] {
        let request = mock
            .requests()
            .into_iter()
            .find(|r| r.target == reader)
            .unwrap();
        assert!(request.arrived >= order.arrived + MS(50), "{reader}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_in_flight_write_call_is_cancelled_when_a_required_backend_fails() {
    // The write call goes through hyper's client (a request body): dropping it closes
    // its connection as the own client's does.
    let gate = Gate::default();
    let mock = MockUpstream::builder()
        .route("/orders", Reply::json("{}").status(500).gated(&gate))
        .route("/ledger", Reply::hang())
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{}
[[routes]]
path = "/buy"
methods = ["POST"]
timeout = "30s"
  [[routes.backends]]
  name = "order"
  upstream = "m"
  path = "/orders"
  required = true
  [[routes.backends]]
  name = "ledger"
  upstream = "m"
  path = "/ledger"
  forward_body = true
  timeout = "30s"
"#,
        upstream_toml("m", &mock.url())
    ))
    .await;
    let request = client().post(gw.url("/buy")).body(r#"{"amount":5}"#).send();
    let answer = tokio::spawn(request);
    eventually("the ledger's write call at the mock", async || {
        mock.requests()
            .iter()
            .any(|r| r.target == "/ledger" && r.method == "POST")
    })
    .await;
    gate.open();
    let response = answer.await.unwrap().unwrap();
    assert_eq!(response.status(), 502);
    let elapsed = gate.opened().unwrap().elapsed();
    assert!(
        elapsed < MS(1000),
        "answered {elapsed:?} after the order failed"
    );
    eventually("the in-flight write call to be cancelled", async || {
        mock.cancelled() == 1
    })
    .await;
}
