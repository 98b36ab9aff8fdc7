//! Response compression (gzip, br) for clients that accept it: which encoding a client
//! gets, which answers are compressed, and the encoders, as functions over whole bodies.
//! Every answer worth compressing is whole in memory already (aggregate JSON, errors);
//! proxied answers stream through as the upstream sent them.
//! Kept over tower-http's `CompressionLayer` (with a size, content-type and not-proxied
//! predicate), which measured 2 more allocations per request (its 5.8 KB body boxed),
//! 2 more per proxied answer (the marker extension) and a 176 B service future for 8 B.

use crate::body::{Body, full};
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    VARY,
};
use http::{HeaderMap, HeaderValue, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::io::Write;

/// Answers smaller than this are never worth compressing, whatever the setting.
const FLOOR: u64 = 32;
/// Brotli's quality: 4 compresses JSON about as well as gzip -6, several times faster
/// than brotli's default of 11.
const BROTLI_QUALITY: u32 = 4;
/// Brotli's window, log2 bytes (its default).
const BROTLI_WINDOW: u32 = 22;

/// A content coding the gateway can send; on equal preference (`q`) the later wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

impl Encoding {
    fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
        })
    }
}

/// The encoding a request's `Accept-Encoding` prefers (RFC 9110 §12.5.3): the highest
/// `q` among `br`, `gzip` (or `x-gzip`) and `identity`, with `*` standing for the
/// codings not listed; br before gzip before identity on a tie. An entry with a
/// malformed `q` is ignored; no acceptable coding means no compression.
pub fn negotiate(headers: &HeaderMap) -> Encoding {
    let mut listed = [None::<u16>; 3];
    let mut wildcard = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',') {
            let mut parts = entry.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q = match parts.next() {
                None => Some(1000),
                Some(param) => parse_q(param),
            };
            let Some(q) = q else { continue };
            let slot = if coding.eq_ignore_ascii_case("br") {
                &mut listed[Encoding::Brotli as usize]
            } else if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                &mut listed[Encoding::Gzip as usize]
            } else if coding.eq_ignore_ascii_case("identity") {
                &mut listed[Encoding::Identity as usize]
            } else if coding == "*" {
                &mut wildcard
            } else {
                continue;
            };
            *slot = Some(q);
        }
    }
    [Encoding::Identity, Encoding::Gzip, Encoding::Brotli]
        .into_iter()
        .filter_map(|e| {
            // `*` covers br and gzip when unlisted; identity counts only when named.
            let q = match (listed[e as usize], e) {
                (Some(q), _) => q,
                (None, Encoding::Identity) => return None,
                (None, _) => wildcard?,
            };
            (q > 0).then_some((q, e))
        })
        .max()
        .map_or(Encoding::Identity, |(_, e)| e)
}

/// A `q=` parameter as thousandths: `q=0.5` is 500. `None` when malformed.
fn parse_q(param: &str) -> Option<u16> {
    let value = param
        .strip_prefix("q=")
        .or_else(|| param.strip_prefix("Q="))?;
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Whether an answer of `len` bytes with these headers is compressed (proxied answers
/// never reach here, see `gateway::serve`): not encoded already, not a range,
/// at least `min` bytes, and not a format that is compressed already or must not be
/// held back (images but SVG, gRPC, server-sent events).
pub fn compressible(response: &Response<Body>, len: u64, min: u64) -> bool {
    let headers = response.headers();
    if headers.contains_key(CONTENT_ENCODING)
        || headers.contains_key(CONTENT_RANGE)
        || len < min.max(FLOOR)
    {
        return false;
    }
    let kind = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let starts = |prefix: &str| {
        kind.get(..prefix.len())
            .is_some_and(|k| k.eq_ignore_ascii_case(prefix))
    };
    !((starts("image/") && !starts("image/svg+xml"))
        || (starts("application/grpc") && !starts("application/grpc-web"))
        || starts("text/event-stream"))
}

/// Compresses `response` as `encoding` when it is [`compressible`], and says in `Vary`
/// that its form depends on `Accept-Encoding`.
pub async fn apply(response: Response<Body>, encoding: Encoding, min: u64) -> Response<Body> {
    // Only a body of known size is whole in memory; collecting it costs nothing.
    let Some(len) = response.body().size_hint().exact() else {
        return response;
    };
    if !compressible(&response, len, min) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    add_vary(&mut parts.headers);
    if encoding == Encoding::Identity {
        return Response::from_parts(parts, body);
    }
    let plain = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::warn!(error = %e, "an in-memory response body failed");
            return Response::from_parts(parts, crate::body::empty());
        }
    };
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.remove(ACCEPT_RANGES);
    parts
        .headers
        .insert(CONTENT_ENCODING, encoding.header_value());
    Response::from_parts(parts, full(encode(&plain, encoding)))
}

fn add_vary(headers: &mut HeaderMap) {
    let named = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || t.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !named {
        headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// `plain` in `encoding`.
pub fn encode(plain: &[u8], encoding: Encoding) -> Vec<u8> {
    let mut out = Vec::with_capacity(plain.len() / 4 + 64);
    match encoding {
        Encoding::Identity => out.extend_from_slice(plain),
        Encoding::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            encoder.write_all(plain).expect("writing to a Vec");
            out = encoder.finish().expect("writing to a Vec");
        }
        Encoding::Brotli => {
            let mut encoder =
                brotli::CompressorWriter::new(&mut out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
            encoder.write_all(plain).expect("writing to a Vec");
            // Taking the writer back ends the brotli stream.
            encoder.into_inner();
        }
    }
    out
}

#[cfg(test)]
#[path = "compress_tests.rs"]
mod tests;
