//! The value the shared cache stores in the cluster store: a versioned binary layout of
//! one answer (status, kept headers, body), the writer's windows and when it stored
//! the answer. Read back, it is bytes from the network: [`decode`] takes only a value
//! that is whole and exactly what [`encode`] writes, and anything else is an error (the
//! caller's miss), never a panic (fuzzed: `fuzz/fuzz_targets/shared_entry.rs`).

use super::{CachePolicy, Stored};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::time::Duration;

/// The first bytes of every value: a tag and the layout's version.
const MAGIC: &[u8; 4] = b"fcs\x01";
/// The longest window a value may carry (ten years): more is not a value this gateway
/// wrote, and would overflow the clock's arithmetic.
const MAX_WINDOW_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// A stored answer read back: the answer, and the writer's windows and time.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedEntry {
    pub stored: Stored,
    pub policy: CachePolicy,
    /// Unix milliseconds on the writer's clock.
    pub stored_at_ms: u64,
}

/// Why a value read from the store is not an entry (it is then a miss).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a cache entry of this version")]
    Magic,
    #[error("the value ends early")]
    Truncated,
    #[error("bytes after the entry's end")]
    Trailing,
    #[error("a window beyond ten years")]
    Window,
    #[error("a status outside 100..=999")]
    Status,
    #[error("an invalid header name or value")]
    Header,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The value stored for `stored`, written at Unix milliseconds `stored_at_ms` under
