//! W3C Trace Context: the `traceparent` parser and writer, the `tracestate` check, and
//! a request's context made from arbitrary header bytes.
//!
//! Properties:
//! 1. Nothing panics, on any bytes.
//! 2. A parsed `traceparent` writes back as a valid version-00 header of 55 characters
//!    that parses to the same trace id, span id and sampled flag; a version-00 input
//!    with flags `00` or `01` writes back byte for byte.
//! 3. A value the parser takes has the shape the spec gives: lowercase hex version (not
//!    `ff`), ids that are 32 and 16 lowercase hex digits and not all zeros, `-` between
//!    the fields, exactly 55 characters for version 00, more only after a `-`.
//! 4. A request's context continues a valid client `traceparent` (same trace, sampled
//!    flag carried, the client's span as parent, a new span of its own) and otherwise
//!    starts a trace; a `tracestate` is kept only beside a valid parent, and then is
//!    the client's value, valid, at most 512 characters.
#![no_main]

use fanout::trace::context::{TRACEPARENT, TRACESTATE, valid_tracestate};
use fanout::trace::{TraceContext, TraceParent};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fn lower_hex(text: &[u8]) -> bool {
    text.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn shaped(text: &[u8]) -> bool {
    if text.len() < 55 || !lower_hex(&text[0..2]) || &text[0..2] == b"ff" {
        return false;
    }
    let fields_ok = text[2] == b'-'
        && text[35] == b'-'
        && text[52] == b'-'
        && lower_hex(&text[3..35])
        && lower_hex(&text[36..52])
        && lower_hex(&text[53..55])
        && text[3..35].iter().any(|&b| b != b'0')
        && text[36..52].iter().any(|&b| b != b'0');
    let length_ok = if &text[0..2] == b"00" {
        text.len() == 55
    } else {
        text.len() == 55 || text[55] == b'-'
    };
    fields_ok && length_ok
}

fuzz_target!(|data: &[u8]| {
    let parsed = TraceParent::parse(data);
    assert_eq!(parsed.is_some(), shaped(data), "{:?}", String::from_utf8_lossy(data));
    if let Some(tp) = parsed {
        let written = tp.encode();
        assert_eq!(&written[0..3], b"00-");
        let again = TraceParent::parse(&written).expect("what is written parses");
        assert_eq!(again, tp);
        assert_eq!(tp.header_value().as_bytes(), &written[..]);
        if data.starts_with(b"00") && (data.ends_with(b"-00") || data.ends_with(b"-01")) {
            assert_eq!(&written[..], data);
        }
        let child = tp.child();
        assert_eq!((child.trace_id, child.flags), (tp.trace_id, tp.flags));
    }

    let _ = valid_tracestate(data);
    // The input split in two: a traceparent and a tracestate.
    let cut = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (tp, ts) = (&data[..cut], data.get(cut + 1..).unwrap_or_default());
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(tp) {
        headers.insert(TRACEPARENT.clone(), v);
    }
    if let Ok(v) = HeaderValue::from_bytes(ts) {
        headers.insert(TRACESTATE.clone(), v);
    }
    let cx = TraceContext::of(&headers, |_| true);
    let client = headers
        .get(&TRACEPARENT)
        .and_then(|v| TraceParent::parse(v.as_bytes()));
    match client {
        Some(client) => {
            assert_eq!(cx.server.trace_id, client.trace_id);
            assert_eq!(cx.server.flags, client.flags);
            assert_eq!(cx.parent, Some(client.span_id));
            if let Some(state) = &cx.tracestate {
                assert_eq!(Some(state), headers.get(&TRACESTATE));
                assert!(state.len() <= 512 && valid_tracestate(state.as_bytes()));
            }
        }
        None => {
            assert_eq!(cx.parent, None);
            assert_eq!(cx.tracestate, None);
            assert!(cx.server.sampled());
        }
    }
    let written = cx.server.encode();
    assert_eq!(TraceParent::parse(&written), Some(cx.server));
});
