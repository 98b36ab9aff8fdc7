//! Dotted paths into a JSON value (`data.items.0`): parsed once at config time, followed
//! per request. A leaf: config, templates and the aggregate's shaping all read values
//! through it, and it imports nothing of the crate.
//!
//! Rules: a path is one or more dot-separated segments, none empty. Following a path, a
//! segment names a field of an object, or, when it is a number, an element of an array
//! (`items.0`); any other step finds nothing.

use serde_json::Value;
use std::fmt;

/// A compiled dotted path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(Vec<String>);

impl Path {
    /// Parses `data.items.0`; empty segments are refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let segments: Vec<String> = text.split('.').map(str::to_string).collect();
        if text.is_empty() || segments.iter().any(String::is_empty) {
            return Err(format!(
                "\"{text}\" is not a dotted path; write one such as \"data.items\" or \"items.0\""
            ));
        }
        Ok(Self(segments))
    }

    /// The value at this path, if every step is there.
    pub fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(value, |v, seg| match v {
            Value::Object(map) => map.get(seg),
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?),
            _ => None,
        })
    }

    /// The segments in order, never empty.
    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> Path {
        Path::parse(text).unwrap()
    }

    #[test]
    fn paths_parse_into_segments() {
        assert_eq!(path("a.b.0").segments(), ["a", "b", "0"]);
        assert_eq!(path("single").segments(), ["single"]);
        assert_eq!(
            Path::parse("a..b").unwrap_err(),
            "\"a..b\" is not a dotted path; write one such as \"data.items\" or \"items.0\""
        );
        for bad in ["", ".", "a.", ".a"] {
            assert!(Path::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_path_displays_as_written() {
        assert_eq!(path("data.items.0").to_string(), "data.items.0");
    }

    #[test]
    fn get_follows_fields_and_array_indexes() {
        let v = json!({"data": {"items": [{"id": 1}, {"id": 2}]}, "n": 5});
        assert_eq!(path("data.items.1.id").get(&v), Some(&json!(2)));
        assert_eq!(
            path("data.items").get(&v),
            Some(&json!([{"id": 1}, {"id": 2}]))
        );
        assert_eq!(path("n").get(&v), Some(&json!(5)));
    }

    #[test]
    fn get_finds_nothing_where_a_step_is_missing() {
        let v = json!({"items": [10, 20], "n": 5, "0": "zero"});
        assert_eq!(path("items.2").get(&v), None, "past the end");
        assert_eq!(path("items.x").get(&v), None, "not an index");
        assert_eq!(path("items.-1").get(&v), None, "not an index");
        assert_eq!(path("n.field").get(&v), None, "a number has no fields");
        assert_eq!(path("missing").get(&v), None);
        assert_eq!(
            path("0").get(&v),
            Some(&json!("zero")),
            "a number names a field of an object"
        );
    }
}
