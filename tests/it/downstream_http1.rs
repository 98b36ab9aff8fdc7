//! The client side of the wire (downstream HTTP/1.1) over raw sockets: keep-alive,
//! pipelining, `Connection: close`, the idle timeout, chunked answers, small bodies read
//! whole, the hand-off to hyper for larger bodies and for malformed ones, and the 400s for requests
//! whose Host or framing is ambiguous.

use crate::common;

use common::{MockUpstream, Reply, start_gateway};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn gateway(up: &MockUpstream, server: &str) -> common::TestGateway {
    start_gateway(&format!(
        r#"[server]
{server}
[upstreams.up]
url = "{}"
[[routes]]
path = "/r"
  [[routes.backends]]
  name = "a"
  upstream = "up"
  path = "/a"
[[routes]]
path = "/p/{{*rest}}"
methods = ["GET", "POST"]
proxy = {{ upstream = "up", path = "/{{rest}}" }}
"#,
        up.url()
    ))
    .await
}

async fn upstream() -> MockUpstream {
    MockUpstream::builder()
        .route("/a", Reply::json("1"))
        .route("/echo", Reply::echo())
        .route(
            "/events",
            Reply::events(2, Duration::from_millis(20), "tick", "text/event-stream"),
        )
        .start()
        .await
}

