//! Reading a backend's answer: how the backend reads it ([`Reading`]), the check that it
//! is JSON (no deeper than the upstream's `max_depth`, valid UTF-8), parsing it without
//! serde_json's recursion limit (and only when it holds no more than `max_values`
//! values: a parsed value costs ~40 to 100 times the bytes it was read from), and
//! shaping it.

use super::error::BackendError;
use super::scope::Backend;
use super::shape;
use crate::config::{MergeMode, Shape};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::Value;

/// How a backend reads its answers.
#[derive(Clone, Copy)]
pub(super) struct Reading<'a> {
    pub(super) merge: MergeMode,
    pub(super) shape: Option<&'a Shape>,
    /// Deepest nesting of arrays and objects accepted (the upstream's `max_depth`).
    pub(super) max_depth: usize,
    /// Most values an answer that is parsed may hold (the upstream's `max_values`).
    pub(super) max_values: usize,
}

impl<'a> Reading<'a> {
    /// How `backend` reads an answer of its canary's choice `pick`.
    pub(super) fn of(backend: &'a Backend, pick: usize) -> Self {
        Self {
            merge: backend.spec.merge,
            shape: backend.spec.shape.as_deref(),
            max_depth: backend.upstream_at(pick).spec.max_depth,
            max_values: backend.upstream_at(pick).spec.max_values,
        }
    }
}

fn invalid(e: serde_json::Error) -> BackendError {
    BackendError::InvalidJson(e.to_string())
}

/// What one pass over a JSON text finds before it is parsed.
#[derive(Debug, PartialEq, Eq)]
struct Extent {
    /// It nests arrays and objects more than the limit asked about.
    too_deep: bool,
    /// Its values: one, plus one per container and per `,` (each element or member
    /// after a container's first); containers that are empty count one too many.
    values: usize,
}

