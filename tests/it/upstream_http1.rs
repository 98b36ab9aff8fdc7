//! The upstream side of the wire (the HTTP/1.1 client): keep-alive reuse, pooled
//! connections the upstream closed, chunked and length-less answers, interim 1xx, and
//! malformed answers, each against a raw TCP upstream through an aggregate route.

use crate::common;

use common::{Close, MockUpstream, RawUpstream, Reply, get_json, start_gateway};
use serde_json::{Value, json};
use std::time::Duration;

const OK_N1: &str = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"n\":1}";

/// A route merging `a`, from the raw upstream, with `ok`, from a well-behaved one, so
/// that a failure of `a` shows in `_errors` rather than failing the whole route.
async fn gateway(up: &RawUpstream, extra: &str) -> (MockUpstream, common::TestGateway) {
    let ok = MockUpstream::builder()
        .route("/ok", Reply::json("true"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"[upstreams.raw]
url = "{}"
timeout = "2s"
{extra}
[upstreams.ok]
url = "{}"
[[routes]]
path = "/r"
errors_field = "_errors"
  [[routes.backends]]
  name = "a"
  upstream = "raw"
  path = "/a"
  [[routes.backends]]
  name = "ok"
  upstream = "ok"
  path = "/ok"
"#,
        up.url(),
        ok.url()
    ))
    .await;
    (ok, gw)
}

/// The answer of `a`, which must have succeeded.
async fn answer(gw: &common::TestGateway) -> Value {
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["_errors"], json!({}), "{body}");
    body["a"].clone()
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    let up = RawUpstream::start(vec![OK_N1], 100, Close::AfterAnswer).await;
    let (_ok, gw) = gateway(&up, "").await;
    for _ in 0..5 {
        assert_eq!(answer(&gw).await, json!({"n": 1}));
    }
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced() {
    // Each connection carries one answer, then the upstream closes it unannounced.
    let up = RawUpstream::start(vec![OK_N1], 1, Close::AfterAnswer).await;
    let (_ok, gw) = gateway(&up, "").await;
    for pause in [0, 0, 100, 0, 100] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        assert_eq!(answer(&gw).await, json!({"n": 1}));
    }
    assert_eq!(up.requests(), 5);
    assert_eq!(up.connections(), 5);
}

#[tokio::test]
async fn a_get_on_a_connection_closed_as_it_was_sent_goes_out_again() {
    // The upstream reads the second request on each connection and closes unanswered.
    let up = RawUpstream::start(vec![OK_N1], 1, Close::OnNextRequest).await;
    let (_ok, gw) = gateway(&up, "").await;
    for _ in 0..3 {
        assert_eq!(answer(&gw).await, json!({"n": 1}));
    }
    assert_eq!(up.requests(), 3);
    assert_eq!(up.connections(), 3);
}

#[tokio::test]
async fn a_chunked_answer_split_across_writes_is_joined() {
    let up = RawUpstream::start(
        vec![
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"n\"",
            "\r\n3\r\n:42\r\n1\r\n}\r\n",
            "0\r\n\r\n",
        ],
        100,
        Close::AfterAnswer,
    )
    .await;
    let (_ok, gw) = gateway(&up, "").await;
    assert_eq!(answer(&gw).await, json!({"n": 42}));
    assert_eq!(answer(&gw).await, json!({"n": 42}));
    assert_eq!(up.connections(), 1, "a chunked answer keeps the connection");
}

