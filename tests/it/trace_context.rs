//! W3C Trace Context over real sockets: a client's trace continued (or one started),
//! every upstream call (each backend, each `for_each` element, each retry and hedge, a
//! proxied request) a span of its own under the gateway's server span, `tracestate` and
//! `baggage` passed on, and the answer's `traceparent` naming the server span.

use crate::common::{self, MockUpstream, Recorded, Reply, start_gateway, upstream_toml};
use std::collections::HashSet;
use std::time::Duration;

const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A `traceparent` split into trace id, span id and flags, checked to be version 00.
fn parts(value: &str) -> (String, String, String) {
    let fields: Vec<&str> = value.split('-').collect();
    assert_eq!(fields.len(), 4, "{value}");
    assert_eq!(fields[0], "00", "{value}");
    assert_eq!(fields[1].len(), 32, "{value}");
    assert_eq!(fields[2].len(), 16, "{value}");
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(
        hex(fields[1]) && hex(fields[2]) && hex(fields[3]),
        "{value}"
    );
    (fields[1].into(), fields[2].into(), fields[3].into())
}

/// Each recorded request's `traceparent`, split; every request must carry exactly one.
fn sent(requests: &[Recorded]) -> Vec<(String, String, String)> {
    requests
        .iter()
        .map(|r| {
            let values: Vec<_> = r.headers.get_all("traceparent").iter().collect();
            assert_eq!(values.len(), 1, "{} carried {values:?}", r.target);
            parts(values[0].to_str().unwrap())
        })
        .collect()
}

fn aggregate_toml(up: &MockUpstream, extra_upstream: &str) -> String {
    format!(
        r#"{}{extra_upstream}
[[routes]]
path = "/agg"
forward_headers = ["traceparent", "tracestate"]
  [[routes.backends]]
  name = "user"
  upstream = "up"
  path = "/user"
  [[routes.backends]]
  name = "orders"
  upstream = "up"
  path = "/orders"
  [[routes.backends]]
  name = "friends"
  upstream = "up"
  path = "/friends/{{item}}"
  for_each = "user.friend_ids"
"#,
        upstream_toml("up", &up.url())
    )
}

