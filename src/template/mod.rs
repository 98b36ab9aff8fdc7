//! Templates, parsed once at config time and rendered per request. Upstream path
//! templates (`/users/{id}?limit={query.limit}`, here): in a backend path every value is
//! percent-encoded as one segment (or, after `?`, as one query value), so no value can
//! change the upstream path. Header value templates (`text`) and JSON body templates
//! (`json`) read the same sources (`source`) with rules of their own, written there.
//! Values come from the request (its path, query, headers and JSON body), from another
//! backend's answer (`{user.address.city}`, `{responses.user.status}`), from the
//! element of a `for_each` (`{item.id}`) or from the request's identity (`{auth.sub}`).

use crate::auth::Identity;
use crate::tls::client_cert::ClientCert;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;
use value::{lookup, write_value};

/// How rendered values are written into the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateMode {
    /// Aggregate backends: each value is one encoded path segment or query value.
    Backend,
    /// Proxy routes: route parameters are copied as received (`{rest}` keeps its slashes
    /// and its encoding), but dot segments are refused; any other value is encoded as in
    /// `Backend`.
    Proxy,
}

/// What a template may refer to, besides the client's query and headers.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The route path's parameters.
    pub params: &'a [String],
    /// The route's backend names, in declaration order: `{NAME.path}` reads an answer.
    pub backends: &'a [&'a str],
    /// Whether `{item}` is the element of a `for_each`.
    pub item: bool,
}

impl<'a> Scope<'a> {
    /// Route parameters only: a proxy route's path.
    pub fn params(params: &'a [String]) -> Self {
        Self {
            params,
            backends: &[],
            item: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Segment,
    QueryValue,
    Raw,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Value(Source, Encoding),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
    /// A rough rendered length, so rendering allocates once.
    size_hint: usize,
}

/// Why a template could not be rendered for one request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {problem}")]
pub struct RenderError {
    /// The value, as written in the template (`route parameter id`, `user.address.city`).
    pub what: String,
    pub problem: Problem,
    /// Whether the value comes from the client's request rather than from an answer.
    pub from_request: bool,
}

/// What is wrong with a template value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("is missing")]
    Missing,
    /// An answer's value that is not a string, number or boolean.
    #[error("is {0}, not a string, number or boolean")]
    NotText(&'static str),
    /// A `for_each` source that is not a JSON array.
    #[error("is not an array")]
    NotAnArray,
    /// The value would change the meaning of the path (`.` or `..`, or empty), or is not
    /// UTF-8.
    #[error("is not usable in an upstream path")]
    Unusable,
    /// A header template's value with a byte a header value cannot carry: CR, LF, NUL
    /// or another control character.
    #[error("holds a control character (such as CR or LF) that a header value cannot carry")]
    NotHeaderValue,
    /// A value written into JSON text or a header that is not UTF-8 (a client header's
    /// obs-text, a percent-encoded route parameter).
    #[error("is not UTF-8 text")]
    NotUtf8,
}

impl RenderError {
    /// The stable code of the backend failure this causes.
    pub fn code(&self) -> &'static str {
        match self.problem {
            Problem::Unusable | Problem::NotHeaderValue | Problem::NotUtf8 => "invalid_value",
            _ => "missing_value",
        }
    }
}

/// An answer another backend reads: its body before shaping, its status and the
/// response headers kept for readers.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// The answer's JSON before shaping (`null` for a 204).
    pub body: Value,
    pub status: StatusCode,
    /// The response headers templates, conditions or `headers_from` read; empty when
    /// none are.
    pub headers: HeaderMap,
}

impl Answered {
    /// A 200 answer with no headers kept.
    pub fn ok(body: Value) -> Self {
        Self {
            body,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
        }
    }
}

/// The values a template reads.
pub struct RenderInput<'a> {
    /// The client's request method.
    pub method: &'a Method,
    pub params: &'a matchit::Params<'a, 'a>,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The client's request body parsed as JSON; `None` when no backend reads it or the
    /// request has none.
    pub body: Option<&'a Value>,
    /// The answers of the route's backends that have finished and are read, by index.
    pub answers: &'a [Option<Answered>],
    /// The `for_each` element being called for.
    pub item: Option<&'a Value>,
    /// Who the request comes from, when the route has `auth` and it proved an identity.
    pub auth: Option<&'a Identity>,
    /// The connection's verified client certificate (mutual TLS), when it has one.
    pub client_cert: Option<&'a ClientCert>,
}

