//! The test suite's OTLP receiver (`common::otlp`) against the real exporter: spans
//! recorded with the OpenTelemetry SDK and sent by `opentelemetry-otlp` over HTTP, in
//! binary protobuf and in JSON, plain and gzipped, come out of the receiver exactly as
//! they went in (ids, parent, kind, times, status, attributes, events, service name).
//! Also what the receiver does when told to play a collector that is down or hung, and
//! with exports it cannot decode.

use crate::common::otlp::{Kind, Mode, OtlpReceiver, ReceivedSpan, Status, children_of};
use fanout::trace::{SpanId, TraceId};
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_otlp::{
    Compression, Protocol, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// Keeps the spans the SDK finishes, to be sent by the OTLP exporter afterwards.
#[derive(Clone, Debug, Default)]
struct Finished(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Finished {
    async fn export(&self, batch: Vec<SpanData>) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.lock().unwrap().extend(batch);
        Ok(())
    }
}

/// A server span with two client children (one failed, with a retry event), recorded by
/// the SDK: what the gateway's export of one aggregate request looks like.
fn recorded_spans() -> Vec<SpanData> {
    let finished = Finished::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(finished.clone())
        .build();
    let tracer = provider.tracer("fanout-test");
    let server = tracer
        .span_builder("GET /api/dashboard")
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.route", "/api/dashboard"),
            KeyValue::new("http.response.status_code", 502_i64),
            KeyValue::new("fanout.partial", true),
            KeyValue::new("fanout.ratio", 0.5),
        ])
        .start(&tracer);
    let cx = Context::current_with_span(server);
    let mut ok = tracer
        .span_builder("backend user")
        .with_kind(SpanKind::Client)
        .with_attributes([KeyValue::new("fanout.backend", "user")])
        .start_with_context(&tracer, &cx);
    ok.set_status(opentelemetry::trace::Status::Ok);
    ok.end();
    let mut failed = tracer
        .span_builder("backend orders")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("fanout.backend", "orders"),
            KeyValue::new("fanout.outcome", "timeout"),
        ])
        .start_with_context(&tracer, &cx);
    failed.add_event("retry", vec![KeyValue::new("attempt", 2_i64)]);
    failed.set_status(opentelemetry::trace::Status::error("upstream timed out"));
    failed.end();
    cx.span().end();
    let spans = finished.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 3);
    spans
}

/// How the exporter reaches the receiver.
#[derive(Clone, Copy)]
enum Transport {
    Http(Protocol, Option<Compression>),
    Grpc,
}

/// Sends `spans` with the OTLP exporter, as `service.name = "fanout-test"`, once (no
/// retries).
async fn export(
    receiver: &OtlpReceiver,
    transport: Transport,
    spans: Vec<SpanData>,
) -> opentelemetry_sdk::error::OTelSdkResult {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let mut exporter = match transport {
        Transport::Http(protocol, compression) => {
            let mut http = builder
                .with_http()
                .with_http_client(HyperClient::with_default_connector(
                    Duration::from_secs(30),
                    None,
                ))
                .with_retry_policy(RetryPolicy::disabled())
                .with_protocol(protocol)
                .with_endpoint(receiver.traces_url());
            if let Some(compression) = compression {
                http = http.with_compression(compression);
            }
            http.build().unwrap()
        }
        Transport::Grpc => builder
            .with_tonic()
            .with_retry_policy(RetryPolicy::disabled())
            .with_timeout(Duration::from_secs(30))
            .with_endpoint(receiver.endpoint())
            .build()
            .unwrap(),
    };
    exporter.set_resource(
        &Resource::builder_empty()
            .with_service_name("fanout-test")
            .build(),
    );
    exporter.export(spans).await
}