#[tokio::test]
async fn an_interim_100_continue_is_skipped() {
    let up = RawUpstream::start(
        vec![
            "HTTP/1.1 100 Continue\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        ],
        100,
        Close::AfterAnswer,
    )
    .await;
    let (_ok, gw) = gateway(&up, "").await;
    assert_eq!(answer(&gw).await, json!({}));
}

#[tokio::test]
async fn an_answer_without_length_runs_to_the_close() {
    let up = RawUpstream::start(
        vec!["HTTP/1.1 200 OK\r\n\r\n[1,", "2]"],
        1,
        Close::AfterAnswer,
    )
    .await;
    let (_ok, gw) = gateway(&up, "").await;
    assert_eq!(answer(&gw).await, json!([1, 2]));
    assert_eq!(answer(&gw).await, json!([1, 2]));
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn connection_close_and_http_1_0_answers_are_not_reused() {
    for script in [
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n1",
        "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n1",
    ] {
        // The upstream would keep the connection open: the gateway is the one to close.
        let up = RawUpstream::start(vec![script], 100, Close::AfterAnswer).await;
        let (_ok, gw) = gateway(&up, "").await;
        assert_eq!(answer(&gw).await, json!(1));
        assert_eq!(answer(&gw).await, json!(1));
        assert_eq!(up.connections(), 2, "{script}");
    }
}

#[tokio::test]
async fn bytes_nobody_asked_for_retire_the_connection() {
    let up = RawUpstream::start(
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1HTTP/1.1"],
        100,
        Close::AfterAnswer,
    )
    .await;
    let (_ok, gw) = gateway(&up, "").await;
    assert_eq!(answer(&gw).await, json!(1));
    assert_eq!(answer(&gw).await, json!(1));
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn malformed_answers_are_request_failures_with_their_cause() {
    let big_chunk: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
            "a".repeat(2048)
        )
        .into_boxed_str(),
    );
    for (script, per_connection, code, message) in [
        (
            "SSH-2.0-OpenSSH_9.6\r\n\r\n",
            100,
            "request_failed",
            "request failed: malformed answer head: not HTTP/1.x",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345",
            1,
            "request_failed",
            "request failed: connection closed before the whole answer",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            100,
            "request_failed",
            "request failed: malformed chunked body: invalid chunk size",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n1",
            100,
            "request_failed",
            "request failed: invalid Content-Length",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
            100,
            "too_large",
            "answer larger than 1024 bytes",
        ),
        (big_chunk, 100, "too_large", "answer larger than 1024 bytes"),
    ] {
        let up = RawUpstream::start(vec![script], per_connection, Close::AfterAnswer).await;
        let (_ok, gw) = gateway(&up, "max_response = \"1KiB\"").await;
        let (_, _, body) = get_json(&gw.url("/r")).await;
        assert_eq!(
            common::without_duration(&body["_errors"]["a"]),
            json!({"code": code, "message": message}),
            "{script:.40}"
        );
    }
}

async fn proxy(up: &RawUpstream) -> common::TestGateway {
    start_gateway(&format!(
        "[upstreams.raw]\nurl = \"{}\"\ntimeout = \"2s\"\n\
         [[routes]]\npath = \"/p\"\nmethods = [\"GET\", \"HEAD\"]\nproxy = {{ upstream = \"raw\", path = \"/a\" }}\n",
        up.url()
    ))
    .await
}

#[tokio::test]
async fn a_proxied_chunked_answer_streams_and_frees_its_connection() {
    let up = RawUpstream::start(
        vec![
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"n\"",
            "\r\n3\r\n:42\r\n1\r\n}\r\n",
            "0\r\n\r\n",
        ],
        100,
        Close::AfterAnswer,
    )
    .await;
    let gw = proxy(&up).await;
    for _ in 0..3 {
        let response = common::client().get(gw.url("/p")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.text().await.unwrap(), r#"{"n":42}"#);
    }
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn a_proxied_head_answer_has_no_body_and_its_connection_is_not_kept() {
    let up = RawUpstream::start(
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"],
        100,
        Close::AfterAnswer,
    )
    .await;
    let gw = proxy(&up).await;
    for _ in 0..3 {
        let response = common::client().head(gw.url("/p")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-length"], "5");
    }
    // A body the upstream might still send after the head must find no next request.
    assert_eq!(up.connections(), 3);
}

#[tokio::test]
async fn a_proxied_answer_cut_short_fails_the_stream_and_the_next_request_succeeds() {
    let up = RawUpstream::start(
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345"],
        1,
        Close::AfterAnswer,
    )
    .await;
    let gw = proxy(&up).await;
    for _ in 0..2 {
        // The head may or may not have left before the cut was found; either way the
        // client must not take five bytes for the whole answer.
        let cut = match common::client().get(gw.url("/p")).send().await {
            Err(_) => true,
            Ok(response) => {
                assert_eq!(response.status(), 200);
                response.bytes().await.is_err()
            }
        };
        assert!(cut, "the client must see the cut");
    }
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn a_proxied_answer_whole_with_its_head_or_split_arrives_whole_on_one_connection() {
    // Read whole with its head (sent as bytes, its connection back in the pool at once),
    // or with the body 20 ms after the head (streamed): the client gets the same
    // answer, and both reuse the one connection.
    for pieces in [
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"n\":1}"],
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", "{\"n\":1}"],
        vec!["HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"n\"", ":1}"],
    ] {
        let up = RawUpstream::start(pieces, 100, Close::AfterAnswer).await;
        let gw = proxy(&up).await;
        for _ in 0..3 {
            let response = common::client().get(gw.url("/p")).send().await.unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-length"], "7");
            assert_eq!(response.text().await.unwrap(), "{\"n\":1}");
        }
        assert_eq!(up.connections(), 1);
    }
}
