//! The `shadow` sample: the next version of the users service, which the demo's
//! mirrored route copies its calls to. It answers `GET /users/{id}` as `users` would
//! (with `"version": "v2"`), counts the copies it receives (`X-Fanout-Mirror: 1`), and
//! shows them at `GET /copies`: how many, and the last one's method, path and request
//! id, so the demo can show a copy arriving without a log to read.

use super::Reply;
use http::StatusCode;
use std::sync::Mutex;
use std::time::Duration;

/// What the shadow has received: the number of copies and the last one.
static COPIES: Mutex<(u64, Option<serde_json::Value>)> = Mutex::new((0, None));

/// The shadow's answer to `request`.
pub(super) fn answer(request: &http::request::Parts) -> Reply {
    let path = request.uri.path();
    if path == "/copies" {
        let (count, last) = COPIES.lock().expect("never poisoned").clone();
        let body = serde_json::json!({ "copies": count, "last": last });
        return (StatusCode::OK, Duration::ZERO, body.to_string()).into();
    }
    if request.headers.get("x-fanout-mirror").is_some() {
        let header = |name: &str| {
            request
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let last = serde_json::json!({
            "method": request.method.as_str(),
            "path": request.uri.path_and_query().map(|p| p.as_str()),
            "request_id": header("x-request-id"),
        });
        let mut copies = COPIES.lock().expect("never poisoned");
        copies.0 += 1;
        copies.1 = Some(last);
    }
    let id = path
        .strip_prefix("/users/")
        .and_then(|s| s.parse::<u64>().ok());
    match id {
        Some(id) => {
            let body = serde_json::json!({ "id": id, "version": "v2" });
            (StatusCode::OK, Duration::from_millis(15), body.to_string()).into()
        }
        None => (
            StatusCode::NOT_FOUND,
            Duration::ZERO,
            r#"{"error":"not found"}"#.to_string(),
        )
            .into(),
    }
}
