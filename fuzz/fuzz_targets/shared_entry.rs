//! The shared cache's value layout: bytes read back from the cluster store (Redis), so
//! bytes from the network.
//!
//! Properties:
//! 1. Nothing panics, on any bytes: a value is an entry or an error (a miss).
//! 2. An entry read from any bytes writes back to a value that reads as the same entry,
//!    and to the same bytes but for the case of header names (`http` lowercases them):
//!    a value is read only when it is whole and exactly one `encode` could write.
//! 3. An entry built from arbitrary parts (status, headers, body, windows, time) reads
//!    back equal; every prefix of its value shorter than the whole is refused.
#![no_main]

use bytes::Bytes;
use fanout::cache::{CachePolicy, Stored, decode, encode};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|input: (bool, &[u8])| {
    let (built, data) = input;
    if built {
        from_parts(data);
    } else {
        from_bytes(data);
    }
});

fn from_bytes(data: &[u8]) {
    let Ok(entry) = decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = encode(&entry.stored, entry.policy, entry.stored_at_ms);
    let reread = decode(again.clone()).expect("an entry's value reads back");
    assert_eq!(reread, entry);
    // Only header names can differ: `http` lowercases them.
    assert_eq!(again.len(), data.len());
    assert!(again.eq_ignore_ascii_case(data));
}

/// Builds an entry from `data`: a status, up to 8 headers, windows, a time and a body,
/// each taken from the bytes in turn.
fn from_parts(data: &[u8]) {
    let mut at = 0;
    let mut next = |n: usize| -> &[u8] {
        let start = at.min(data.len());
        at = at.saturating_add(n).min(data.len());
        &data[start..at]
    };
    let number = |bytes: &[u8]| bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
    let status = StatusCode::from_u16(100 + (number(next(2)) % 900) as u16).unwrap();
    let policy = CachePolicy {
        ttl: Duration::from_millis(number(next(4))),
        stale_while_revalidate: Duration::from_millis(number(next(4))),
        stale_if_error: Duration::from_millis(number(next(4))),
    };
    let stored_at_ms = number(next(8));
    let mut headers = HeaderMap::new();
    let count = number(next(1)) % 9;
    for _ in 0..count {
        let name_len = (number(next(1)) % 16) as usize + 1;
        let name: Vec<u8> = next(name_len)
            .iter()
            .map(|b| b"abcdefghijklmnopqrstuvwxyz-0123"[usize::from(b % 31)])
            .collect();
        let value_len = (number(next(1)) % 32) as usize;
        let value: Vec<u8> = next(value_len).iter().map(|b| 0x20 + b % 0x5f).collect();
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&name),
            HeaderValue::from_bytes(&value),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let body = Bytes::copy_from_slice(next(usize::MAX));
    let stored = Stored {
        status,
        headers,
        body,
    };
    let value = encode(&stored, policy, stored_at_ms);
    let entry = decode(value.clone()).expect("a written value reads back");
    assert_eq!(entry.stored, stored);
    assert_eq!(entry.policy, policy);
    assert_eq!(entry.stored_at_ms, stored_at_ms);
    for len in 0..value.len() {
        assert!(
            decode(value.slice(..len)).is_err(),
            "a prefix of {len} bytes was read"
        );
    }
}
