//! JSON body templates: a backend's `body`, a TOML value sent as JSON, with placeholders
//! in its strings. Parsed once at load into a list of byte runs and values, rendered once
//! per request straight into the bytes sent.
//!
//! Rules:
//! - A string that is exactly one placeholder (`"{order.id}"`) becomes that value with
//!   its JSON type: a number stays a number, an object an object, `null` stays `null`.
//!   Client query values, headers and route parameters are strings;
//!   `{responses.NAME.status}` is a number; `{body}` is the client's whole JSON body.
//! - A string with text around its placeholders (`"order {order.id}"`) is a JSON string:
//!   each value is written as its text (see `text`), escaped as JSON string content.
//!   `{{` and `}}` are literal braces.
//! - Object keys are literal (no placeholders in keys); numbers, booleans and strings
//!   without placeholders are sent as written.
//!
//! So a value can never leave its place: a typed value is serialized by `serde_json` as
//! one JSON value, a text value is escaped inside its string, and the body is valid JSON
//! whatever the client sends. A value that is missing (or, in text, `null`, an array or
//! an object) fails the backend with `missing_value`; when it comes from the request, a
//! required backend's failure is the client's mistake (400).

use super::source::Source;
use super::text::{Piece, fail, parse_pieces, piece_text};
use super::value::json;
use super::{Problem, RenderError, RenderInput, Scope};
use bytes::Bytes;
use serde_json::Value;

/// One step of rendering a body.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// JSON text copied as is (literals, keys, punctuation).
    Raw(Vec<u8>),
    /// A placeholder that is a whole JSON value, with its type.
    Typed(Source),
    /// A placeholder inside a JSON string: its text, escaped.
    Text(Source),
}

/// A parsed body template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyTemplate {
    ops: Vec<Op>,
    /// The literal bytes plus a guess per value, so rendering allocates once.
    size_hint: usize,
}

/// Where in a body template a placeholder could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BodyTemplateError {
    /// The place inside the body: `""` for the body itself, `.customer.id`, `.items[2]`.
    pub at: String,
    pub message: String,
}

/// Writes `text` as JSON string content (without quotes): `"`, `\` and control
/// characters escaped; everything else, UTF-8 included, as it is.
pub(super) fn escape_into(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

struct Builder<'s> {
    ops: Vec<Op>,
    scope: &'s Scope<'s>,
}

impl Builder<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        match self.ops.last_mut() {
            Some(Op::Raw(run)) => run.extend_from_slice(bytes),
            _ => self.ops.push(Op::Raw(bytes.to_vec())),
        }
    }

    fn value(&mut self, value: &Value, at: &mut String) -> Result<(), BodyTemplateError> {
        match value {
            Value::String(s) => self.string(s, at),
            Value::Array(items) => {
                self.raw(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.raw(b",");
                    }
                    let len = at.len();
                    at.push_str(&format!("[{i}]"));
                    self.value(item, at)?;
                    at.truncate(len);
                }
                self.raw(b"]");
                Ok(())
            }
            Value::Object(fields) => {
                self.raw(b"{");
                for (i, (key, field)) in fields.iter().enumerate() {
                    if i > 0 {
                        self.raw(b",");
                    }
                    let mut key_json = Vec::with_capacity(key.len() + 3);
                    key_json.push(b'"');
                    escape_into(&mut key_json, key);
                    key_json.extend_from_slice(b"\":");
                    self.raw(&key_json);
                    let len = at.len();
                    at.push('.');
                    at.push_str(key);
                    self.value(field, at)?;
                    at.truncate(len);
                }
                self.raw(b"}");
                Ok(())
            }
            other => {
                let text = serde_json::to_vec(other).expect("a JSON scalar serializes");
                self.raw(&text);
                Ok(())
            }
        }
    }

    fn string(&mut self, text: &str, at: &str) -> Result<(), BodyTemplateError> {
        let pieces = parse_pieces(text, self.scope).map_err(|message| BodyTemplateError {
            at: at.to_string(),
            message,
        })?;
        if let [Piece::Value(source)] = pieces.as_slice() {
            self.ops.push(Op::Typed(source.clone()));
            return Ok(());
        }
        self.raw(b"\"");
        for piece in pieces {
            match piece {
                Piece::Literal(l) => {
                    let mut escaped = Vec::with_capacity(l.len());
                    escape_into(&mut escaped, &l);
                    self.raw(&escaped);
                }
                Piece::Value(source) => self.ops.push(Op::Text(source)),
            }
        }
        self.raw(b"\"");
        Ok(())
    }
}

impl BodyTemplate {
    /// Parses a body given as a config value; every placeholder must name something in
    /// `scope`.
    pub fn parse(value: &Value, scope: &Scope<'_>) -> Result<Self, BodyTemplateError> {
        let mut builder = Builder {
            ops: Vec::new(),
            scope,
        };
        builder.value(value, &mut String::new())?;
        let size_hint = builder
            .ops
            .iter()
            .map(|op| match op {
                Op::Raw(bytes) => bytes.len(),
                Op::Typed(_) | Op::Text(_) => 32,
            })
            .sum();
        Ok(Self {
            ops: builder.ops,
            size_hint,
        })
    }

    /// The placeholders' sources, in order.
    pub fn sources(&self) -> impl Iterator<Item = &Source> + '_ {
        self.ops.iter().filter_map(|op| match op {
            Op::Typed(source) | Op::Text(source) => Some(source),
            Op::Raw(_) => None,
        })
    }

    /// Renders the body: JSON text, or the first value that could not be written.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<Bytes, RenderError> {
        let mut out = Vec::with_capacity(self.size_hint);
        for op in &self.ops {
            match op {
                Op::Raw(bytes) => out.extend_from_slice(bytes),
                Op::Typed(source) => {
                    let value = json(source, input).map_err(|p| fail(source, p))?;
                    serde_json::to_writer(&mut out, &*value).expect("a JSON value serializes");
                }
                Op::Text(source) => {
                    let bytes = piece_text(source, input)?;
                    let text =
                        std::str::from_utf8(&bytes).map_err(|_| fail(source, Problem::NotUtf8))?;
                    escape_into(&mut out, text);
                }
            }
        }
        Ok(Bytes::from(out))
    }
}
