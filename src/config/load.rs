//! Loading: the TOML file, then `FANOUT__SECTION__KEY` environment overrides (the `config`
//! crate), then `${VAR}` interpolation inside strings, then typed sections. Each route and
//! upstream is read on its own so that one mistake does not hide the others.

use super::Compiled;
use super::validate::validate;
use super::{
    CacheConfig, ConfigError, ConfigProblem, GatewayConfig, RouteConfig, ServerConfig,
    UpstreamConfig,
};
use config::{Config, Environment, File, FileFormat, Map, Value, ValueKind};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::Path;

const SECTIONS: &[&str] = &["server", "cache", "upstreams", "routes"];

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

    fn overrides(&self) -> Map<String, String> {
        self.vars
            .iter()
            .filter(|(k, _)| k.starts_with("FANOUT__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Reads the config file at `path` and compiles it (see [`compile`]).
pub fn compile_file(path: &Path, env: &Env) -> Result<Compiled, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![ConfigProblem::new(
            path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )])
    })?;
    compile(&text, env)
}

/// Loads and validates a config, reporting every problem at once: those of the sections
/// that do not parse, and the validation problems of everything that does.
pub fn compile(text: &str, env: &Env) -> Result<Compiled, ConfigError> {
    let Partial {
        config,
        mut problems,
        failed,
    } = load_partial(text, env)?;
    let validated = validate(&config);
    // A section that did not parse was replaced by its defaults; what validation says
    // about those defaults is noise.
    let from_failed = |place: &str| {
        failed.iter().any(|f| {
            place == f
                || place
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    };
    match validated {
        Ok(compiled) if problems.is_empty() => Ok(compiled),
        Ok(_) => Err(ConfigError(problems)),
        Err(ConfigError(more)) => {
            problems.extend(more.into_iter().filter(|p| !from_failed(&p.place)));
            Err(ConfigError(problems))
        }
    }
}

/// Loads a config from TOML text plus the overrides and variables in `env`, without
/// validating it.
pub fn load_str(text: &str, env: &Env) -> Result<GatewayConfig, ConfigError> {
    let Partial {
        config, problems, ..
    } = load_partial(text, env)?;
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError(problems))
    }
}

/// What loading produced: the sections that parsed (defaults in place of the others),
/// the problems found, and the places of the sections that did not parse.
struct Partial {
    config: GatewayConfig,
    problems: Vec<ConfigProblem>,
    failed: Vec<String>,
}

fn load_partial(text: &str, env: &Env) -> Result<Partial, ConfigError> {
    let single = |msg: String| ConfigError(vec![ConfigProblem::new("config", msg)]);
    let merged = Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .add_source(
            Environment::with_prefix("FANOUT")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env.overrides())),
        )
        .build()
        .map_err(|e| single(format!("not valid TOML: {e}")))?;
    let root = merged
        .try_deserialize::<Value>()
        .and_then(Value::into_table)
        .map_err(|e| single(format!("not a TOML document: {e}")))?;

    let mut problems = Vec::new();
    let mut failed = Vec::new();
    let mut out = GatewayConfig::default();
    for (key, mut value) in root {
        interpolate(&mut value, &key, env, &mut problems, &mut out.interpolated);
        match key.as_str() {
            "server" => {
                if let Some(server) = section::<ServerConfig>(value, "server", &mut problems) {
                    out.server = server;
                }
            }
            "cache" => {
                if let Some(cache) = section::<CacheConfig>(value, "cache", &mut problems) {
                    out.cache = cache;
                }
            }
            "upstreams" => {
                for (name, v) in table(value, "upstreams", &mut problems) {
                    let place = format!("upstreams.{name}");
                    // One that does not parse keeps its name, so routes naming it still
                    // resolve and are checked.
                    let u = section::<UpstreamConfig>(v, &place, &mut problems);
                    out.upstreams.insert(name, u.unwrap_or_default());
                }
            }
            "routes" => match value.into_array() {
                Ok(routes) => {
                    for (i, v) in routes.into_iter().enumerate() {
                        let place = format!("routes[{i}]");
                        // A route that does not parse keeps its slot, so that later
                        // places still carry the index the user sees in the file.
                        let route = section::<RouteConfig>(v, &place, &mut problems);
                        out.routes.push(route.unwrap_or_default());
                    }
                }
                Err(_) => problems.push(ConfigProblem::new(
                    "routes",
                    "must be an array of tables: write each route as [[routes]]",
                )),
            },
            other => problems.push(ConfigProblem::new(
                other,
                format!("unknown key; expected one of: {}", SECTIONS.join(", ")),
            )),
        }
    }
    failed.extend(problems.iter().filter_map(|p| section_of(&p.place)));
    Ok(Partial {
        config: out,
        problems,
        failed,
    })
}

