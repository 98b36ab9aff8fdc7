//! `[tracing]` export over real sockets, to the suite's own OTLP receiver: the span tree
//! of a request (one server span, one client span per upstream try, parents right), the
//! three protocols, errors exported at ratio 0, and a collector that fails or hangs
//! never holding a request up.

use crate::common::otlp::{Kind, Mode, OtlpReceiver, ReceivedSpan, Status, children_of};
use crate::common::{self, MockUpstream, Reply, eventually, get_json, upstream_toml};
use fanout::config::{Env, compile};
use fanout::gateway::Gateway;
use fanout::trace::{SpanId, TraceId};
use std::collections::BTreeMap;
use std::sync::Arc;

const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn tracing_toml(endpoint: &str, extra: &str) -> String {
    format!("[tracing]\notlp_endpoint = \"{endpoint}\"\n{extra}\n")
}

fn route_toml(up: &MockUpstream) -> String {
    format!(
        r#"{}retries = 1
[[routes]]
path = "/agg"
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
[[routes]]
path = "/fail"
  [[routes.backends]]
  name = "broken"
  upstream = "up"
  path = "/broken"
"#,
        upstream_toml("up", &up.url())
    )
}

async fn mock() -> MockUpstream {
    MockUpstream::builder()
        .route("/user", Reply::json(r#"{"friend_ids":[1,2]}"#))
        .route(
            "/orders",
            Reply::sequence(vec![Reply::json("{}").status(503), Reply::json("[]")]),
        )
        .route("/broken", Reply::json("{}").status(500))
        .route("*", Reply::json("{}"))
        .start()
        .await
}

/// Serves `toml` and keeps the snapshot, to read its metrics.
async fn start(toml: &str) -> (common::TestGateway, Arc<Gateway>) {
    let compiled = compile(toml, &Env::default()).unwrap();
    let gateway = Arc::new(Gateway::build(compiled, None).unwrap());
    let live = Arc::new(arc_swap::ArcSwap::new(gateway.clone()));
    (common::serve(live).await, gateway)
}

fn span_id(traceparent: &str) -> SpanId {
    SpanId::from_hex(traceparent.split('-').nth(2).unwrap().as_bytes()).unwrap()
}

fn trace_id(traceparent: &str) -> TraceId {
    TraceId::from_hex(traceparent.split('-').nth(1).unwrap().as_bytes()).unwrap()
}

fn of_trace(spans: &[ReceivedSpan], trace: TraceId) -> Vec<ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.trace_id == trace)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_request_exports_one_server_span_and_one_client_span_per_try() {
    let receiver = OtlpReceiver::start().await;
    let up = mock().await;
    let toml = tracing_toml(&receiver.endpoint(), "service_name = \"edge\"") + &route_toml(&up);
    let (gw, gateway) = start(&toml).await;
    let response = common::client()
        .get(gw.url("/agg"))
        .header("traceparent", CLIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();

    // user, orders twice (a 503, then its retry), friends once per element.
    let spans = of_trace(&receiver.wait_for(6).await, trace_id(CLIENT));
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let servers: Vec<_> = spans.iter().filter(|s| s.kind == Kind::Server).collect();
    assert_eq!(servers.len(), 1);
    let server = servers[0];
    assert_eq!(
        server.span_id,
        span_id(&answer),
        "the answer names the server span"
    );
    assert_eq!(
        server.parent_span_id,
        Some(span_id(CLIENT)),
        "a child of the client's span"
    );
    assert_eq!(server.service_name.as_deref(), Some("edge"));
    assert_eq!(server.attribute("http.route"), Some("/agg"));
    assert_eq!(server.attribute("http.request.method"), Some("GET"));
    assert_eq!(server.attribute("url.path"), Some("/agg"));
    assert_eq!(server.attribute("http.response.status_code"), Some("200"));

    let children = children_of(&spans, server.span_id);
    assert_eq!(
        children.len(),
        5,
        "every client span is the server span's child"
    );
    let mut by_backend: BTreeMap<&str, Vec<&ReceivedSpan>> = BTreeMap::new();
    for c in &children {
        assert_eq!(c.kind, Kind::Client);
        assert_eq!(c.attribute("fanout.upstream"), Some("up"));
        by_backend
            .entry(c.attribute("fanout.backend").unwrap())
            .or_default()
            .push(c);
    }
    assert_eq!(by_backend["user"].len(), 1);
    assert_eq!(
        by_backend["friends"].len(),
        2,
        "one span per for_each element"
    );
    let mut paths: Vec<_> = by_backend["friends"]
        .iter()
        .map(|c| c.attribute("url.path").unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/friends/1", "/friends/2"]);
    let orders = &by_backend["orders"];
    assert_eq!(orders.len(), 2, "the retry is a span of its own");
    let mut outcomes: Vec<_> = orders
        .iter()
        .map(|c| {
            (
                c.attribute("http.response.status_code").unwrap(),
                c.attribute("fanout.outcome").unwrap(),
                c.status,
            )
        })
        .collect();
    outcomes.sort_by_key(|o| (o.0, o.1));
    assert_eq!(
        outcomes,
        [
            ("200", "ok", Status::Unset),
            ("503", "bad_status", Status::Error)
        ]
    );

    // The span ids exported are the ones the upstream was sent.
    let mut sent: Vec<SpanId> = up
        .requests()
        .iter()
        .map(|r| span_id(r.headers["traceparent"].to_str().unwrap()))
        .collect();
    let mut exported: Vec<SpanId> = children.iter().map(|c| c.span_id).collect();
    sent.sort_by_key(|s| s.0);
    exported.sort_by_key(|s| s.0);
    assert_eq!(sent, exported);

    // The sampled trace is the request latency's exemplar.
    let exposition = gateway.metrics.encode();
    assert!(
        exposition.contains("trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\""),
        "{exposition}"
    );
}

#[tokio::test]
async fn every_protocol_reaches_the_collector() {
    for protocol in ["http/protobuf", "http/json", "grpc"] {
        let receiver = OtlpReceiver::start().await;
        let up = mock().await;
        let extra = format!("protocol = \"{protocol}\"");
        let (gw, _) = start(&(tracing_toml(&receiver.endpoint(), &extra) + &route_toml(&up))).await;
        let (status, headers, _) = get_json(&gw.url("/agg")).await;
        assert_eq!(status, 200);
        let trace = trace_id(headers["traceparent"].to_str().unwrap());
        let spans = receiver.wait_for(6).await;
        assert_eq!(of_trace(&spans, trace).len(), 6, "{protocol}: {spans:#?}");
        let exports = receiver.exports();
        let expected = match protocol {
            "http/protobuf" => "application/x-protobuf",
            "http/json" => "application/json",
            _ => "application/grpc",
        };
        assert!(
            exports[0].content_type.starts_with(expected),
            "{protocol}: {:?}",
            exports[0].content_type
        );
    }
}

/// The binary as it ships, in a process of its own: nothing else in it has installed a
/// TLS crypto provider (in this test process other tests may have), and the HTTP
/// exporter's client needs one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exports_over_each_protocol() {
    for protocol in ["http/protobuf", "grpc"] {
        let receiver = OtlpReceiver::start().await;
        let up = mock().await;
        let extra = format!("protocol = \"{protocol}\"");
        let gw = common::GatewayProcess::start(
            &("[server]\nlisten = \"127.0.0.1:0\"\n".to_string()
                + &tracing_toml(&receiver.endpoint(), &extra)
                + &route_toml(&up)),
        );
        let (status, headers, _) = get_json(&gw.url("/agg")).await;
        assert_eq!(status, 200);
        let trace = trace_id(headers["traceparent"].to_str().unwrap());
        let spans = receiver.wait_for(6).await;
        assert_eq!(of_trace(&spans, trace).len(), 6, "{protocol}: {spans:#?}");
        assert!(
            !gw.logs().iter().any(|l| l.contains("panicked")),
            "{protocol}: {:#?}",
            gw.logs()
        );
    }
}

#[tokio::test]
async fn at_ratio_zero_only_failed_requests_are_exported() {
    let receiver = OtlpReceiver::start().await;
    let up = mock().await;
    let toml = tracing_toml(&receiver.endpoint(), "sample_ratio = 0.0") + &route_toml(&up);
    let (gw, _) = start(&toml).await;
    let (status, headers, _) = get_json(&gw.url("/agg")).await;
    assert_eq!(status, 200);
    let fine = headers["traceparent"].to_str().unwrap().to_string();
    assert!(fine.ends_with("-00"), "not sampled: {fine}");
    let (status, headers, _) = get_json(&gw.url("/fail")).await;
    assert_eq!(status, 502);
    let failed = headers["traceparent"].to_str().unwrap().to_string();
    assert!(
        failed.ends_with("-00"),
        "the decision is made at the start: {failed}"
    );

    let spans = receiver.wait_for(2).await;
    let exported = of_trace(&spans, trace_id(&failed));
    assert_eq!(
        exported.len(),
        2,
        "the failed request and its failed call: {spans:#?}"
    );
    let server = exported.iter().find(|s| s.kind == Kind::Server).unwrap();
    assert_eq!(server.status, Status::Error);
    assert_eq!(server.attribute("http.response.status_code"), Some("502"));
    let client = exported.iter().find(|s| s.kind == Kind::Client).unwrap();
    assert_eq!(client.attribute("fanout.outcome"), Some("bad_status"));
    assert_eq!(client.parent_span_id, Some(server.span_id));
    // Queued in order: the request before the failed one would have come with it.
    assert!(
        of_trace(&receiver.spans(), trace_id(&fine)).is_empty(),
        "sampled out"
    );
}

#[tokio::test]
async fn a_failing_collector_drops_spans_and_counts_them() {
    let receiver = OtlpReceiver::start().await;
    receiver.set_mode(Mode::Unavailable);
    let up = mock().await;
    let (gw, gateway) = start(&(tracing_toml(&receiver.endpoint(), "") + &route_toml(&up))).await;
    assert_eq!(get_json(&gw.url("/agg")).await.0, 200);
    eventually("the failed export's spans to be counted", async || {
        gateway.metrics.spans_dropped.get() >= 6
    })
    .await;
    assert!(receiver.spans().is_empty());
}

#[tokio::test]
async fn a_hung_collector_never_holds_a_request_up() {
    let receiver = OtlpReceiver::start().await;
    receiver.set_mode(Mode::Hang);
    let up = mock().await;
    let (gw, _) = start(&(tracing_toml(&receiver.endpoint(), "") + &route_toml(&up))).await;
    assert_eq!(get_json(&gw.url("/agg")).await.0, 200);
    // The exporter is now stuck in an export that never ends ...
    receiver.wait_for_exports(1).await;
    // ... and requests are answered all the same.
    for _ in 0..20 {
        assert_eq!(get_json(&gw.url("/agg")).await.0, 200);
    }
    assert_eq!(receiver.peak_in_flight(), 1, "one export at a time");
}

#[tokio::test]
async fn without_an_endpoint_no_exemplar_points_at_a_trace() {
    let up = mock().await;
    let (gw, gateway) = start(&route_toml(&up)).await;
    let (status, headers, _) = get_json(&gw.url("/agg")).await;
    assert_eq!(status, 200);
    assert!(headers["traceparent"].to_str().unwrap().ends_with("-01"));
    let exposition = gateway.metrics.encode();
    assert!(
        exposition.contains("fanout_request_duration_seconds_count{route=\"/agg\"} 1"),
        "{exposition}"
    );
    assert!(
        !exposition.contains("trace_id="),
        "no collector has this trace: {exposition}"
    );
}

#[tokio::test]
async fn a_reload_turns_export_on_and_moves_it() {
    let (first, second) = (OtlpReceiver::start().await, OtlpReceiver::start().await);
    let up = mock().await;
    let gw = common::start_reloadable(&route_toml(&up)).await;
    let (status, headers, _) = get_json(&gw.gateway.url("/agg")).await;
    assert_eq!(status, 200);
    assert!(
        headers.contains_key("traceparent"),
        "propagated without [tracing]"
    );

    gw.write(&(tracing_toml(&first.endpoint(), "") + &route_toml(&up)));
    gw.reloader.reload("test").unwrap();
    let (_, headers, _) = get_json(&gw.gateway.url("/agg")).await;
    let trace = trace_id(headers["traceparent"].to_str().unwrap());
    assert_eq!(of_trace(&first.wait_for(6).await, trace).len(), 6);

    gw.write(&(tracing_toml(&second.endpoint(), "service_name = \"moved\"") + &route_toml(&up)));
    gw.reloader.reload("test").unwrap();
    let (_, headers, _) = get_json(&gw.gateway.url("/agg")).await;
    let trace = trace_id(headers["traceparent"].to_str().unwrap());
    let spans = of_trace(&second.wait_for(6).await, trace);
    assert_eq!(spans.len(), 6);
    assert_eq!(spans[0].service_name.as_deref(), Some("moved"));
    assert!(
        of_trace(&first.spans(), trace).is_empty(),
        "the old exporter got none of it"
    );
}
