//! Upstream path templates: `/users/{id}?limit={query.limit}`, parsed once at config time
//! and rendered per request. In a backend path every value is percent-encoded as one
//! segment (or, after `?`, as one query value), so no value can change the upstream path.

use http::HeaderMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use std::borrow::Cow;

/// Everything but RFC 3986 unreserved characters is encoded: `/`, `?`, `&`, `#`, `%`, `+`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How rendered values are written into the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateMode {
    /// Aggregate backends: each value is one encoded path segment or query value.
    Backend,
    /// Proxy routes: route parameters are copied as received (`{rest}` keeps its slashes
    /// and its encoding), but dot segments are refused.
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
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Param(n) => format!("route parameter {n}"),
            Source::Query(n) => format!("query parameter {n}"),
            Source::Header(n) => format!("header {n}"),
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
pub enum RenderError {
    /// The value is absent (or empty where a path segment needs one).
    #[error("{0} is missing")]
    Missing(String),
    /// The value would change the meaning of the path (`.` or `..`), or is not text.
    #[error("{0} is not usable in an upstream path")]
    Invalid(String),
}

/// The request values a template reads.
pub struct RenderInput<'a> {
    pub params: &'a matchit::Params<'a, 'a>,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl Template {
    /// Parses `text`; every `{param}` must be one of `route_params`.
    pub fn parse(text: &str, route_params: &[String], mode: TemplateMode) -> Result<Self, String> {
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
            let source = parse_source(name, route_params)?;
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
        if literal.contains('#') {
            return Err(format!("\"{text}\" must not contain a fragment (#)"));
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
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

    /// Appends `base` and the rendered template to a new string.
    pub fn render(&self, base: &str, input: &RenderInput<'_>) -> Result<String, RenderError> {
        let mut out = String::with_capacity(base.len() + self.size_hint);
        out.push_str(base);
        for part in &self.parts {
            match part {
                Part::Literal(l) => out.push_str(l),
                Part::Value(source, encoding) => {
                    let value = lookup(source, input)
                        .ok_or_else(|| RenderError::Missing(source.describe()))?;
                    write_value(&mut out, &value, *encoding)
                        .map_err(|()| RenderError::Invalid(source.describe()))?;
                }
            }
        }
        Ok(out)
    }
}

fn parse_source(name: &str, route_params: &[String]) -> Result<Source, String> {
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
    if name.contains('.') {
        return Err(format!(
            "{{{name}}}: references to other backends' answers are not supported; use a route parameter, {{query.NAME}} or {{header.NAME}}"
        ));
    }
    if route_params.iter().any(|p| p == name) {
        Ok(Source::Param(name.to_string()))
    } else {
        Err(format!(
            "{{{name}}} is not a parameter of the route path; {}",
            known()
        ))
    }
}

fn lookup<'a>(source: &Source, input: &RenderInput<'a>) -> Option<Cow<'a, [u8]>> {
    match source {
        Source::Param(n) => input.params.get(n).map(|v| Cow::Borrowed(v.as_bytes())),
        Source::Query(n) => form_urlencoded::parse(input.query?.as_bytes())
            .find(|(k, _)| k == n)
            .map(|(_, v)| match v {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            }),
        Source::Header(h) => input.headers.get(h).map(|v| Cow::Borrowed(v.as_bytes())),
    }
}

fn is_dot_segment(decoded: &[u8]) -> bool {
    decoded == b"." || decoded == b".."
}