/// The section a load problem belongs to: `routes[2]`, `upstreams.users`, `server`.
fn section_of(place: &str) -> Option<String> {
    if let Some(rest) = place.strip_prefix("routes[") {
        let end = rest.find(']')?;
        return Some(format!("routes[{}]", &rest[..end]));
    }
    if let Some(rest) = place.strip_prefix("upstreams.") {
        return Some(format!("upstreams.{}", rest.split(['.', '[']).next()?));
    }
    Some(place.split(['.', '[']).next()?.to_string())
}

fn table(value: Value, place: &str, problems: &mut Vec<ConfigProblem>) -> Map<String, Value> {
    value.into_table().unwrap_or_else(|_| {
        problems.push(ConfigProblem::new(
            place,
            format!("must be a table: write [{place}.NAME] sections"),
        ));
        Map::new()
    })
}

fn section<T: DeserializeOwned>(
    value: Value,
    place: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let place = if inner == "." {
                place.to_string()
            } else {
                format!("{place}.{inner}")
            };
            problems.push(ConfigProblem::new(place, describe_serde(e.into_inner())));
            None
        }
    }
}

/// serde's texts, reworded where a user would not know what to do with them.
fn describe_serde(e: config::ConfigError) -> String {
    let mut text = e.to_string();
    // The config crate appends the key it already knows; the place says it better.
    if let Some(at) = text.rfind(" for key `") {
        text.truncate(at);
    }
    if let Some(rest) = text.strip_prefix("unknown field ") {
        return format!("unknown key {rest}");
    }
    // "enum MergeMode does not have variant constructor rot"
    if let Some((kind, value)) = text
        .strip_prefix("enum ")
        .and_then(|t| t.split_once(" does not have variant constructor "))
    {
        let allowed = match kind {
            "MergeMode" => "\"key\" or \"root\"",
            "ForEachFail" => "\"null\" or \"all\"",
            _ => return text,
        };
        return format!("\"{value}\" is not allowed here; write {allowed}");
    }
    text
}

/// Replaces `${VAR}` in every string. `$${` writes a literal `${`.
fn interpolate(
    value: &mut Value,
    place: &str,
    env: &Env,
    problems: &mut Vec<ConfigProblem>,
    interpolated: &mut Vec<String>,
) {
    match &mut value.kind {
        ValueKind::String(s) if s.contains('$') => match substitute(s, env) {
            Ok(new) => {
                if new != *s {
                    interpolated.push(place.to_string());
                }
                *s = new;
            }
            Err(msg) => problems.push(ConfigProblem::new(place, msg)),
        },
        ValueKind::Table(t) => {
            for (k, v) in t.iter_mut() {
                interpolate(v, &format!("{place}.{k}"), env, problems, interpolated);
            }
        }
        ValueKind::Array(a) => {
            for (i, v) in a.iter_mut().enumerate() {
                interpolate(v, &format!("{place}[{i}]"), env, problems, interpolated);
            }
        }
        _ => {}
    }
}

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
            let name = &after[..end];
            let value = env.get(name).ok_or_else(|| {
                format!("environment variable {name} is not set; set it or remove ${{{name}}}")
            })?;
            out.push_str(value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
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
            "environment variable NOPE is not set; set it or remove ${NOPE}"
        );
        assert!(
            substitute("${TOKEN", &env())
                .unwrap_err()
                .starts_with("unclosed")
        );
    }
}
