//! The environment a config is loaded against: `FANOUT__SECTION__KEY` overrides, applied
//! onto the file's document with the place each one set (so a problem it causes names
//! the variable, not the file), and `${VAR}` interpolation inside strings.
//!
//! Overrides are applied here rather than by the `config` crate's environment source:
//! that source cannot address an element of an array (`FANOUT__ROUTES__0__TIMEOUT`),
//! and it forgets which variable set which key.

use super::ConfigProblem;
use config::{Map, Value, ValueKind};
use std::collections::HashMap;

const PREFIX: &str = "FANOUT__";

/// The environment a config is loaded against: `${VAR}` values and `FANOUT__` overrides.
/// Tests build their own instead of touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// The process environment (variables that are not valid UTF-8 are skipped).
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
        }
    }

    /// An environment holding exactly these variables.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The `FANOUT__` variables, in name order so overrides apply deterministically.
    fn overrides(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .vars
            .iter()
            .filter(|(k, _)| k.starts_with(PREFIX))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        out.sort_unstable();
        out
    }
}

/// One applied override: the place it set (`routes[0].timeout`) and the variable.
#[derive(Debug, Clone)]
pub(super) struct Override {
    pub place: String,
    pub var: String,
}

/// Applies every `FANOUT__` override to `root`. Keys are lowercased; a number after a
/// list's key is an index into it (`FANOUT__ROUTES__0__TIMEOUT`). An override may
/// change a value or add a key to a table, never add an element to a list, replace a
/// table or set a whole list.
pub(super) fn apply_overrides(
    root: &mut Value,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<Override> {
    let mut applied = Vec::new();
    for (var, text) in env.overrides() {
        let segments: Vec<String> = var[PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if segments.iter().any(String::is_empty) {
            problems.push(ConfigProblem::new(
                var,
                "has an empty key between \"__\" separators; write FANOUT__SECTION__KEY, such as FANOUT__SERVER__LISTEN",
            ));
            continue;
        }
        match set(root, &segments, var, text) {
            Ok(place) => applied.push(Override {
                place,
                var: var.to_string(),
            }),
            Err(message) => problems.push(ConfigProblem::new(var, message)),
        }
    }
    applied
}

fn set(root: &mut Value, segments: &[String], var: &str, text: &str) -> Result<String, String> {
    let mut place = String::new();
    let mut node = root;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        node = match &mut node.kind {
            ValueKind::Table(table) => {
                if !place.is_empty() {
                    place.push('.');
                }
                place.push_str(segment);
                if last {
                    refuse_structure(table.get(segment), &place, var)?;
                    table.insert(segment.clone(), Value::new(None, text.to_string()));
                    return Ok(place);
                }
                table
                    .entry(segment.clone())
                    .or_insert_with(|| Value::new(None, ValueKind::Table(Map::new())))
            }
            ValueKind::Array(items) => {
                let Ok(index) = segment.parse::<usize>() else {
                    return Err(format!(
                        "{place} is a list: the key after it is the index of an entry, such as {}__0__…",
                        var_prefix(var, i)
                    ));
                };
                let len = items.len();
                if index >= len {
                    let declared = match len {
                        0 => "none".to_string(),
                        1 => format!("only {place}[0]"),
                        n => format!("{place}[0] to {place}[{}]", n - 1),
                    };
                    return Err(format!(
                        "there is no {place}[{index}]: the file declares {declared}; an override can change an entry the file declares, not add one"
                    ));
                }
                place.push_str(&format!("[{index}]"));
                let item = &mut items[index];
                if last {
                    refuse_structure(Some(item), &place, var)?;
                    *item = Value::new(None, text.to_string());
                    return Ok(place);
                }
                item
            }
            _ => {
                return Err(format!(
                    "{place} is a single value, so it has no key \"{segment}\" to set"
                ));
            }
        };
    }
    unreachable!("the last segment returns")
}

/// A table or a list cannot be replaced by one string.
fn refuse_structure(existing: Option<&Value>, place: &str, var: &str) -> Result<(), String> {
    match existing.map(|v| &v.kind) {
        Some(ValueKind::Table(_)) => Err(format!(
            "{place} is a table; override one of its keys, such as {var}__KEY"
        )),
        Some(ValueKind::Array(_)) => Err(list_from_env(place)),
        _ => Ok(()),
    }
}

/// The variable's name up to and including its `i`-th segment after the prefix.
fn var_prefix(var: &str, i: usize) -> &str {
    let rest = &var[PREFIX.len()..];
    let end = rest
        .match_indices("__")
        .nth(i.saturating_sub(1))
        .map_or(rest.len(), |(at, _)| at);
    &var[..PREFIX.len() + end]
}

/// Renames the place of every problem an override caused to the override's variable:
/// `FANOUT__UPSTREAMS__USERS__TIMEOUT: invalid duration "soon"`.
pub(super) fn name_overrides(problems: &mut [ConfigProblem], overrides: &[Override]) {
    for problem in problems {
        if let Some(o) = overrides.iter().find(|o| o.place == problem.place) {
            problem.place = o.var.clone();
            // A key the file leaves out: it was not known to be a list when applied.
            if problem.message.contains("expected a list") {
                problem.message = list_from_env(&o.place);
            }
        }
    }
}

fn list_from_env(place: &str) -> String {
    format!(
        "{place} is a list, which cannot be set from the environment; write it in the file (${{VAR}} works inside its elements)"
    )
}

/// Replaces `${VAR}` in every string, recording the places of the strings it changed.
/// A place that fails is recorded in `failed`: its text stays as written.
pub(super) fn interpolate(
    value: &mut Value,
    place: &str,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
    interpolated: &mut Vec<String>,
    failed: &mut Vec<String>,
) {
    match &mut value.kind {
        ValueKind::String(s) if s.contains('$') => match substitute(s, env) {
            Ok(new) => {
                if new != *s {
                    interpolated.push(place.to_string());
                }
                *s = new;
            }
            Err(msg) => {
                problems.push(ConfigProblem::new(place, msg));
                failed.push(place.to_string());
            }
        },
        ValueKind::Table(t) => {
            for (k, v) in t.iter_mut() {
                let at = format!("{place}.{k}");
                interpolate(v, &at, env, problems, interpolated, failed);
            }
        }
        ValueKind::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                let at = format!("{place}[{i}]");
                interpolate(v, &at, env, problems, interpolated, failed);
            }
        }
        _ => {}
    }
}

