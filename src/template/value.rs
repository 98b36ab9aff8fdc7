//! A placeholder's value: where it is looked up, and how it is written into the URL;
//! also as plain text (header values, JSON strings) and with its JSON type.

use super::source::{AuthField, ClientCertField};
use super::{Answered, Encoding, Problem, RenderInput, Source};
use percent_encoding::{
    AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_decode_str, utf8_percent_encode,
};
use serde_json::Value;
use std::borrow::Cow;

/// Everything but RFC 3986 unreserved characters is encoded: `/`, `?`, `&`, `#`, `%`, `+`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A value to write into the URL.
pub(super) struct Text<'a> {
    bytes: Cow<'a, [u8]>,
    /// Route parameters arrive percent-encoded; every other value is plain text.
    percent_encoded: bool,
}

impl<'a> Text<'a> {
    fn plain(bytes: Cow<'a, [u8]>) -> Self {
        Self {
            bytes,
            percent_encoded: false,
        }
    }
}

pub(super) fn lookup<'a>(source: &Source, input: &RenderInput<'a>) -> Result<Text<'a>, Problem> {
    let found = match source {
        // Every parameter of the matched route is present but a catch-all's, which is
        // absent when its rest is empty (`/api/` on `/api/{*rest}`).
        Source::Param(n) => Some(Text {
            bytes: Cow::Borrowed(input.params.get(n).unwrap_or("").as_bytes()),
            percent_encoded: true,
        }),
        Source::Query(n) => input.query.and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == n)
                .map(|(_, v)| {
                    Text::plain(match v {
                        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
                    })
                })
        }),
        Source::Header(h) => input
            .headers
            .get(h)
            .map(|v| Text::plain(Cow::Borrowed(v.as_bytes()))),
        Source::Body(path) => {
            let body = input.body.ok_or(Problem::Missing)?;
            return path
                .as_ref()
                .map_or(Some(body), |p| p.get(body))
                .map_or(Err(Problem::Missing), scalar);
        }
        Source::Answer { backend, path, .. } => {
            return answered(input, *backend)
                .and_then(|a| path.get(&a.body))
                .map_or(Err(Problem::Missing), scalar);
        }
        Source::Status { backend, .. } => answered(input, *backend)
            .map(|a| Text::plain(Cow::Borrowed(a.status.as_str().as_bytes()))),
        Source::ResponseHeader {
            backend, header, ..
        } => answered(input, *backend)
            .and_then(|a| a.headers.get(header))
            .map(|v| Text::plain(Cow::Borrowed(v.as_bytes()))),
        Source::Item(path) => {
            let item = input.item.ok_or(Problem::Missing)?;
            let value = match path {
                None => Some(item),
                Some(p) => p.get(item),
            };
            return value.map_or(Err(Problem::Missing), scalar);
        }
        Source::Auth(field) => {
            let identity = input.auth.ok_or(Problem::Missing)?;
            return match field {
                AuthField::Subject => Ok(Text::plain(Cow::Borrowed(identity.subject.as_bytes()))),
                AuthField::Provider => Ok(Text::plain(Cow::Borrowed(identity.provider.as_bytes()))),
                AuthField::Claim(path) => {
                    identity.claim(path).map_or(Err(Problem::Missing), scalar)
                }
            };
        }
        Source::ClientCert(field) => {
            let cert = input.client_cert.ok_or(Problem::Missing)?;
            let value = match field {
                ClientCertField::Subject => cert.subject.as_bytes(),
                ClientCertField::Fingerprint => cert.fingerprint.as_bytes(),
            };
            return Ok(Text::plain(Cow::Borrowed(value)));
        }
    };
    found.ok_or(Problem::Missing)
}

fn answered<'a>(input: &RenderInput<'a>, backend: usize) -> Option<&'a Answered> {
    input.answers.get(backend).and_then(Option::as_ref)
}

