//! Loading: the TOML file, then `FANOUT__SECTION__KEY` environment overrides, then
//! `${VAR}` interpolation inside strings, then typed sections. Each route and upstream is
//! read on its own, and a key that does not parse (unknown, or of the wrong type) is
//! reported and left out, so that one mistake does not hide the others.

use super::Compiled;
use super::env::{Env, Override, apply_overrides, interpolate, name_overrides};
use super::validate::validate;
use super::{
    AccessLogConfig, AuthProviderConfig, CacheConfig, ClusterConfig, ConfigError, ConfigProblem,
    GatewayConfig, JobsConfig, RouteConfig, ServerConfig, TracingConfig, UpstreamConfig,
};
use config::{Config, File, FileFormat, Map, Value, ValueKind};
use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use std::path::Path;

const SECTIONS: &[&str] = &[
    "server",
    "cache",
    "access_log",
    "tracing",
    "cluster",
    "jobs",
    "auth",
    "upstreams",
    "routes",
];

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

/// Loads and validates a config, reporting every problem at once: those of the keys
/// that do not parse, and the validation problems of everything else. A problem an
/// environment override caused is reported under the variable's name.
pub fn compile(text: &str, env: &Env) -> Result<Compiled, ConfigError> {
    let Partial {
        config,
        mut problems,
        failed,
        overrides,
    } = load_partial(text, env)?;
    let validated = validate(&config);
    // A key that did not parse was left out (its default took its place); what
    // validation says about that default is noise.
    let from_failed = |place: &str| {
        failed.iter().any(|f| {
            place == f
                || place
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    };
    let mut problems = match validated {
        Ok(compiled) if problems.is_empty() => return Ok(compiled),
        Ok(_) => problems,
        Err(ConfigError(more)) => {
            problems.extend(more.into_iter().filter(|p| !from_failed(&p.place)));
            problems
        }
    };
    name_overrides(&mut problems, &overrides);
    Err(ConfigError(problems))
}

/// Loads a config from TOML text plus the overrides and variables in `env`, without
/// validating it.
pub fn load_str(text: &str, env: &Env) -> Result<GatewayConfig, ConfigError> {
    let Partial {
        config,
        mut problems,
        overrides,
        ..
    } = load_partial(text, env)?;
    if problems.is_empty() {
        Ok(config)
    } else {
        name_overrides(&mut problems, &overrides);
        Err(ConfigError(problems))
    }
}

/// What loading produced: the keys that parsed (defaults in place of the others), the
/// problems found, the places left out because they did not parse, and where each
/// environment override went.
struct Partial {
    config: GatewayConfig,
    problems: Vec<ConfigProblem>,
    failed: Vec<String>,
    overrides: Vec<Override>,
}

fn load_partial(text: &str, env: &Env) -> Result<Partial, ConfigError> {
    let single = |msg: String| ConfigError(vec![ConfigProblem::new("config", msg)]);
    let mut root = Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .build()
        .map_err(|e| single(format!("not valid TOML: {e}")))?
        .try_deserialize::<Value>()
        .map_err(|e| single(format!("not a TOML document: {e}")))?;
    if !matches!(root.kind, ValueKind::Table(_)) {
        return Err(single("not a TOML document".into()));
    }
    let mut problems = Vec::new();
    let overrides = apply_overrides(&mut root, env, &mut problems);
    let root = root.into_table().expect("checked: a table");

    let mut failed = Vec::new();
    let mut out = GatewayConfig::default();
    for (key, mut value) in root {
        let (p, f) = (&mut problems, &mut failed);
        interpolate(&mut value, &key, env, p, &mut out.interpolated, f);
        match key.as_str() {
            "server" => {
                if let Some(server) = section::<ServerConfig>(value, "server", p, f) {
                    out.server = server;
                }
            }
            "tracing" => {
                if let Some(tracing) = section::<TracingConfig>(value, "tracing", p, f) {
                    out.tracing = tracing;
                }
            }
            "cluster" => {
                out.cluster = section::<ClusterConfig>(value, "cluster", p, f);
            }
            "jobs" => {
                if let Some(jobs) = section::<JobsConfig>(value, "jobs", p, f) {
                    out.jobs = jobs;
                }
            }
            "cache" => {
                if let Some(cache) = section::<CacheConfig>(value, "cache", p, f) {
                    out.cache = cache;
                }
            }
            "access_log" => {
                if let Some(log) = section::<AccessLogConfig>(value, "access_log", p, f) {
                    out.access_log = log;
                }
            }
            "auth" => {
                for (name, v) in table(value, "auth", p, f) {
                    let place = format!("auth.{name}");
                    // One that does not parse keeps its name, so routes naming it still
                    // resolve and are checked.
                    let a = section::<AuthProviderConfig>(v, &place, p, f);
                    out.auth.insert(name, a.unwrap_or_default());
                }
            }
            "upstreams" => {
                for (name, v) in table(value, "upstreams", p, f) {
                    let place = format!("upstreams.{name}");
                    // One that does not parse keeps its name, so routes naming it still
                    // resolve and are checked.
                    let u = section::<UpstreamConfig>(v, &place, p, f);
                    out.upstreams.insert(name, u.unwrap_or_default());
                }
            }
            "routes" => match value.into_array() {
                Ok(routes) => {
                    for (i, v) in routes.into_iter().enumerate() {
                        let place = format!("routes[{i}]");
                        // A route that does not parse keeps its slot, so that later
                        // places still carry the index the user sees in the file.
                        let route = section::<RouteConfig>(v, &place, p, f);
                        out.routes.push(route.unwrap_or_default());
                    }
                }
                Err(_) => {
                    p.push(ConfigProblem::new(
                        "routes",
                        "must be an array of tables: write each route as [[routes]]",
                    ));
                    f.push("routes".into());
                }
            },
            other => p.push(ConfigProblem::new(
                other,
                format!("unknown key; expected one of: {}", SECTIONS.join(", ")),
            )),
        }
    }
    Ok(Partial {
        config: out,
        problems,
        failed,
        overrides,
    })
}

fn table(
    value: Value,
    place: &str,
    problems: &mut Vec<ConfigProblem>,
    failed: &mut Vec<String>,
) -> Map<String, Value> {
    value.into_table().unwrap_or_else(|_| {
        problems.push(ConfigProblem::new(
            place,
            format!("must be a table: write [{place}.NAME] sections"),
        ));
        failed.push(place.to_string());
        Map::new()
    })
}

/// Reads one section. A key that does not parse is reported, recorded in `failed` and
/// left out, and the section is read again without it, so an unknown key in a route
/// does not hide a wrong upstream name in the same route. `None` when the section as a
/// whole cannot be read (it is not a table).
fn section<T: DeserializeOwned>(
    mut value: Value,
    place: &str,
    problems: &mut Vec<ConfigProblem>,
    failed: &mut Vec<String>,
) -> Option<T> {
    loop {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let inner = e.path().to_string();
        let at = if inner == "." {
            place.to_string()
        } else {
            format!("{place}.{inner}")
        };
        let segments: Vec<Segment> = e.path().iter().cloned().collect();
        problems.push(ConfigProblem::new(at, describe_serde(e.into_inner())));
        match remove_key(&mut value, &segments) {
            Some(removed) => failed.push(format!("{place}{removed}")),
            None => {
                failed.push(place.to_string());
                return None;
            }
        }
    }
}

/// Removes the innermost table key on `path` (a list element goes with its list, so
/// later indexes keep their meaning). Returns the removed key's place relative to the
/// section (`.backends[0].merge`), or `None` when there is no key to remove.
fn remove_key(root: &mut Value, path: &[Segment]) -> Option<String> {
    let last_key = path
        .iter()
        .rposition(|s| matches!(s, Segment::Map { .. }))?;
    let mut node = root;
    let mut place = String::new();
    for segment in &path[..last_key] {
        node = match (segment, &mut node.kind) {
            (Segment::Map { key }, ValueKind::Table(t)) => {
                place.push_str(&format!(".{key}"));
                t.get_mut(key)?
            }
            (Segment::Seq { index }, ValueKind::Array(a)) => {
                place.push_str(&format!("[{index}]"));
                a.get_mut(*index)?
            }
            _ => return None,
        };
    }
    let Segment::Map { key } = &path[last_key] else {
        unreachable!("found as a map segment")
    };
    match &mut node.kind {
        ValueKind::Table(t) => {
            t.shift_remove(key)?;
            Some(format!("{place}.{key}"))
        }
        _ => None,
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
    if let Some(start) = text.strip_suffix("expected a sequence") {
        return format!("{start}expected a list, such as [\"a\", \"b\"]");
    }
    // "enum MergeMode does not have variant constructor rot"
    if let Some((kind, value)) = text
        .strip_prefix("enum ")
        .and_then(|t| t.split_once(" does not have variant constructor "))
    {
        let allowed = match kind {
            "MergeMode" => "\"key\" or \"root\"",
            "ForEachFail" => "\"null\" or \"all\"",
            "OnError" => "\"fail\", \"default\" or \"omit\"",
            _ => return text,
        };
        return format!("\"{value}\" is not allowed here; write {allowed}");
    }
    text
}
