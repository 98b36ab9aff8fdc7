//! The formats: each one, escaping, hostile bytes.

use super::format::{clf_time, rfc3339};
use super::tests::{line, record};
use super::*;
use crate::metrics::Label;
use crate::trace::TraceId;
use http::{HeaderValue, Uri, Version};
use std::time::{Duration, UNIX_EPOCH};

#[test]
fn times_are_utc_calendar_dates() {
    for (millis, rfc, clf) in [
        (0, "1970-01-01T00:00:00.000Z", "01/Jan/1970:00:00:00 +0000"),
        (
            1_796_160_600_123,
            "2026-12-01T21:30:00.123Z",
            "01/Dec/2026:21:30:00 +0000",
        ),
        // A leap day, and the last millisecond of a year.
        (
            951_782_400_000,
            "2000-02-29T00:00:00.000Z",
            "29/Feb/2000:00:00:00 +0000",
        ),
        (
            1_767_225_599_999,
            "2025-12-31T23:59:59.999Z",
            "31/Dec/2025:23:59:59 +0000",
        ),
    ] {
        let time = UNIX_EPOCH + Duration::from_millis(millis);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        rfc3339(time, &mut a);
        clf_time(time, &mut b);
        assert_eq!(String::from_utf8(a).unwrap(), rfc);
        assert_eq!(String::from_utf8(b).unwrap(), clf);
    }
}

#[test]
fn json_lines_carry_every_field() {
    let text = line(LogFormat::Json, &record());
    assert!(text.ends_with("}\n"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "time": "2026-12-01T21:30:00.123Z",
            "request_id": "req-1",
            "client": "192.0.2.7",
            "method": "GET",
            "path": "/users/7?full=1",
            "route": "/users/{id}",
            "status": 200,
            "bytes": 1234,
            "duration_ms": 12.345,
            "backends": [
                {"name": "user", "code": "ok", "duration_ms": 5.001},
                {"name": "orders", "code": "timeout", "duration_ms": 250.0},
            ],
        })
    );
    // The number keeps its three decimals as written.
    assert!(text.contains("\"duration_ms\":250.000}"), "{text}");
}

#[test]
fn json_prints_a_trace_id_when_there_is_one_and_null_for_an_unknown_length() {
    let mut r = record();
    r.trace_id = TraceId::from_hex(b"4bf92f3577b34da6a3ce929d0e0e4736");
    r.bytes = None;
    r.backends = None;
    let v: serde_json::Value = serde_json::from_str(&line(LogFormat::Json, &r)).unwrap();
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(v["bytes"], serde_json::Value::Null);
    assert!(v.get("backends").is_none());
}

#[test]
fn text_lines_are_key_value_pairs() {
    assert_eq!(
        line(LogFormat::Text, &record()),
        "time=2026-12-01T21:30:00.123Z request_id=\"req-1\" trace_id=- client=192.0.2.7 \
         method=\"GET\" path=\"/users/7?full=1\" route=\"/users/{id}\" status=200 bytes=1234 \
         duration_ms=12.345 backends=\"user:ok:5.001 orders:timeout:250.000\"\n"
    );
}

#[test]
fn combined_lines_are_nginx_combined() {
    assert_eq!(
        line(LogFormat::Combined, &record()),
        "192.0.2.7 - - [01/Dec/2026:21:30:00 +0000] \"GET /users/7?full=1 HTTP/1.1\" 200 1234 \
         \"https://dash.example.com/\" \"curl/8.5.0\"\n"
    );
    let mut r = record();
    r.referer = None;
    r.user_agent = Some(HeaderValue::from_static(""));
    r.bytes = None;
    r.version = Version::HTTP_10;
    assert_eq!(
        line(LogFormat::Combined, &r),
        "192.0.2.7 - - [01/Dec/2026:21:30:00 +0000] \"GET /users/7?full=1 HTTP/1.0\" 200 - \"-\" \"-\"\n"
    );
}

/// A record whose client-chosen fields hold quotes, backslashes, tabs, newlines and
/// non-UTF-8 bytes (header values cannot hold other control bytes).
fn hostile() -> Record {
    let mut r = record();
    r.request_id = HeaderValue::from_bytes(b"id\"\\\t\xff\xfe\"}").unwrap();
    r.user_agent = Some(HeaderValue::from_bytes(b"x\" \"y\\\xc3\xa9").unwrap());
    r.referer = Some(HeaderValue::from_bytes(b"\ttab").unwrap());
    // The path's own bytes are what `Uri` lets through: no quotes or controls.
    r.uri = Uri::from_static("/a%22b?q={x}|^");
    r.route = Label::new("/r\n{\"x\":1}");
    r
}

#[test]
fn hostile_bytes_never_break_a_json_line() {
    let text = line(LogFormat::Json, &hostile());
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["request_id"], "id\"\\\t\u{fffd}\u{fffd}\"}");
    assert_eq!(v["path"], "/a%22b?q={x}|^");
    assert_eq!(v["route"], "/r\n{\"x\":1}");
}

