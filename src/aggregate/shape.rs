//! Shaping a backend's answer, in this order: `extract` (a dotted path into the answer),
//! `select` (keep these dotted paths), `omit` (drop these), `rename` (top-level keys).
//! Pure functions over `serde_json::Value`; an unshaped backend never gets here. The
//! shape itself is compiled config (`config::Shape`), its paths are `json_path::Path`s.
//!
//! Rules:
//! 1. A path is dot-separated; a segment that is a number indexes an array (`items.0`).
//! 2. `extract` of a path that is not there is an error (`missing_field`): the answer is
//!    not what the route was written for, so the backend's default is the honest answer.
//! 3. `select`, `omit` and `rename` apply to an object, or to each element of an array;
//!    other values pass through unchanged. Paths that are not there are ignored.
//! 4. `select` keeps the nesting of what it keeps (`address.city` keeps
//!    `{"address": {"city": ...}}`), in the order the paths are listed.

use crate::config::Shape;
use crate::json_path::Path;
use serde_json::{Map, Value};

/// Applies `shape` to an answer by the rules above.
pub fn apply(shape: &Shape, value: Value) -> Result<Value, String> {
    let mut value = match &shape.extract {
        Some(path) => path
            .get(&value)
            .cloned()
            .ok_or_else(|| format!("the answer has no \"{path}\""))?,
        None => value,
    };
    if !shape.select.is_empty() {
        value = each(value, &|v| select(v, &shape.select));
    }
    if !shape.omit.is_empty() {
        value = each(value, &|mut v| {
            for path in &shape.omit {
                omit(&mut v, path.segments());
            }
            v
        });
    }
    if !shape.rename.is_empty() {
        value = each(value, &|v| rename(v, &shape.rename));
    }
    Ok(value)
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
            insert(&mut out, path.segments(), found.clone());
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
            apply(&shape(Some("data.items"), &[], &[], &[]), answer.clone()),
            Ok(json!([{"id": 1}, {"id": 2}]))
        );
        assert_eq!(
            apply(
                &shape(Some("data.items.1.id"), &[], &[], &[]),
                answer.clone()
            ),
            Ok(json!(2))
        );
        assert_eq!(
            apply(&shape(Some("data.missing"), &[], &[], &[]), answer.clone()),
            Err("the answer has no \"data.missing\"".into())
        );
        assert!(apply(&shape(Some("data.items.9"), &[], &[], &[]), answer.clone()).is_err());
        assert!(apply(&shape(Some("data.items.x"), &[], &[], &[]), answer).is_err());
        assert!(
            apply(&shape(Some("a"), &[], &[], &[]), json!(5)).is_err(),
            "a number has no fields"
        );
    }

    #[test]
    fn select_keeps_paths_with_their_nesting_in_listed_order() {
        let out = apply(
            &shape(None, &["name", "address.city", "nope"], &[], &[]),
            user(),
        )
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
        let out = apply(&shape(None, &["id", "total"], &[], &[]), items).unwrap();
        assert_eq!(
            out,
            json!([{"id": 1, "total": 9.5}, {"id": 2, "total": 3}, 7])
        );
    }

    #[test]
    fn omit_drops_paths_and_ignores_missing_ones() {
        let out = apply(
            &shape(None, &[], &["address.zip", "tags", "nope.deeper"], &[]),
            user(),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"id": 1, "name": "Ada", "address": {"city": "Oslo"}})
        );
        let out = apply(&shape(None, &[], &["tags.0"], &[]), user()).unwrap();
        assert_eq!(
            out["tags"],
            json!([null, "b"]),
            "an array element is nulled, keeping indexes"
        );
    }

    #[test]
    fn rename_keeps_key_order() {
        let out = apply(&shape(None, &[], &[], &[("name", "full_name")]), user()).unwrap();
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
        assert_eq!(apply(&s, answer), Ok(json!({"id": 1, "who": "Ada"})));
    }

    #[test]
    fn non_objects_pass_through_select_omit_and_rename() {
        let s = shape(None, &["a"], &["b"], &[("c", "d")]);
        for v in [json!(1), json!("text"), json!(null), json!(true)] {
            assert_eq!(apply(&s, v.clone()), Ok(v));
        }
    }

    #[test]
    fn the_default_shape_changes_nothing() {
        let s = Shape::default();
        assert!(s.is_identity());
        assert_eq!(apply(&s, user()), Ok(user()));
        assert!(!shape(None, &["id"], &[], &[]).is_identity());
    }
}