impl<'a> RenderInput<'a> {
    /// Values from the request only.
    pub fn request(
        method: &'a Method,
        params: &'a matchit::Params<'a, 'a>,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
    ) -> Self {
        Self {
            method,
            params,
            query,
            headers,
            body: None,
            answers: &[],
            item: None,
            auth: None,
            client_cert: None,
        }
    }
}

impl Template {
    /// Parses `text`; every placeholder must name something in `scope`.
    pub fn parse(text: &str, scope: &Scope<'_>, mode: TemplateMode) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("\"{text}\" must start with \"/\""));
        }
        let mut parts = Vec::new();
        let mut in_query = false;
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("unmatched \"}}\" in \"{text}\""));
            }
            literal.push_str(&rest[..open]);
            in_query |= rest[..open].contains('?');
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed \"{{\" in \"{text}\""))?;
            let name = &after[..close];
            let source = parse_source(name, scope)?;
            let encoding = match (mode, in_query) {
                (_, true) => Encoding::QueryValue,
                (TemplateMode::Backend, false) => Encoding::Segment,
                (TemplateMode::Proxy, false) => Encoding::Raw,
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(Part::Value(source, encoding));
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        // In any literal, before a placeholder too: a `#` would end the upstream path.
        if parts
            .iter()
            .any(|p| matches!(p, Part::Literal(l) if l.contains('#')))
        {
            return Err(format!("\"{text}\" must not contain a fragment (#)"));
        }
        Ok(Self {
            source: text.to_string(),
            size_hint: text.len() + 32,
            parts,
        })
    }

    /// The template as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template has a `?`, so a proxy knows how to append the client query.
    pub fn has_query(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Literal(l) if l.contains('?')))
    }

    /// Whether the template is a prefix and at most one route parameter after it:
    /// `("/v1/", Some("rest"))` for `/v1/{rest}`, `("/x", None)` for `/x`; `None` for
    /// anything else (a query, a value mid-path, more than one).
    pub fn prefix_and_param(&self) -> Option<(&str, Option<&str>)> {
        match self.parts.as_slice() {
            [Part::Literal(l)] if !l.contains('?') => Some((l, None)),
            [
                Part::Literal(l),
                Part::Value(Source::Param(name), Encoding::Raw),
            ] if !l.contains('?') => Some((l, Some(name))),
            _ => None,
        }
    }

    /// The placeholders' sources, in order.
    pub fn sources(&self) -> impl Iterator<Item = &Source> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(source, _) => Some(source),
            Part::Literal(_) => None,
        })
    }

    /// The backends (by index) whose answers this template reads.
    pub fn answers_read(&self) -> impl Iterator<Item = usize> + '_ {
        self.sources().filter_map(Source::answer_read)
    }

    /// Whether the template reads the `for_each` element.
    pub fn reads_item(&self) -> bool {
        self.sources().any(|s| matches!(s, Source::Item(_)))
    }

    /// Whether the template reads the request's identity (`{auth...}`).
    pub fn reads_auth(&self) -> bool {
        self.sources().any(Source::reads_auth)
    }

    /// Whether the template reads the client certificate (`{client_cert...}`).
    pub fn reads_client_cert(&self) -> bool {
        self.sources().any(Source::reads_client_cert)
    }

    /// Whether the template reads the client's JSON body.
    pub fn reads_body(&self) -> bool {
        self.sources().any(|s| matches!(s, Source::Body(_)))
    }

    /// Appends `base` and the rendered template to a new string.
    pub fn render(&self, base: &str, input: &RenderInput<'_>) -> Result<String, RenderError> {
        let mut out = String::with_capacity(base.len() + self.size_hint);
        out.push_str(base);
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Value(source, encoding) => {
                    let fail = |problem| RenderError {
                        what: source.describe(),
                        problem,
                        from_request: source.is_from_request(),
                    };
                    let value = lookup(source, input).map_err(fail)?;
                    write_value(&mut out, &value, *encoding)
                        .map_err(|()| fail(Problem::Unusable))?;
                }
            }
        }
        Ok(out)
    }
}

mod json;
mod source;
mod text;
mod value;

pub use json::{BodyTemplate, BodyTemplateError};
pub use source::{AuthField, ClientCertField, Source};
pub use text::TextTemplate;

use source::parse_source;

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod json_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod text_tests;
