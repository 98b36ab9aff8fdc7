//! The upstream client's chunked decoder (RFC 9112 §7.1).
//!
//! Properties:
//! 1. Round trip: a body of random chunks, chunk extensions and trailers, chunk-encoded
//!    and fed to the decoder in random pieces, decodes to exactly the body; the decoder
//!    stops at the end of the encoding and leaves what follows it unread.
//! 2. Any bytes: the decoder never yields more bytes than it was given, and the outcome
//!    (data, done with the same bytes left, waiting for more, or refused) does not depend
//!    on how the bytes were split into reads, since TCP may split them anywhere.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use fanout::http1::{ChunkedDecoder, Step};
use libfuzzer_sys::fuzz_target;

/// A line (chunk size with extensions, or all trailers) longer than this is refused.
const MAX_LINE: usize = 4096;

#[derive(Debug, Arbitrary)]
enum Input {
    RoundTrip {
        chunks: Vec<(Vec<u8>, Option<String>)>,
        upper_hex: bool,
        trailers: Vec<String>,
        after: Vec<u8>,
        splits: Vec<u16>,
    },
    AnyBytes {
        bytes: Vec<u8>,
        splits: Vec<u16>,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The last chunk and trailers were read; these bytes follow them.
    Done(Vec<u8>),
    NeedMore,
    Refused,
}

/// Feeds `pieces` to a new decoder one after the other, as reads would.
fn decode(pieces: &[&[u8]]) -> (Vec<u8>, End) {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        buf.extend_from_slice(piece);
        loop {
            match decoder.next(&mut buf) {
                Ok(Step::Data(bytes)) => {
                    assert!(!bytes.is_empty(), "an empty data step");
                    data.extend_from_slice(&bytes);
                }
                Ok(Step::NeedMore) => break,
                Ok(Step::Done) => {
                    let mut rest = buf.to_vec();
                    pieces[i + 1..]
                        .iter()
                        .for_each(|p| rest.extend_from_slice(p));
                    return (data, End::Done(rest));
                }
                Err(_) => return (data, End::Refused),
            }
        }
    }
    (data, End::NeedMore)
}

/// `bytes` cut at the offsets in `splits` (taken modulo what is left).
fn split<'a>(bytes: &'a [u8], splits: &[u16]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = bytes;
    for &s in splits {
        if rest.is_empty() {
            break;
        }
        let at = usize::from(s) % (rest.len() + 1);
        let (piece, tail) = rest.split_at(at);
        pieces.push(piece);
        rest = tail;
    }
    pieces.push(rest);
    pieces
}

/// Keeps a line's text free of CR and LF and within `max` bytes.
fn line_text(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .take(max)
        .collect()
}

fuzz_target!(|input: Input| match input {
    Input::RoundTrip {
        chunks,
        upper_hex,
        trailers,
        after,
        splits,
    } => {
        let mut encoded = Vec::new();
        let mut body = Vec::new();
        for (data, extension) in chunks.iter().filter(|(d, _)| !d.is_empty()) {
            let size = if upper_hex {
                format!("{:X}", data.len())
            } else {
                format!("{:x}", data.len())
            };
            encoded.extend_from_slice(size.as_bytes());
            if let Some(ext) = extension {
                encoded.push(b';');
                encoded.extend_from_slice(line_text(ext, 64).as_bytes());
            }
            encoded.extend_from_slice(b"\r\n");
            encoded.extend_from_slice(data);
            encoded.extend_from_slice(b"\r\n");
            body.extend_from_slice(data);
        }
        encoded.extend_from_slice(b"0\r\n");
        let mut trailer_bytes = 0;
        for trailer in &trailers {
            let line = format!("x-t: {}", line_text(trailer, 64));
            trailer_bytes += line.len();
            if trailer_bytes > MAX_LINE {
                break;
            }
            encoded.extend_from_slice(line.as_bytes());
            encoded.extend_from_slice(b"\r\n");
        }
        encoded.extend_from_slice(b"\r\n");
        let encoded_len = encoded.len();
        encoded.extend_from_slice(&after);

        let (data, end) = decode(&split(&encoded, &splits));
        assert_eq!(data, body, "decoded body differs");
        assert_eq!(
            end,
            End::Done(after),
            "not done exactly at the end of the encoding"
        );
        // The encoding alone, in one read, is done with nothing left.
        let (data, end) = decode(&[&encoded[..encoded_len]]);
        assert_eq!(data, body);
        assert_eq!(end, End::Done(Vec::new()));
    }
    Input::AnyBytes { bytes, splits } => {
        let whole = decode(&[&bytes]);
        assert!(whole.0.len() <= bytes.len(), "more bytes out than in");
        if let End::Done(rest) = &whole.1 {
            assert!(whole.0.len() + rest.len() <= bytes.len());
            assert!(bytes.ends_with(rest));
        }
        let pieces = decode(&split(&bytes, &splits));
        assert_eq!(
            whole, pieces,
            "the outcome depends on how the bytes were read"
        );
    }
});
