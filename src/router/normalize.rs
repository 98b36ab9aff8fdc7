//! The normal form of a request path: what routes are matched on and what a proxy route
//! sends upstream, so that no spelling of a path reaches a route's upstream past another
//! route's policy (`/p/%73ecret` is `/p/secret`).
//!
//! The rules, in one pass over the path as the client sent it:
//! - A percent-escape is decoded where the decoded character may stand in a path as it
//!   is: RFC 3986 unreserved characters (`A-Z a-z 0-9 - . _ ~`), the sub-delimiters but
//!   `;` (`! $ & ' ( ) * + , =`), `:` and `@`. Every other escape stays encoded, in
//!   upper-case hex (`%c3%a9` is `%C3%A9`), and a byte that may not stand in a path as
//!   it is (a space, `"`, `{`, `|`, a non-ASCII byte) is encoded. Two spellings of one
//!   path, once decoded, therefore have one normal form.
//! - `//` is merged into `/`, anywhere (nginx's `merge_slashes on`); one trailing `/`
//!   is kept (`/dir/` is not `/dir`).
//! - Refused, as the request's fault (400): a `.` or `..` segment, written or encoded;
//!   `%2F` and `%5C` (an encoded `/` or `\`, which some upstreams decode into a path
//!   separator); a backslash; `;`, written or `%3B` (servlet containers cut a segment at
//!   `;`, so `/secret;x` and `/..;/secret` mean `/secret` to Tomcat); an encoded control
//!   byte (`%00`-`%1F`, `%7F`); a malformed escape (`%zz`, `%4`); and a path whose
//!   decoded bytes are not UTF-8 (an overlong `%C0%AF` is `/` to a lax decoder).
//!
//! An already normal path, the common case, is returned borrowed: no allocation.

use std::borrow::Cow;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path has a malformed percent-escape; write % as %25")]
    BadEscape,
    #[error("the path has an encoded slash or backslash (%2F or %5C), which is not forwarded")]
    EncodedSlash,
    #[error("the path has a backslash, which is not forwarded")]
    Backslash,
    #[error("the path has a \";\" (or %3B), which is not forwarded")]
    Semicolon,
    #[error("the path has an encoded control character")]
    ControlByte,
    #[error("the path has a \".\" or \"..\" segment")]
    DotSegment,
    #[error("the path is not UTF-8 once percent-decoded")]
    NotUtf8,
}

/// What a byte is in a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Stands as it is: unreserved, sub-delimiters but `;`, `:`, `@`.
    Plain,
    Slash,
    Percent,
    /// Must be percent-encoded to stand in a path.
    Encode,
    Backslash,
    Semicolon,
    Control,
}

const CLASSES: [Class; 256] = {
    let mut table = [Class::Encode; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => Class::Plain,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' => Class::Plain,
            b':' | b'@' => Class::Plain,
            b'/' => Class::Slash,
            b'%' => Class::Percent,
            b'\\' => Class::Backslash,
            b';' => Class::Semicolon,
            0..=0x1f | 0x7f => Class::Control,
            _ => Class::Encode,
        };
        b += 1;
    }
    table
};

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The output, made only once it differs from the input: until then it is the input's
/// first bytes, and nothing is copied.
struct Output<'a> {
    input: &'a [u8],
    owned: Option<Vec<u8>>,
}

impl Output<'_> {
    /// The input bytes `at..at + n` go out unchanged.
    fn same(&mut self, at: usize, n: usize) {
        if let Some(out) = &mut self.owned {
            out.extend_from_slice(&self.input[at..at + n]);
        }
    }

    /// The input from `at` on differs: `bytes` go out instead of what is there.
    fn changed(&mut self, at: usize, bytes: &[u8]) {
        self.owned
            .get_or_insert_with(|| {
                let mut out = Vec::with_capacity(self.input.len() + 8);
                out.extend_from_slice(&self.input[..at]);
                out
            })
            .extend_from_slice(bytes);
    }
}

/// Counts a segment's decoded characters and dots, to tell a dot segment.
#[derive(Default)]
struct Segment {
    chars: usize,
    dots: usize,
}

impl Segment {
    fn push(&mut self, decoded: u8) {
        self.chars += 1;
        self.dots += usize::from(decoded == b'.');
    }

