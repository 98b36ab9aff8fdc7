//! Shaping a backend's answer, in this order: `extract` (a dotted path into the answer),
//! `select` (keep these dotted paths), `omit` (drop these), `rename` (top-level keys).
//! Pure functions over `serde_json::Value`; an unshaped backend never gets here.
//!
//! Rules:
//! 1. A path is dot-separated; a segment that is a number indexes an array (`items.0`).
//! 2. `extract` of a path that is not there is an error (`missing_field`): the answer is
//!    not what the route was written for, so the backend's default is the honest answer.
//! 3. `select`, `omit` and `rename` apply to an object, or to each element of an array;
//!    other values pass through unchanged. Paths that are not there are ignored.
//! 4. `select` keeps the nesting of what it keeps (`address.city` keeps
//!    `{"address": {"city": ...}}`), in the order the paths are listed.

use serde_json::{Map, Value};

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
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

/// How one backend's answer is shaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape {
    pub extract: Option<Path>,
    pub select: Vec<Path>,
    pub omit: Vec<Path>,
    pub rename: Vec<(String, String)>,
}

impl Shape {
    pub fn is_identity(&self) -> bool {
        *self == Shape::default()
    }

    /// Applies the shaping rules above.
    pub fn apply(&self, value: Value) -> Result<Value, String> {
        let mut value = match &self.extract {
            Some(path) => path
                .get(&value)
                .cloned()
                .ok_or_else(|| format!("the answer has no \"{path}\""))?,
            None => value,
        };
        if !self.select.is_empty() {
            value = each(value, &|v| select(v, &self.select));
        }
        if !self.omit.is_empty() {
            value = each(value, &|mut v| {
                for path in &self.omit {
                    omit(&mut v, &path.0);
                }
                v
            });
        }
        if !self.rename.is_empty() {
            value = each(value, &|v| rename(v, &self.rename));
        }
        Ok(value)
    }
}

/// Applies `f` to an object, or to each element of an array (rule 3).
fn each(value: Value, f: &dyn Fn(Value) -> Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| if v.is_object() { f(v) } else { v })
                .collect(),
        ),
        Value::Object(_) => f(value),
        other => other,
    }
}

fn select(value: Value, paths: &[Path]) -> Value {
    let mut out = Value::Object(Map::new());
    for path in paths {
        if let Some(found) = path.get(&value) {
            insert(&mut out, &path.0, found.clone());
        }
    }
    out
}

/// Inserts `leaf` at `path`, creating objects on the way.
fn insert(target: &mut Value, path: &[String], leaf: Value) {
    let Value::Object(map) = target else { return };
    match path {
        [last] => {
            map.insert(last.clone(), leaf);
        }
        [first, rest @ ..] => {
            let child = map
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            insert(child, rest, leaf);
        }
        [] => {}
    }
}

fn omit(value: &mut Value, path: &[String]) {
    match (value, path) {
        (Value::Object(map), [last]) => {
            map.shift_remove(last);
        }
        (Value::Object(map), [first, rest @ ..]) => {
            if let Some(child) = map.get_mut(first) {
                omit(child, rest);
            }
        }
        (Value::Array(items), [first, rest @ ..]) => {
            if let Some(child) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                if rest.is_empty() {
                    *child = Value::Null;
                } else {
                    omit(child, rest);
                }
            }
        }
        _ => {}
    }
}

