//! HTTP/1.1 heads as pure functions over a read buffer: header fields turned into a
//! `HeaderMap` whose values share the buffer (no copy), and the answer head an upstream
//! sends (status line and fields). Nothing here reads a socket, so every rule is
//! unit-tested with byte strings. The request head is read in `request`.

use super::MAX_HEAD;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use std::mem::MaybeUninit;

/// More header fields than this in one head is an error (hyper's limit too).
pub const MAX_HEADERS: usize = 100;

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed answer head: {0}")]
    Head(&'static str),
    #[error("answer head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid Content-Length")]
    Length,
    /// Framing a sender and a receiver could read differently (RFC 9112 §6.1, §6.3).
    #[error("faulty framing: {0}")]
    Framing(&'static str),
    #[error("malformed chunked body: {0}")]
    Chunked(&'static str),
    #[error("answer larger than {0} bytes")]
    TooLarge(u64),
}

/// Where one header field lies in its head: name offset and length, value offset and
/// length. Offsets let the buffer be split and frozen after httparse borrowed it.
pub type Span = (usize, usize, usize, usize);

/// Header slots for httparse, left uninitialized: zeroing 100 of them costs more than
/// parsing a small head.
pub fn slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Where each of httparse's `fields` lies in `buf`.
pub fn spans(buf: &[u8], fields: &[httparse::Header<'_>]) -> Vec<Span> {
    let start = buf.as_ptr() as usize;
    fields
        .iter()
        .map(|h| {
            let name = h.name.as_ptr() as usize - start;
            let value = h.value.as_ptr() as usize - start;
            (name, h.name.len(), value, h.value.len())
        })
        .collect()
}

/// The header fields at `spans` of `head`; values are slices of `head`. `room` is how
/// many more the caller will add: a map that has to grow rehashes every entry.
pub fn header_map(head: &Bytes, spans: &[Span], room: usize) -> Result<HeaderMap, &'static str> {
    let mut headers = HeaderMap::with_capacity(spans.len() + room);
    for &(name, name_len, value, value_len) in spans {
        let name = HeaderName::from_bytes(&head[name..name + name_len])
            .map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len))
            .map_err(|_| "invalid header value")?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// A parsed answer head. Its header fields stay in the bytes they were read into, found
/// by offset: an aggregate call reads two of them, and the `HeaderMap` (a hashed insert
/// per field) is built only for an answer passed on to a client.
#[derive(Debug)]
pub struct AnswerHead {
    pub status: StatusCode,
    pub version: Version,
    bytes: Bytes,
    spans: Vec<Span>,
}

impl AnswerHead {
    /// The values of every `name` field, in order (names compare case-insensitively).
    pub fn values<'a>(&'a self, name: &'a str) -> impl DoubleEndedIterator<Item = &'a [u8]> {
        self.spans
            .iter()
            .filter(move |&&(at, len, _, _)| {
                self.bytes[at..at + len].eq_ignore_ascii_case(name.as_bytes())
            })
            .map(|&(_, _, at, len)| &self.bytes[at..at + len])
    }

    /// The first `name` field's value, sharing the head's bytes.
    pub fn value(&self, name: &str) -> Option<HeaderValue> {
        let value = self.values(name).next()?;
        HeaderValue::from_maybe_shared(self.bytes.slice_ref(value)).ok()
    }

    /// The values of the fields named in `names`, sharing the head's bytes; a value
    /// that is not a valid header value is left out. No allocation when `names` is empty.
    pub fn kept(&self, names: &[HeaderName]) -> HeaderMap {
        let mut kept = HeaderMap::new();
        for name in names {
            for value in self.values(name.as_str()) {
                if let Ok(v) = HeaderValue::from_maybe_shared(self.bytes.slice_ref(value)) {
                    kept.append(name.clone(), v);
                }
            }
        }
        kept
    }

    /// The fields as a `HeaderMap`, with room for the two the gateway may add (the
    /// request id, a compression header).
    pub fn into_headers(self) -> Result<HeaderMap, ParseError> {
        header_map(&self.bytes, &self.spans, 2).map_err(ParseError::Head)
    }
}

/// Parses the answer head at the start of `buf` (what an upstream sends: status line and
/// header fields, up to [`MAX_HEAD`] bytes), and on success removes it from `buf`.
/// `Ok(None)`: the head is not complete yet; read more and call again.
pub fn parse_answer_head(buf: &mut BytesMut) -> Result<Option<AnswerHead>, ParseError> {
    let mut slots = slots();
    let mut answer = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut answer,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(ParseError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ParseError::Head(describe(e))),
    };
    let status = answer
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(ParseError::Head("invalid status code"))?;
    let version = match answer.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Offsets first: the slices borrow `buf`, which is split below.
    let spans = spans(buf, answer.headers);
    let bytes = buf.split_to(len).freeze();
    Ok(Some(AnswerHead {
        status,
        version,
        bytes,
        spans,
    }))
}

fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "over 100 headers",
        httparse::Error::Version => "not HTTP/1.x",
    }
}
