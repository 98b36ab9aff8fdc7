//! HTTP/1.1 head bytes shared by the upstream client and the server connection: header
//! fields turned into a `HeaderMap` whose values share the read buffer, without a copy.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::mem::MaybeUninit;

/// More header fields than this in one head is an error (hyper's limit too).
pub const MAX_HEADERS: usize = 100;

/// Where one header field lies in its head: name offset and length, value offset and
/// length. Offsets let the buffer be split and frozen after httparse borrowed it.
pub type Span = (usize, usize, usize, usize);

/// Header slots for httparse, left uninitialized: zeroing 100 of them cost more than
/// parsing a small head.
pub fn slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Where each of httparse's `fields` lies in `buf`.
pub fn spans(buf: &[u8], fields: &[httparse::Header<'_>]) -> Vec<Span> {
    let start = buf.as_ptr() as usize;
    fields
        .iter()
        .map(|h| {
            let name = h.name.as_ptr() as usize - start;
            let value = h.value.as_ptr() as usize - start;
            (name, h.name.len(), value, h.value.len())
        })
        .collect()
}

/// The header fields at `spans` of `head`; values are slices of `head`. `room` is how
/// many more the caller will add: a map that has to grow rehashes every entry.
pub fn header_map(head: &Bytes, spans: &[Span], room: usize) -> Result<HeaderMap, &'static str> {
    let mut headers = HeaderMap::with_capacity(spans.len() + room);
    for &(name, name_len, value, value_len) in spans {
        let name = HeaderName::from_bytes(&head[name..name + name_len])
            .map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len))
            .map_err(|_| "invalid header value")?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// A decimal number as in `Content-Length`: digits only, no sign, leading zeros allowed
/// (RFC 9110 §8.6: `1*DIGIT`), at most 19 significant digits, so no overflow.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    let zeros = digits.iter().take_while(|&&d| d == b'0').count();
    if digits.is_empty() || digits.len() - zeros > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_share_the_head() {
        let head = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\nX-Y: b c\r\n\r\n");
        let mut slots = slots();
        let mut request = httparse::Request::new(&mut []);
        let parsed = request.parse_with_uninit_headers(&head, &mut slots);
        assert!(parsed.unwrap().is_complete());
        let spans = spans(&head, request.headers);
        let headers = header_map(&head, &spans, 0).unwrap();
        assert_eq!(headers["host"], "a");
        assert_eq!(headers["x-y"], "b c");
        assert_eq!(
            headers["x-y"].as_bytes().as_ptr(),
            head[30..].as_ptr(),
            "no copy"
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), None, "20 digits");
        assert_eq!(
            parse_decimal(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        assert_eq!(parse_decimal(b"+1"), None);
        // Found by fuzz/fuzz_targets/answer_head.rs: leading zeros counted as digits.
        assert_eq!(parse_decimal(b"000000000000000000000000012"), Some(12));
        assert_eq!(parse_decimal(b"018446744073709551615"), None);
        assert_eq!(parse_decimal(b""), None);
    }
}
