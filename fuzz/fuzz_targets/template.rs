//! Rendering upstream path templates (`src/template`), whose promise is that no value
//! can change the upstream path.
//!
//! Properties:
//! 1. A template parses when every placeholder names something in scope and no literal
//!    has a fragment (`#`); it then renders its literals unchanged, in order.
//! 2. Backend mode: each value becomes exactly one path segment or one query value: its
//!    text only RFC 3986 unreserved characters and `%XX`, decoding back to the value
//!    (route parameters arrive percent-encoded and are decoded first). So a value never
//!    adds a `/`, `?`, `#`, `&` or `=`, and a path segment from a value is never empty,
//!    `.` or `..` (refused as unusable).
//! 3. Proxy mode: a route parameter before `?` is copied as received, and refused when
//!    it holds `?`, `#` or a segment that is `.` or `..` once percent-decoded; any other
//!    value is encoded as in backend mode.
//! 4. A value that is missing, not text, or unusable fails the render with that problem,
//!    for the first such placeholder.
//! 5. With literals and route parameters made of URI characters, the rendered URL is a
//!    URI: no value brings a space, a control character or a non-ASCII byte into it.
#![no_main]

use arbitrary::Arbitrary;
use fanout::template::{Problem, RenderInput, Scope, Template, TemplateMode};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use serde_json::Value;

const BASE: &str = "http://upstream:8080";
const PARAMS: [&str; 3] = ["a", "b", "rest"];

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Placeholder {
    Param(u8),
    Query(u8),
    Header(u8),
    Item,
}

#[derive(Debug, Arbitrary)]
enum Part {
    Literal(String),
    Value(Placeholder),
}

#[derive(Debug, Arbitrary)]
enum Item {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Arbitrary)]
struct Input {
    proxy: bool,
    parts: Vec<Part>,
    /// The route parameters as received in the path (percent-encoded or not).
    params: [String; 3],
    query: Vec<(u8, String)>,
    headers: Vec<(u8, Vec<u8>)>,
    item: Item,
}

/// A value as the template reads it: its bytes, whether they are percent-encoded.
type Found = Result<(Vec<u8>, bool), Problem>;

fn placeholder_text(p: Placeholder) -> String {
    match p {
        Placeholder::Param(i) => format!("{{{}}}", PARAMS[usize::from(i % 3)]),
        Placeholder::Query(i) => format!("{{query.q{}}}", i % 3),
        Placeholder::Header(i) => format!("{{header.h{}}}", i % 2),
        Placeholder::Item => "{item}".into(),
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_dot_segment(text: &[u8]) -> bool {
    text == b"." || text == b".."
}

/// Checks that `region` is an encoding of `value` with only unreserved characters and
/// upper-case `%XX`.
fn assert_encodes(region: &str, value: &[u8]) {
    let bytes = region.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = &bytes[i + 1..i + 3];
            assert!(
                hex.iter()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
                "bad escape in {region:?}"
            );
            i += 3;
        } else {
            assert!(
                is_unreserved(bytes[i]),
                "{:?} unencoded in {region:?}",
                bytes[i] as char
            );
            i += 1;
        }
    }
    let decoded: Vec<u8> = percent_decode_str(region).collect();
    assert_eq!(decoded, value, "{region:?} does not decode to the value");
}

