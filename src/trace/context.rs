//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) and W3C Baggage on the
//! wire: reading a client's `traceparent`, `tracestate` and `baggage`, and writing the
//! `traceparent` each upstream call and the answer carry.
//!
//! The rules, as the spec words them:
//! - `traceparent` is `version-traceid-parentid-flags`, lowercase hex. Version `00` is
//!   exactly 55 characters; a higher version (never `ff`) is read by its first 55 and
//!   may go on only after a `-`. All-zero ids are invalid. Whatever is invalid starts a
//!   new trace: a header is never a reason to refuse a request.
//! - `tracestate` is read only beside a valid `traceparent`, and passed on as it came
//!   (its values joined by `,`) when every list member is well formed, no key repeats,
//!   and it stays within 32 members and 512 characters; otherwise it is dropped.
//! - `baggage` is passed on as it came, up to 8192 bytes (the spec's minimum a
//!   platform must propagate); a larger one is dropped.
//!
//! The gateway writes version `00` with only the sampled flag it knows.

use super::record::SpanLog;
use super::{SpanId, TraceId};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// The `traceparent` header.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The `baggage` header (W3C Baggage).
pub static BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// The `sampled` bit of the trace flags.
pub const SAMPLED: u8 = 0x01;
/// Most list members a `tracestate` may have.
pub const TRACESTATE_MAX_MEMBERS: usize = 32;
/// Longest `tracestate` passed on.
pub const TRACESTATE_MAX_LEN: usize = 512;
/// Longest `baggage` passed on.
pub const BAGGAGE_MAX_LEN: usize = 8192;
/// Length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

/// One span's position in a trace, as a `traceparent` header carries it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceParent {
    pub trace_id: TraceId,
    /// The span the receiver's spans are children of.
    pub span_id: SpanId,
    /// The trace flags; the gateway writes only [`SAMPLED`].
    pub flags: u8,
}

impl TraceParent {
    /// Reads a `traceparent` value by the spec's rules (see the module docs): `None`
    /// when it is invalid.
    pub fn parse(text: &[u8]) -> Option<Self> {
        if text.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = decode_byte(&text[0..2])?;
        if version == 0xff {
            return None;
        }
        if version == 0 && text.len() != TRACEPARENT_LEN {
            return None;
        }
        // A later version may add fields, each after a `-`.
        if text.len() > TRACEPARENT_LEN && text[TRACEPARENT_LEN] != b'-' {
            return None;
        }
        if text[2] != b'-' || text[35] != b'-' || text[52] != b'-' {
            return None;
        }
        let trace_id = TraceId::from_hex(&text[3..35])?;
        let span_id = SpanId::from_hex(&text[36..52])?;
        let flags = decode_byte(&text[53..55])?;
        Some(Self {
            trace_id,
            span_id,
            flags: flags & SAMPLED,
        })
    }

    /// Whether the trace is sampled.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The same trace and flags, with a new span id: an upstream call's.
    pub fn child(&self) -> Self {
        Self {
            span_id: SpanId::random(),
            ..*self
        }
    }

    /// The header value's bytes, on the stack: `00-<trace id>-<span id>-<flags>`.
    pub fn encode(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[0..2].copy_from_slice(b"00");
        out[3..35].copy_from_slice(&self.trace_id.to_hex());
        out[36..52].copy_from_slice(&self.span_id.to_hex());
        super::encode_hex(&[self.flags], &mut out[53..55]);
        out
    }

    /// The header value (one allocation, for a `HeaderMap`).
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.encode()).expect("hex digits and dashes are a valid value")
    }
}

fn decode_byte(text: &[u8]) -> Option<u8> {
    super::decode_hex::<1>(text).map(|[b]| b)
}

/// One request's trace context: the trace it belongs to, the gateway's server span in
/// it, and what the client asked to pass on.
#[derive(Clone, Debug)]
pub struct TraceContext {
    /// The server span's `traceparent`: the answer carries it, every upstream call a
    /// child of it.
    pub server: TraceParent,
    /// The client's span, the server span's parent; `None` for a trace started here.
    pub parent: Option<SpanId>,
    /// The client's `tracestate`, when valid.
    pub tracestate: Option<HeaderValue>,
    /// The client's `baggage`, when within bounds.
    pub baggage: Option<HeaderValue>,
    /// Where the request's spans are recorded; `None` when spans are not exported.
    pub log: Option<Arc<SpanLog>>,
}

