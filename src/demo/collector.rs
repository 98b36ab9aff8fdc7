//! The demo's sample trace collector: it takes OTLP/HTTP JSON exports on `POST
//! /v1/traces` and answers `GET /v1/traces?trace_id=…` with the spans it holds, flattened
//! to what a reader looks for (ids, parent, name, kind, attributes), so `fanout demo`
//! shows a request's span tree with curl alone. It keeps the latest [`KEPT`] spans; it
//! is a window for the demo, not a store: production points `[tracing]` at Jaeger, Tempo
//! or an OpenTelemetry Collector.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Spans held at most; older ones make room.
pub const KEPT: usize = 1000;

/// The largest export read: larger ones are refused with 413.
const MAX_EXPORT: usize = 4 << 20;

/// Serves the sample collector on `listener` until the process ends.
pub async fn serve_collector(listener: TcpListener) {
    let spans = Arc::new(Mutex::new(VecDeque::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let spans = spans.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let spans = spans.clone();
            async move { Ok::<_, std::convert::Infallible>(answer(request, &spans).await) }
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    spans: &Mutex<VecDeque<Value>>,
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/v1/traces") => {
            let json = request
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
            if !json {
                return reply(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    json!({"error": "the demo collector reads OTLP/HTTP JSON: set [tracing] protocol = \"http/json\""}),
                );
            }
            let body = match Limited::new(request.into_body(), MAX_EXPORT)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        json!({"error": "an export larger than 4 MiB"}),
                    );
                }
            };
            let Ok(export) = serde_json::from_slice::<Value>(&body) else {
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "the export is not JSON"}),
                );
            };
            let received = flatten(&export);
            let mut kept = spans.lock().expect("never poisoned");
            for span in received {
                if kept.len() == KEPT {
                    kept.pop_front();
                }
                kept.push_back(span);
            }
            // OTLP's ExportTraceServiceResponse: empty means every span was taken.
            reply(StatusCode::OK, json!({}))
        }
        (&Method::GET, "/v1/traces") => {
            let wanted = request.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "trace_id")
                    .map(|(_, v)| v.into_owned())
            });
            let kept = spans.lock().expect("never poisoned");
            let list: Vec<Value> = kept
                .iter()
                .filter(|s| wanted.as_deref().is_none_or(|w| s["trace_id"] == w))
                .cloned()
                .collect();
            reply(StatusCode::OK, Value::Array(list))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            json!({"error": "POST /v1/traces (OTLP/HTTP JSON) or GET /v1/traces?trace_id=…"}),
        ),
    }
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The spans of an OTLP JSON export (`resourceSpans[].scopeSpans[].spans[]`), each as
/// `{trace_id, span_id, parent_span_id, name, kind, duration_ms, attributes}` with the
/// attributes as one object. Anything missing is left out, never an error.
pub fn flatten(export: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let list = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    for resource in list(export, "resourceSpans") {
        for scope in list(&resource, "scopeSpans") {
            for span in list(&scope, "spans") {
                let mut attributes = Map::new();
                for kv in list(&span, "attributes") {
                    if let Some(key) = kv["key"].as_str() {
                        attributes.insert(key.to_owned(), any_value(&kv["value"]));
                    }
                }
                let nanos = |key: &str| -> Option<u64> {
                    match &span[key] {
                        Value::String(s) => s.parse().ok(),
                        v => v.as_u64(),
                    }
                };
                let duration_ms = match (nanos("startTimeUnixNano"), nanos("endTimeUnixNano")) {
                    (Some(start), Some(end)) => json!(end.saturating_sub(start) as f64 / 1e6),
                    _ => Value::Null,
                };
                let parent = span["parentSpanId"].as_str().filter(|p| !p.is_empty());
                out.push(json!({
                    "trace_id": span["traceId"],
                    "span_id": span["spanId"],
                    "parent_span_id": parent,
                    "name": span["name"],
                    "kind": match span["kind"].as_u64() {
                        Some(2) => "server",
                        Some(3) => "client",
                        Some(1) => "internal",
                        _ => "other",
                    },
                    "duration_ms": duration_ms,
                    "attributes": attributes,
                }));
            }
        }
    }
    out
}

/// An OTLP `AnyValue` as plain JSON: `{"stringValue": "x"}` is `"x"`, an `intValue`
/// (a string in OTLP JSON) is a number.
fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = v.get("intValue") {
        return match i {
            Value::String(s) => s.parse::<i64>().map_or(i.clone(), Value::from),
            _ => i.clone(),
        };
    }
    for key in ["boolValue", "doubleValue"] {
        if let Some(x) = v.get(key) {
            return x.clone();
        }
    }
    v.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_flattens_to_its_spans() {
        let export = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
            {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "00f067aa0ba902b7",
             "parentSpanId": "", "name": "GET /agg", "kind": 2,
             "startTimeUnixNano": "1000000", "endTimeUnixNano": "3500000",
             "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}},
                            {"key": "fanout.route", "value": {"stringValue": "/agg"}}]},
            {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736", "spanId": "a1b2c3d4e5f60718",
             "parentSpanId": "00f067aa0ba902b7", "name": "user", "kind": 3}
        ]}]}]});
        let spans = flatten(&export);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0]["kind"], "server");
        assert_eq!(spans[0]["parent_span_id"], Value::Null);
        assert_eq!(spans[0]["duration_ms"], 2.5);
        assert_eq!(spans[0]["attributes"]["http.response.status_code"], 200);
        assert_eq!(spans[0]["attributes"]["fanout.route"], "/agg");
        assert_eq!(spans[1]["kind"], "client");
        assert_eq!(spans[1]["parent_span_id"], "00f067aa0ba902b7");
        assert_eq!(spans[1]["duration_ms"], Value::Null);
    }

    #[test]
    fn a_malformed_export_flattens_to_nothing() {
        for export in [
            json!(null),
            json!([]),
            json!({"resourceSpans": 3}),
            json!({"resourceSpans": [{"scopeSpans": [{"spans": [7]}]}]}),
        ] {
            let spans = flatten(&export);
            assert!(spans.iter().all(|s| s["trace_id"].is_null()), "{export}");
        }
    }
}
