//! The upstream client's answer-head parser and framing decision.
//!
//! Properties:
//! 1. An answer head it reads is the one httparse reads: status, version, every header
//!    field in order; it takes exactly the head's bytes. It waits only for a head that is
//!    incomplete and not yet over its size limit, and refuses only what httparse refuses,
//!    a status outside 100..=999, or an incomplete head over the limit.
//! 2. The body's framing follows RFC 9112 §6.3, restated here independently: both
//!    Transfer-Encoding and Content-Length, or Transfer-Encoding in HTTP/1.0, is refused;
//!    a HEAD request or a 1xx, 204 or 304 answer has no body; otherwise chunked when
//!    chunked is the final transfer coding, until close for any other coding; else the
//!    Content-Length when every listed value is the same decimal number below 10^19,
//!    leading zeros allowed (refused if not);
//!    else until close.
//! 3. The connection is kept only after an answer whose end its framing tells, that did
//!    not ask to close (HTTP/1.1) or asked to be kept (HTTP/1.0).
#![no_main]

use bytes::BytesMut;
use fanout::http1::{self as h1, Framing};
use http::{Method, Version};
use libfuzzer_sys::fuzz_target;

struct Reference {
    len: usize,
    code: u16,
    version: u8,
    /// Lower-cased names, values as sent, in order.
    fields: Vec<(String, Vec<u8>)>,
}

impl Reference {
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    }

    /// RFC 9112 §6.3 for an answer to `method`; `None`: refused.
    fn framing(&self, method: &Method) -> Option<Framing> {
        let te: Vec<&[u8]> = self.values("transfer-encoding").collect();
        let cl: Vec<&[u8]> = self.values("content-length").collect();
        if !te.is_empty() && (!cl.is_empty() || self.version == 0) {
            return None;
        }
        if *method == Method::HEAD
            || (100..200).contains(&self.code)
            || self.code == 204
            || self.code == 304
        {
            return Some(Framing::Empty);
        }
        if let Some(last) = te.last() {
            // The final coding of the last field (hyper reads the same).
            let text = String::from_utf8_lossy(last);
            let final_coding = text.rsplit(',').next().unwrap_or("").trim();
            return Some(if final_coding.eq_ignore_ascii_case("chunked") {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        let mut numbers = cl.iter().flat_map(|v| v.split(|&b| b == b',')).map(|part| {
            let text = std::str::from_utf8(part.trim_ascii()).ok()?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Leading zeros are allowed; no body is 10^19 bytes or more.
            text.parse::<u64>()
                .ok()
                .filter(|&n| n < 10_000_000_000_000_000_000)
        });
        let Some(first) = numbers.next() else {
            return Some(Framing::UntilClose);
        };
        let first = first?;
        for n in numbers {
            if n? != first {
                return None;
            }
        }
        Some(Framing::Length(first))
    }
}

fuzz_target!(|input: (u8, &[u8])| {
    let (method, data) = input;
    let method = [Method::GET, Method::HEAD, Method::POST][usize::from(method % 3)].clone();
    let mut fields = [httparse::EMPTY_HEADER; 100];
    let mut answer = httparse::Response::new(&mut fields);
    let reference = answer.parse(data);

    let mut buf = BytesMut::from(data);
    match h1::parse_answer_head(&mut buf) {
        Ok(None) => {
            assert!(matches!(reference, Ok(httparse::Status::Partial)));
            assert!(data.len() <= h1::MAX_HEAD);
            assert_eq!(&buf[..], data);
        }
        Err(e) => match reference {
            Err(_) => {}
            Ok(httparse::Status::Partial) => assert!(data.len() > h1::MAX_HEAD, "{e}"),
            Ok(httparse::Status::Complete(_)) => {
                let code = answer.code.unwrap();
                assert!(!(100..=999).contains(&code), "refused a readable head: {e}");
            }
        },
        Ok(Some(head)) => {
            let Ok(httparse::Status::Complete(len)) = reference else {
                panic!("read a head httparse does not: {reference:?}")
            };
            let reference = Reference {
                len,
                code: answer.code.unwrap(),
                version: answer.version.unwrap(),
                fields: answer
                    .headers
                    .iter()
                    .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
                    .collect(),
            };
            assert_eq!(
                &buf[..],
                &data[reference.len..],
                "took more or less than the head"
            );
            assert_eq!(head.status.as_u16(), reference.code);
            let version = if reference.version == 0 {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            };
            assert_eq!(head.version, version);
            for (name, _) in &reference.fields {
                let ours: Vec<&[u8]> = head.values(name).collect();
                let theirs: Vec<&[u8]> = reference.values(name).collect();
                assert_eq!(ours, theirs, "values of {name}");
                // Names compare case-insensitively.
                assert_eq!(
                    head.values(&name.to_ascii_uppercase()).count(),
                    theirs.len()
                );
            }

            let framing = Framing::of_answer(&method, &head).ok();
            assert_eq!(
                framing,
                reference.framing(&method),
                "framing of {method} {}",
                reference.code
            );
            if let Some(framing) = framing {
                let keep = match framing {
                    Framing::Length(_) | Framing::Chunked if reference.version == 0 => {
                        reference.has_token("connection", "keep-alive")
                    }
                    Framing::Length(_) | Framing::Chunked => {
                        !reference.has_token("connection", "close")
                    }
                    Framing::Empty | Framing::UntilClose => false,
                };
                assert_eq!(h1::keeps_alive(&head, framing), keep);
            }
            // The map for a client holds the same fields, when their names and values
            // are valid for `http` (httparse is laxer about values).
            if let Ok(map) = head.into_headers() {
                assert_eq!(map.len(), reference.fields.len());
                for (name, _) in &reference.fields {
                    let ours: Vec<&[u8]> = map.get_all(name).iter().map(|v| v.as_bytes()).collect();
                    let theirs: Vec<&[u8]> = reference.values(name).collect();
                    assert_eq!(ours, theirs);
                }
            }
        }
    }
});
