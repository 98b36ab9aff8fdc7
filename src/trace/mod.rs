//! Distributed tracing: the ids a trace is made of. A trace id names one request's whole
//! tree across services; a span id names one operation in it (the gateway's server span,
//! each upstream call). W3C Trace Context writes both as lowercase hex
//! (`traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`); all-zero ids are
//! invalid there, so `random` never makes one.
//!
//! - `context`: a request's trace context: the client's `traceparent` continued (or a
//!   trace started), `tracestate` and `baggage` passed on, a child span per upstream try.
//! - `record`: the spans a request records while `[tracing]` exports: plain structs,
//!   no SDK type on the request's task.
//! - `export`: sampling, and the exporter thread that turns recorded spans into
//!   OpenTelemetry's and sends them in batches over OTLP, dropping (and counting) what
//!   a slow or absent collector cannot take; `queue` bounds what waits for it.

pub mod context;
pub mod export;
mod queue;
pub mod record;

pub use context::{SAMPLED, TraceContext, TraceParent};
pub use export::Tracing;

use std::fmt;

/// A 16-byte trace id, shared by every span of one trace.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id, unique to one span within its trace.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Writes `bytes` as lowercase hex into `out`, which is twice as long.
fn encode_hex(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// Reads lowercase hex (W3C forbids uppercase) of exactly `N` bytes.
fn decode_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

impl TraceId {
    /// A random id, never all zeros.
    pub fn random() -> Self {
        loop {
            let id = fastrand::u128(..).to_be_bytes();
            if id != [0; 16] {
                return Self(id);
            }
        }
    }

    /// Parses 32 lowercase hex digits; `None` for any other text or all zeros.
    pub fn from_hex(text: &[u8]) -> Option<Self> {
        decode_hex::<16>(text).filter(|id| *id != [0; 16]).map(Self)
    }

    /// The 32 lowercase hex digits.
    pub fn to_hex(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        encode_hex(&self.0, &mut out);
        out
    }
}

impl SpanId {
    /// A random id, never all zeros.
    pub fn random() -> Self {
        loop {
            let id = fastrand::u64(..).to_be_bytes();
            if id != [0; 8] {
                return Self(id);
            }
        }
    }

    /// Parses 16 lowercase hex digits; `None` for any other text or all zeros.
    pub fn from_hex(text: &[u8]) -> Option<Self> {
        decode_hex::<8>(text).filter(|id| *id != [0; 8]).map(Self)
    }

    /// The 16 lowercase hex digits.
    pub fn to_hex(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        encode_hex(&self.0, &mut out);
        out
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ASCII hex digits: always valid UTF-8.
        f.write_str(std::str::from_utf8(&self.to_hex()).unwrap_or_default())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.to_hex()).unwrap_or_default())
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let t = TraceId::random();
        assert_eq!(TraceId::from_hex(&t.to_hex()), Some(t));
        let s = SpanId::random();
        assert_eq!(SpanId::from_hex(&s.to_hex()), Some(s));
        let known = TraceId::from_hex(b"4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(known.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(known.0[0], 0x4b);
    }

    #[test]
    fn invalid_ids_are_refused() {
        assert_eq!(TraceId::from_hex(&[b'0'; 32]), None);
        assert_eq!(SpanId::from_hex(&[b'0'; 16]), None);
        assert_eq!(TraceId::from_hex(b"4BF92F3577B34DA6A3CE929D0E0E4736"), None);
        assert_eq!(SpanId::from_hex(b"00f067aa0ba902b"), None);
        assert_eq!(SpanId::from_hex(b"00f067aa0ba902bg"), None);
        assert_eq!(SpanId::from_hex(b"00f067aa0ba902b7a"), None);
    }
}
