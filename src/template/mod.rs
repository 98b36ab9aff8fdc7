//! Upstream path templates: `/users/{id}?limit={query.limit}`, parsed once at config time
//! and rendered per request. In a backend path every value is percent-encoded as one
//! segment (or, after `?`, as one query value), so no value can change the upstream path.
//! Values come from the request, from another backend's answer (`{user.address.city}`)
//! or from the element of a `for_each` (`{item.id}`).

use crate::json_path::Path;
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

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `{id}`: a parameter of the route path.
    Param(String),
    /// `{query.NAME}`: the first `NAME` in the client's query string.
    Query(String),
    /// `{header.NAME}`: a client request header.
    Header(http::HeaderName),
    /// `{user.address.city}`: a field of the answer of the route's backend number
    /// `backend` (its answer before shaping).
    Answer {
        backend: usize,
        name: String,
        path: Path,
    },
    /// `{item}` or `{item.id}`: the element a `for_each` backend is calling for.
    Item(Option<Path>),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Param(n) => format!("route parameter {n}"),
            Source::Query(n) => format!("query parameter {n}"),
            Source::Header(n) => format!("header {n}"),
            Source::Answer { name, path, .. } => format!("{name}.{path}"),
            Source::Item(None) => "item".into(),
            Source::Item(Some(path)) => format!("item.{path}"),
        }
    }

    /// Whether the value comes from the client's request (not from an answer).
    fn is_from_request(&self) -> bool {
        matches!(
            self,
            Source::Param(_) | Source::Query(_) | Source::Header(_)
        )
    }
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
}

impl RenderError {
    /// The stable code of the backend failure this causes.
    pub fn code(&self) -> &'static str {
        match self.problem {
            Problem::Unusable => "invalid_value",
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

    /// The backends (by index) whose answers this template reads.
    pub fn answers_read(&self) -> impl Iterator<Item = usize> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Value(Source::Answer { backend, .. }, _) => Some(*backend),
            _ => None,
        })
    }

    /// Whether the template reads the `for_each` element.
    pub fn reads_item(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Value(Source::Item(_), _)))
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

fn parse_source(name: &str, scope: &Scope<'_>) -> Result<Source, String> {
    let route_params = scope.params;
    let known = || {
        if route_params.is_empty() {
            "the route path has no parameters".to_string()
        } else {
            format!("route parameters: {}", route_params.join(", "))
        }
    };
    if let Some(q) = name.strip_prefix("query.") {
        if q.is_empty() {
            return Err("{query.} needs a name: {query.NAME}".into());
        }
        return Ok(Source::Query(q.to_string()));
    }
    if let Some(h) = name.strip_prefix("header.") {
        return http::HeaderName::from_bytes(h.as_bytes())
            .map(Source::Header)
            .map_err(|_| format!("{{header.{h}}}: \"{h}\" is not a valid header name"));
    }
    // A route parameter of that name wins over the for_each element.
    if scope.item && !route_params.iter().any(|p| p == name) {
        if name == "item" {
            return Ok(Source::Item(None));
        }
        if let Some(path) = name.strip_prefix("item.") {
            return Ok(Source::Item(Some(
                Path::parse(path).map_err(|e| format!("{{{name}}}: {e}"))?,
            )));
        }
    }
    if let Some((backend, path)) = name.split_once('.') {
        let Some(index) = scope.backends.iter().position(|b| *b == backend) else {
            let hint = if backend == "item" {
                "{item} is the element of a for_each; set for_each = \"BACKEND.path\" on this backend".to_string()
            } else if scope.backends.is_empty() {
                "only an aggregate backend's path can read another backend's answer".to_string()
            } else {
                format!(
                    "write {{BACKEND.path}} with a backend of this route ({}), or {{query.NAME}} or {{header.NAME}}",
                    scope.backends.join(", ")
                )
            };
            return Err(format!(
                "{{{name}}}: no backend \"{backend}\" in this route; {hint}"
            ));
        };
        let path = Path::parse(path).map_err(|e| format!("{{{name}}}: {e}"))?;
        return Ok(Source::Answer {
            backend: index,
            name: backend.to_string(),
            path,
        });
    }
    if route_params.iter().any(|p| p == name) {
        Ok(Source::Param(name.to_string()))
    } else if scope.backends.contains(&name) {
        Err(format!(
            "{{{name}}} is a whole answer; name one of its fields, such as {{{name}.id}}"
        ))
    } else if name == "item" {
        Err(
            "{item} is the element of a for_each; set for_each = \"BACKEND.path\" on this backend"
                .into(),
        )
    } else {
        Err(format!(
            "{{{name}}} is not a parameter of the route path; {}",
            known()
        ))
    }
}

mod value;

#[cfg(test)]
mod tests;