fn write_value(out: &mut String, raw: &[u8], encoding: Encoding) -> Result<(), ()> {
    let text = std::str::from_utf8(raw).map_err(|_| ())?;
    match encoding {
        Encoding::Segment => {
            // Route parameters arrive percent-encoded: decode first so that `%2F` is
            // encoded again as `%2F` rather than doubly as `%252F`.
            let decoded: Cow<[u8]> = percent_decode_str(text).into();
            if decoded.is_empty() || is_dot_segment(&decoded) {
                return Err(());
            }
            let decoded = std::str::from_utf8(&decoded).map_err(|_| ())?;
            out.extend(utf8_percent_encode(decoded, COMPONENT));
        }
        Encoding::QueryValue => out.extend(utf8_percent_encode(text, COMPONENT)),
        Encoding::Raw => {
            let unsafe_segment = text
                .split('/')
                .any(|seg| is_dot_segment(&Cow::<[u8]>::from(percent_decode_str(seg))));
            if unsafe_segment || text.contains(['?', '#']) {
                return Err(());
            }
            out.push_str(text);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn render(
        t: &str,
        route: &str,
        path: &str,
        query: Option<&str>,
    ) -> Result<String, RenderError> {
        render_mode(t, route, path, query, TemplateMode::Backend)
    }

    fn render_mode(
        t: &str,
        route: &str,
        path: &str,
        query: Option<&str>,
        mode: TemplateMode,
    ) -> Result<String, RenderError> {
        let mut router = matchit::Router::new();
        router.insert(route, ()).unwrap();
        let m = router.at(path).unwrap();
        let names: Vec<String> = m.params.iter().map(|(k, _)| k.to_string()).collect();
        let tpl = Template::parse(t, &names, mode).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "a b/c".parse().unwrap());
        tpl.render(
            "http://up",
            &RenderInput {
                params: &m.params,
                query,
                headers: &headers,
            },
        )
    }

    #[test]
    fn renders_params_query_and_headers() {
        assert_eq!(
            render("/users/{id}", "/u/{id}", "/u/42", None).unwrap(),
            "http://up/users/42"
        );
        assert_eq!(
            render(
                "/o?user={id}&limit={query.limit}",
                "/u/{id}",
                "/u/7",
                Some("limit=5&x=1")
            )
            .unwrap(),
            "http://up/o?user=7&limit=5"
        );
        assert_eq!(
            render("/h/{header.x-user}", "/u/{id}", "/u/7", None).unwrap(),
            "http://up/h/a%20b%2Fc"
        );
    }

    #[test]
    fn values_cannot_change_the_path() {
        assert_eq!(
            render("/users/{id}", "/a/{id}", "/a/..%2Fadmin", None).unwrap(),
            "http://up/users/..%2Fadmin"
        );
        assert_eq!(
            render("/users/{id}", "/a/{id}", "/a/..", None),
            Err(RenderError::Invalid("route parameter id".into()))
        );
        assert_eq!(
            render("/users/{id}", "/a/{id}", "/a/%2e%2e", None),
            Err(RenderError::Invalid("route parameter id".into()))
        );
        assert_eq!(
            render("/x?q={query.q}", "/a", "/a", Some("q=1%262%23x%3Dy")).unwrap(),
            "http://up/x?q=1%262%23x%3Dy"
        );
        assert_eq!(
            render("/f/{rest}", "/a/{*rest}", "/a/b/c", None).unwrap(),
            "http://up/f/b%2Fc"
        );
    }

    #[test]
    fn missing_values() {
        assert_eq!(
            render("/x?l={query.limit}", "/a", "/a", Some("other=1")),
            Err(RenderError::Missing("query parameter limit".into()))
        );
        assert_eq!(
            render("/x?l={query.limit}", "/a", "/a", None),
            Err(RenderError::Missing("query parameter limit".into()))
        );
        assert_eq!(
            render("/x/{query.q}", "/a", "/a", Some("q=")),
            Err(RenderError::Invalid("query parameter q".into()))
        );
    }

    #[test]
    fn proxy_mode_keeps_rest_but_refuses_dot_segments() {
        let p = TemplateMode::Proxy;
        assert_eq!(
            render_mode("/{rest}", "/f/{*rest}", "/f/a%20b/c.txt", None, p).unwrap(),
            "http://up/a%20b/c.txt"
        );
        assert!(render_mode("/{rest}", "/f/{*rest}", "/f/a/../../admin", None, p).is_err());
        assert!(render_mode("/{rest}", "/f/{*rest}", "/f/a/%2E%2E/admin", None, p).is_err());
    }

    #[test]
    fn parse_errors() {
        let ps = params(&["id"]);
        let b = TemplateMode::Backend;
        assert_eq!(
            Template::parse("/u/{uid}", &ps, b).unwrap_err(),
            "{uid} is not a parameter of the route path; route parameters: id"
        );
        assert_eq!(
            Template::parse("/u/{x}", &[], b).unwrap_err(),
            "{x} is not a parameter of the route path; the route path has no parameters"
        );
        assert_eq!(
            Template::parse("u/{id}", &ps, b).unwrap_err(),
            "\"u/{id}\" must start with \"/\""
        );
        assert_eq!(
            Template::parse("/u/{id", &ps, b).unwrap_err(),
            "unclosed \"{\" in \"/u/{id\""
        );
        assert!(Template::parse("/u/}", &ps, b).is_err());
        assert!(Template::parse("/u/{header.bad name}", &ps, b).is_err());
        assert!(
            Template::parse("/u/{user.city}", &ps, b)
                .unwrap_err()
                .contains("not supported")
        );
        assert!(Template::parse("/u#frag", &ps, b).is_err());
    }
}
