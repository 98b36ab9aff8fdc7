//! The HTTP/1.1 parsers' rules, as byte strings: answer heads, framing, chunked bodies.

use super::MAX_HEAD;
use super::body::*;
use super::framing::*;
use super::parse::*;
use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Version};

fn buf(s: &str) -> BytesMut {
    BytesMut::from(s.as_bytes())
}

fn head(s: &str) -> AnswerHead {
    parse_answer_head(&mut buf(s)).unwrap().unwrap()
}

fn framing(method: Method, s: &str) -> Result<Framing, ParseError> {
    Framing::of_answer(&method, &head(s))
}

/// Decodes `pieces` fed one at a time, as reads would deliver them.
fn dechunk(pieces: &[&str], limit: u64) -> Result<(Bytes, BytesMut), ParseError> {
    let mut decoder = ChunkedDecoder::default();
    let mut body = Collected::new(limit);
    let mut b = BytesMut::new();
    for piece in pieces {
        b.extend_from_slice(piece.as_bytes());
        if decoder.decode(&mut b, &mut body)? {
            return Ok((body.finish(), b));
        }
    }
    Err(ParseError::Chunked("incomplete"))
}

#[test]
fn a_head_is_parsed_and_removed_from_the_buffer() {
    let mut b =
        buf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-A: 1\r\nX-A: 2\r\n\r\n{}");
    let h = parse_answer_head(&mut b).unwrap().unwrap();
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.version, Version::HTTP_11);
    assert_eq!(&b[..], b"{}");
    assert_eq!(h.value("content-type").unwrap(), "application/json");
    let all: Vec<_> = h.values("x-a").collect();
    assert_eq!(all, [b"1", b"2"]);
    assert!(h.value("x-b").is_none());
    let headers = h.into_headers().unwrap();
    assert_eq!(headers["content-type"], "application/json");
    let all: Vec<_> = headers.get_all("x-a").iter().collect();
    assert_eq!(all, ["1", "2"]);
}

#[test]
fn an_incomplete_head_waits_for_more() {
    let mut b = buf("HTTP/1.1 200 OK\r\nContent-Le");
    assert!(parse_answer_head(&mut b).unwrap().is_none());
    assert_eq!(b.len(), 27, "nothing is consumed");
}

