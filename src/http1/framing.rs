//! How an HTTP/1.1 body is delimited (RFC 9112 §6): one [`Framing`] for answers read
//! from upstreams and responses written to clients, the one `Content-Length` reader, and
//! whether an upstream connection may carry another request after an answer.

use super::parse::{AnswerHead, ParseError};
use http::header::CONTENT_LENGTH;
use http::response::Parts;
use http::{HeaderMap, Method, StatusCode, Version};

/// How a message's body is delimited on the wire, read from an upstream's answer or
/// written on a response to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204, 304: no body whatever the headers say. An upstream that sends one
    /// anyway (a HEAD answered like a GET) can do it at any time after the head, so its
    /// connection is never used again: no read before reuse could prove it clean.
    Empty,
    Length(u64),
    Chunked,
    /// Neither length nor chunked: the body ends when the sender closes. Only an
    /// upstream's answer is framed so; the gateway's responses never are.
    UntilClose,
}

impl Framing {
    /// The framing of `head`, the answer to a `method` request (RFC 9112 §6.3). Both
    /// `Transfer-Encoding` and `Content-Length`, or `Transfer-Encoding` in HTTP/1.0, is
    /// an error whatever the method and status (nginx refuses the first, hyper the
    /// second): the two readings of such an answer differ, and the difference is what
    /// would reach the client or the next pooled request.
    pub fn of_answer(method: &Method, head: &AnswerHead) -> Result<Self, ParseError> {
        let transfer_encoding = head.values("transfer-encoding").next_back();
        if transfer_encoding.is_some() {
            if head.values("content-length").next().is_some() {
                return Err(ParseError::Framing(
                    "both Transfer-Encoding and Content-Length",
                ));
            }
            if head.version == Version::HTTP_10 {
                return Err(ParseError::Framing(
                    "Transfer-Encoding in an HTTP/1.0 answer",
                ));
            }
        }
        let status = head.status.as_u16();
        if *method == Method::HEAD
            || head.status.is_informational()
            || status == 204
            || status == 304
        {
            return Ok(Framing::Empty);
        }
        if let Some(last) = transfer_encoding {
            let chunked = last
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            return Ok(if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            });
        }
        let length = content_length(head.values("content-length"))?;
        Ok(length.map_or(Framing::UntilClose, Framing::Length))
    }
}

/// Whether the connection may carry another request after this answer, framed so: the
/// answer says so, and its end is known by its own framing. After a bodiless answer
/// (HEAD, 204, 304) a stray body could still be on its way; after one that runs to the
/// close there is nothing to reuse.
pub fn keeps_alive(head: &AnswerHead, framing: Framing) -> bool {
    if !matches!(framing, Framing::Length(_) | Framing::Chunked) {
        return false;
    }
    let has = |token: &str| {
        head.values("connection").any(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    match head.version {
        Version::HTTP_10 => has("keep-alive"),
        _ => !has("close"),
    }
}

impl Framing {
    /// The framing of a response the gateway writes: its own `Content-Length` (a
    /// proxied answer, a HEAD's), else the body's exact size, else chunked; none for
    /// 1xx, 204 and 304.
    pub fn of_response(parts: &Parts, body_size: Option<u64>) -> Self {
        let status = parts.status;
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Framing::Empty;
        }
        match declared_length(&parts.headers).or(body_size) {
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        }
    }

    /// Whether a body of `sent` bytes is whole under this framing.
    pub fn ends_at(self, sent: u64) -> bool {
        match self {
            Framing::Length(n) => sent == n,
            Framing::Empty | Framing::Chunked | Framing::UntilClose => true,
        }
    }
}

/// The length the `Content-Length` field `values` declare (RFC 9110 §8.6): decimal
/// digits only, no sign, no overflow; a list or repeated field of equal values (`5, 5`)
/// is that value, anything else an error. `Ok(None)`: no field.
pub fn content_length<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<u64>, ParseError> {
    let mut length = None;
    for value in values {
        for part in value.split(|&b| b == b',') {
            let n = decimal(part.trim_ascii()).ok_or(ParseError::Length)?;
            if length.is_some_and(|l| l != n) {
                return Err(ParseError::Length);
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// The valid `Content-Length` of `headers`, if any (see [`content_length`]).
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    content_length(headers.get_all(CONTENT_LENGTH).iter().map(|v| v.as_bytes()))
        .ok()
        .flatten()
}

/// A decimal number: digits only, leading zeros allowed (RFC 9110 §8.6: `1*DIGIT`), at
/// most 19 significant digits (20 may overflow a `u64`).
fn decimal(digits: &[u8]) -> Option<u64> {
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

    fn length(values: &[&str]) -> Result<Option<u64>, ParseError> {
        content_length(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn content_length_is_one_decimal_number() {
        assert_eq!(length(&[]), Ok(None));
        assert_eq!(length(&["0"]), Ok(Some(0)));
        assert_eq!(length(&[" 12 "]), Ok(Some(12)));
        assert_eq!(length(&["5, 5"]), Ok(Some(5)));
        assert_eq!(length(&["5", "5"]), Ok(Some(5)));
        assert_eq!(
            length(&["9999999999999999999"]),
            Ok(Some(9_999_999_999_999_999_999))
        );
        for bad in [
            "18446744073709551615",
            "+1",
            "",
            "-1",
            "1 2",
            "0x10",
            "5, 6",
        ] {
            assert_eq!(length(&[bad]), Err(ParseError::Length), "{bad:?}");
        }
        assert_eq!(length(&["5", "6"]), Err(ParseError::Length));
        // Found by fuzz/fuzz_targets/answer_head.rs: leading zeros counted as digits.
        assert_eq!(length(&["000000000000000000000000012"]), Ok(Some(12)));
        assert_eq!(length(&["018446744073709551615"]), Err(ParseError::Length));
    }

    #[test]
    fn a_header_map_s_length_is_its_valid_one() {
        let mut headers = HeaderMap::new();
        assert_eq!(declared_length(&headers), None);
        headers.insert(CONTENT_LENGTH, "42".parse().unwrap());
        assert_eq!(declared_length(&headers), Some(42));
        headers.insert(CONTENT_LENGTH, "4 2".parse().unwrap());
        assert_eq!(declared_length(&headers), None);
    }
}