fn nanos(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Asserts the receiver's spans are exactly the SDK's, field by field.
fn assert_same(sent: &[SpanData], received: &[ReceivedSpan]) {
    assert_eq!(received.len(), sent.len(), "{received:#?}");
    for span in sent {
        let id = SpanId(span.span_context.span_id().to_bytes());
        let got = received
            .iter()
            .find(|r| r.span_id == id)
            .unwrap_or_else(|| panic!("span {:?} not received: {received:#?}", span.name));
        assert_eq!(
            got.trace_id,
            TraceId(span.span_context.trace_id().to_bytes())
        );
        let parent = span.parent_span_id.to_bytes();
        assert_eq!(
            got.parent_span_id,
            (parent != [0; 8]).then_some(SpanId(parent))
        );
        assert_eq!(got.name, span.name);
        assert_eq!(got.start_unix_nano, nanos(span.start_time));
        assert_eq!(got.end_unix_nano, nanos(span.end_time));
        assert_eq!(got.service_name.as_deref(), Some("fanout-test"));
        assert_eq!(got.scope, "fanout-test");
    }
    let server = received
        .iter()
        .find(|s| s.name == "GET /api/dashboard")
        .unwrap();
    assert_eq!(server.kind, Kind::Server);
    assert_eq!(server.parent_span_id, None);
    assert_eq!(server.status, Status::Unset);
    assert_eq!(server.attribute("http.route"), Some("/api/dashboard"));
    assert_eq!(server.attribute("http.response.status_code"), Some("502"));
    assert_eq!(server.attribute("fanout.partial"), Some("true"));
    assert_eq!(server.attribute("fanout.ratio"), Some("0.5"));

    let children = children_of(received, server.span_id);
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"backend user") && names.contains(&"backend orders"));
    for child in &children {
        assert_eq!(child.kind, Kind::Client);
        assert_eq!(child.trace_id, server.trace_id);
    }
    let user = children.iter().find(|s| s.name == "backend user").unwrap();
    assert_eq!(user.status, Status::Ok);
    assert_eq!(user.attribute("fanout.backend"), Some("user"));
    assert!(user.events.is_empty());
    let orders = children
        .iter()
        .find(|s| s.name == "backend orders")
        .unwrap();
    assert_eq!(orders.status, Status::Error);
    assert_eq!(orders.status_message, "upstream timed out");
    assert_eq!(orders.attribute("fanout.outcome"), Some("timeout"));
    assert_eq!(orders.events.len(), 1);
    assert_eq!(orders.events[0].name, "retry");
    assert_eq!(
        orders.events[0]
            .attributes
            .get("attempt")
            .map(String::as_str),
        Some("2")
    );
}

async fn round_trip(transport: Transport, content_type: &str) {
    let receiver = OtlpReceiver::start().await;
    let sent = recorded_spans();
    export(&receiver, transport, sent.clone()).await.unwrap();
    let received = receiver.wait_for(sent.len()).await;
    assert_same(&sent, &received);
    let exports = receiver.exports();
    assert_eq!(exports.len(), 1);
    assert_eq!(exports[0].content_type, content_type);
    let gzip = matches!(transport, Transport::Http(_, Some(_)));
    assert_eq!(
        exports[0].content_encoding.as_deref(),
        gzip.then_some("gzip")
    );
    assert_eq!(exports[0].spans, sent.len());
}

#[tokio::test]
async fn http_protobuf_export_is_decoded_exactly() {
    round_trip(
        Transport::Http(Protocol::HttpBinary, None),
        "application/x-protobuf",
    )
    .await;
}

#[tokio::test]
async fn http_json_export_is_decoded_exactly() {
    round_trip(
        Transport::Http(Protocol::HttpJson, None),
        "application/json",
    )
    .await;
}

#[tokio::test]
async fn gzipped_exports_are_decoded_exactly() {
    let gzip = Some(Compression::Gzip);
    round_trip(
        Transport::Http(Protocol::HttpBinary, gzip),
        "application/x-protobuf",
    )
    .await;
    round_trip(
        Transport::Http(Protocol::HttpJson, gzip),
        "application/json",
    )
    .await;
}

#[tokio::test]
async fn grpc_export_is_decoded_exactly() {
    round_trip(Transport::Grpc, "application/grpc").await;
}