#[test]
fn hostile_bytes_never_break_a_text_line() {
    let text = line(LogFormat::Text, &hostile());
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    assert!(
        text.contains("request_id=\"id\\\"\\\\\\t\u{fffd}\u{fffd}\\\"}\""),
        "{text}"
    );
    assert!(text.contains("route=\"/r\\n{\\\"x\\\":1}\""), "{text}");
}

#[test]
fn combined_escapes_as_nginx_does() {
    let text = line(LogFormat::Combined, &hostile());
    assert_eq!(text.matches('\n').count(), 1, "{text}");
    assert!(text.contains("\"GET /a%22b?q={x}|^ HTTP/1.1\""), "{text}");
    assert!(
        text.ends_with(" \"\\x09tab\" \"x\\x22 \\x22y\\x5C\\xC3\\xA9\"\n"),
        "{text}"
    );
}

#[test]
fn the_user_is_the_subject_in_every_format_and_escaped() {
    let mut r = record();
    r.user = Some("ann\"x".into());
    let json = line(LogFormat::Json, &r);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["user"], "ann\"x");
    assert!(line(LogFormat::Text, &r).contains(" user=\"ann\\\"x\" "));
    assert!(
        line(LogFormat::Combined, &r).starts_with("192.0.2.7 - ann\\x22x [01/Dec/2026"),
        "{}",
        line(LogFormat::Combined, &r)
    );
    let anonymous: serde_json::Value =
        serde_json::from_str(&line(LogFormat::Json, &record())).unwrap();
    assert!(anonymous.get("user").is_none(), "{anonymous}");
}

#[test]
fn query_credentials_are_redacted_and_the_rest_kept_as_sent() {
    let names: std::sync::Arc<[String]> = vec!["access_token".to_string()].into();
    let mut r = record();
    r.redact_query = Some(names);
    let cases = [
        ("/a?access_token=s3cr3t&b=1", "/a?access_token=REDACTED&b=1"),
        ("/a?b=1&access_token", "/a?b=1&access_token=REDACTED"),
        (
            "/a?%61ccess_token=s&access_token=t",
            "/a?%61ccess_token=REDACTED&access_token=REDACTED",
        ),
        ("/a?access_tokens=kept&b=2", "/a?access_tokens=kept&b=2"),
        ("/a?b=access_token=x", "/a?b=access_token=x"),
        ("/a", "/a"),
    ];
    for (sent, logged) in cases {
        r.uri = Uri::from_static(sent);
        let text = line(LogFormat::Json, &r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["path"], logged, "{sent}");
    }
    // Without credential parameters the target is written as it came, untouched.
    r.redact_query = None;
    r.uri = Uri::from_static("/a?access_token=s3cr3t");
    assert!(line(LogFormat::Json, &r).contains("access_token=s3cr3t"));
}

#[test]
fn the_client_certificate_subject_is_in_json_and_text_and_escaped() {
    let mut r = record();
    r.client_cert = Some("CN=a\\\"b,O=Example".into());
    let v: serde_json::Value = serde_json::from_str(&line(LogFormat::Json, &r)).unwrap();
    assert_eq!(v["client_cert"], "CN=a\\\"b,O=Example");
    assert!(
        line(LogFormat::Text, &r).contains(" client_cert=\"CN=a\\\\\\\"b,O=Example\" "),
        "{}",
        line(LogFormat::Text, &r)
    );
    let plain: serde_json::Value = serde_json::from_str(&line(LogFormat::Json, &record())).unwrap();
    assert!(plain.get("client_cert").is_none(), "{plain}");
    assert!(!line(LogFormat::Text, &record()).contains("client_cert"));
}

#[test]
fn a_canary_pick_is_in_json_and_text_and_combined_stays_nginx_s() {
    let mut r = record();
    r.upstream = Some(Label::new("v2"));
    if let Some(backends) = r.backends.as_mut() {
        backends[1].upstream = Some(Label::new("orders-\"b\""));
    }
    let v: serde_json::Value = serde_json::from_str(&line(LogFormat::Json, &r)).unwrap();
    assert_eq!(v["upstream"], "v2");
    assert_eq!(v["backends"][1]["upstream"], "orders-\"b\"");
    assert!(v["backends"][0].get("upstream").is_none(), "{v}");
    let text = line(LogFormat::Text, &r);
    assert!(
        text.contains(" route=\"/users/{id}\" upstream=\"v2\" status=200"),
        "{text}"
    );
    assert!(
        text.contains("backends=\"user:ok:5.001 orders:timeout:250.000:orders-\\\"b\\\"\""),
        "{text}"
    );
    assert_eq!(
        line(LogFormat::Combined, &r),
        line(LogFormat::Combined, &record())
    );
    let plain: serde_json::Value = serde_json::from_str(&line(LogFormat::Json, &record())).unwrap();
    assert!(plain.get("upstream").is_none(), "{plain}");
}
