//! Reading a request head on the gateway's own HTTP/1.1 connection: the common request
//! (HTTP/1.1, origin-form, no body, no upgrade) becomes a `Request`; a head whose host
//! or framing two parties could read differently (no `Host`, two, or both
//! `Content-Length` and `Transfer-Encoding`: RFC 9112 §3.2, §6.3) is refused; anything
//! else is left to hyper, which answers it with the full protocol (bodies, upgrades,
//! h2c, 400s).

use super::MAX_HEAD;
use super::parse::{header_map, slots, spans};
use crate::body::ClientBody;
use bytes::BytesMut;
use http::{Method, Request, Uri, Version};
/// Headers the gateway may add to a request (its id, `X-Forwarded-For`, `-Proto`,
/// `-Host`): the map is made with room for them, so it never grows and rehashes.
const ADDED_HEADERS: usize = 4;

/// What the bytes at the start of a read buffer are.
// Matched at once where it is made: boxing the request would cost an allocation per
// request to save stack bytes for an instant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ParsedRequest {
    /// A whole request this connection serves; its head is gone from the buffer.
    Request {
        request: Request<ClientBody>,
        /// The client did not ask for the connection to close (`Connection: close`).
        keep_alive: bool,
        /// The length of its body, at most [`SMALL_BODY`]: those bytes follow the head
        /// in the buffer (or are still to come), for the connection to read whole.
        body_len: usize,
    },
    /// The head is not complete yet.
    Partial,
    /// Answered 400 with this reason, and the connection closed: which request (or
    /// which host) the bytes mean depends on who reads them.
    Refused(Refusal),
    /// Hyper takes the connection from here; the buffer is as it was.
    HandOff,
}

/// Parses the request head at the start of `buf` (a client's bytes): a plain request
/// the own connection serves (its head removed from `buf`), an incomplete head, a
/// refusal, or a hand-off to hyper (`buf` untouched). A head still incomplete past
/// [`MAX_HEAD`] bytes is handed off; hyper refuses it with 431.
pub fn parse_request_head(buf: &mut BytesMut) -> ParsedRequest {
    let mut slots = slots();
    let mut head = httparse::Request::new(&mut []);
    let len = match head.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return ParsedRequest::Partial,
        // Too large, malformed, too many headers, or h2c's preface: hyper's answer.
        _ => return ParsedRequest::HandOff,
    };
    let fields = Fields::of(head.headers);
    if let Some(why) = fields.refusal(head.version == Some(1)) {
        return ParsedRequest::Refused(why);
    }
    let (Some(1), Some(method), Some(path)) = (head.version, head.method, head.path) else {
        return ParsedRequest::HandOff;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return ParsedRequest::HandOff;
    };
    if method == Method::CONNECT || !path.starts_with('/') || !fields.plain {
        return ParsedRequest::HandOff;
    }
    let (keep_alive, body_len) = (fields.keep_alive, fields.body_len);
    let path_at = path.as_ptr() as usize - buf.as_ptr() as usize;
    let path_len = path.len();
    let spans = spans(buf, head.headers);

    let bytes = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(bytes.slice(path_at..path_at + path_len));
    let headers = header_map(&bytes, &spans, ADDED_HEADERS);
    let (Ok(uri), Ok(headers)) = (uri, headers) else {
        // Put the head back in front of what followed it, for hyper to refuse.
        let mut whole = BytesMut::with_capacity(bytes.len() + buf.len());
        whole.extend_from_slice(&bytes);
        whole.extend_from_slice(buf);
        *buf = whole;
        return ParsedRequest::HandOff;
    };
    let mut request = Request::new(ClientBody::Empty);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    ParsedRequest::Request {
        request,
        keep_alive,
        body_len,
    }
}

/// The largest request body the own connection reads whole, with its head, before the
/// request is routed (a JSON POST to an aggregate); a larger one streams through hyper.
pub const SMALL_BODY: usize = 16 * 1024;

/// A `Content-Length` value of at most [`SMALL_BODY`]: digits only (RFC 9110 §8.6).
fn small_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 5 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value
        .iter()
        .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0'));
    (n <= SMALL_BODY).then_some(n)
}

/// Why a request head is refused with 400 before any route (nginx refuses the same):
/// which request, or which host, its bytes mean depends on who reads them. The message
/// is for the client to read; `error.rs` makes the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("an HTTP/1.1 request needs a Host header")]
    NoHost,
    #[error("a request may carry one Host header")]
    TwoHosts,
    #[error("a request may not carry both Content-Length and Transfer-Encoding")]
    TwoFramings,
}

/// What the header fields of a request head say, read in one pass.
struct Fields {
    hosts: usize,
    length: bool,
    chunked: bool,
    /// No body larger than [`SMALL_BODY`], no upgrade, no `100 Continue`: the own
    /// connection serves it.
    plain: bool,
    /// The body's length, by its one `Content-Length`.
    body_len: usize,
    /// The client did not send `Connection: close`.
    keep_alive: bool,
}