#[test]
fn garbage_and_oversized_heads_are_errors() {
    let e = parse_answer_head(&mut buf("SSH-2.0-OpenSSH\r\n\r\n")).unwrap_err();
    assert_eq!(e.to_string(), "malformed answer head: not HTTP/1.x");
    let e = parse_answer_head(&mut buf("HTTP/1.1 abc OK\r\n\r\n")).unwrap_err();
    assert_eq!(e.to_string(), "malformed answer head: invalid status line");
    let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
    let e = parse_answer_head(&mut buf(&huge)).unwrap_err();
    assert_eq!(e.to_string(), "answer head larger than 65536 bytes");
    let many: String = (0..101).map(|i| format!("X-{i}: 1\r\n")).collect();
    let e = parse_answer_head(&mut buf(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"))).unwrap_err();
    assert_eq!(e.to_string(), "malformed answer head: over 100 headers");
}

#[test]
fn http_1_0_is_recognized() {
    assert_eq!(head("HTTP/1.0 200 OK\r\n\r\n").version, Version::HTTP_10);
}

#[test]
fn framing_follows_rfc_9112() {
    let ok = "HTTP/1.1 200 OK\r\n";
    assert_eq!(
        framing(Method::GET, &format!("{ok}Content-Length: 12\r\n\r\n")),
        Ok(Framing::Length(12))
    );
    assert_eq!(
        framing(
            Method::GET,
            &format!("{ok}Transfer-Encoding: chunked\r\n\r\n")
        ),
        Ok(Framing::Chunked)
    );
    assert_eq!(
        framing(
            Method::GET,
            &format!("{ok}Transfer-Encoding: gzip, chunked\r\n\r\n")
        ),
        Ok(Framing::Chunked)
    );
    // Chunked not last: the body runs to the close.
    assert_eq!(
        framing(Method::GET, &format!("{ok}Transfer-Encoding: gzip\r\n\r\n")),
        Ok(Framing::UntilClose)
    );
    assert_eq!(
        framing(Method::GET, &format!("{ok}\r\n")),
        Ok(Framing::UntilClose)
    );
}

#[test]
fn two_framings_or_chunks_in_http_1_0_are_refused_for_any_method() {
    let both = ParseError::Framing("both Transfer-Encoding and Content-Length");
    for method in [Method::GET, Method::HEAD] {
        for order in [
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "Transfer-Encoding: gzip\r\ncontent-length: 0\r\n",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\n{order}\r\n");
            assert_eq!(framing(method.clone(), &text), Err(both.clone()), "{text}");
        }
    }
    let e = framing(
        Method::GET,
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "faulty framing: Transfer-Encoding in an HTTP/1.0 answer"
    );
    assert_eq!(
        both.to_string(),
        "faulty framing: both Transfer-Encoding and Content-Length"
    );
}

#[test]
fn some_answers_never_have_a_body() {
    let cl = "Content-Length: 10\r\n\r\n";
    assert_eq!(
        framing(Method::HEAD, &format!("HTTP/1.1 200 OK\r\n{cl}")),
        Ok(Framing::Empty)
    );
    assert_eq!(
        framing(Method::GET, &format!("HTTP/1.1 204 No Content\r\n{cl}")),
        Ok(Framing::Empty)
    );
    assert_eq!(
        framing(Method::GET, &format!("HTTP/1.1 304 Not Modified\r\n{cl}")),
        Ok(Framing::Empty)
    );
}

#[test]
fn content_length_must_be_one_number() {
    let with = |v: &str| {
        framing(
            Method::GET,
            &format!("HTTP/1.1 200 OK\r\nContent-Length: {v}\r\n\r\n"),
        )
    };
    assert_eq!(with("5, 5"), Ok(Framing::Length(5)));
    assert_eq!(with("5, 6"), Err(ParseError::Length));
    assert_eq!(with("-1"), Err(ParseError::Length));
    assert_eq!(with("+5"), Err(ParseError::Length));
    assert_eq!(with("99999999999999999999"), Err(ParseError::Length));
    assert_eq!(with(""), Err(ParseError::Length));
    let two = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n";
    assert_eq!(framing(Method::GET, two), Err(ParseError::Length));
}

#[test]
fn keep_alive_depends_on_version_and_connection() {
    let kept = |text: &str| keeps_alive(&head(text), Framing::Length(0));
    assert!(kept("HTTP/1.1 200 OK\r\n\r\n"));
    assert!(!kept("HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n"));
    assert!(!kept(
        "HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\n\r\n"
    ));
    assert!(!kept("HTTP/1.0 200 OK\r\n\r\n"));
    assert!(kept("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"));
}

#[test]
fn only_an_answer_framed_by_its_own_length_or_chunks_keeps_the_connection() {
    let ok = head("HTTP/1.1 200 OK\r\n\r\n");
    assert!(keeps_alive(&ok, Framing::Length(3)));
    assert!(keeps_alive(&ok, Framing::Chunked));
    // After a HEAD, 204 or 304 a stray body may still come; after a body that runs to
    // the close there is no connection left.
    assert!(!keeps_alive(&ok, Framing::Empty));
    assert!(!keeps_alive(&ok, Framing::UntilClose));
}

#[test]
fn chunks_are_joined_across_reads() {
    let (body, rest) = dechunk(
        &["5\r\nhel", "lo\r\n6;ext=1\r\n world\r", "\n0\r\n\r\n"],
        100,
    )
    .unwrap();
    assert_eq!(&body[..], b"hello world");
    assert!(rest.is_empty());
}

#[test]
fn a_single_chunk_is_the_body() {
    let (body, _) = dechunk(&["b\r\nhello world\r\n0\r\n\r\n"], 100).unwrap();
    assert_eq!(&body[..], b"hello world");
}

#[test]
fn trailers_are_skipped_and_hex_sizes_read() {
    let (body, _) = dechunk(&["A\r\n0123456789\r\n0\r\nX-Sum: 1\r\n", "\r\n"], 100).unwrap();
    assert_eq!(&body[..], b"0123456789");
}

#[test]
fn an_empty_chunked_body_is_empty() {
    let (body, _) = dechunk(&["0\r\n\r\n"], 100).unwrap();
    assert!(body.is_empty());
}

#[test]
fn bytes_after_the_last_chunk_are_left_in_the_buffer() {
    let (_, rest) = dechunk(&["1\r\na\r\n0\r\n\r\nHTTP"], 100).unwrap();
    assert_eq!(&rest[..], b"HTTP");
}

#[test]
fn malformed_chunks_are_errors() {
    let e = dechunk(&["zz\r\n"], 100).unwrap_err();
    assert_eq!(e.to_string(), "malformed chunked body: invalid chunk size");
    let e = dechunk(&["2\r\nabXY"], 100).unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed chunked body: no CRLF after chunk data"
    );
    let e = dechunk(&["\r\n"], 100).unwrap_err();
    assert_eq!(e.to_string(), "malformed chunked body: invalid chunk size");
    // Sixteen hex digits overflow a u64's worth of chunk.
    let e = dechunk(&[&format!("{}\r\n", "f".repeat(16))], 100).unwrap_err();
    assert_eq!(e.to_string(), "malformed chunked body: invalid chunk size");
    let e = dechunk(&[&"1".repeat(5000)], 100).unwrap_err();
    assert_eq!(e.to_string(), "malformed chunked body: line too long");
}

#[test]
fn a_line_over_the_limit_is_refused_however_it_was_read() {
    // Found by fuzz/fuzz_targets/chunked.rs: a whole over-long chunk-size line was taken
    // when it came in one read and refused when it came in several.
    let long = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(5000));
    for pieces in [vec![&long[..]], vec![&long[..2500], &long[2500..]]] {
        let e = dechunk(&pieces, 100).unwrap_err();
        assert_eq!(e.to_string(), "malformed chunked body: line too long");
    }
    // A line of exactly the limit is read, even when its CR comes in a read of its own.
    let line = format!("1;{}", "x".repeat(4094));
    assert_eq!(line.len(), 4096);
    let (body, _) = dechunk(&[&line, "\r", "\na\r\n0\r\n\r\n"], 100).unwrap();
    assert_eq!(&body[..], b"a");
}

#[test]
fn a_chunked_body_over_the_limit_is_too_large() {
    let e = dechunk(&["5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"], 8).unwrap_err();
    assert_eq!(e, ParseError::TooLarge(8));
}

#[test]
fn collected_pieces_are_bounded() {
    let mut c = Collected::new(4);
    c.push(Bytes::from_static(b"ab")).unwrap();
    c.push(Bytes::from_static(b"cd")).unwrap();
    assert_eq!(
        c.push(Bytes::from_static(b"e")),
        Err(ParseError::TooLarge(4))
    );
}

#[test]
fn header_values_share_the_head() {
    let head = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\nX-Y: b c\r\n\r\n");
    let mut slots = slots();
    let mut request = httparse::Request::new(&mut []);
    let parsed = request.parse_with_uninit_headers(&head, &mut slots);
    assert!(parsed.unwrap().is_complete());
    let spans = spans(&head, request.headers);
    let headers = header_map(&head, &spans, 0).unwrap();
    assert_eq!(headers["host"], "a");
    assert_eq!(headers["x-y"], "b c");
    assert_eq!(
        headers["x-y"].as_bytes().as_ptr(),
        head[30..].as_ptr(),
        "no copy"
    );
}