fn rename(value: Value, pairs: &[(String, String)]) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    let renamed = map
        .into_iter()
        .map(|(k, v)| match pairs.iter().find(|(old, _)| *old == k) {
            Some((_, new)) => (new.clone(), v),
            None => (k, v),
        })
        .collect();
    Value::Object(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(list: &[&str]) -> Vec<Path> {
        list.iter().map(|p| Path::parse(p).unwrap()).collect()
    }

    fn shape(
        extract: Option<&str>,
        select: &[&str],
        omit: &[&str],
        rename: &[(&str, &str)],
    ) -> Shape {
        Shape {
            extract: extract.map(|e| Path::parse(e).unwrap()),
            select: paths(select),
            omit: paths(omit),
            rename: rename
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    fn user() -> Value {
        json!({"id": 1, "name": "Ada", "address": {"city": "Oslo", "zip": "0150"}, "tags": ["a", "b"]})
    }

    #[test]
    fn extract_follows_keys_and_indexes() {
        let answer = json!({"data": {"items": [{"id": 1}, {"id": 2}]}});
        assert_eq!(
            shape(Some("data.items"), &[], &[], &[]).apply(answer.clone()),
            Ok(json!([{"id": 1}, {"id": 2}]))
        );
        assert_eq!(
            shape(Some("data.items.1.id"), &[], &[], &[]).apply(answer.clone()),
            Ok(json!(2))
        );
        assert_eq!(
            shape(Some("data.missing"), &[], &[], &[]).apply(answer.clone()),
            Err("the answer has no \"data.missing\"".into())
        );
        assert!(
            shape(Some("data.items.9"), &[], &[], &[])
                .apply(answer.clone())
                .is_err()
        );
        assert!(
            shape(Some("data.items.x"), &[], &[], &[])
                .apply(answer)
                .is_err()
        );
        assert!(
            shape(Some("a"), &[], &[], &[]).apply(json!(5)).is_err(),
            "a number has no fields"
        );
    }

    #[test]
    fn select_keeps_paths_with_their_nesting_in_listed_order() {
        let out = shape(None, &["name", "address.city", "nope"], &[], &[])
            .apply(user())
            .unwrap();
        assert_eq!(out, json!({"name": "Ada", "address": {"city": "Oslo"}}));
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"name":"Ada","address":{"city":"Oslo"}}"#
        );
    }

    #[test]
    fn select_applies_to_each_element_of_an_array() {
        let items = json!([{"id": 1, "total": 9.5, "secret": "x"}, {"id": 2, "total": 3}, 7]);
        let out = shape(None, &["id", "total"], &[], &[])
            .apply(items)
            .unwrap();
        assert_eq!(
            out,
            json!([{"id": 1, "total": 9.5}, {"id": 2, "total": 3}, 7])
        );
    }

    #[test]
    fn omit_drops_paths_and_ignores_missing_ones() {
        let out = shape(None, &[], &["address.zip", "tags", "nope.deeper"], &[])
            .apply(user())
            .unwrap();
        assert_eq!(
            out,
            json!({"id": 1, "name": "Ada", "address": {"city": "Oslo"}})
        );
        let out = shape(None, &[], &["tags.0"], &[]).apply(user()).unwrap();
        assert_eq!(
            out["tags"],
            json!([null, "b"]),
            "an array element is nulled, keeping indexes"
        );
    }

    #[test]
    fn rename_keeps_key_order() {
        let out = shape(None, &[], &[], &[("name", "full_name")])
            .apply(user())
            .unwrap();
        let keys: Vec<&String> = out.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "full_name", "address", "tags"]);
    }

    #[test]
    fn the_order_is_extract_select_omit_rename() {
        let answer =
            json!({"data": {"user": {"id": 1, "name": "Ada", "email": "a@x", "city": "Oslo"}}});
        let s = shape(
            Some("data.user"),
            &["id", "name", "email"],
            &["email"],
            &[("name", "who")],
        );
        assert_eq!(s.apply(answer), Ok(json!({"id": 1, "who": "Ada"})));
    }

    #[test]
    fn non_objects_pass_through_select_omit_and_rename() {
        let s = shape(None, &["a"], &["b"], &[("c", "d")]);
        for v in [json!(1), json!("text"), json!(null), json!(true)] {
            assert_eq!(s.apply(v.clone()), Ok(v));
        }
    }

    #[test]
    fn paths_parse() {
        assert!(Path::parse("a.b.0").is_ok());
        assert_eq!(
            Path::parse("a..b").unwrap_err(),
            "\"a..b\" is not a dotted path; write one such as \"data.items\" or \"items.0\""
        );
        assert!(Path::parse("").is_err());
        assert!(Shape::default().is_identity());
    }
}
