//! Every error's status, code and JSON body, and the module errors it wraps.

use super::*;
use crate::template::{Problem, RenderError};
use http_body_util::BodyExt;
use std::time::Duration;

async fn answer(e: GatewayError) -> (StatusCode, serde_json::Value, http::HeaderMap) {
    let r = e.into_response();
    let (parts, body) = r.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (parts.status, json, parts.headers)
}

fn backend(error: BackendError) -> GatewayError {
    GatewayError::Backend {
        backend: "user".into(),
        error,
    }
}

#[tokio::test]
async fn not_found() {
    let (s, j, _) = answer(GatewayError::RouteNotFound).await;
    assert_eq!(s, 404);
    assert_eq!(j["error"]["code"], "route_not_found");
    assert_eq!(j["error"]["message"], "no route matches this path");
}

#[tokio::test]
async fn method_not_allowed_carries_allow() {
    let (s, j, h) = answer(GatewayError::MethodNotAllowed {
        allow: HeaderValue::from_static("GET, HEAD"),
    })
    .await;
    assert_eq!(s, 405);
    assert_eq!(j["error"]["code"], "method_not_allowed");
    assert_eq!(h["allow"], "GET, HEAD");
}

#[tokio::test]
async fn bad_request() {
    let (s, j, _) = answer(GatewayError::BadRequest {
        backend: Some("orders".into()),
        message: "query parameter limit is missing".into(),
    })
    .await;
    assert_eq!(s, 400);
    assert_eq!(j["error"]["code"], "bad_request");
    assert_eq!(j["error"]["backend"], "orders");
}

#[tokio::test]
async fn rate_limited_is_429_with_retry_after() {
    let (s, j, h) = answer(GatewayError::RateLimited {
        retry_after_secs: 3,
        limit: 20,
    })
    .await;
    assert_eq!(s, 429);
    assert_eq!(j["error"]["code"], "rate_limited");
    assert_eq!(h["retry-after"], "3");
    assert_eq!(h["ratelimit-limit"], "20");
    assert_eq!(h["ratelimit-remaining"], "0");
    assert_eq!(h["ratelimit-reset"], "3");
}

#[tokio::test]
async fn body_too_large_is_413() {
    let (s, j, _) = answer(GatewayError::Body(BodyError::TooLarge { limit: 1024 })).await;
    assert_eq!(s, 413);
    assert_eq!(j["error"]["code"], "body_too_large");
    assert_eq!(
        j["error"]["message"],
        "the request body is larger than 1024 bytes"
    );
}

#[tokio::test]
async fn unreadable_body_is_400() {
    let (s, j, _) = answer(GatewayError::Body(BodyError::Read(
        "connection reset".into(),
    )))
    .await;
    assert_eq!(s, 400);
    assert_eq!(j["error"]["code"], "bad_request");
    assert_eq!(
        j["error"]["message"],
        "could not read the request body: connection reset"
    );
    assert!(j["error"].get("backend").is_none());
}

#[test]
fn module_errors_are_the_source() {
    use std::error::Error as _;
    let e = GatewayError::Upstream {
        upstream: "files".into(),
        error: CallError::Connect("refused".into()),
    };
    assert!(e.source().unwrap().is::<CallError>());
    let e = GatewayError::from(BodyError::TooLarge { limit: 1 });
    assert!(e.source().unwrap().is::<BodyError>());
}

#[tokio::test]
async fn required_backend_timeout_is_504() {
    let (s, j, _) = answer(backend(BackendError::Call(CallError::Timeout(
        Duration::from_millis(5),
    ))))
    .await;
    assert_eq!(s, 504);
    assert_eq!(j["error"]["code"], "upstream_timeout");
    assert_eq!(j["error"]["backend"], "user");
}

