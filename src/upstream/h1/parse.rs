//! The answer side of HTTP/1.1 as pure functions over a read buffer: the status line and
//! headers, how the body is framed (RFC 9112 §6.3), and chunked decoding. Nothing here
//! reads a socket, so every rule is unit-tested with byte strings.

use crate::wire::{self, Span, parse_decimal};
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};

/// An answer head larger than this is an error.
pub const MAX_HEAD: usize = 64 * 1024;
/// A chunk-size line, or one trailer line, longer than this is an error.
const MAX_LINE: usize = 4096;

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

/// A parsed answer head. Its header fields stay in the bytes they were read into, found
/// by offset: an aggregate call reads two of them, and the `HeaderMap` (a hashed insert
/// per field) is built only for an answer passed on to a client.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    bytes: Bytes,
    spans: Vec<Span>,
}

impl Head {
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

    /// The fields as a `HeaderMap`, with room for the two the gateway may add (the
    /// request id, a compression header).
    pub fn into_headers(self) -> Result<HeaderMap, ParseError> {
        wire::header_map(&self.bytes, &self.spans, 2).map_err(ParseError::Head)
    }
}

/// Parses an answer head at the start of `buf`, and on success removes it from `buf`.
/// `None`: the head is not complete yet.
pub fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, ParseError> {
    let mut slots = wire::slots();
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
    let spans = wire::spans(buf, answer.headers);
    let bytes = buf.split_to(len).freeze();
    Ok(Some(Head {
        status,
        version,
        bytes,
        spans,
    }))
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204, 304: no body whatever the headers say. A sender that sends one
    /// anyway (a HEAD answered like a GET) can do it at any time after the head, so the
    /// connection is never used again: no read before reuse could prove it clean.
    Empty,
    Length(u64),
    Chunked,
    /// Neither length nor chunked: the body ends when the upstream closes.
    UntilClose,
}

impl Framing {
    /// The framing of `head`, the answer to a `method` request (RFC 9112 §6.3). Both
    /// `Transfer-Encoding` and `Content-Length`, or `Transfer-Encoding` in HTTP/1.0, is
    /// an error whatever the method and status (nginx refuses the first, hyper the
    /// second): the two readings of such an answer differ, and the difference is what
    /// would reach the client or the next pooled request.
    pub fn of(method: &Method, head: &Head) -> Result<Self, ParseError> {
        let transfer_encoding = head.values("transfer-encoding").next_back();
        if transfer_encoding.is_some() {
            if head.values("content-length").next().is_some() {
                return Err(ParseError::Framing(
                    "both Transfer-Encoding and Content-Length",
                ));
            }
            if head.version == Version::HTTP_10 {
                return Err(ParseError::Framing(
                    "Transfer-Encoding in an HTTP/1.0 answer",
                ));
            }
        }
        let status = head.status.as_u16();
        if *method == Method::HEAD
            || head.status.is_informational()
            || status == 204
            || status == 304
        {
            return Ok(Framing::Empty);
        }
        if let Some(last) = transfer_encoding {
            let chunked = last
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return Ok(if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        let mut length = None;
        for value in head.values("content-length") {
            // Repeated but equal values (`5, 5`) are allowed; anything else is an error.
            for part in value.split(|&b| b == b',') {
                let n = parse_decimal(part.trim_ascii()).ok_or(ParseError::Length)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ParseError::Length);
                }
                length = Some(n);
            }
        }
        Ok(length.map_or(Framing::UntilClose, Framing::Length))
    }
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

/// Whether the connection may carry another request after this answer, framed so: the
/// answer says so, and its end is known by its own framing. After a bodiless answer
/// (HEAD, 204, 304) a stray body could still be on its way; after one that runs to the
/// close there is nothing to reuse.
pub fn keeps_alive(head: &Head, framing: Framing) -> bool {
    if !matches!(framing, Framing::Length(_) | Framing::Chunked) {
        return false;
    }
    let has = |token: &str| {
        head.values("connection").any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    match head.version {
        Version::HTTP_10 => has("keep-alive"),
        _ => !has("close"),
    }
}

/// A whole body put together from pieces (by this client, and from hyper's bodies in
/// `upstream::read_body`), bounded: a body in one piece is kept as it came, without a
/// copy.
#[derive(Debug)]
pub struct Collected {
    first: Option<Bytes>,
    joined: Option<BytesMut>,
    len: u64,
    limit: u64,
}

impl Collected {
    pub fn new(limit: u64) -> Self {
        Self {
            first: None,
            joined: None,
            len: 0,
            limit,
        }
    }

    pub fn push(&mut self, piece: Bytes) -> Result<(), ParseError> {
        self.len += piece.len() as u64;
        if self.len > self.limit {
            return Err(ParseError::TooLarge(self.limit));
        }
        match (&self.first, &mut self.joined) {
            (None, _) => self.first = Some(piece),
            (Some(head), None) => {
                let mut all = BytesMut::with_capacity(head.len() + piece.len());
                all.extend_from_slice(head);
                all.extend_from_slice(&piece);
                self.joined = Some(all);
            }
            (Some(_), Some(all)) => all.extend_from_slice(&piece),
        }
        Ok(())
    }

    pub fn finish(self) -> Bytes {
        match (self.first, self.joined) {
            (_, Some(all)) => all.freeze(),
            (Some(only), None) => only,
            (None, None) => Bytes::new(),
        }
    }
}

/// Where a chunked decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// Decodes a chunked body incrementally, as its bytes arrive.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: Chunk,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self { state: Chunk::Size }
    }
}

