//! Reading a backend's answer: how the backend reads it ([`Reading`]), the check that it
//! is JSON (no deeper than the upstream's `max_depth`, valid UTF-8), parsing it without
//! serde_json's recursion limit, and shaping it.

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
}

impl<'a> Reading<'a> {
    /// How `backend` reads an answer of its canary's choice `pick`.
    pub(super) fn of(backend: &'a Backend, pick: usize) -> Self {
        Self {
            merge: backend.spec.merge,
            shape: backend.spec.shape.as_deref(),
            max_depth: backend.upstream_at(pick).spec.max_depth,
        }
    }
}

fn invalid(e: serde_json::Error) -> BackendError {
    BackendError::InvalidJson(e.to_string())
}

/// Whether `json` nests arrays and objects more than `max` deep (`[]` is 1 deep).
/// Brackets inside strings are skipped; on text that is not JSON the answer may be
/// wrong, but such text fails the JSON check that follows anyway. One pass, no stack:
/// the check that keeps a deep answer from every recursive step after it (serde_json's
/// `IgnoredAny` skips values without a depth limit, so it alone would splice 100,000
/// levels into the response; a client's parser would then have to cope).
fn nests_deeper(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
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
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

fn check_depth(raw: &[u8], max_depth: usize) -> Result<(), BackendError> {
    if nests_deeper(raw, max_depth) {
        return Err(BackendError::InvalidJson(format!(
            "nested deeper than max_depth = {max_depth}"
        )));
    }
    Ok(())
}

/// Parses an answer whose depth [`check_depth`] has checked. serde_json's own limit
/// (127 levels) is lifted so that `max_depth` (at most 128, by validation) is the one
/// rule; parsing, shaping and dropping the value recurse at most that deep.
pub(super) fn parse_json(raw: &[u8], max_depth: usize) -> Result<Value, BackendError> {
    check_depth(raw, max_depth)?;
    let mut de = serde_json::Deserializer::from_slice(raw);
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de).map_err(invalid)?;
    de.end().map_err(invalid)?;
    Ok(value)
}

/// Checks that an answer is JSON, no deeper than `max_depth`, without building it.
pub(super) fn check_json(raw: &[u8], max_depth: usize) -> Result<(), BackendError> {
    check_depth(raw, max_depth)?;
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
    } = reading;
    let (json, kept) = match (shape, keep) {
        (None, false) => {
            // Validated without being built: it is spliced as is.
            check_json(&raw, max_depth)?;
            (raw, None)
        }
        (None, true) => {
            let value = parse_json(&raw, max_depth)?;
            (raw, Some(value))
        }
        (Some(shape), keep) => {
            let value = parse_json(&raw, max_depth)?;
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
