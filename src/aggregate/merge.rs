//! Merging backend answers into one JSON object. Pure functions over validated JSON bytes;
//! values are spliced as raw bytes, never re-serialized.
//!
//! Rules:
//! 1. The result is one object. Each backend contributes, in declaration order, either one
//!    key (its `name`, with its answer or default as the value) or, with
//!    `merge = "root"`, every field of its answer object.
//! 2. A root-merged piece that is not an object (a `null` default) contributes nothing.
//! 3. When two pieces produce the same key, the later-declared one's value wins; the key
//!    stays where it first appeared, so the order of keys never depends on timing.
//! 4. With `errors_field`, that key comes last and always exists: an object of the failed
//!    backends, `{"name": {"code": "...", "message": "...", "status": 503,
//!    "duration_ms": 12.3}}`, in declaration order, `{}` when none failed. `status` is
//!    there only when the upstream answered with one the backend refused. It overrides
//!    any backend field of the same name.
//! 5. A backend left out (`on_error = "omit"`, failed or skipped) has no piece: its key
//!    is absent, and with `merge = "root"` nothing is spread. The caller leaves it out.

use crate::config::MergeMode;
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// One backend's contribution: valid JSON text (its answer or its default).
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    pub name: &'a str,
    pub mode: MergeMode,
    pub json: &'a [u8],
}

/// One failed backend, for `errors_field`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Failure<'a> {
    #[serde(skip)]
    pub name: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    /// The upstream's status, when it answered with one the backend refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the backend took, in milliseconds with one decimal.
    pub duration_ms: f64,
}

/// Merges `pieces` by the rules above. Every `json` must be valid JSON.
pub fn merge(pieces: &[Piece<'_>], errors_field: Option<(&str, &[Failure<'_>])>) -> Vec<u8> {
    let size: usize = pieces.iter().map(|p| p.json.len() + p.name.len() + 4).sum();
    let mut out = Vec::with_capacity(size + 2);
    if pieces.iter().all(|p| p.mode == MergeMode::Key) {
        // Names are unique and differ from errors_field (validated), so no key can
        // clash: write straight through.
        out.push(b'{');
        for (i, p) in pieces.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_entry(&mut out, p.name, p.json);
        }
        if let Some((field, failures)) = errors_field {
            if !pieces.is_empty() {
                out.push(b',');
            }
            write_entry(&mut out, field, &errors_object(failures));
        }
        out.push(b'}');
        return out;
    }

    let mut entries: IndexMap<Cow<'_, str>, Cow<'_, [u8]>> = IndexMap::new();
    for p in pieces {
        match p.mode {
            MergeMode::Key => {
                entries.insert(Cow::Borrowed(p.name), Cow::Borrowed(p.json));
            }
            MergeMode::Root => {
                let Ok(fields) = serde_json::from_slice::<IndexMap<String, &RawValue>>(p.json)
                else {
                    continue;
                };
                for (k, v) in fields {
                    entries.insert(Cow::Owned(k), Cow::Owned(v.get().as_bytes().to_vec()));
                }
            }
        }
    }
    if let Some((field, failures)) = errors_field {
        entries.shift_remove(field);
        entries.insert(Cow::Borrowed(field), Cow::Owned(errors_object(failures)));
    }
    out.push(b'{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_entry(&mut out, k, v);
    }
    out.push(b'}');
    out
}

fn write_entry(out: &mut Vec<u8>, key: &str, json: &[u8]) {
    serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
    out.push(b':');
    out.extend_from_slice(json);
}