/// What a chunked decoder found next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// The bytes so far are used up: read more.
    NeedMore,
    /// The last chunk and the trailers are read.
    Done,
}

impl ChunkedDecoder {
    /// Consumes what it can of `buf` into `body`. True once the last chunk and the
    /// trailers are read; false when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut, body: &mut Collected) -> Result<bool, ParseError> {
        loop {
            match self.next(buf)? {
                Step::Data(piece) => body.push(piece)?,
                Step::NeedMore => return Ok(false),
                Step::Done => return Ok(true),
            }
        }
    }

    /// The next piece of body data in `buf`, consuming the framing around it.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Step, ParseError> {
        loop {
            match self.state {
                Chunk::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        Chunk::Trailers(0)
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let take = left.min(buf.len() as u64);
                    self.state = match left - take {
                        0 => Chunk::DataEnd,
                        rest => Chunk::Data(rest),
                    };
                    return Ok(Step::Data(buf.split_to(take as usize).freeze()));
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ParseError::Chunked("no CRLF after chunk data"));
                    }
                    buf.advance(2);
                    self.state = Chunk::Size;
                }
                Chunk::Trailers(seen) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = Chunk::Done;
                    } else if seen + line.len() > MAX_LINE {
                        return Err(ParseError::Chunked("trailers too large"));
                    } else {
                        self.state = Chunk::Trailers(seen + line.len());
                    }
                }
                Chunk::Done => return Ok(Step::Done),
            }
        }
    }
}

/// The next CRLF-ended line of `buf`, without its CRLF; `None` until it is complete. A
/// line longer than `MAX_LINE` is an error whether it arrived whole or in pieces, so the
/// outcome never depends on how the upstream's bytes were split into reads.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, ParseError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end > MAX_LINE => Err(ParseError::Chunked("line too long")),
        Some(end) => {
            let line = buf.split_to(end);
            buf.advance(2);
            Ok(Some(line))
        }
        // Longer than a line may be, even if the last byte is the CR of its end.
        None if buf.len() > MAX_LINE + 1 => Err(ParseError::Chunked("line too long")),
        None => Ok(None),
    }
}

/// A chunk-size line: hex digits, then optional `;extensions` (ignored).
fn chunk_size(line: &[u8]) -> Result<u64, ParseError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(ParseError::Chunked("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let v = (d as char)
            .to_digit(16)
            .ok_or(ParseError::Chunked("invalid chunk size"))?;
        Ok(n * 16 + u64::from(v))
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
