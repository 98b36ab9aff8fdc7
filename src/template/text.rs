//! Text templates: literal text with placeholders, no URL encoding. A backend's header
//! value (`headers = { "x-tenant" = "t-{user.tenant_id}" }`) is one; so is a string with
//! text around its placeholders in a JSON body template (see `json`).
//!
//! Rules:
//! - `{{` and `}}` are a literal `{` and `}`; any other `{` opens a placeholder, and the
//!   sources are those of path templates (see `source`).
//! - A value substitutes as its text: a string as it is, a number or boolean as JSON
//!   writes it, a route parameter percent-decoded. `null`, an array or an object has no
//!   one obvious text and fails the backend, as a missing value does (`missing_value`).
//! - A header value must stay one valid header value: the literals are checked at load;
//!   a value holding CR, LF, NUL or another control character (but tab) fails the backend
//!   with `invalid_value`, and nothing is sent. So no value can add a header or split a
//!   request.

use super::source::parse_source;
use super::value::text;
use super::{Problem, RenderError, RenderInput, Scope, Source};
use bytes::BytesMut;
use http::HeaderValue;

/// One piece of a text template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Literal(String),
    Value(Source),
}

/// Splits `text` into literals and placeholders; `{{` and `}}` are literal braces.
pub(super) fn parse_pieces(text: &str, scope: &Scope<'_>) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if rest[at..].starts_with('}') {
            let Some(next) = after.strip_prefix('}') else {
                return Err(format!(
                    "unmatched \"}}\" in \"{text}\"; write \"}}}}\" for a literal \"}}\""
                ));
            };
            literal.push('}');
            rest = next;
            continue;
        }
        if let Some(next) = after.strip_prefix('{') {
            literal.push('{');
            rest = next;
            continue;
        }
        let close = after.find('}').ok_or_else(|| {
            format!("unclosed \"{{\" in \"{text}\"; write \"{{{{\" for a literal \"{{\"")
        })?;
        let source = parse_source(&after[..close], scope)?;
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(Piece::Value(source));
        rest = &after[close + 1..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

/// A value's text, failing with the placeholder's name.
pub(super) fn piece_text<'a>(
    source: &Source,
    input: &RenderInput<'a>,
) -> Result<std::borrow::Cow<'a, [u8]>, RenderError> {
    text(source, input).map_err(|problem| fail(source, problem))
}

pub(super) fn fail(source: &Source, problem: Problem) -> RenderError {
    RenderError {
        what: source.describe(),
        problem,
        from_request: source.is_from_request(),
    }
}

/// A header value template, parsed once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextTemplate {
    source: String,
    pieces: Vec<Piece>,
    /// The value when there is no placeholder: made once, cloned per request.
    fixed: Option<HeaderValue>,
}

/// Whether `b` may appear in a header value (RFC 9110 §5.5: visible characters, space,
/// tab and obs-text; never CR, LF, NUL or another control character).
fn is_header_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

impl TextTemplate {
    /// Parses a header value template; its literal text must be header-value text.
    pub fn parse_header(text: &str, scope: &Scope<'_>) -> Result<Self, String> {
        if !text.bytes().all(is_header_byte) {
            return Err(format!(
                "{text:?} holds a control character (such as CR or LF) that a header value cannot carry"
            ));
        }
        let pieces = parse_pieces(text, scope)?;
        let fixed = match pieces.as_slice() {
            [] => Some(HeaderValue::from_static("")),
            [Piece::Literal(l)] => HeaderValue::from_str(l).ok(),
            _ => None,
        };
        Ok(Self {
            source: text.to_string(),
            pieces,
            fixed,
        })
    }

    /// The template as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The placeholders' sources, in order.
    pub fn sources(&self) -> impl Iterator<Item = &Source> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Value(source) => Some(source),
            Piece::Literal(_) => None,
        })
    }

    /// Renders the header value; a value that is missing, has no text, or holds a byte
    /// a header value cannot carry fails it.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<HeaderValue, RenderError> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        let mut out = BytesMut::with_capacity(self.source.len() + 32);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => out.extend_from_slice(l.as_bytes()),
                Piece::Value(source) => {
                    let value = piece_text(source, input)?;
                    if !value.iter().all(|&b| is_header_byte(b)) {
                        return Err(fail(source, Problem::NotHeaderValue));
                    }
                    out.extend_from_slice(&value);
                }
            }
        }
        // Every byte was checked above, literals at load and values here.
        HeaderValue::from_maybe_shared(out.freeze()).map_err(|_| RenderError {
            what: self.source.clone(),
            problem: Problem::NotHeaderValue,
            from_request: false,
        })
    }
}
