//! Weighted canaries: the pick from arbitrary weights and a request's `Cookie` and
//! `x-user-id` header bytes (the sticky keys' values come from the network).
//!
//! Properties:
//! 1. Nothing panics, on any bytes.
//! 2. The pick is an upstream whose weight is above 0.
//! 3. A request that carries its sticky header picks the same upstream every time, the
//!    one the pick table gives for the SHA-256 draw of the header's value.
//!
//! Input: the first byte is the number of upstreams (1 to 4), the next four bytes their
//! weights; the rest, split at the first `\n`, is a `Cookie` value and an `x-user-id`.
#![no_main]

use fanout::canary::Canary;
use fanout::canary::pick::{PickTable, sticky_draw};
use fanout::config::{CanarySpec, StickyKey};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 5 {
        return;
    }
    let n = usize::from(data[0] % 4) + 1;
    let weights: Vec<u32> = data[1..=n].iter().map(|&w| u32::from(w)).collect();
    if weights.iter().all(|&w| w == 0) {
        assert!(PickTable::new(&weights).is_none());
        return;
    }
    let rest = &data[5..];
    let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (cookie, user) = (&rest[..cut], rest.get(cut + 1..).unwrap_or_default());
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(cookie) {
        headers.insert(header::COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_bytes(user) {
        headers.insert("x-user-id", v);
    }
    let upstreams: Vec<(String, u32)> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| (format!("u{i}"), w))
        .collect();
    let table = PickTable::new(&weights).unwrap();
    for sticky in [
        None,
        Some(StickyKey::Header("x-user-id".parse().unwrap())),
        Some(StickyKey::Cookie("uid".into())),
    ] {
        let spec = CanarySpec {
            upstreams: upstreams.clone(),
            sticky: sticky.clone(),
        };
        let canary = Canary::new(&spec, vec![(); n], |_| Default::default());
        let pick = canary.pick(&headers, None);
        assert!(weights[pick] > 0, "{weights:?} picked {pick}");
        if let Some(StickyKey::Header(name)) = &sticky
            && let Some(v) = headers.get(name).filter(|v| !v.is_empty())
        {
            assert_eq!(pick, table.pick(sticky_draw(v.as_bytes())));
            assert_eq!(pick, canary.pick(&headers, None));
        }
    }
});
