//! HTTP/1.1 head bytes shared by the upstream client and the server connection: header
//! fields turned into a `HeaderMap` whose values share the read buffer, without a copy.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// More header fields than this in one head is an error (hyper's limit too).
pub const MAX_HEADERS: usize = 100;

/// Where one header field lies in its head: name offset and length, value offset and
/// length. Offsets let the buffer be split and frozen after httparse borrowed it.
pub type Span = (usize, usize, usize, usize);

/// Records where each of httparse's `fields` lies in `buf`; returns how many it wrote.
pub fn spans(buf: &[u8], fields: &[httparse::Header<'_>], out: &mut [Span; MAX_HEADERS]) -> usize {
    let start = buf.as_ptr() as usize;
    for (span, h) in out.iter_mut().zip(fields) {
        let name = h.name.as_ptr() as usize - start;
        let value = h.value.as_ptr() as usize - start;
        *span = (name, h.name.len(), value, h.value.len());
    }
    fields.len().min(MAX_HEADERS)
}

/// The header fields at `spans` of `head`; values are slices of `head`.
pub fn header_map(head: &Bytes, spans: &[Span]) -> Result<HeaderMap, &'static str> {
    let mut headers = HeaderMap::with_capacity(spans.len());
    for &(name, name_len, value, value_len) in spans {
        let name = HeaderName::from_bytes(&head[name..name + name_len])
            .map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_maybe_shared(head.slice(value..value + value_len))
            .map_err(|_| "invalid header value")?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// A decimal number as in `Content-Length`: digits only, no sign, no overflow.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
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
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut slots);
        assert!(request.parse(&head).unwrap().is_complete());
        let mut out = [(0, 0, 0, 0); MAX_HEADERS];
        let n = spans(&head, request.headers, &mut out);
        let headers = header_map(&head, &out[..n]).unwrap();
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
        assert_eq!(parse_decimal(b""), None);
    }
}