    /// Ends the segment: an error if it was `.` or `..`.
    fn end(&mut self) -> Result<(), PathError> {
        let dot = self.chars == self.dots && (self.chars == 1 || self.chars == 2);
        *self = Self::default();
        if dot {
            Err(PathError::DotSegment)
        } else {
            Ok(())
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The normal form of `path` (see the module's rules), borrowed when it already is one.
/// A target that is not a path (`*`, an authority) is returned as it is.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    let input = path.as_bytes();
    if input.first() != Some(&b'/') || is_plainly_normal(input) {
        return Ok(Cow::Borrowed(path));
    }
    rewrite(path)
}

/// Whether `path` (starting with `/`) has only characters that stand as they are and
/// single slashes, and no segment that starts with a dot: the common path, told in a
/// few instructions a byte and no branch. Anything else takes the whole rules.
fn is_plainly_normal(path: &[u8]) -> bool {
    let (mut bad, mut after_slash) = (0u8, 1u8);
    for &b in &path[1..] {
        let fast = FAST[b as usize];
        // Not plain; or a `/` or `.` right after a `/` (`//`, or a segment that starts
        // with a dot, which the whole rules tell apart from a dot segment).
        bad |= (fast & FAST_OK ^ FAST_OK) | (after_slash & fast >> 1);
        after_slash = fast >> 2 & 1;
    }
    bad == 0
}

/// `FAST_OK`: plain or `/`; bit 1: `/` or `.`; bit 2: `/`.
const FAST_OK: u8 = 1;
const FAST: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match CLASSES[b] {
            Class::Slash => 0b111,
            Class::Plain if b == b'.' as usize => 0b011,
            Class::Plain => 0b001,
            _ => 0,
        };
        b += 1;
    }
    table
};

/// The whole rules, for a path that is not plainly normal (kept out of line, so the
/// common path does not pay for its frame).
#[inline(never)]
fn rewrite(path: &str) -> Result<Cow<'_, str>, PathError> {
    let input = path.as_bytes();
    let mut out = Output { input, owned: None };
    let mut segment = Segment::default();
    let mut after_slash = false;
    // An escape decoded to a non-ASCII byte: the decoded path is checked for UTF-8.
    let mut decoded_high = false;
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        match CLASSES[b as usize] {
            Class::Plain => {
                segment.push(b);
                out.same(i, 1);
                after_slash = false;
            }
            Class::Slash => {
                if after_slash {
                    // `//`: the empty segment goes.
                    out.changed(i, &[]);
                } else {
                    if i > 0 {
                        segment.end()?;
                    }
                    out.same(i, 1);
                    after_slash = true;
                }
            }
            Class::Percent => {
                let (Some(hi), Some(lo)) = (
                    input.get(i + 1).copied().and_then(hex_value),
                    input.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let decoded = hi << 4 | lo;
                match CLASSES[decoded as usize] {
                    Class::Plain => out.changed(i, &[decoded]),
                    Class::Slash | Class::Backslash => return Err(PathError::EncodedSlash),
                    Class::Semicolon => return Err(PathError::Semicolon),
                    Class::Control => return Err(PathError::ControlByte),
                    Class::Percent | Class::Encode => {
                        let upper = [b'%', HEX[hi as usize], HEX[lo as usize]];
                        if input[i..i + 3] == upper {
                            out.same(i, 3);
                        } else {
                            out.changed(i, &upper);
                        }
                        decoded_high |= decoded >= 0x80;
                    }
                }
                segment.push(decoded);
                after_slash = false;
                i += 3;
                continue;
            }
            Class::Encode => {
                out.changed(i, &[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                segment.chars += 1;
                after_slash = false;
            }
            Class::Backslash => return Err(PathError::Backslash),
            Class::Semicolon => return Err(PathError::Semicolon),
            Class::Control => return Err(PathError::ControlByte),
        }
        i += 1;
    }
    segment.end()?;
    let normal = match out.owned {
        // Only ASCII goes out: escapes and the characters that stand as they are.
        Some(bytes) => Cow::Owned(String::from_utf8(bytes).expect("the normal form is ASCII")),
        None => Cow::Borrowed(path),
    };
    if decoded_high {
        let decoded: Cow<[u8]> = percent_encoding::percent_decode_str(&normal).into();
        if std::str::from_utf8(&decoded).is_err() {
            return Err(PathError::NotUtf8);
        }
    }
    Ok(normal)
}

/// Why a route path could never match a normalized request path, if it could not: a
/// route is written in normal form, since that is all it is ever compared with.
pub fn route_path_problem(pattern: &str) -> Option<String> {
    // Each `{param}` stands for some plain text; `{{` and `}}` are literal braces.
    let mut literal = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(at) = rest.find(['{', '}']) {
        literal.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            literal.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if let Some(close) = tail.find('}').filter(|_| tail.starts_with('{')) {
            literal.push('x');
            rest = &tail[close + 1..];
        } else {
            // An unmatched brace: the route table reports it.
            return None;
        }
    }
    literal.push_str(rest);
    match normalize(&literal) {
        Err(e) => Some(format!(
            "can never match: {}; requests with such a path are refused (400)",
            e.to_string().replacen("the path has", "it has", 1)
        )),
        Ok(Cow::Owned(normal)) => {
            let suggestion = if pattern.contains('{') {
                String::new()
            } else {
                format!("; write \"{normal}\"")
            };
            Some(format!(
                "can never match: requests are matched on their normalized path (escapes of \
                 characters that may stand as they are decoded, other escapes in upper case, \
                 `//` merged){suggestion}"
            ))
        }
        Ok(Cow::Borrowed(_)) => None,
    }
}

#[cfg(test)]
mod tests;