/// A value as plain text (a route parameter percent-decoded), for header values and
/// JSON strings.
pub(super) fn text<'a>(source: &Source, input: &RenderInput<'a>) -> Result<Cow<'a, [u8]>, Problem> {
    let found = lookup(source, input)?;
    if !found.percent_encoded {
        return Ok(found.bytes);
    }
    let decoded: Vec<u8> = percent_decode(&found.bytes).collect();
    Ok(Cow::Owned(decoded))
}

/// A value with its JSON type: request values are strings, a status a number, a body
/// or answer field whatever it is.
pub(super) fn json<'a>(
    source: &Source,
    input: &RenderInput<'a>,
) -> Result<Cow<'a, Value>, Problem> {
    let field = |value: Option<&'a Value>, path: &Option<crate::json_path::Path>| {
        let value = value.ok_or(Problem::Missing)?;
        path.as_ref()
            .map_or(Some(value), |p| p.get(value))
            .map(Cow::Borrowed)
            .ok_or(Problem::Missing)
    };
    match source {
        Source::Body(path) => field(input.body, path),
        Source::Item(path) => field(input.item, path),
        Source::Answer { backend, path, .. } => answered(input, *backend)
            .and_then(|a| path.get(&a.body))
            .map(Cow::Borrowed)
            .ok_or(Problem::Missing),
        Source::Status { backend, .. } => answered(input, *backend)
            .map(|a| Cow::Owned(Value::from(a.status.as_u16())))
            .ok_or(Problem::Missing),
        Source::Auth(AuthField::Claim(path)) => input
            .auth
            .and_then(|identity| identity.claim(path))
            .map(Cow::Borrowed)
            .ok_or(Problem::Missing),
        Source::Param(_)
        | Source::Query(_)
        | Source::Header(_)
        | Source::ResponseHeader { .. }
        | Source::Auth(AuthField::Subject | AuthField::Provider)
        | Source::ClientCert(_) => {
            let bytes = text(source, input)?;
            let string = String::from_utf8(bytes.into_owned()).map_err(|_| Problem::NotUtf8)?;
            Ok(Cow::Owned(Value::String(string)))
        }
    }
}

/// Strings, numbers and booleans substitute as text; nothing else has one obvious text.
fn scalar(value: &Value) -> Result<Text<'_>, Problem> {
    let text = match value {
        Value::String(s) => Cow::Borrowed(s.as_bytes()),
        Value::Number(n) => Cow::Owned(n.to_string().into_bytes()),
        Value::Bool(b) => Cow::Borrowed(if *b { &b"true"[..] } else { &b"false"[..] }),
        Value::Null => return Err(Problem::NotText("null")),
        Value::Array(_) => return Err(Problem::NotText("an array")),
        Value::Object(_) => return Err(Problem::NotText("an object")),
    };
    Ok(Text::plain(text))
}

fn is_dot_segment(decoded: &[u8]) -> bool {
    decoded == b"." || decoded == b".."
}

pub(super) fn write_value(
    out: &mut String,
    value: &Text<'_>,
    encoding: Encoding,
) -> Result<(), ()> {
    let text = std::str::from_utf8(&value.bytes).map_err(|_| ())?;
    // Only a route parameter arrives encoded and can be copied as received; plain text (a
    // header's value) on a proxy path is encoded as one segment, as on a backend path.
    if encoding == Encoding::Raw && value.percent_encoded {
        let unsafe_segment = text
            .split('/')
            .any(|seg| is_dot_segment(&Cow::<[u8]>::from(percent_decode_str(seg))));
        if unsafe_segment || text.contains(['?', '#']) {
            return Err(());
        }
        out.push_str(text);
        return Ok(());
    }
    // Route parameters arrive percent-encoded: decode first so that `%2F` is encoded
    // again as `%2F` rather than doubly as `%252F`.
    let decoded: Cow<str> = if value.percent_encoded {
        percent_decode_str(text).decode_utf8().map_err(|_| ())?
    } else {
        Cow::Borrowed(text)
    };
    if encoding != Encoding::QueryValue
        && (decoded.is_empty() || is_dot_segment(decoded.as_bytes()))
    {
        return Err(());
    }
    out.extend(utf8_percent_encode(&decoded, COMPONENT));
    Ok(())
}