fn errors_object(failures: &[Failure<'_>]) -> Vec<u8> {
    let map: IndexMap<&str, &Failure<'_>> = failures.iter().map(|f| (f.name, f)).collect();
    serde_json::to_vec(&map).expect("failures serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn key<'a>(name: &'a str, json: &'a str) -> Piece<'a> {
        Piece {
            name,
            mode: MergeMode::Key,
            json: json.as_bytes(),
        }
    }

    fn root<'a>(name: &'a str, json: &'a str) -> Piece<'a> {
        Piece {
            name,
            mode: MergeMode::Root,
            json: json.as_bytes(),
        }
    }

    fn text(pieces: &[Piece<'_>]) -> String {
        String::from_utf8(merge(pieces, None)).unwrap()
    }

    #[test]
    fn keys_in_declaration_order() {
        assert_eq!(
            text(&[
                key("user", r#"{"id":1}"#),
                key("orders", "[1,2]"),
                key("n", "3")
            ]),
            r#"{"user":{"id":1},"orders":[1,2],"n":3}"#
        );
    }

    #[test]
    fn values_are_spliced_byte_for_byte() {
        let raw = "{ \"price\": 1.50, \"big\": 12345678901234567890123 }";
        let merged = text(&[key("a", raw)]);
        assert_eq!(merged, format!("{{\"a\":{raw}}}"));
        assert!(serde_json::from_str::<Value>(&merged).is_ok());
    }

    #[test]
    fn empty_merge_is_an_empty_object() {
        assert_eq!(text(&[]), "{}");
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(text(&[key("we\"ird", "1")]), r#"{"we\"ird":1}"#);
    }

    #[test]
    fn root_spreads_fields() {
        assert_eq!(
            text(&[
                key("user", "1"),
                root("profile", r#"{"a":1,"b":{"c":[true]}}"#)
            ]),
            r#"{"user":1,"a":1,"b":{"c":[true]}}"#
        );
    }

    #[test]
    fn later_backend_wins_a_clash_and_keeps_first_position() {
        assert_eq!(
            text(&[
                root("p1", r#"{"a":1,"b":2}"#),
                key("x", "0"),
                root("p2", r#"{"b":20,"c":30}"#)
            ]),
            r#"{"a":1,"b":20,"x":0,"c":30}"#
        );
        assert_eq!(
            text(&[root("p1", r#"{"user":1}"#), key("user", "2")]),
            r#"{"user":2}"#
        );
        assert_eq!(
            text(&[key("user", "2"), root("p1", r#"{"user":1}"#)]),
            r#"{"user":1}"#
        );
    }

    #[test]
    fn root_non_object_contributes_nothing() {
        assert_eq!(
            text(&[key("a", "1"), root("r", "null"), root("s", "[1]")]),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn root_keys_with_escapes_round_trip() {
        let merged = text(&[root("r", r#"{"a\"b":"\u00e9\n"}"#)]);
        let v: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(v, json!({"a\"b": "é\n"}));
    }

    #[test]
    fn errors_field_always_present_and_last() {
        let none = merge(&[key("a", "1")], Some(("_errors", &[])));
        assert_eq!(String::from_utf8(none).unwrap(), r#"{"a":1,"_errors":{}}"#);
        let failures = [
            Failure {
                name: "b",
                code: "timeout",
                message: "no answer within 50ms",
                status: None,
                duration_ms: 50.2,
            },
            Failure {
                name: "c",
                code: "bad_status",
                message: "answered 500",
                status: Some(500),
                duration_ms: 3.0,
            },
        ];
        let merged = merge(
            &[key("a", "1"), key("b", "null"), key("c", "[]")],
            Some(("_errors", &failures)),
        );
        let v: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(
            v,
            json!({"a": 1, "b": null, "c": [], "_errors": {
                "b": {"code": "timeout", "message": "no answer within 50ms", "duration_ms": 50.2},
                "c": {"code": "bad_status", "message": "answered 500", "status": 500, "duration_ms": 3.0}
            }})
        );
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["a", "b", "c", "_errors"]);
    }

    #[test]
    fn errors_field_overrides_a_root_field() {
        let merged = merge(
            &[root("r", r#"{"_errors":"mine","x":1}"#)],
            Some(("_errors", &[])),
        );
        assert_eq!(
            String::from_utf8(merged).unwrap(),
            r#"{"x":1,"_errors":{}}"#
        );
    }

    #[test]
    fn a_failure_entry_writes_its_status_only_when_there_was_one() {
        let failures = [
            Failure {
                name: "order",
                code: "bad_status",
                message: "answered 503 Service Unavailable",
                status: Some(503),
                duration_ms: 12.3,
            },
            Failure {
                name: "stock",
                code: "connect_failed",
                message: "could not connect: refused",
                status: None,
                duration_ms: 0.0,
            },
        ];
        let merged = merge(&[key("order", "null")], Some(("_errors", &failures)));
        assert_eq!(
            String::from_utf8(merged).unwrap(),
            r#"{"order":null,"_errors":{"order":{"code":"bad_status","message":"answered 503 Service Unavailable","status":503,"duration_ms":12.3},"stock":{"code":"connect_failed","message":"could not connect: refused","duration_ms":0.0}}}"#
        );
    }
}
