//! Merging backend answers and shaping one answer (`src/aggregate/{merge,shape}.rs`),
//! against the rules written in those modules, restated here independently.
//!
//! Merge: the output is one valid JSON object with no repeated key, the same bytes for
//! the same pieces, and equal (values and key order) to: each piece in order inserting
//! its `name` (key mode) or every field of its object (root mode; a non-object adds
//! nothing), a later value replacing an earlier one where the key first appeared; then
//! `errors_field`, last, an object of the failures in order.
//!
//! Shape: a dotted path parses unless it has an empty segment; `extract` yields the value
//! at its path or fails when it is not there; `select` keeps, for each element object,
//! exactly the listed paths that are there, at the same paths, top-level keys in the
//! order the paths are listed; `omit` leaves no listed path (an array element becomes
//! `null`) and every other top-level key as it was, in order; `rename` maps top-level
//! keys, keeping values and order; non-objects pass `select`, `omit` and `rename`
//! unchanged; the stages compose in the order extract, select, omit, rename; and
//! shaping is deterministic.
#![no_main]

use arbitrary::Arbitrary;
use fanout::aggregate::merge::{Failure, Piece, merge};
use fanout::aggregate::shape::apply;
use fanout::config::{MergeMode, Shape};
use fanout::json_path::Path;
use indexmap::IndexMap;
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

#[derive(Debug, Arbitrary)]
struct Input {
    pieces: Vec<(String, bool, String)>,
    errors_field: Option<String>,
    failures: Vec<(u8, String, String)>,
    answer: String,
    extract: Option<String>,
    select: Vec<String>,
    omit: Vec<String>,
    rename: Vec<(String, String)>,
}

/// The top-level keys of a JSON object, repeats included.
fn top_level_keys(json: &[u8]) -> Vec<String> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some((k, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                keys.push(k);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_map(Keys).expect("the merge is an object")
}

fn check_merge(input: &Input) {
    let mut names: Vec<&str> = Vec::new();
    let mut pieces = Vec::new();
    let mut values = Vec::new();
    for (name, root, json) in input.pieces.iter().take(8) {
        // Validated config: names are unique; pieces are valid JSON.
        let Ok(value) = serde_json::from_str::<Value>(json) else {
            continue;
        };
        if names.contains(&name.as_str()) {
            continue;
        }
        names.push(name);
        let mode = if *root {
            MergeMode::Root
        } else {
            MergeMode::Key
        };
        pieces.push(Piece {
            name,
            mode,
            json: json.as_bytes(),
        });
        values.push(value);
    }
    // Validated config: errors_field is not a backend's name.
    let field = input.errors_field.as_deref().filter(|f| !names.contains(f));
    let mut failures: Vec<Failure<'_>> = Vec::new();
    for (i, code, message) in &input.failures {
        let Some(name) = names.get(usize::from(*i) % names.len().max(1)) else {
            break;
        };
        if failures.iter().all(|f| f.name != *name) {
            // A status for some failures, and a duration for each, both from `i`.
            failures.push(Failure {
                name,
                code,
                message,
                status: (i % 2 == 1).then(|| 400 + u16::from(*i)),
                duration_ms: f64::from(*i) / 10.0,
            });
        }
    }

    let out = merge(&pieces, field.map(|f| (f, failures.as_slice())));
    assert_eq!(
        out,
        merge(&pieces, field.map(|f| (f, failures.as_slice()))),
        "not deterministic"
    );
    let merged: Value = serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out)));
    let keys = top_level_keys(&out);
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "a repeated key: {keys:?}");

    let mut expected: IndexMap<String, Value> = IndexMap::new();
    for (piece, value) in pieces.iter().zip(values) {
        match (piece.mode, value) {
            (MergeMode::Key, value) => {
                expected.insert(piece.name.to_string(), value);
            }
            (MergeMode::Root, Value::Object(fields)) => expected.extend(fields),
            (MergeMode::Root, _) => {}
        }
    }
    if let Some(field) = field {
        let errors: Map<String, Value> = failures
            .iter()
            .map(|f| {
                let mut entry = serde_json::json!({"code": f.code, "message": f.message});
                if let Some(status) = f.status {
                    entry["status"] = status.into();
                }
                entry["duration_ms"] = f.duration_ms.into();
                (f.name.to_string(), entry)
            })
            .collect();
        expected.shift_remove(field);
        expected.insert(field.to_string(), Value::Object(errors));
    }
    let expected = Value::Object(expected.into_iter().collect());
    // Serialized, so that key order counts.
    assert_eq!(merged.to_string(), expected.to_string());
}

