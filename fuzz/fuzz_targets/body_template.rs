//! Rendering JSON body templates (`src/template/json.rs`), whose promise is that no value
//! can leave its place in the body.
//!
//! Properties, for any client JSON body (or bytes that are not JSON: no body) and any
//! template built from objects, arrays, literals and strings of text and placeholders:
//! 1. The template parses (every placeholder names a source in scope; `{{`/`}}` escape).
//! 2. Rendering gives valid JSON, and that JSON is exactly the model's: a string that is
//!    one placeholder is the value itself with its JSON type (a client query value or
//!    header a string); other strings are the literals and each value's text, in order;
//!    object keys, numbers, booleans and `null` as written.
//! 3. When a value is missing, or (in text) `null`, an array or an object, or not UTF-8,
//!    rendering fails with that problem, for the first such placeholder.
#![no_main]

use arbitrary::Arbitrary;
use fanout::template::{BodyTemplate, Problem, RenderInput, Scope};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

const PATHS: [&str; 5] = ["a", "b", "a.b", "list.0", "deep.x.y"];

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Placeholder {
    Body(Option<u8>),
    Query,
    Header,
}

#[derive(Debug, Arbitrary)]
enum Piece {
    Literal(String),
    Value(Placeholder),
}

#[derive(Debug, Arbitrary)]
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Text(Vec<Piece>),
    Integer(i64),
    Bool(bool),
    Null,
}

#[derive(Debug, Arbitrary)]
struct Input {
    client: Vec<u8>,
    /// Overrides `client` with a JSON object holding the paths, so values are found.
    shaped: Option<(String, i64, bool, Vec<String>)>,
    template: Node,
    query: Option<String>,
    header: Vec<u8>,
}

fn placeholder(p: Placeholder) -> String {
    match p {
        Placeholder::Body(None) => "{body}".into(),
        Placeholder::Body(Some(i)) => format!("{{body.{}}}", PATHS[usize::from(i) % PATHS.len()]),
        Placeholder::Query => "{query.q}".into(),
        Placeholder::Header => "{header.x-h}".into(),
    }
}

/// A value as the template reads it, or why it cannot.
struct World<'a> {
    body: Option<&'a Value>,
    query: Option<&'a str>,
    header: Option<&'a [u8]>,
}

impl World<'_> {
    fn typed(&self, p: Placeholder) -> Result<Value, Problem> {
        match p {
            Placeholder::Body(path) => {
                let body = self.body.ok_or(Problem::Missing)?;
                let found = match path {
                    None => Some(body),
                    Some(i) => {
                        PATHS[usize::from(i) % PATHS.len()]
                            .split('.')
                            .try_fold(body, |v, seg| match v {
                                Value::Object(m) => m.get(seg),
                                Value::Array(items) => items.get(seg.parse::<usize>().ok()?),
                                _ => None,
                            })
                    }
                };
                found.cloned().ok_or(Problem::Missing)
            }
            Placeholder::Query => self.query.map(Value::from).ok_or(Problem::Missing),
            Placeholder::Header => {
                let bytes = self.header.ok_or(Problem::Missing)?;
                let text = std::str::from_utf8(bytes).map_err(|_| Problem::NotUtf8)?;
                Ok(Value::from(text))
            }
        }
    }

    fn text(&self, p: Placeholder) -> Result<String, Problem> {
        match self.typed(p)? {
            Value::String(s) => Ok(s),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            Value::Null => Err(Problem::NotText("null")),
            Value::Array(_) => Err(Problem::NotText("an array")),
            Value::Object(_) => Err(Problem::NotText("an object")),
        }
    }
}