#[tokio::test]
async fn required_backend_4xx_passes_through() {
    let (s, j, h) = answer(backend(BackendError::Call(CallError::Status {
        status: StatusCode::NOT_FOUND,
        content_type: Some(HeaderValue::from_static("application/json")),
        body: bytes::Bytes::from_static(br#"{"msg":"no such user"}"#),
    })))
    .await;
    assert_eq!(s, 404);
    assert_eq!(j, serde_json::json!({"msg": "no such user"}));
    assert_eq!(h["content-type"], "application/json");
}

#[tokio::test]
async fn required_backend_other_failures_are_502() {
    for e in [
        BackendError::Call(CallError::Status {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            content_type: None,
            body: bytes::Bytes::new(),
        }),
        BackendError::Call(CallError::Connect("refused".into())),
        BackendError::InvalidJson("expected value".into()),
        BackendError::Render(RenderError {
            what: "user.address.city".into(),
            problem: Problem::Missing,
            from_request: false,
        }),
        BackendError::TooManyItems {
            array: "user.friend_ids".into(),
            count: 101,
            max: 100,
        },
    ] {
        let (s, j, _) = answer(backend(e)).await;
        assert_eq!(s, 502);
        assert_eq!(j["error"]["code"], "bad_gateway");
    }
}

#[tokio::test]
async fn all_failed() {
    let (s, j, _) = answer(GatewayError::AllBackendsFailed { timed_out: true }).await;
    assert_eq!(
        (s, j["error"]["code"].as_str()),
        (StatusCode::GATEWAY_TIMEOUT, Some("upstream_timeout"))
    );
    let (s, j, _) = answer(GatewayError::AllBackendsFailed { timed_out: false }).await;
    assert_eq!(
        (s, j["error"]["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("bad_gateway"))
    );
}

#[tokio::test]
async fn refused_calls_are_503_with_their_code() {
    for (e, code) in [
        (
            CallError::Overloaded("no free call slot within 50ms".into()),
            "upstream_overloaded",
        ),
        (CallError::CircuitOpen, "circuit_open"),
        (CallError::Unhealthy, "upstream_unhealthy"),
    ] {
        let (s, j, _) = answer(backend(BackendError::Call(e.clone()))).await;
        assert_eq!((s.as_u16(), j["error"]["code"].as_str()), (503, Some(code)));
        let (s, j, _) = answer(GatewayError::Upstream {
            upstream: "files".into(),
            error: e,
        })
        .await;
        assert_eq!((s.as_u16(), j["error"]["code"].as_str()), (503, Some(code)));
    }
}

#[tokio::test]
async fn proxy_upstream_errors() {
    let up = |error| GatewayError::Upstream {
        upstream: "files".into(),
        error,
    };
    let (s, _, _) = answer(up(CallError::Timeout(Duration::from_secs(1)))).await;
    assert_eq!(s, 504);
    let (s, j, _) = answer(up(CallError::Connect("refused".into()))).await;
    assert_eq!(s, 502);
    assert_eq!(j["error"]["code"], "bad_gateway");
}

#[tokio::test]
async fn internal_hides_details() {
    let (s, j, _) = answer(GatewayError::Internal("secret detail".into())).await;
    assert_eq!(s, 500);
    assert_eq!(j["error"]["code"], "internal");
    assert_eq!(j["error"]["message"], "internal error");
}

#[tokio::test]
async fn aggregate_errors_answer_as_the_gateway_errors_they_were() {
    use crate::aggregate::AggregateError as A;
    let missing = RenderError {
        what: "query parameter limit".into(),
        problem: Problem::Missing,
        from_request: true,
    };
    let timeout = BackendError::Call(CallError::Timeout(Duration::from_millis(5)));
    for (e, want) in [
        (
            A::Body(BodyError::TooLarge { limit: 8 }),
            (413, "body_too_large", None),
        ),
        (
            A::Body(BodyError::Read("reset".into())),
            (400, "bad_request", None),
        ),
        (A::BodyDeadline, (400, "bad_request", None)),
        (
            A::Request {
                backend: "orders".into(),
                error: missing,
            },
            (400, "bad_request", Some("orders")),
        ),
        (
            A::RequiredBackend {
                backend: "user".into(),
                error: timeout,
            },
            (504, "upstream_timeout", Some("user")),
        ),
        (
            A::AllBackendsFailed { timed_out: false },
            (502, "bad_gateway", None),
        ),
    ] {
        let message = e.to_string();
        let (s, j, _) = answer(GatewayError::from(e)).await;
        let got = (
            s.as_u16(),
            j["error"]["code"].as_str().unwrap(),
            j["error"]["backend"].as_str(),
        );
        assert_eq!(
            (got, j["error"]["message"].as_str()),
            (want, Some(message.as_str()))
        );
    }
}

#[test]
fn a_401_carries_an_rfc_6750_challenge_with_the_description_escaped() {
    let response = GatewayError::Unauthorized {
        description: "bad \"kid\" \\ here\n".into(),
    }
    .into_response();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\", error_description=\"bad \\\"kid\\\" \\\\ here \""
    );
    let forbidden = GatewayError::Forbidden.into_response();
    assert_eq!(forbidden.status(), 403);
    assert!(forbidden.headers().get(header::WWW_AUTHENTICATE).is_none());
    let unavailable = GatewayError::AuthUnavailable.into_response();
    assert_eq!(unavailable.status(), 503);
    assert_eq!(unavailable.headers()[header::RETRY_AFTER], "10");
}