#[tokio::test]
async fn an_unavailable_collector_refuses_exports_and_keeps_nothing() {
    for transport in [Transport::Http(Protocol::HttpBinary, None), Transport::Grpc] {
        let receiver = OtlpReceiver::start().await;
        receiver.set_mode(Mode::Unavailable);
        let result = export(&receiver, transport, recorded_spans()).await;
        assert!(result.is_err(), "a 503 is an export error: {result:?}");
        assert_eq!(receiver.exports().len(), 1);
        assert!(receiver.spans().is_empty());

        // Back up: the next export is kept.
        receiver.set_mode(Mode::Accept);
        let sent = recorded_spans();
        export(&receiver, transport, sent.clone()).await.unwrap();
        assert_same(&sent, &receiver.wait_for(3).await);
    }
}

#[tokio::test]
async fn a_hung_collector_reads_the_export_and_never_answers() {
    let receiver = OtlpReceiver::start().await;
    receiver.set_mode(Mode::Hang);
    let url = receiver.traces_url();
    let post = tokio::spawn(async move {
        crate::common::client()
            .post(url)
            .header("content-type", "application/x-protobuf")
            .body(Vec::<u8>::new())
            .send()
            .await
    });
    receiver.wait_for_exports(1).await;
    // The export was recorded before the receiver would have answered: an answer now
    // would have to come from a receiver that does not hang.
    tokio::task::yield_now().await;
    assert!(!post.is_finished(), "the hung receiver answered");
    assert!(receiver.spans().is_empty());
    assert_eq!(receiver.peak_in_flight(), 1);

    // A second export while the first hangs: both in flight at once.
    let url = receiver.traces_url();
    let second = tokio::spawn(async move {
        crate::common::client()
            .post(url)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
    });
    receiver.wait_for_exports(2).await;
    assert_eq!(receiver.peak_in_flight(), 2);
    post.abort();
    second.abort();
}

#[tokio::test]
async fn undecodable_exports_are_refused_with_the_reason() {
    let receiver = OtlpReceiver::start().await;
    let client = crate::common::client();
    let cases: [(&str, &[u8], &str); 3] = [
        ("application/x-protobuf", b"\xff\xff\xff", "protobuf"),
        ("application/json", b"{\"resourceSpans\": 7}", "JSON"),
        ("text/plain", b"spans", "content type"),
    ];
    for (content_type, body, reason) in cases {
        let response = client
            .post(receiver.traces_url())
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let text = response.text().await.unwrap();
        assert!(text.contains(reason), "{content_type}: {text}");
    }
    // A span id of the wrong length is refused, not stored.
    let bad_id = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa","name":"x"}]}]}]}"#;
    let response = client
        .post(receiver.traces_url())
        .header("content-type", "application/json")
        .body(bad_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("invalid span id"));
    assert_eq!(receiver.rejections().len(), 4);
    assert!(receiver.spans().is_empty());
    let response = client.get(receiver.traces_url()).send().await.unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn hand_written_otlp_json_is_decoded() {
    // The OTLP JSON encoding as the spec writes it, not as this exporter does: ints as
    // numbers, a kind and a parent, no resource.
    let receiver = OtlpReceiver::start().await;
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[
          {"key":"service.name","value":{"stringValue":"edge"}}]},
        "scopeSpans":[{"scope":{"name":"manual"},"spans":[{
          "traceId":"4bf92f3577b34da6a3ce929d0e0e4736",
          "spanId":"00f067aa0ba902b7",
          "parentSpanId":"1111111111111111",
          "name":"GET /x","kind":3,
          "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000000001000,
          "attributes":[{"key":"http.response.status_code","value":{"intValue":200}},
                        {"key":"retry","value":{"intValue":"1"}}],
          "status":{"code":2,"message":"boom"}}]}]}]}"#;
    let response = crate::common::client()
        .post(receiver.traces_url())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spans = receiver.wait_for(1).await;
    let span = &spans[0];
    assert_eq!(
        span.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(span.span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(
        span.parent_span_id.map(|p| p.to_string()).as_deref(),
        Some("1111111111111111")
    );
    assert_eq!(span.kind, Kind::Client);
    assert_eq!(span.status, Status::Error);
    assert_eq!(span.end_unix_nano - span.start_unix_nano, 1000);
    assert_eq!(span.attribute("http.response.status_code"), Some("200"));
    assert_eq!(span.attribute("retry"), Some("1"));
    assert_eq!(span.service_name.as_deref(), Some("edge"));
    assert_eq!(span.scope, "manual");
}