/// How deep `json` nests (stopping as soon as it is deeper than `max`, `[]` being 1
/// deep) and how many values it holds. Brackets and commas inside strings are skipped;
/// on text that is not JSON the answer may be wrong, but such text fails the JSON check
/// that follows anyway. One pass, no stack: the check that keeps a deep answer from
/// every recursive step after it (serde_json's `IgnoredAny` skips values without a depth
/// limit, so it alone would splice 100,000 levels into the response; a client's parser
/// would then have to cope), and a large one from being built.
fn extent(json: &[u8], max: usize) -> Extent {
    let mut depth = 0usize;
    let mut values = 1usize;
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'"' => {
                // Skip to the closing quote; an escape skips the byte after it.
                at += 1;
                while at < json.len() {
                    match json[at] {
                        b'\\' => at += 2,
                        b'"' => break,
                        _ => at += 1,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                values += 1;
                if depth > max {
                    return Extent {
                        too_deep: true,
                        values,
                    };
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
        at += 1;
    }
    Extent {
        too_deep: false,
        values,
    }
}

fn check_depth(raw: &[u8], max_depth: usize) -> Result<Extent, BackendError> {
    let extent = extent(raw, max_depth);
    if extent.too_deep {
        return Err(BackendError::InvalidJson(format!(
            "nested deeper than max_depth = {max_depth}"
        )));
    }
    Ok(extent)
}

/// Parses an answer no deeper than `max_depth` holding at most `max_values` values.
/// serde_json's own depth limit (127 levels) is lifted so that `max_depth` (at most
/// 128, by validation) is the one rule; parsing, shaping and dropping the value recurse
/// at most that deep.
pub fn parse_json(raw: &[u8], max_depth: usize, max_values: usize) -> Result<Value, BackendError> {
    check_values(raw, check_depth(raw, max_depth)?, max_values)?;
    let mut de = serde_json::Deserializer::from_slice(raw);
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de).map_err(invalid)?;
    de.end().map_err(invalid)?;
    Ok(value)
}

/// Refuses a text of more than `max_values` values: as `too_large` when it passes the
/// check spliced answers pass (a skim that builds nothing), else as not JSON.
fn check_values(raw: &[u8], extent: Extent, max_values: usize) -> Result<(), BackendError> {
    if extent.values <= max_values {
        return Ok(());
    }
    skim(raw)?;
    Err(BackendError::TooManyValues {
        count: extent.values,
        max: max_values,
    })
}

/// Checks that an answer is JSON, no deeper than `max_depth`, without building it.
pub fn check_json(raw: &[u8], max_depth: usize) -> Result<(), BackendError> {
    check_depth(raw, max_depth)?;
    skim(raw)
}

/// Whether `raw` is JSON by a skim that builds nothing: its grammar, and UTF-8 bytes.
/// (What it lets through that a parse refuses: string escapes of lone surrogates, which
/// the grammar allows and Rust strings cannot hold.)
fn skim(raw: &[u8]) -> Result<(), BackendError> {
    serde_json::from_slice::<IgnoredAny>(raw).map_err(invalid)?;
    // serde_json skips a string unread, so bytes that are not UTF-8 get through it.
    // Spliced as they came, they would make the whole merged body unreadable to a strict
    // client, not just this backend's part.
    std::str::from_utf8(raw)
        .map_err(|_| BackendError::InvalidJson("its bytes are not UTF-8".into()))?;
    Ok(())
}

/// Checks that an answer is JSON, shapes it if the backend says so, and checks it is an
/// object for `merge = "root"`. With `keep`, the parsed answer before shaping is returned
/// too.
pub(super) fn read(
    raw: Bytes,
    reading: Reading<'_>,
    keep: bool,
) -> Result<(Bytes, Option<Value>), BackendError> {
    let Reading {
        merge,
        shape,
        max_depth,
        max_values,
    } = reading;
    let (json, kept) = match (shape, keep) {
        (None, false) => {
            // Validated without being built: it is spliced as is; but `merge = "root"`
            // reads its members one by one, so it is held to `max_values` too.
            let extent = check_depth(&raw, max_depth)?;
            skim(&raw)?;
            if merge == MergeMode::Root {
                check_values(&raw, extent, max_values)?;
            }
            (raw, None)
        }
        (None, true) => {
            let value = parse_json(&raw, max_depth, max_values)?;
            (raw, Some(value))
        }
        (Some(shape), keep) => {
            let value = parse_json(&raw, max_depth, max_values)?;
            let kept = keep.then(|| value.clone());
            let shaped = shape::apply(shape, value).map_err(BackendError::Shape)?;
            let bytes = serde_json::to_vec(&shaped).expect("a JSON value serializes");
            (Bytes::from(bytes), kept)
        }
    };
    if merge == MergeMode::Root && json.trim_ascii_start().first() != Some(&b'{') {
        return Err(BackendError::NotAnObject);
    }
    Ok((json, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(json: &str) -> usize {
        let e = extent(json.as_bytes(), MAX_DEPTH);
        assert!(!e.too_deep, "{json}");
        e.values
    }

    const MAX_DEPTH: usize = 128;

    #[test]
    fn values_are_counted_outside_strings() {
        assert_eq!(values("1"), 1);
        assert_eq!(values("[0,0,0]"), 4);
        assert_eq!(values(r#"{"a":1,"b":[1,2]}"#), 5);
        // Commas, brackets and escaped quotes inside strings are text.
        assert_eq!(values(r#"["a,[b{", "c\",d"]"#), 3);
        // An empty container counts one value too many: an estimate that errs high.
        assert_eq!(values("[]"), 2);
    }

    #[test]
    fn depth_is_checked_as_before() {
        assert!(!extent(b"[[1]]", 2).too_deep);
        assert!(extent(b"[[[1]]]", 2).too_deep);
        assert!(!extent(br#"["[[[["]"#, 1).too_deep);
        assert!(matches!(
            check_depth(b"[[[1]]]", 2),
            Err(BackendError::InvalidJson(why)) if why == "nested deeper than max_depth = 2"
        ));
    }

    #[test]
    fn an_answer_with_more_values_than_max_values_is_not_parsed() {
        let raw = b"[1,2,3]";
        assert_eq!(
            parse_json(raw, MAX_DEPTH, 4).unwrap(),
            serde_json::json!([1, 2, 3])
        );
        let refused = parse_json(raw, MAX_DEPTH, 3).unwrap_err();
        assert!(matches!(
            refused,
            BackendError::TooManyValues { count: 4, max: 3 }
        ));
        assert_eq!(refused.code(), "too_large");
        assert_eq!(
            refused.to_string(),
            "answer holds 4 JSON values, more than max_values = 3"
        );
        // Checking without parsing builds nothing and has no such limit.
        assert!(check_json(raw, MAX_DEPTH).is_ok());
        // Text that is not JSON is not JSON, however many commas it has.
        assert!(matches!(
            parse_json(b"a,b,c,d,e", MAX_DEPTH, 3),
            Err(BackendError::InvalidJson(_))
        ));
    }

    #[test]
    fn a_root_merged_answer_is_held_to_max_values_and_a_keyed_one_is_not() {
        let raw = Bytes::from_static(br#"{"a":0,"b":0,"c":0}"#);
        let reading = |merge, max_values| Reading {
            merge,
            shape: None,
            max_depth: MAX_DEPTH,
            max_values,
        };
        assert!(read(raw.clone(), reading(MergeMode::Root, 4), false).is_ok());
        assert!(matches!(
            read(raw.clone(), reading(MergeMode::Root, 3), false),
            Err(BackendError::TooManyValues { count: 4, max: 3 })
        ));
        assert!(read(raw, reading(MergeMode::Key, 3), false).is_ok());
    }
}