impl Fields {
    fn of(fields: &[httparse::Header<'_>]) -> Self {
        let mut seen = Fields {
            hosts: 0,
            length: false,
            chunked: false,
            plain: true,
            body_len: 0,
            keep_alive: true,
        };
        for field in fields {
            let name = field.name.as_bytes();
            let value = field.value.trim_ascii();
            if name.eq_ignore_ascii_case(b"host") {
                seen.hosts += 1;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                // A repeated length, even `0` twice, is hyper's to reduce to one; so is
                // a body too large to read whole before the request is routed.
                match small_length(value) {
                    Some(n) if !seen.length => seen.body_len = n,
                    _ => seen.plain = false,
                }
                seen.length = true;
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                seen.chunked = true;
                seen.plain = false;
            } else if name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"expect")
            {
                seen.plain = false;
            } else if name.eq_ignore_ascii_case(b"connection") {
                for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if token.eq_ignore_ascii_case(b"close") {
                        seen.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        seen.plain = false;
                    }
                }
            }
        }
        seen
    }

    /// Why a request with these fields gets 400 (nginx refuses the same): an HTTP/1.1
    /// request needs exactly one `Host`, HTTP/1.0 at most one, and no request may be
    /// framed both by length and by chunks.
    fn refusal(&self, http_1_1: bool) -> Option<Refusal> {
        if self.length && self.chunked {
            Some(Refusal::TwoFramings)
        } else if self.hosts > 1 {
            Some(Refusal::TwoHosts)
        } else if self.hosts == 0 && http_1_1 {
            Some(Refusal::NoHost)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> (ParsedRequest, BytesMut) {
        let mut buf = BytesMut::from(text);
        (parse_request_head(&mut buf), buf)
    }

    #[test]
    fn a_plain_get_becomes_a_request_and_leaves_what_follows() {
        let (p, rest) = parsed("GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Id: 7\r\n\r\nGET /next");
        let ParsedRequest::Request {
            request,
            keep_alive,
            body_len,
        } = p
        else {
            panic!("{p:?}")
        };
        assert!(keep_alive);
        assert_eq!(body_len, 0);
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().path(), "/a/b");
        assert_eq!(request.uri().query(), Some("x=1"));
        assert_eq!(request.headers()["x-id"], "7");
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn connection_close_and_a_zero_length_are_still_ours() {
        let text = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: keep-alive, Close\r\n\r\n";
        let (p, rest) = parsed(text);
        assert!(matches!(
            p,
            ParsedRequest::Request {
                keep_alive: false,
                ..
            }
        ));
        assert!(rest.is_empty());
    }

    #[test]
    fn a_small_body_stays_with_the_own_connection_by_its_length() {
        for (length, expected) in [("5", 5), ("00005", 5), ("16384", SMALL_BODY)] {
            let text =
                format!("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: {length}\r\n\r\nhello");
            let (p, rest) = parsed(&text);
            let ParsedRequest::Request { body_len, .. } = p else {
                panic!("{length}: {p:?}")
            };
            assert_eq!(body_len, expected, "{length}");
            // The body stays in the buffer, for the connection to read whole.
            assert_eq!(&rest[..], b"hello");
        }
    }

    #[test]
    fn an_incomplete_head_waits() {
        let (p, rest) = parsed("GET /a HTTP/1.1\r\nHost: h\r\n");
        assert!(matches!(p, ParsedRequest::Partial));
        assert_eq!(rest.len(), 26);
    }

    #[test]
    fn everything_else_goes_to_hyper_untouched() {
        for text in [
            "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 16385\r\n\r\nhello",
            "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
            "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            "PUT /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            "GET /a HTTP/1.0\r\n\r\n",
            "GET http://h/a HTTP/1.1\r\nHost: h\r\n\r\n",
            "CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /a b HTTP/1.1\r\n\r\n",
        ] {
            let (p, rest) = parsed(text);
            assert!(matches!(p, ParsedRequest::HandOff), "{text:?}: {p:?}");
            assert_eq!(&rest[..], text.as_bytes(), "{text:?}");
        }
    }

    #[test]
    fn ambiguous_hosts_and_framings_are_refused() {
        for (text, why) in [
            ("GET /a HTTP/1.1\r\n\r\n", Refusal::NoHost),
            ("GET http://h/a HTTP/1.1\r\n\r\n", Refusal::NoHost),
            (
                "GET /a HTTP/1.1\r\nHost: a\r\nX: 1\r\nHOST: a\r\n\r\n",
                Refusal::TwoHosts,
            ),
            (
                "GET /a HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
                Refusal::TwoHosts,
            ),
            (
                "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                Refusal::TwoFramings,
            ),
            (
                "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
                Refusal::TwoFramings,
            ),
        ] {
            let (p, _) = parsed(text);
            assert!(
                matches!(p, ParsedRequest::Refused(w) if w == why),
                "{text:?}: {p:?}"
            );
        }
    }

    #[test]
    fn a_repeated_content_length_is_hyper_s() {
        // Found by fuzz/fuzz_targets/request_head.rs: hyper reads the two as one field.
        let text = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n";
        let (p, rest) = parsed(text);
        assert!(matches!(p, ParsedRequest::HandOff), "{p:?}");
        assert_eq!(&rest[..], text.as_bytes());
    }

    #[test]
    fn an_invalid_uri_is_put_back_whole() {
        // httparse takes any visible byte in the target; `Uri` does not take `<`.
        let text = "GET /a<b> HTTP/1.1\r\nHost: h\r\n\r\nnext";
        let (p, rest) = parsed(text);
        assert!(matches!(p, ParsedRequest::HandOff), "{p:?}");
        assert_eq!(&rest[..], text.as_bytes());
    }

    #[test]
    fn a_head_over_the_limit_is_hyper_s_to_refuse() {
        let text = format!("GET /a HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        let (p, _) = parsed(&text);
        assert!(matches!(p, ParsedRequest::HandOff));
    }
}