/// `${NAME}`, `${NAME:-default}` (unset or empty: the default) and `${NAME-default}`
/// (unset: the default), as in a POSIX shell. `$${` writes a literal `${`.
fn substitute(text: &str, env: &Env) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or_else(|| {
                "unclosed \"${\"; write ${NAME}, or $${ for a literal \"${\"".to_string()
            })?;
            out.push_str(expand(&after[..end], env)?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn expand<'e>(inner: &'e str, env: &'e Env) -> Result<&'e str, String> {
    let name_len = inner
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count();
    let (name, operator) = inner.split_at(name_len);
    let supported = "write ${NAME}, ${NAME:-default} (unset or empty: the default) or ${NAME-default} (unset: the default)";
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        return Err(format!(
            "\"${{{inner}}}\" does not start with a variable name; {supported}"
        ));
    }
    let default = operator
        .strip_prefix(":-")
        .map(|d| (d, true))
        .or_else(|| operator.strip_prefix('-').map(|d| (d, false)));
    match default {
        _ if operator.is_empty() => env.get(name).ok_or_else(|| {
            format!(
                "environment variable {name} is not set; set it, give a default with ${{{name}:-default}}, or remove ${{{name}}}"
            )
        }),
        Some((default, _)) if default.contains('$') => Err(format!(
            "\"${{{inner}}}\": a default cannot hold another variable; {supported}"
        )),
        Some((default, or_empty)) => Ok(match env.get(name) {
            Some(v) if !(or_empty && v.is_empty()) => v,
            _ => default,
        }),
        None => Err(format!("\"${{{inner}}}\" is not supported; {supported}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env::from_pairs([("TOKEN", "s3cret"), ("EMPTY", "")])
    }

    #[test]
    fn substitutes_variables() {
        assert_eq!(
            substitute("Bearer ${TOKEN}", &env()).unwrap(),
            "Bearer s3cret"
        );
        assert_eq!(substitute("a${EMPTY}b", &env()).unwrap(), "ab");
        assert_eq!(substitute("$5 and $${X}", &env()).unwrap(), "$5 and ${X}");
        assert_eq!(
            substitute("${NOPE}", &env()).unwrap_err(),
            "environment variable NOPE is not set; set it, give a default with ${NOPE:-default}, or remove ${NOPE}"
        );
        assert!(
            substitute("${TOKEN", &env())
                .unwrap_err()
                .starts_with("unclosed")
        );
    }

    #[test]
    fn shell_style_defaults() {
        let s = |t: &str| substitute(t, &env());
        assert_eq!(s("${NOPE:-9001}").unwrap(), "9001");
        assert_eq!(s("${EMPTY:-9001}").unwrap(), "9001");
        assert_eq!(s("${TOKEN:-9001}").unwrap(), "s3cret");
        assert_eq!(s("${NOPE-x}").unwrap(), "x");
        assert_eq!(s("${EMPTY-x}").unwrap(), "", "set but empty is kept");
        assert_eq!(s("${NOPE:-}").unwrap(), "");
        assert!(s("${NOPE:?oops}").unwrap_err().contains("is not supported"));
        assert!(
            s("${NOPE:-${TOKEN}}")
                .unwrap_err()
                .contains("cannot hold another variable")
        );
        assert!(
            s("${1X}")
                .unwrap_err()
                .contains("does not start with a variable name")
        );
    }

    #[test]
    fn variable_prefixes() {
        assert_eq!(
            var_prefix("FANOUT__ROUTES__0__TIMEOUT", 1),
            "FANOUT__ROUTES"
        );
        assert_eq!(
            var_prefix("FANOUT__ROUTES__0__TIMEOUT", 2),
            "FANOUT__ROUTES__0"
        );
    }
}