/// Applies `f` to an object or to each object of an array; anything else is kept.
fn each(value: &Value, f: &dyn Fn(&Map<String, Value>) -> Value) -> Value {
    match value {
        Value::Object(o) => f(o),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| v.as_object().map_or_else(|| v.clone(), f))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn paths(list: &[String]) -> Vec<(Path, Vec<String>)> {
    list.iter()
        .take(6)
        .filter_map(|text| {
            let parsed = Path::parse(text);
            let segments: Vec<String> = text.split('.').map(String::from).collect();
            assert_eq!(
                parsed.is_ok(),
                segments.iter().all(|s| !s.is_empty()),
                "{text:?}"
            );
            Some((parsed.ok()?, segments))
        })
        .collect()
}

fn check_shape(input: &Input) {
    let Ok(answer) = serde_json::from_str::<Value>(&input.answer) else {
        return;
    };
    let extract = input.extract.as_deref().and_then(|e| Path::parse(e).ok());
    let select = paths(&input.select);
    let omit = paths(&input.omit);
    let rename: Vec<(String, String)> = input.rename.iter().take(6).cloned().collect();
    let only = |shape: Shape| {
        let out = apply(&shape, answer.clone());
        assert_eq!(out, apply(&shape, answer.clone()), "not deterministic");
        out
    };

    // extract
    let extracted = only(Shape {
        extract: extract.clone(),
        ..Shape::default()
    });
    match &extract {
        Some(path) => assert_eq!(extracted.as_ref().ok(), path.get(&answer)),
        None => assert_eq!(extracted.as_ref().ok(), Some(&answer)),
    }

    // select
    let selected = only(Shape {
        select: select.iter().map(|p| p.0.clone()).collect(),
        ..Shape::default()
    })
    .unwrap();
    if !select.is_empty() {
        let expect = each(&answer, &|object| {
            let whole = Value::Object(object.clone());
            let mut keys: Vec<&str> = Vec::new();
            for (path, segments) in &select {
                if path.get(&whole).is_some() && !keys.contains(&segments[0].as_str()) {
                    keys.push(&segments[0]);
                }
            }
            Value::Object(keys.iter().map(|k| (k.to_string(), Value::Null)).collect())
        });
        // Same top-level keys in the same order, and every selected path kept as is.
        let key_list = |v: &Value| -> Vec<Vec<String>> {
            match v {
                Value::Object(o) => vec![o.keys().cloned().collect()],
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_object())
                    .map(|o| o.keys().cloned().collect())
                    .collect(),
                _ => Vec::new(),
            }
        };
        assert_eq!(key_list(&selected), key_list(&expect), "select keys");
        let pairs: Vec<(&Value, &Value)> = match (&answer, &selected) {
            (Value::Array(a), Value::Array(s)) => {
                a.iter().zip(s).filter(|(a, _)| a.is_object()).collect()
            }
            (a, s) if a.is_object() => vec![(a, s)],
            (a, s) => {
                assert_eq!(a, s, "a non-object changed");
                Vec::new()
            }
        };
        for (before, after) in pairs {
            for (path, _) in &select {
                if let Some(found) = path.get(before) {
                    assert_eq!(path.get(after), Some(found), "select {path}");
                }
            }
        }
    }

    // omit
    let omitted = only(Shape {
        omit: omit.iter().map(|p| p.0.clone()).collect(),
        ..Shape::default()
    })
    .unwrap();
    let check_omitted = |before: &Map<String, Value>, after: &Value| {
        for (path, _) in &omit {
            let left = path.get(after);
            assert!(
                left.is_none() || left == Some(&Value::Null),
                "omit {path} left {left:?}"
            );
        }
        let after = after.as_object().expect("an object stays an object");
        let touched: Vec<&str> = omit.iter().map(|(_, s)| s[0].as_str()).collect();
        let kept: Vec<&String> = before.keys().filter(|k| after.contains_key(*k)).collect();
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            kept,
            "omit reordered keys"
        );
        for (k, v) in before {
            if !touched.contains(&k.as_str()) {
                assert_eq!(after.get(k), Some(v), "omit changed {k}");
            }
        }
    };
    match (&answer, &omitted) {
        (Value::Object(o), after) => check_omitted(o, after),
        (Value::Array(a), Value::Array(s)) => {
            assert_eq!(a.len(), s.len());
            for (before, after) in a.iter().zip(s) {
                match before.as_object() {
                    Some(o) => check_omitted(o, after),
                    None => assert_eq!(before, after),
                }
            }
        }
        (a, s) => assert_eq!(a, s, "a non-object changed"),
    }

    // rename
    let renamed = only(Shape {
        rename: rename.clone(),
        ..Shape::default()
    })
    .unwrap();
    let expect = each(&answer, &|object| {
        let mut out = Map::new();
        for (k, v) in object {
            let k = rename
                .iter()
                .find(|(old, _)| old == k)
                .map_or(k, |(_, new)| new);
            out.insert(k.clone(), v.clone());
        }
        Value::Object(out)
    });
    assert_eq!(renamed.to_string(), expect.to_string(), "rename");

    // The stages compose in order.
    let whole = Shape {
        extract: extract.clone(),
        select: select.iter().map(|p| p.0.clone()).collect(),
        omit: omit.iter().map(|p| p.0.clone()).collect(),
        rename: rename.clone(),
    };
    let staged = [
        Shape {
            extract,
            ..Shape::default()
        },
        Shape {
            select: whole.select.clone(),
            ..Shape::default()
        },
        Shape {
            omit: whole.omit.clone(),
            ..Shape::default()
        },
        Shape {
            rename,
            ..Shape::default()
        },
    ]
    .iter()
    .try_fold(answer.clone(), |v, stage| apply(stage, v));
    assert_eq!(
        apply(&whole, answer.clone()).map(|v| v.to_string()),
        staged.map(|v| v.to_string())
    );
}

fuzz_target!(|input: Input| {
    check_merge(&input);
    check_shape(&input);
});
