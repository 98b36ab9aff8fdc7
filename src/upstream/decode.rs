//! Content codings of answers read whole (aggregate backends): `gzip`, `deflate`, `br`
//! and `zstd` are decoded, bounded by `max_response` on the decoded size, so a small
//! compressed answer that inflates without end (a zip bomb) fails as `too_large` after
//! at most that many bytes. Any other coding fails with a message that names it.
//!
//! Backends are asked for `identity` (see `aggregate`); this is for the upstreams that
//! compress anyway, or that an upstream's own `headers` asked to.

use super::CallError;
use bytes::Bytes;
use std::io::Read;

/// zstd's window, log2 bytes: 8 MiB, what RFC 9659 asks HTTP decoders to support. A
/// frame that needs more is refused instead of making the decoder allocate its window.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// The codings of a `Content-Encoding` field's values, in the order they were applied;
/// `identity` and empty entries are left out.
pub fn codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"identity"))
        .collect()
}

/// `body` with `codings` undone, last applied first, of at most `limit` bytes.
pub fn decode(codings: &[&[u8]], body: Bytes, limit: u64) -> Result<Bytes, CallError> {
    let mut body = body;
    for &coding in codings.iter().rev() {
        body = decode_one(coding, &body, limit)?;
    }
    Ok(body)
}

fn decode_one(coding: &[u8], body: &[u8], limit: u64) -> Result<Bytes, CallError> {
    let named = |name: &str| coding.eq_ignore_ascii_case(name.as_bytes());
    if named("gzip") || named("x-gzip") {
        // Multi-member: a gzip file may be several members one after the other.
        read_bounded(flate2::read::MultiGzDecoder::new(body), limit, "gzip")
    } else if named("deflate") {
        // RFC 9110's deflate is zlib-wrapped; some servers send the raw stream, which
        // browsers accept too.
        match read_bounded(flate2::read::ZlibDecoder::new(body), limit, "deflate") {
            Err(CallError::Decode(_)) => {
                read_bounded(flate2::read::DeflateDecoder::new(body), limit, "deflate")
            }
            other => other,
        }
    } else if named("br") {
        read_bounded(brotli::Decompressor::new(body, 4096), limit, "br")
    } else if named("zstd") {
        let mut decoder = zstd::stream::read::Decoder::new(body).map_err(|e| corrupt("zstd", e))?;
        decoder
            .window_log_max(ZSTD_WINDOW_LOG_MAX)
            .map_err(|e| corrupt("zstd", e))?;
        read_bounded(decoder, limit, "zstd")
    } else {
        Err(CallError::Decode(format!(
            "Content-Encoding \"{}\" is not one the gateway decodes (gzip, deflate, br, zstd)",
            String::from_utf8_lossy(coding)
        )))
    }
}

fn corrupt(coding: &str, e: std::io::Error) -> CallError {
    CallError::Decode(format!("its {coding} encoding is corrupt: {e}"))
}

/// Reads `decoder` to its end, failing past `limit` bytes or on a corrupt stream.
fn read_bounded(decoder: impl Read, limit: u64, coding: &str) -> Result<Bytes, CallError> {
    let mut out = Vec::new();
    // One byte past the limit tells a body of exactly `limit` from a larger one.
    decoder
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| corrupt(coding, e))?;
    if out.len() as u64 > limit {
        return Err(CallError::TooLarge(limit));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decoded(coding: &str, body: Vec<u8>, limit: u64) -> Result<Bytes, CallError> {
        decode(
            &codings([coding.as_bytes()].into_iter()),
            Bytes::from(body),
            limit,
        )
    }

    #[test]
    fn each_coding_round_trips() {
        let data = br#"{"v":"hello hello hello hello"}"#;
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        zlib.write_all(data).unwrap();
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(data).unwrap();
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 4, 22)
            .write_all(data)
            .unwrap();
        let zstd = zstd::encode_all(&data[..], 3).unwrap();
        for (coding, body) in [
            ("gzip", gzip(data)),
            ("X-Gzip", gzip(data)),
            ("deflate", zlib.finish().unwrap()),
            ("deflate", raw.finish().unwrap()),
            ("br", br),
            ("zstd", zstd),
            ("identity", data.to_vec()),
        ] {
            assert_eq!(&decoded(coding, body, 1024).unwrap()[..], data, "{coding}");
        }
    }

    #[test]
    fn layered_codings_are_undone_last_first() {
        let data = b"[1,2,3]";
        let twice = zstd::encode_all(&gzip(data)[..], 1).unwrap();
        let values = [&b"gzip, identity"[..], b" zstd"];
        let body = decode(&codings(values.into_iter()), Bytes::from(twice), 100).unwrap();
        assert_eq!(&body[..], data);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![b'0'; 10 << 20]);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        let e = decoded("gzip", bomb, 1 << 20).unwrap_err();
        assert_eq!(e.code(), "too_large");
        let exact = gzip(&[b'1'; 100]);
        assert_eq!(decoded("gzip", exact, 100).unwrap().len(), 100);
    }

    #[test]
    fn unknown_and_corrupt_encodings_say_which() {
        let e = decoded("compress", b"x".to_vec(), 100).unwrap_err();
        assert_eq!(e.code(), "bad_encoding");
        assert!(e.to_string().contains("\"compress\""), "{e}");
        let e = decoded("gzip", b"not gzip at all".to_vec(), 100).unwrap_err();
        assert!(e.to_string().contains("gzip"), "{e}");
        let e = decoded("br", b"\xff\xff\xff".to_vec(), 100).unwrap_err();
        assert!(e.to_string().contains("br"), "{e}");
    }
}
