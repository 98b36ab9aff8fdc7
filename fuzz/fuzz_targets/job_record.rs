//! An async route's job record: bytes read back from the cluster store (Redis), so
//! bytes from the network.
//!
//! Properties:
//! 1. Nothing panics, on any bytes: a value is a record or an error (an unknown job).
//! 2. A record read from any bytes writes back to a value that reads as the same
//!    record, of the same length (only header names' case may differ).
//! 3. A record built from arbitrary parts reads back equal; every prefix of its value
//!    shorter than the whole is refused.
#![no_main]

use bytes::Bytes;
use fanout::cache::Stored;
use fanout::jobs::{JobRecord, JobState, Owner, decode, encode};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, &[u8])| {
    let (built, data) = input;
    if built {
        from_parts(data);
    } else {
        from_bytes(data);
    }
});

fn from_bytes(data: &[u8]) {
    let Ok(record) = decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = encode(&record);
    assert_eq!(decode(again.clone()).expect("a record reads back"), record);
    assert_eq!(again.len(), data.len());
    assert!(again.eq_ignore_ascii_case(data));
}

fn from_parts(data: &[u8]) {
    let mut at = 0;
    let mut next = |n: usize| -> &[u8] {
        let start = at.min(data.len());
        at = at.saturating_add(n).min(data.len());
        &data[start..at]
    };
    let number = |bytes: &[u8]| bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
    let tag = number(next(1));
    let owner = (tag & 1 == 1).then(|| {
        let mut bytes = [0u8; 32];
        let taken = next(32);
        bytes[..taken.len()].copy_from_slice(taken);
        Owner(bytes)
    });
    let state = match (tag >> 1) % 3 {
        0 => JobState::Pending,
        1 => JobState::Cancelled,
        _ => {
            let status = StatusCode::from_u16(100 + (number(next(2)) % 900) as u16).unwrap();
            let mut headers = HeaderMap::new();
            for _ in 0..number(next(1)) % 9 {
                let name_len = (number(next(1)) % 16) as usize + 1;
                let name: Vec<u8> = next(name_len)
                    .iter()
                    .map(|b| b"abcdefghijklmnopqrstuvwxyz-0123"[usize::from(b % 31)])
                    .collect();
                let value_len = (number(next(1)) % 32) as usize;
                let value: Vec<u8> = next(value_len).iter().map(|b| 0x20 + b % 0x5f).collect();
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(&name),
                    HeaderValue::from_bytes(&value),
                ) {
                    headers.append(name, value);
                }
            }
            JobState::Done(Stored {
                status,
                headers,
                body: Bytes::copy_from_slice(next(usize::MAX)),
            })
        }
    };
    let record = JobRecord { owner, state };
    let value = encode(&record);
    assert_eq!(decode(value.clone()).expect("a written record reads back"), record);
    for len in 0..value.len() {
        assert!(decode(value.slice(..len)).is_err(), "a prefix of {len} bytes was read");
    }
}