fuzz_target!(|input: Input| {
    let mode = if input.proxy {
        TemplateMode::Proxy
    } else {
        TemplateMode::Backend
    };
    let mut text = String::from("/");
    let mut literals_have_fragment = false;
    let mut parts = vec![Err(String::from("/"))];
    for part in input.parts.iter().take(12) {
        match part {
            Part::Literal(l) => {
                let l: String = l.chars().filter(|c| *c != '{' && *c != '}').collect();
                literals_have_fragment |= l.contains('#');
                text.push_str(&l);
                parts.push(Err(l));
            }
            // The item is a for_each element: no such thing on a proxy route.
            Part::Value(Placeholder::Item) if input.proxy => {}
            Part::Value(p) => {
                text.push_str(&placeholder_text(*p));
                parts.push(Ok(*p));
            }
        }
    }
    let scope = Scope {
        params: &PARAMS.map(String::from),
        backends: &[],
        item: !input.proxy,
    };
    let template = match Template::parse(&text, &scope, mode) {
        Ok(t) => t,
        Err(e) => {
            assert!(literals_have_fragment, "{text:?} refused: {e}");
            return;
        }
    };
    assert!(
        !literals_have_fragment,
        "{text:?} has a fragment but parsed"
    );

    // The route parameters come from matching a path, as in the gateway.
    let [a, b, rest] = &input.params;
    if a.is_empty() || b.is_empty() || rest.is_empty() || a.contains('/') || b.contains('/') {
        return;
    }
    let mut router = matchit::Router::new();
    router.insert("/r/{a}/{b}/{*rest}", ()).unwrap();
    let path = format!("/r/{a}/{b}/{rest}");
    let Ok(matched) = router.at(&path) else {
        return;
    };
    assert_eq!(matched.params.get("rest"), Some(rest.as_str()));

    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in &input.query {
        query.append_pair(&format!("q{}", name % 3), value);
    }
    let query = query.finish();
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(
                HeaderName::from_bytes(format!("h{}", name % 2).as_bytes()).unwrap(),
                value,
            );
        }
    }
    let item = match &input.item {
        Item::Text(s) => Value::String(s.clone()),
        Item::Integer(n) => Value::from(*n),
        Item::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Item::Bool(b) => Value::Bool(*b),
        Item::Null => Value::Null,
    };

    let found = |p: Placeholder| -> Found {
        match p {
            Placeholder::Param(i) => {
                Ok((input.params[usize::from(i % 3)].clone().into_bytes(), true))
            }
            Placeholder::Query(i) => {
                let name = format!("q{}", i % 3);
                input
                    .query
                    .iter()
                    .find(|(n, _)| format!("q{}", n % 3) == name)
                    .map(|(_, v)| (v.clone().into_bytes(), false))
                    .ok_or(Problem::Missing)
            }
            Placeholder::Header(i) => headers
                .get(format!("h{}", i % 2))
                .map(|v| (v.as_bytes().to_vec(), false))
                .ok_or(Problem::Missing),
            Placeholder::Item => match &item {
                Value::String(s) => Ok((s.clone().into_bytes(), false)),
                Value::Number(n) => Ok((n.to_string().into_bytes(), false)),
                Value::Bool(b) => Ok((b.to_string().into_bytes(), false)),
                _ => Err(Problem::NotText("null")),
            },
        }
    };

    let render_input = RenderInput {
        method: &http::Method::GET,
        params: &matched.params,
        query: (!query.is_empty()).then_some(query.as_str()),
        headers: &headers,
        body: None,
        answers: &[],
        item: Some(&item),
        auth: None,
        client_cert: None,
    };
    let rendered = template.render(BASE, &render_input);

    // Walk the parts, checking the output and finding the first failing value.
    let out = rendered.as_ref().ok();
    let mut at = BASE.len();
    let mut in_query = false;
    for part in &parts {
        match part {
            Err(literal) => {
                if let Some(out) = out {
                    assert!(
                        out.get(at..)
                            .is_some_and(|o| o.starts_with(literal.as_str())),
                        "literal {literal:?} not in {out:?}"
                    );
                }
                at += literal.len();
                in_query |= literal.contains('?');
            }
            Ok(p) => {
                let value = match found(*p) {
                    Ok(v) => v,
                    Err(problem) => {
                        let e = rendered.expect_err("a missing value rendered");
                        assert_eq!(e.problem, problem);
                        return;
                    }
                };
                let (bytes, percent_encoded) = value;
                let raw = mode == TemplateMode::Proxy && !in_query && percent_encoded;
                let usable_text = if raw {
                    // Not UTF-8 (a header's obs-text) is unusable too.
                    String::from_utf8(bytes.clone()).ok().and_then(|text| {
                        let dot = text
                            .split('/')
                            .any(|s| is_dot_segment(&percent_decode_str(s).collect::<Vec<u8>>()));
                        (!dot && !text.contains(['?', '#'])).then_some(bytes)
                    })
                } else {
                    let decoded: Vec<u8> = if percent_encoded {
                        percent_decode_str(std::str::from_utf8(&bytes).unwrap()).collect()
                    } else {
                        bytes
                    };
                    let utf8 = std::str::from_utf8(&decoded).is_ok();
                    let bad_segment = !in_query && (decoded.is_empty() || is_dot_segment(&decoded));
                    (utf8 && !bad_segment).then_some(decoded)
                };
                let Some(value) = usable_text else {
                    let e = rendered.expect_err("an unusable value rendered");
                    assert_eq!(e.problem, Problem::Unusable, "{e}");
                    return;
                };
                let len = if raw {
                    value.len()
                } else {
                    value
                        .iter()
                        .map(|&b| if is_unreserved(b) { 1 } else { 3 })
                        .sum()
                };
                // A later value may still fail the render.
                if let Some(out) = out {
                    let region = out
                        .get(at..at + len)
                        .unwrap_or_else(|| panic!("{out:?} too short"));
                    if raw {
                        assert_eq!(region.as_bytes(), value);
                    } else {
                        assert_encodes(region, &value);
                    }
                }
                at += len;
            }
        }
    }
    let out = rendered.unwrap_or_else(|e| panic!("{text:?} failed with every value usable: {e}"));
    assert_eq!(at, out.len(), "{out:?} longer than its parts");
    if mode == TemplateMode::Backend {
        // No value changed the structure of the URL.
        let literals: String = parts
            .iter()
            .filter_map(|p| p.as_ref().err().cloned())
            .collect();
        let count = |s: &str, c: char| s.matches(c).count();
        for c in ['/', '?', '#'] {
            assert_eq!(
                count(&out, c),
                count(BASE, c) + count(&literals, c),
                "{c:?} in {out:?}"
            );
        }
    }
    // Property 5.
    let uri_text = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b))
    };
    let literals_ok = parts
        .iter()
        .all(|p| p.as_ref().err().is_none_or(|l| uri_text(l)));
    if literals_ok && input.params.iter().all(|p| uri_text(p)) {
        assert!(
            http::Uri::try_from(out.as_str()).is_ok(),
            "{text:?} rendered {out:?}, not a URI"
        );
    }
});
