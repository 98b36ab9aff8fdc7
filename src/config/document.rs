//! The effective config as shown to operators (`/config`) and its hash: JSON of what was
//! loaded after environment overrides, with secrets redacted: upstream `headers` values
//! and every string that came from `${VAR}`.

use super::GatewayConfig;
use serde_json::Value;

const REDACTED: &str = "[redacted]";

/// The JSON document and a stable hash of the unredacted config (so a changed secret
/// changes the hash without showing the secret).
pub fn document(config: &GatewayConfig) -> (Value, String) {
    let mut value = serde_json::to_value(config).expect("the config serializes");
    let hash = fnv1a(&serde_json::to_vec(&value).expect("JSON serializes"));
    if let Some(upstreams) = value.get_mut("upstreams").and_then(Value::as_object_mut) {
        for upstream in upstreams.values_mut() {
            if let Some(headers) = upstream.get_mut("headers").and_then(Value::as_object_mut) {
                headers
                    .values_mut()
                    .for_each(|v| *v = Value::from(REDACTED));
            }
        }
    }
    for place in &config.interpolated {
        if let Some(slot) = lookup(&mut value, place) {
            *slot = Value::from(REDACTED);
        }
    }
    (value, format!("{hash:016x}"))
}

/// FNV-1a, 64 bits: stable across builds and machines, unlike `std`'s hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The value at a place such as `routes[0].backends[1].path`.
fn lookup<'a>(value: &'a mut Value, place: &str) -> Option<&'a mut Value> {
    let mut current = value;
    for part in place.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        current = current.get_mut(key)?;
        for index in indexes.split(']').filter(|s| !s.is_empty()) {
            current = current.get_mut(index.trim_start_matches('[').parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use super::super::{Env, compile, load_str};
    use super::*;

    const TOML: &str = r#"
[upstreams.users]
url = "http://${USERS_HOST}:9001"
headers = { authorization = "Bearer literal-secret" }
[[routes]]
path = "/r"
proxy = { upstream = "users", path = "/${PREFIX}/x" }
"#;

    fn env(token: &str) -> Env {
        Env::from_pairs([("USERS_HOST", "10.1.2.3"), ("PREFIX", token)])
    }

    #[test]
    fn secrets_and_variables_are_redacted() {
        let (doc, _) = document(&load_str(TOML, &env("v1")).unwrap());
        assert_eq!(doc["upstreams"]["users"]["url"], REDACTED);
        assert_eq!(
            doc["upstreams"]["users"]["headers"]["authorization"],
            REDACTED
        );
        assert_eq!(doc["routes"][0]["proxy"]["path"], REDACTED);
        assert_eq!(doc["routes"][0]["path"], "/r");
        assert_eq!(
            doc["upstreams"]["users"]["timeout"], "10s",
            "defaults are shown"
        );
        let text = doc.to_string();
        assert!(
            !text.contains("10.1.2.3") && !text.contains("literal-secret"),
            "{text}"
        );
    }

    #[test]
    fn the_hash_follows_every_change_and_only_changes() {
        let hash = |e: &Env| compile(TOML, e).unwrap().hash;
        assert_eq!(hash(&env("v1")), hash(&env("v1")));
        assert_ne!(
            hash(&env("v1")),
            hash(&env("v2")),
            "a changed variable changes the hash"
        );
        assert_eq!(hash(&env("v1")).len(), 16);
    }

    #[test]
    fn places_resolve() {
        let mut v = serde_json::json!({"routes": [{"backends": [{}, {"path": "x"}]}]});
        *lookup(&mut v, "routes[0].backends[1].path").unwrap() = Value::from("y");
        assert_eq!(v["routes"][0]["backends"][1]["path"], "y");
        assert!(lookup(&mut v, "routes[3].path").is_none());
    }
}
