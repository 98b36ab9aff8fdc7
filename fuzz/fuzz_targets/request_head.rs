//! The server fast path's request-head parser, against httparse and against hyper.
//!
//! Properties:
//! 1. A head the fast path takes as a request is the request hyper's own HTTP/1.1 server
//!    reads from the same bytes: method, target, version and every header field (name,
//!    value, order per name). It takes exactly the head's bytes and leaves what follows.
//! 2. It takes only the common request: HTTP/1.1, origin-form, one Host, no body (no
//!    Transfer-Encoding, Content-Length absent or 0), no Upgrade or Expect; keep-alive is
//!    off exactly when `Connection` has a `close` token.
//! 3. It refuses only the heads two parties could read differently, for the documented
//!    reason: both Content-Length and Transfer-Encoding, two Hosts, or no Host in
//!    HTTP/1.1. Everything else it waits for (an incomplete head) or hands to hyper with
//!    the buffer untouched.
#![no_main]

use bytes::BytesMut;
use fanout::http1::{self, ParsedRequest as Parsed, Refusal, parse_request_head as parse};
use http::{HeaderMap, Method, Request, Version};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The request line and header fields as httparse reads them.
struct Reference {
    len: usize,
    method: String,
    path: String,
    version: u8,
    /// Lower-cased names, values as sent, in order.
    fields: Vec<(String, Vec<u8>)>,
}

fn reference(bytes: &[u8]) -> Option<Result<Reference, httparse::Error>> {
    let mut fields = [httparse::EMPTY_HEADER; 100];
    let mut head = httparse::Request::new(&mut fields);
    match head.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => Some(Ok(Reference {
            len,
            method: head.method?.to_string(),
            path: head.path?.to_string(),
            version: head.version?,
            fields: head
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                .collect(),
        })),
        Ok(httparse::Status::Partial) => None,
        Err(e) => Some(Err(e)),
    }
}

impl Reference {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn has(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    fn connection_has(&self, token: &str) -> bool {
        self.values("connection").any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// The same fields, in order per name, and no others.
    fn assert_same_fields(&self, headers: &HeaderMap) {
        assert_eq!(headers.len(), self.fields.len(), "field count");
        for (name, _) in &self.fields {
            let ours: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
            let theirs: Vec<&[u8]> = self.values(name).collect();
            assert_eq!(ours, theirs, "values of {name}");
        }
    }
}

/// What hyper's HTTP/1.1 server reads from `bytes`, sent on a connection that then
/// closes; `None` if hyper refuses it.
fn hyper_reads(bytes: &[u8]) -> Option<http::request::Parts> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    let seen = Arc::new(Mutex::new(None));
    let slot = seen.clone();
    runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(8192);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            *slot.lock().unwrap() = Some(request.into_parts().0);
            async { Ok::<_, Infallible>(hyper::Response::new(Empty::<bytes::Bytes>::new())) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service);
        let talk = async {
            // Errors only mean hyper closed early, having refused the bytes.
            let _ = client.write_all(bytes).await;
            let _ = client.shutdown().await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
        };
        let _ = tokio::join!(conn, talk);
    });
    seen.lock().unwrap().take()
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let parsed = parse(&mut buf);
    let reference = reference(data);
    match parsed {
        Parsed::Partial => {
            assert!(reference.is_none(), "waits for a complete head");
            assert!(data.len() <= http1::MAX_HEAD);
            assert_eq!(&buf[..], data);
        }
        Parsed::HandOff => assert_eq!(&buf[..], data, "handed off, but the buffer changed"),
        Parsed::Refused(why) => {
            let Some(Ok(head)) = reference else {
                panic!("refused a head httparse does not read: {why}")
            };
            let hosts = head.values("host").count();
            let expected = if head.has("content-length") && head.has("transfer-encoding") {
                Refusal::TwoFramings
            } else if hosts > 1 {
                Refusal::TwoHosts
            } else if hosts == 0 && head.version == 1 {
                Refusal::NoHost
            } else {
                panic!("refused a head that is not ambiguous: {why}")
            };
            assert_eq!(why, expected);
        }
        Parsed::Request {
            request,
            keep_alive,
            body_len,
        } => {
            let Some(Ok(head)) = reference else {
                panic!("took a head httparse does not read")
            };
            assert_eq!(
                &buf[..],
                &data[head.len..],
                "took more or less than the head"
            );
            // Property 2: only the common request.
            assert_eq!(head.version, 1);
            assert!(head.path.starts_with('/'));
            assert_ne!(head.method, "CONNECT");
            assert_eq!(head.values("host").count(), 1);
            assert!(!head.has("transfer-encoding"));
            // At most one length, of digits, no larger than SMALL_BODY: the body read whole.
            let lengths: Vec<&[u8]> = head
                .values("content-length")
                .map(|v| v.trim_ascii())
                .collect();
            match lengths.as_slice() {
                [] => assert_eq!(body_len, 0),
                [one] => {
                    assert!(one.iter().all(u8::is_ascii_digit), "length {one:?}");
                    let n: usize = std::str::from_utf8(one).unwrap().parse().unwrap();
                    assert_eq!(body_len, n);
                    assert!(n <= fanout::http1::SMALL_BODY);
                }
                more => panic!("took a head with {} lengths", more.len()),
            }
            assert!(!head.has("upgrade") && !head.has("expect"));
            assert!(!head.connection_has("upgrade"));
            assert_eq!(keep_alive, !head.connection_has("close"));
            // Property 1: the request httparse reads ...
            assert_eq!(request.method().as_str(), head.method);
            // A fragment is no part of a request (RFC 9112 §3.2): `Uri`, hyper's too,
            // drops it.
            let target = head.path.split('#').next().unwrap();
            assert_eq!(request.uri().path_and_query().unwrap().as_str(), target);
            assert_eq!(request.version(), Version::HTTP_11);
            head.assert_same_fields(request.headers());
            // ... and the one hyper reads.
            let theirs = hyper_reads(&data[..head.len])
                .unwrap_or_else(|| panic!("hyper refuses a head the fast path takes"));
            assert_eq!(theirs.method, *request.method());
            assert_ne!(theirs.method, Method::CONNECT);
            assert_eq!(theirs.uri, *request.uri());
            assert_eq!(theirs.version, Version::HTTP_11);
            assert_eq!(theirs.headers, *request.headers());
        }
    }
});