/// The template as config text (a JSON value), and the body the model expects.
fn build(node: &Node, world: &World<'_>, depth: usize) -> (Value, Result<Value, Problem>) {
    match node {
        Node::Object(fields) if depth < 8 => {
            let mut template = Map::new();
            let mut expected = Ok(Map::new());
            for (key, field) in fields.iter().take(6) {
                if template.contains_key(key) {
                    continue;
                }
                let (t, e) = build(field, world, depth + 1);
                template.insert(key.clone(), t);
                expected = match (expected, e) {
                    (Ok(mut m), Ok(v)) => {
                        m.insert(key.clone(), v);
                        Ok(m)
                    }
                    (Err(p), _) | (Ok(_), Err(p)) => Err(p),
                };
            }
            (Value::Object(template), expected.map(Value::Object))
        }
        Node::Array(items) if depth < 8 => {
            let built: Vec<_> = items
                .iter()
                .take(6)
                .map(|n| build(n, world, depth + 1))
                .collect();
            let template = built.iter().map(|(t, _)| t.clone()).collect();
            let expected = built
                .into_iter()
                .map(|(_, e)| e)
                .collect::<Result<Vec<_>, _>>();
            (Value::Array(template), expected.map(Value::Array))
        }
        Node::Text(pieces) => {
            // An empty literal writes nothing: `"{body}"` is one placeholder either way.
            let pieces: Vec<&Piece> = pieces
                .iter()
                .take(6)
                .filter(|p| !matches!(p, Piece::Literal(l) if l.is_empty()))
                .collect();
            let mut text = String::new();
            for piece in &pieces {
                match piece {
                    Piece::Literal(l) => text.push_str(&l.replace('{', "{{").replace('}', "}}")),
                    Piece::Value(p) => text.push_str(&placeholder(*p)),
                }
            }
            if let [Piece::Value(p)] = pieces.as_slice() {
                return (Value::String(text), world.typed(*p));
            }
            let mut expected = String::new();
            for piece in &pieces {
                match piece {
                    Piece::Literal(l) => expected.push_str(l),
                    Piece::Value(p) => match world.text(*p) {
                        Ok(t) => expected.push_str(&t),
                        Err(problem) => return (Value::String(text), Err(problem)),
                    },
                }
            }
            (Value::String(text), Ok(Value::String(expected)))
        }
        Node::Integer(n) => (Value::from(*n), Ok(Value::from(*n))),
        Node::Bool(b) => (Value::from(*b), Ok(Value::from(*b))),
        _ => (Value::Null, Ok(Value::Null)),
    }
}

/// serde_json's token for a raw value: an object whose first key it is does not read
/// back as a `Value` (the oracle's parse, not the render, would fail).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

fuzz_target!(|input: Input| {
    let client: Option<Value> = match &input.shaped {
        Some((s, n, b, list)) => Some(serde_json::json!({
            "a": {"b": s}, "b": n, "list": list, "deep": {"x": {"y": b}}
        })),
        None => serde_json::from_slice(&input.client).ok(),
    };
    let mut headers = HeaderMap::new();
    let header = HeaderValue::from_bytes(&input.header).ok();
    if let Some(value) = &header {
        headers.insert("x-h", value.clone());
    }
    let query = input.query.as_ref().map(|q| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("q", q)
            .finish()
    });
    let world = World {
        body: client.as_ref(),
        query: input.query.as_deref(),
        header: header.as_ref().map(HeaderValue::as_bytes),
    };
    let (template, expected) = build(&input.template, &world, 0);
    let client_text = client.as_ref().map(Value::to_string).unwrap_or_default();
    if template.to_string().contains(RAW_VALUE_TOKEN) || client_text.contains(RAW_VALUE_TOKEN) {
        return;
    }

    let scope = Scope {
        params: &[],
        backends: &["self"],
        item: false,
    };
    let parsed = BodyTemplate::parse(&template, &scope)
        .unwrap_or_else(|e| panic!("{template} refused at {:?}: {e}", e.at));
    let params = matchit::Params::new();
    let rendered = parsed.render(&RenderInput {
        method: &http::Method::POST,
        params: &params,
        query: query.as_deref(),
        headers: &headers,
        body: client.as_ref(),
        answers: &[],
        item: None,
        auth: None,
        client_cert: None,
    });
    match (rendered, expected) {
        (Ok(bytes), Ok(expected)) => {
            let got: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{template} rendered text that is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&bytes)
                )
            });
            assert_eq!(got, expected, "{template}");
        }
        (Err(e), Err(problem)) => assert_eq!(e.problem, problem, "{template}: {e}"),
        (Ok(bytes), Err(problem)) => {
            panic!(
                "{template} rendered {:?}, expected {problem}",
                String::from_utf8_lossy(&bytes)
            )
        }
        (Err(e), Ok(expected)) => panic!("{template} failed ({e}), expected {expected}"),
    }
});