/// `policy`: magic, stored_at, ttl, stale-while-revalidate, stale-if-error (u64 ms),
/// status (u16), the header count (u16), each header as name length (u16), name, value
/// length (u32), value; the body's length (u64) and the body. Big-endian throughout.
pub fn encode(stored: &Stored, policy: CachePolicy, stored_at_ms: u64) -> Bytes {
    let fields: usize = stored
        .headers
        .iter()
        .map(|(n, v)| 6 + n.as_str().len() + v.len())
        .sum();
    let mut out = BytesMut::with_capacity(4 + 8 * 4 + 4 + fields + 8 + stored.body.len());
    out.put_slice(MAGIC);
    out.put_u64(stored_at_ms);
    out.put_u64(ms(policy.ttl));
    out.put_u64(ms(policy.stale_while_revalidate));
    out.put_u64(ms(policy.stale_if_error));
    out.put_u16(stored.status.as_u16());
    // More headers than a u16 counts are not kept: no upstream answer has them (the
    // client's head limit is far below), and the count must stay exact.
    let count = stored.headers.len().min(usize::from(u16::MAX));
    out.put_u16(count as u16);
    for (name, value) in stored.headers.iter().take(count) {
        out.put_u16(name.as_str().len() as u16);
        out.put_slice(name.as_str().as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
    out.put_u64(stored.body.len() as u64);
    out.put_slice(&stored.body);
    out.freeze()
}

/// Takes `n` bytes off `value` as a slice of it (no copy).
fn take(value: &mut Bytes, n: usize) -> Result<Bytes, DecodeError> {
    if value.remaining() < n {
        return Err(DecodeError::Truncated);
    }
    Ok(value.split_to(n))
}

fn u16_of(value: &mut Bytes) -> Result<u16, DecodeError> {
    value.try_get_u16().map_err(|_| DecodeError::Truncated)
}

fn u32_of(value: &mut Bytes) -> Result<u32, DecodeError> {
    value.try_get_u32().map_err(|_| DecodeError::Truncated)
}

fn u64_of(value: &mut Bytes) -> Result<u64, DecodeError> {
    value.try_get_u64().map_err(|_| DecodeError::Truncated)
}

fn window(value: &mut Bytes) -> Result<Duration, DecodeError> {
    let ms = u64_of(value)?;
    if ms > MAX_WINDOW_MS {
        return Err(DecodeError::Window);
    }
    Ok(Duration::from_millis(ms))
}

/// Reads a value [`encode`] wrote, whole; anything else is an error, never a panic.
/// Header values and the body are slices of `value`.
pub fn decode(mut value: Bytes) -> Result<SharedEntry, DecodeError> {
    if take(&mut value, MAGIC.len()).map_err(|_| DecodeError::Magic)? != MAGIC[..] {
        return Err(DecodeError::Magic);
    }
    let stored_at_ms = u64_of(&mut value)?;
    let policy = CachePolicy {
        ttl: window(&mut value)?,
        stale_while_revalidate: window(&mut value)?,
        stale_if_error: window(&mut value)?,
    };
    let status = StatusCode::from_u16(u16_of(&mut value)?).map_err(|_| DecodeError::Status)?;
    let count = u16_of(&mut value)?;
    let mut headers = HeaderMap::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let len = usize::from(u16_of(&mut value)?);
        let name = take(&mut value, len)?;
        let name = HeaderName::from_bytes(&name).map_err(|_| DecodeError::Header)?;
        let len = u32_of(&mut value)? as usize;
        let bytes = take(&mut value, len)?;
        let value = HeaderValue::from_maybe_shared(bytes).map_err(|_| DecodeError::Header)?;
        headers.append(name, value);
    }
    let len = usize::try_from(u64_of(&mut value)?).map_err(|_| DecodeError::Truncated)?;
    let body = take(&mut value, len)?;
    if value.has_remaining() {
        return Err(DecodeError::Trailing);
    }
    Ok(SharedEntry {
        stored: Stored {
            status,
            headers,
            body,
        },
        policy,
        stored_at_ms,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn policy(ttl: u64, swr: u64, sie: u64) -> CachePolicy {
        CachePolicy {
            ttl: Duration::from_secs(ttl),
            stale_while_revalidate: Duration::from_secs(swr),
            stale_if_error: Duration::from_secs(sie),
        }
    }

    /// An answer with repeated, empty and typical headers: the fixture of the shared
    /// cache's tests too.
    pub(in crate::cache) fn sample() -> Stored {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.append("x-tag", HeaderValue::from_static("a"));
        headers.append("x-tag", HeaderValue::from_static("b"));
        headers.insert("x-empty", HeaderValue::from_static(""));
        Stored {
            status: StatusCode::NON_AUTHORITATIVE_INFORMATION,
            headers,
            body: Bytes::from_static(b"{\"id\":1}"),
        }
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let value = encode(&sample(), policy(10, 20, 30), 1_700_000_000_123);
        let entry = decode(value).unwrap();
        assert_eq!(entry.stored, sample());
        assert_eq!(entry.policy, policy(10, 20, 30));
        assert_eq!(entry.stored_at_ms, 1_700_000_000_123);
        // Repeated values keep their order.
        let tags: Vec<_> = entry.stored.headers.get_all("x-tag").iter().collect();
        assert_eq!(tags, ["a", "b"]);
        // No headers, no body.
        let empty = Stored {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        };
        assert_eq!(
            decode(encode(&empty, policy(1, 0, 0), 0)).unwrap().stored,
            empty
        );
    }

    #[test]
    fn a_truncated_or_garbage_value_is_an_error_not_a_panic() {
        let value = encode(&sample(), policy(10, 20, 30), 1);
        for len in 0..value.len() {
            assert!(decode(value.slice(..len)).is_err(), "cut at {len}");
        }
        let mut longer = value.to_vec();
        longer.push(0);
        assert_eq!(decode(Bytes::from(longer)), Err(DecodeError::Trailing));
        assert_eq!(
            decode(Bytes::from_static(b"{\"id\":1}")),
            Err(DecodeError::Magic)
        );
        // A status, a window or a header the gateway never writes.
        let mut status = value.to_vec();
        status[36..38].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(decode(Bytes::from(status)), Err(DecodeError::Status));
        let mut window = value.to_vec();
        window[12..20].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(decode(Bytes::from(window)), Err(DecodeError::Window));
        let mut header = value.to_vec();
        let at = header
            .windows(12)
            .position(|w| w == b"content-type")
            .unwrap();
        header[at] = b'\n';
        assert_eq!(decode(Bytes::from(header)), Err(DecodeError::Header));
        // A length beyond the value's end.
        let mut huge = value.to_vec();
        let body_len = huge.len() - 8 - 8;
        huge[body_len..body_len + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(decode(Bytes::from(huge)), Err(DecodeError::Truncated));
        // Bytes no one wrote, of every short length.
        let mut seed = 7u32;
        for len in 0..200 {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (seed >> 16) as u8
                })
                .collect();
            let mut tagged = MAGIC.to_vec();
            tagged.extend_from_slice(&noise);
            let _ = decode(Bytes::from(noise));
            let _ = decode(Bytes::from(tagged));
        }
    }
}