/// Writes `text` on one connection and reads until the gateway closes it.
async fn exchange(stream: &mut TcpStream, text: &str) -> String {
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("the gateway closed the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_until_close() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(
        &mut stream,
        "GET /r HTTP/1.1\r\nHost: g\r\n\r\nGET /p/a HTTP/1.1\r\nHost: g\r\n\r\n\
         GET /nope HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(answers.len(), 3, "{out}");
    assert!(
        answers[0].starts_with("200 OK\r\n") && answers[0].ends_with("{\"a\":1}"),
        "{out}"
    );
    assert!(
        answers[1].starts_with("200 OK\r\n") && answers[1].ends_with("\r\n\r\n1"),
        "{out}"
    );
    assert!(answers[2].starts_with("404 Not Found\r\n"), "{out}");
    assert!(answers[2].contains("connection: close\r\n"), "{out}");
    assert!(!answers[0].contains("connection: close"), "{out}");
    for answer in &answers {
        assert!(
            answer.contains("\r\ndate: ") && answer.contains("\r\nx-request-id: "),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_small_body_is_read_whole_by_the_own_connection_mid_connection() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(
        &mut stream,
        "GET /r HTTP/1.1\r\nHost: g\r\n\r\n\
         POST /p/echo HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n\r\nhello\
         GET /r HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 200 OK").skip(1).collect();
    assert_eq!(answers.len(), 3, "{out}");
    assert!(
        answers[1].ends_with("hello"),
        "the upload reached the upstream: {out}"
    );
    assert!(answers[2].ends_with("{\"a\":1}"), "{out}");
}

#[tokio::test]
async fn a_body_larger_than_small_body_is_handed_to_hyper_mid_connection() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    let body = "x".repeat(fanout::http1::SMALL_BODY + 1);
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(
        &mut stream,
        &format!(
            "GET /r HTTP/1.1\r\nHost: g\r\n\r\n\
             POST /p/echo HTTP/1.1\r\nHost: g\r\nContent-Length: {}\r\n\r\n{body}\
             GET /r HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
            body.len()
        ),
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 200 OK").skip(1).collect();
    assert_eq!(answers.len(), 3, "{out}");
    assert!(
        answers[1].ends_with(&body),
        "the upload reached the upstream"
    );
    assert!(answers[2].ends_with("{\"a\":1}"), "{out}");
}

#[tokio::test]
async fn a_small_body_sent_in_pieces_arrives_whole_and_the_next_request_follows() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    // The head alone, then the body in two writes, the second with the next request.
    for piece in [
        "POST /p/echo HTTP/1.1\r\nHost: g\r\nContent-Length: 11\r\n\r\n",
        "hello ",
        "worldGET /r HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    ] {
        stream.write_all(piece.as_bytes()).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = exchange(&mut stream, "").await;
    let answers: Vec<&str> = out.split("HTTP/1.1 200 OK").skip(1).collect();
    assert_eq!(answers.len(), 2, "{out}");
    assert!(answers[0].ends_with("hello world"), "{out}");
    assert!(answers[1].ends_with("{\"a\":1}"), "{out}");
    let echoed = up.requests();
    assert_eq!(&echoed[0].body[..], b"hello world");
}

#[tokio::test]
async fn a_read_buffer_passed_from_one_connection_to_the_next_carries_none_of_its_bytes() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    // The first connection's request fills its buffer, which goes to the worker's
    // spares once answered; the second, on the same worker, takes it and sends its
    // head in two pieces, shorter than the first's.
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    let secret = "s".repeat(900);
    let out = exchange(
        &mut first,
        &format!(
            "GET /p/echo HTTP/1.1\r\nHost: g\r\nX-First: {secret}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    second
        .write_all(b"GET /p/echo HTTP/1.1\r\nHo")
        .await
        .unwrap();
    second.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let out = exchange(
        &mut second,
        "st: g\r\nX-Second: 2\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(!out.contains(&secret), "{out}");
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["x-second"], "2");
    assert!(seen[1].headers.get("x-first").is_none());
    assert_eq!(seen[1].target, "/echo");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_sending_its_small_body_loses_the_connection() {
    let up = upstream().await;
    let gw = gateway(&up, "header_read_timeout = \"2s\"").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    let out = exchange(
        &mut stream,
        "POST /p/echo HTTP/1.1\r\nHost: g\r\nContent-Length: 100\r\n\r\nonly this",
    )
    .await;
    assert_eq!(out, "", "no answer to a request whose body never came");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(up.requests().is_empty(), "nothing reached the upstream");
    // The gateway still serves everyone else.
    let out = common::raw_request(
        gw.addr,
        "GET /r HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
}

#[tokio::test]
async fn malformed_requests_get_hyper_s_400() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(&mut stream, "GET /r HTTP/1.1\r\nBad Header\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    // The gateway still serves everyone else.
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(
        &mut stream,
        "GET /r HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
}

#[tokio::test(start_paused = true)]
async fn idle_connections_are_closed_after_keepalive_timeout() {
    let up = upstream().await;
    let gw = gateway(&up, "keepalive_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    let out = exchange(&mut stream, "GET /r HTTP/1.1\r\nHost: g\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "closed too early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn streamed_answers_are_chunked_and_head_has_no_body() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(
        &mut stream,
        "GET /p/events HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.contains("\r\ntransfer-encoding: chunked\r\n"), "{out}");
    assert!(out.ends_with("\r\n0\r\n\r\n"), "the last chunk: {out}");
    assert_eq!(out.matches("tick").count(), 2, "{out}");

    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let out = exchange(
        &mut stream,
        "HEAD /r HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(out.contains("\r\ncontent-length: 7\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "no body after the head: {out}");
}

/// Sends `text` on a new connection; the answer's status line, its body, and whether the
/// gateway closed the connection after it.
async fn refused(gw: &common::TestGateway, text: &str) -> String {
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    exchange(&mut stream, text).await
}

fn assert_bad_request(out: &str, why: &str, text: &str) {
    assert!(
        out.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{text:?}: {out}"
    );
    assert!(out.contains("\r\nconnection: close\r\n"), "{text:?}: {out}");
    assert!(
        out.ends_with(&format!(
            r#"{{"error":{{"code":"bad_request","message":"{why}"}}}}"#
        )),
        "{text:?}: {out}"
    );
    assert!(!out.contains("200 OK"), "nothing after the 400: {out}");
}

const NO_HOST: &str = "an HTTP/1.1 request needs a Host header";
const TWO_HOSTS: &str = "a request may carry one Host header";
const TWO_FRAMINGS: &str = "a request may not carry both Content-Length and Transfer-Encoding";

#[tokio::test]
async fn ambiguous_hosts_and_framings_are_refused_before_any_route() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    for (text, why) in [
        // The own connection's first request.
        (
            "GET /r HTTP/1.1\r\n\r\nGET /r HTTP/1.1\r\nHost: g\r\n\r\n",
            NO_HOST,
        ),
        ("GET /r HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", TWO_HOSTS),
        (
            "POST /p/echo HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            TWO_FRAMINGS,
        ),
        (
            "POST /p/echo HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\
             Content-Length: 0\r\n\r\n0\r\n\r\n",
            TWO_FRAMINGS,
        ),
        // Requests hyper serves: absolute-form, HTTP/1.0, and those after a hand-off.
        ("GET http://g/r HTTP/1.1\r\n\r\n", NO_HOST),
        ("GET /r HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", TWO_HOSTS),
        (
            "POST /nowhere HTTP/1.1\r\nHost: g\r\nContent-Length: 0\r\n\
             Expect: 100-continue\r\n\r\nGET /r HTTP/1.1\r\n\r\n",
            NO_HOST,
        ),
    ] {
        let out = refused(&gw, text).await;
        // A request handed to hyper first (404) is answered before the refused one.
        let out = match out.find("HTTP/1.1 400") {
            Some(at) if at > 0 => out[at..].to_string(),
            _ => out,
        };
        assert_bad_request(&out, why, text);
    }
    assert_eq!(up.total_hits(), 0, "no refused request reached a route");
}

#[tokio::test]
async fn http_1_0_without_host_is_served() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    let out = refused(&gw, "GET /r HTTP/1.0\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n"), "{out}");
    assert!(out.ends_with("{\"a\":1}"), "{out}");
}

#[tokio::test]
async fn an_upload_framed_two_ways_gets_its_400_while_still_sending() {
    let up = upstream().await;
    let gw = gateway(&up, "").await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The refusal is decided on the head; the body keeps coming after it.
    let sending = tokio::spawn(async move {
        let head = "POST /p/echo HTTP/1.1\r\nHost: g\r\nContent-Length: 4000000\r\n\
                    Transfer-Encoding: chunked\r\n\r\n";
        writer.write_all(head.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..64 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
        }
        // Done sending: the gateway may close now.
        let _ = writer.shutdown().await;
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        matches!(read, Ok(Ok(_))),
        "the connection was reset: {read:?}; read {out}"
    );
    assert_bad_request(&out, TWO_FRAMINGS, "an upload framed two ways");
    sending.await.unwrap();
}