impl TraceContext {
    /// The context of a request with these headers: the client's trace continued when
    /// its `traceparent` is valid, else a new trace, sampled as `sample_new` says.
    pub fn of(headers: &HeaderMap, sample_new: impl FnOnce(TraceId) -> bool) -> Self {
        let client = single(headers, &TRACEPARENT).and_then(|v| TraceParent::parse(v.as_bytes()));
        let baggage = baggage(headers);
        match client {
            Some(client) => Self {
                server: client.child(),
                parent: Some(client.span_id),
                tracestate: tracestate(headers),
                baggage,
                log: None,
            },
            None => {
                let trace_id = TraceId::random();
                let flags = if sample_new(trace_id) { SAMPLED } else { 0 };
                Self {
                    server: TraceParent {
                        trace_id,
                        span_id: SpanId::random(),
                        flags,
                    },
                    parent: None,
                    tracestate: None,
                    baggage,
                    log: None,
                }
            }
        }
    }

    /// Adds what every upstream call of the request carries besides its own
    /// `traceparent`: the `tracestate` and `baggage` passed on. Any of the three the
    /// headers already hold (a client's, forwarded) is replaced.
    pub fn pass_on(&self, headers: &mut HeaderMap) {
        // Most requests carry none of the three: one pass over the few names present is
        // cheaper than three hashed removals.
        let carried = headers
            .keys()
            .any(|name| matches!(name.as_str(), "traceparent" | "tracestate" | "baggage"));
        if carried {
            headers.remove(&TRACEPARENT);
        }
        match &self.tracestate {
            Some(v) => {
                headers.insert(TRACESTATE.clone(), v.clone());
            }
            None if carried => {
                headers.remove(&TRACESTATE);
            }
            None => {}
        }
        match &self.baggage {
            Some(v) => {
                headers.insert(BAGGAGE.clone(), v.clone());
            }
            None if carried => {
                headers.remove(&BAGGAGE);
            }
            None => {}
        }
    }
}

/// The header's only value; `None` when it is missing or repeated.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// The header's values as one, joined by `,` as a list header's may be (RFC 9110
/// §5.3); a single value is kept as it is, without a copy. `None` past `max` bytes.
fn joined(headers: &HeaderMap, name: &HeaderName, max: usize) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let Some(second) = values.next() else {
        return (first.len() <= max).then(|| first.clone());
    };
    let mut all = Vec::with_capacity(first.len() + 1 + second.len());
    all.extend_from_slice(first.as_bytes());
    for v in std::iter::once(second).chain(values) {
        all.push(b',');
        all.extend_from_slice(v.as_bytes());
        if all.len() > max {
            return None;
        }
    }
    HeaderValue::from_bytes(&all).ok()
}

fn baggage(headers: &HeaderMap) -> Option<HeaderValue> {
    joined(headers, &BAGGAGE, BAGGAGE_MAX_LEN)
}

fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let value = joined(headers, &TRACESTATE, TRACESTATE_MAX_LEN)?;
    valid_tracestate(value.as_bytes()).then_some(value)
}

/// Whether `text` is a well-formed `tracestate` of at most 32 members with no key twice.
pub fn valid_tracestate(text: &[u8]) -> bool {
    if text.len() > TRACESTATE_MAX_LEN {
        return false;
    }
    let mut keys: [&[u8]; TRACESTATE_MAX_MEMBERS] = [&[]; TRACESTATE_MAX_MEMBERS];
    let mut count = 0;
    for member in text.split(|&b| b == b',') {
        let member = member.trim_ascii();
        // Empty members (`a=1,,b=2`) are allowed and skipped.
        if member.is_empty() {
            continue;
        }
        let Some(eq) = member.iter().position(|&b| b == b'=') else {
            return false;
        };
        let (key, value) = (&member[..eq], &member[eq + 1..]);
        if !valid_key(key) || !valid_value(value) {
            return false;
        }
        if count == TRACESTATE_MAX_MEMBERS || keys[..count].contains(&key) {
            return false;
        }
        keys[count] = key;
        count += 1;
    }
    true
}

/// `simple-key` or `tenant-id@system-id`.
fn valid_key(key: &[u8]) -> bool {
    let rest = |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    match key.iter().position(|&b| b == b'@') {
        None => {
            (1..=256).contains(&key.len())
                && key[0].is_ascii_lowercase()
                && key[1..].iter().all(rest)
        }
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            (1..=241).contains(&tenant.len())
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant[1..].iter().all(rest)
                && (1..=14).contains(&system.len())
                && system[0].is_ascii_lowercase()
                && system[1..].iter().all(rest)
        }
    }
}

/// Up to 256 printable ASCII characters but `,` and `=`, not ending in a space.
fn valid_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && value.last() != Some(&b' ')
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;