async fn aggregate_mock() -> MockUpstream {
    MockUpstream::builder()
        .route("/user", Reply::json(r#"{"friend_ids":[1,2,3]}"#))
        .route("/orders", Reply::json("[]"))
        .route("*", Reply::json("{}"))
        .start()
        .await
}

#[tokio::test]
async fn each_backend_call_and_element_is_a_child_span_of_the_clients_trace() {
    let up = aggregate_mock().await;
    let gw = start_gateway(&aggregate_toml(&up, "")).await;
    let response = common::client()
        .get(gw.url("/agg"))
        .header("traceparent", CLIENT)
        .header("tracestate", "congo=t61rcWkgMzE")
        .header("baggage", "userId=alice,isProduction=false")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    let (trace, server_span, flags) = parts(&answer);
    assert_eq!(trace, CLIENT_TRACE, "the client's trace is continued");
    assert_ne!(server_span, CLIENT_SPAN, "the gateway's span is its own");
    assert_eq!(flags, "01");

    let requests = up.requests();
    assert_eq!(requests.len(), 5, "user, orders, three friends");
    let calls = sent(&requests);
    let mut spans = HashSet::new();
    for (r, (trace, span, flags)) in requests.iter().zip(&calls) {
        assert_eq!(trace, CLIENT_TRACE, "{}", r.target);
        assert_eq!(flags, "01", "the sampled flag is carried: {}", r.target);
        assert_ne!(
            span, CLIENT_SPAN,
            "the client's traceparent never goes on: {}",
            r.target
        );
        assert_ne!(span, &server_span, "{}", r.target);
        spans.insert(span.clone());
        assert_eq!(r.headers["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(r.headers["baggage"], "userId=alice,isProduction=false");
    }
    assert_eq!(
        spans.len(),
        5,
        "every call has a span id of its own: {calls:?}"
    );
}

#[tokio::test]
async fn without_a_valid_traceparent_a_trace_is_started() {
    let up = aggregate_mock().await;
    let gw = start_gateway(&aggregate_toml(&up, "")).await;
    for client in [
        None,
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
    ] {
        let mut request = common::client()
            .get(gw.url("/agg"))
            .header("tracestate", "congo=t61rcWkgMzE");
        if let Some(tp) = client {
            request = request.header("traceparent", tp);
        }
        let before = up.requests().len();
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "a bad traceparent is no reason to refuse"
        );
        let (trace, server_span, flags) =
            parts(response.headers()["traceparent"].to_str().unwrap());
        assert_ne!(
            trace, CLIENT_TRACE,
            "an invalid traceparent is not continued"
        );
        assert_ne!(trace, "0".repeat(32));
        assert_eq!(flags, "01", "a new trace is sampled");
        let requests = &up.requests()[before..];
        for (r, (t, span, _)) in requests.iter().zip(sent(requests)) {
            assert_eq!(t, trace, "{}", r.target);
            assert_ne!(span, server_span);
            assert!(
                r.headers.get("tracestate").is_none(),
                "a tracestate without its traceparent is dropped"
            );
        }
    }
}

#[tokio::test]
async fn each_retry_is_a_span_of_its_own() {
    let up = MockUpstream::builder()
        .route(
            "/data",
            Reply::sequence(vec![
                Reply::json("{}").status(503),
                Reply::json("{}").status(502),
                Reply::json("1"),
            ]),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        "{}retries = 2\n[[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"b\"\n\
         upstream = \"up\"\npath = \"/data\"\n",
        upstream_toml("up", &up.url())
    ))
    .await;
    let response = common::client()
        .get(gw.url("/r"))
        .header("traceparent", CLIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let calls = sent(&up.requests());
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|(t, _, f)| t == CLIENT_TRACE && f == "01"));
    let spans: HashSet<_> = calls.iter().map(|(_, s, _)| s).collect();
    assert_eq!(spans.len(), 3, "{calls:?}");
}

#[tokio::test(start_paused = true)]
async fn a_hedge_is_a_span_of_its_own() {
    let up = MockUpstream::builder()
        .route(
            "/data",
            Reply::sequence(vec![
                Reply::json("1").latency(Duration::from_millis(1000)),
                Reply::json("1"),
            ]),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        "{}hedge_after = \"50ms\"\n[[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"b\"\n\
         upstream = \"up\"\npath = \"/data\"\n",
        upstream_toml("up", &up.url())
    ))
    .await;
    let response = common::client()
        .get(gw.url("/r"))
        .header("traceparent", CLIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let calls = sent(&up.requests());
    assert_eq!(calls.len(), 2, "the first try and its hedge");
    assert_eq!(calls[0].0, calls[1].0);
    assert_ne!(calls[0].1, calls[1].1, "{calls:?}");
}

fn proxy_toml(up: &MockUpstream) -> String {
    format!(
        "{}[[routes]]\npath = \"/p/{{*rest}}\"\nmethods = [\"GET\", \"POST\"]\n\
         proxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n",
        upstream_toml("up", &up.url())
    )
}

#[tokio::test]
async fn a_proxied_request_carries_the_gateways_span_in_place_of_the_clients() {
    let up = MockUpstream::builder()
        .route(
            "*",
            Reply::echo().header(
                "traceparent",
                "00-11111111111111111111111111111111-2222222222222222-00",
            ),
        )
        .start()
        .await;
    let gw = start_gateway(&proxy_toml(&up)).await;
    // A bodiless GET goes through the own HTTP/1 client, an upload through hyper's.
    let get = common::client()
        .get(gw.url("/p/x"))
        .header("traceparent", CLIENT)
        .header("tracestate", "rojo=00f067aa0ba902b7")
        .header("baggage", "k=v");
    let post = common::client()
        .post(gw.url("/p/y"))
        .header("traceparent", CLIENT)
        .header("tracestate", "rojo=00f067aa0ba902b7")
        .header("baggage", "k=v")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            vec![
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"up")),
                Ok(bytes::Bytes::from_static(b"load")),
            ],
        )));
    for request in [get, post] {
        let before = up.requests().len();
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        let (trace, server_span, _) = parts(response.headers()["traceparent"].to_str().unwrap());
        assert_eq!(
            trace, CLIENT_TRACE,
            "the upstream's own traceparent is replaced"
        );
        let requests = &up.requests()[before..];
        assert_eq!(requests.len(), 1);
        let (t, span, flags) = sent(requests).remove(0);
        assert_eq!((t.as_str(), flags.as_str()), (CLIENT_TRACE, "01"));
        assert_ne!(span, CLIENT_SPAN, "the client's traceparent is replaced");
        assert_ne!(span, server_span, "the call is a child of the server span");
        assert_eq!(requests[0].headers["tracestate"], "rojo=00f067aa0ba902b7");
        assert_eq!(requests[0].headers["baggage"], "k=v");
    }
}
