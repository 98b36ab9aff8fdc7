//! Bodies read whole: [`Collected`] joins pieces up to a limit, and [`ChunkedDecoder`]
//! decodes a chunked body (RFC 9112 §7.1) incrementally, as its bytes arrive. Pure
//! functions over a buffer, like the head parsers.

use super::parse::ParseError;
use bytes::{Buf, Bytes, BytesMut};

/// A chunk-size line, or the trailers together, longer than this is an error.
const MAX_LINE: usize = 4096;

/// A whole body put together from pieces (by the own client, and from hyper's bodies in
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
