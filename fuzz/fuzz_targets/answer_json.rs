//! Reading an answer or a request body as JSON before and while it is parsed
//! (`src/aggregate/read.rs`): the one-pass count of values and depth, and the parse it
//! gates, against the rules written there.
//!
//! Rules: nothing panics, whatever the bytes; a text that parses holds at most as many
//! values as the count says (the count errs high, never low) and nests no deeper than
//! `max_depth`; one with more than `max_values` is refused as `too_large` and one
//! deeper than `max_depth`, or not JSON by the splice check whatever its count, as
//! `invalid_json`; what parses also passes the check made
//! without parsing (spliced answers); and the outcome is the same every time.
#![no_main]

use arbitrary::Arbitrary;
use fanout::aggregate::read::{check_json, parse_json};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
struct Input {
    max_depth: u8,
    max_values: u16,
    text: Vec<u8>,
}

/// Values in `v` (itself, every element and member value, recursively) and its depth.
fn measure(v: &Value) -> (usize, usize) {
    let inner = match v {
        Value::Array(a) => a.iter().map(measure).collect::<Vec<_>>(),
        Value::Object(o) => o.values().map(measure).collect::<Vec<_>>(),
        _ => return (1, 0),
    };
    let values = 1 + inner.iter().map(|m| m.0).sum::<usize>();
    let depth = 1 + inner.iter().map(|m| m.1).max().unwrap_or(0);
    (values, depth)
}

fuzz_target!(|input: Input| {
    let max_depth = usize::from(input.max_depth % 129).max(1);
    let raw = &input.text[..];
    let unlimited = parse_json(raw, max_depth, usize::MAX);
    let limited = parse_json(raw, max_depth, usize::from(input.max_values));
    let again = parse_json(raw, max_depth, usize::from(input.max_values));
    assert_eq!(
        format!("{limited:?}"),
        format!("{again:?}"),
        "deterministic"
    );
    match (&unlimited, &limited) {
        (Ok(value), Ok(same)) => {
            assert_eq!(value, same);
            let (values, depth) = measure(value);
            assert!(values <= usize::from(input.max_values), "{values} values kept");
            assert!(depth <= max_depth, "{depth} deep");
        }
        (Ok(value), Err(e)) => {
            // Refused for its count alone, and the count was not low.
            assert_eq!(e.code(), "too_large", "{e}");
            assert!(measure(value).0 <= count_of(&e.to_string()), "{e}");
            assert!(count_of(&e.to_string()) > usize::from(input.max_values));
        }
        (Err(e), _) => {
            // Not JSON (or too deep) is said so, whatever its count; only a text the
            // splice check passes (lone surrogate escapes) may be refused for its count.
            assert_eq!(e.code(), "invalid_json", "{e}");
            let limited = limited.as_ref().expect_err("unparsable under any limit");
            if check_json(raw, max_depth).is_err() {
                assert_eq!(limited.code(), "invalid_json", "{limited}");
            }
        }
    }
    if let Ok(value) = &unlimited {
        assert!(
            check_json(raw, max_depth).is_ok(),
            "parsed but not passed unparsed: {value}"
        );
    }
});

/// The count in "answer holds N JSON values, more than max_values = M".
fn count_of(message: &str) -> usize {
    message
        .strip_prefix("answer holds ")
        .and_then(|m| m.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the too_large message")
}
