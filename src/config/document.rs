//! The effective config as shown to operators (`/config`) and its hash: JSON of what was
//! loaded after environment overrides, with every secret redacted.
//!
//! Redacted: `server.admin_token`, upstream `headers` values, backend `headers` values
//! but those that are exactly one placeholder, the user-info of an
//! upstream `url` (`http://[redacted]@host`), query values in backend, proxy and
//! health-check paths (a value that is exactly one template, `{id}`, is kept: it names
//! where the value comes from, not the value), `[auth.NAME]` `secret`s, and every string
//! that came from `${VAR}`.
//!
//! The hash identifies a config across instances and with `fanout check`: SHA-256 of
//! the redacted document and of a PBKDF2 digest of the secrets, shown as its first 16
//! hex digits. A changed secret changes the hash; checking a guessed secret against it
//! costs a PBKDF2 run of [`SECRET_ROUNDS`] per guess (salted with the document, so no
//! table computed in advance helps), where the fast hash it replaces took nanoseconds.

use super::GatewayConfig;
use ring::{digest, pbkdf2};
use serde_json::Value;
use std::num::NonZeroU32;

/// What `/config` shows in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// PBKDF2-HMAC-SHA256 rounds over the secrets: OWASP's 2023 figure for this function.
/// About 0.1 s once per load (check, start, reload) on this project's machine.
pub const SECRET_ROUNDS: u32 = 600_000;

/// The redacted JSON document and the config hash.
pub fn document(config: &GatewayConfig) -> (Value, String) {
    let mut value = serde_json::to_value(config).expect("the config serializes");
    let mut secrets = Secrets::default();
    redact(&mut value, config, &mut secrets);
    let hash = hash(&value, secrets);
    (value, hash)
}

/// The redacted values with their places, in the order they were found.
#[derive(Default)]
struct Secrets(Vec<(String, Value)>);

impl Secrets {
    /// Replaces the value at `slot` with `redacted`, keeping the original.
    fn take(&mut self, place: String, slot: &mut Value, redacted: Value) {
        if *slot != redacted {
            self.0.push((place, std::mem::replace(slot, redacted)));
        }
    }
}

fn redact(value: &mut Value, config: &GatewayConfig, secrets: &mut Secrets) {
    // ${VAR} first: those places are redacted whole, whatever they hold.
    for place in &config.interpolated {
        if let Some(slot) = lookup(value, place) {
            secrets.take(place.clone(), slot, Value::from(REDACTED));
        }
    }
    if let Some(slot) = value.pointer_mut("/server/admin_token")
        && !slot.is_null()
    {
        secrets.take("server.admin_token".into(), slot, Value::from(REDACTED));
    }
    if let Some(upstreams) = value.get_mut("upstreams").and_then(Value::as_object_mut) {
        for (name, upstream) in upstreams.iter_mut() {
            let place = format!("upstreams.{name}");
            if let Some(headers) = upstream.get_mut("headers").and_then(Value::as_object_mut) {
                for (header, v) in headers.iter_mut() {
                    secrets.take(format!("{place}.headers.{header}"), v, REDACTED.into());
                }
            }
            redact_text(upstream.get_mut("url"), &format!("{place}.url"), secrets);
            redact_text(
                upstream.pointer_mut("/health_check/path"),
                &format!("{place}.health_check.path"),
                secrets,
            );
        }
    }
    // A JWT provider's HMAC secret, even when written in the file.
    if let Some(providers) = value.get_mut("auth").and_then(Value::as_object_mut) {
        for (name, provider) in providers.iter_mut() {
            if let Some(slot) = provider.get_mut("secret")
                && !slot.is_null()
            {
                secrets.take(format!("auth.{name}.secret"), slot, Value::from(REDACTED));
            }
        }
    }
    redact_api_keys(value, secrets);
    // The store's URL holds its password: `redis://:PASSWORD@host`.
    match value.pointer_mut("/cluster/redis") {
        Some(Value::Array(urls)) => {
            for (i, url) in urls.iter_mut().enumerate() {
                redact_text(Some(url), &format!("cluster.redis[{i}]"), secrets);
            }
        }
        slot => redact_text(slot, "cluster.redis", secrets),
    }
    let routes = value.get_mut("routes").and_then(Value::as_array_mut);
    for (i, route) in routes.into_iter().flatten().enumerate() {
        let place = format!("routes[{i}]");
        redact_text(
            route.pointer_mut("/proxy/path"),
            &format!("{place}.proxy.path"),
            secrets,
        );
        let backends = route.get_mut("backends").and_then(Value::as_array_mut);
        for (j, backend) in backends.into_iter().flatten().enumerate() {
            let at = format!("{place}.backends[{j}].path");
            redact_text(backend.get_mut("path"), &at, secrets);
            // Header templates, like upstream headers, may hold a credential; a value
            // that is exactly one placeholder names a source, not a value, and is kept.
            let headers = backend.get_mut("headers").and_then(Value::as_object_mut);
            for (header, v) in headers.into_iter().flatten() {
                let one_placeholder = v.as_str().is_some_and(|t| {
                    t.starts_with('{')
                        && t.ends_with('}')
                        && t[1..t.len() - 1].find(['{', '}']).is_none()
                });
                if !one_placeholder {
                    let at = format!("{place}.backends[{j}].headers.{header}");
                    secrets.take(at, v, REDACTED.into());
                }
            }
        }
    }
}

/// API keys written in the config (`[auth.NAME] api_keys.keys`), whatever they hold: a
/// key's digest is redacted too, as it proves the key to anyone who guesses it.
fn redact_api_keys(value: &mut Value, secrets: &mut Secrets) {
    let Some(providers) = value.get_mut("auth").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, provider) in providers.iter_mut() {
        let keys = provider
            .pointer_mut("/api_keys/keys")
            .and_then(Value::as_object_mut);
        for (key_name, key) in keys.into_iter().flatten() {
            let place = format!("auth.{name}.api_keys.keys.{key_name}");
            secrets.take(place, key, REDACTED.into());
        }
    }
}

/// Redacts the user-info and the query values of a URL or path string.
fn redact_text(slot: Option<&mut Value>, place: &str, secrets: &mut Secrets) {
    let Some(slot) = slot else { return };
    let Some(text) = slot.as_str() else { return };
    let redacted = redact_query(&redact_user_info(text));
    if redacted != text {
        secrets.take(place.to_string(), slot, Value::from(redacted));
    }
}

/// `http://user:pw@host/x` → `http://[redacted]@host/x`.
pub(crate) fn redact_user_info(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |at| authority_start + at);
    match url[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}{REDACTED}{}",
            &url[..authority_start],
            &url[authority_start + at..]
        ),
        None => url.to_string(),
    }
}

/// `/x?key=abc&id={id}` → `/x?key=[redacted]&id={id}`.
fn redact_query(text: &str) -> String {
    let Some((path, query)) = text.split_once('?') else {
        return text.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or(("", pair));
            let template = value.starts_with('{')
                && value.ends_with('}')
                && value[1..value.len() - 1]
                    .chars()
                    .all(|c| c != '{' && c != '}');
            match (key.is_empty(), template || value.is_empty()) {
                (_, true) => pair.to_string(),
                (true, false) => REDACTED.to_string(),
                (false, false) => format!("{key}={REDACTED}"),
            }
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// SHA-256 over the redacted document, then over a PBKDF2 digest of the secrets (none
/// without secrets), salted with the document's own SHA-256.
fn hash(document: &Value, Secrets(secrets): Secrets) -> String {
    let text = serde_json::to_vec(document).expect("JSON serializes");
    let salt = digest::digest(&digest::SHA256, &text);
    let mut sha = digest::Context::new(&digest::SHA256);
    sha.update(b"fanout config hash v1\n");
    sha.update(&text);
    if !secrets.is_empty() {
        let material = serde_json::to_vec(&secrets).expect("JSON serializes");
        let mut stretched = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(SECRET_ROUNDS).expect("non-zero"),
            salt.as_ref(),
            &material,
            &mut stretched,
        );
        sha.update(b"\nsecrets\n");
        sha.update(&stretched);
    }
    sha.finish()
        .as_ref()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
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
[server]
admin_token = "literal-admin-token"
[upstreams.users]
url = "http://${USERS_HOST}:9001"
headers = { authorization = "Bearer literal-secret" }
[upstreams.orders]
url = "http://svc:pa55word@orders.internal:9002/api"
health_check = { path = "/health?key=probe-key" }
[[routes]]
path = "/r"
proxy = { upstream = "users", path = "/${PREFIX}/x" }
[[routes]]
path = "/o/{id}"
  [[routes.backends]]
  name = "orders"
  upstream = "orders"
  path = "/orders?user={id}&api_key=k3y&flag"
"#;

    fn env(token: &str) -> Env {
        Env::from_pairs([("USERS_HOST", "10.1.2.3"), ("PREFIX", token)])
    }

    #[test]
    fn secrets_and_variables_are_redacted() {
        let (doc, _) = document(&load_str(TOML, &env("v1")).unwrap());
        assert_eq!(doc["server"]["admin_token"], REDACTED);
        assert_eq!(doc["upstreams"]["users"]["url"], REDACTED);
        assert_eq!(
            doc["upstreams"]["users"]["headers"]["authorization"],
            REDACTED
        );
        assert_eq!(
            doc["upstreams"]["orders"]["url"],
            "http://[redacted]@orders.internal:9002/api"
        );
        assert_eq!(
            doc["upstreams"]["orders"]["health_check"]["path"],
            "/health?key=[redacted]"
        );
        assert_eq!(
            doc["routes"][1]["backends"][0]["path"],
            "/orders?user={id}&api_key=[redacted]&[redacted]"
        );
        assert_eq!(doc["routes"][0]["proxy"]["path"], REDACTED);
        assert_eq!(doc["routes"][0]["path"], "/r");
        assert_eq!(
            doc["upstreams"]["users"]["timeout"], "10s",
            "defaults are shown"
        );
        let text = doc.to_string();
        for secret in [
            "10.1.2.3",
            "literal-secret",
            "literal-admin-token",
            "pa55word",
            "svc",
            "probe-key",
            "k3y",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn an_auth_secret_written_in_the_file_is_redacted() {
        let toml = "[auth.users]\nsecret = \"literal-hmac-secret-of-32-bytes-or-more\"\n";
        let (doc, _) = document(&load_str(toml, &env("v1")).unwrap());
        assert_eq!(doc["auth"]["users"]["secret"], REDACTED);
        assert!(!doc.to_string().contains("literal-hmac"));
    }

    #[test]
    fn api_keys_written_in_the_config_are_redacted() {
        let toml = r#"
[auth.keys]
api_keys = { keys = { mobile = "literal-key-0123456789", web = "sha256:00ff" }, keys_file = "/etc/keys" }
"#;
        let (doc, _) = document(&load_str(toml, &Env::default()).unwrap());
        let keys = &doc["auth"]["keys"]["api_keys"];
        assert_eq!(keys["keys"]["mobile"], REDACTED);
        assert_eq!(keys["keys"]["web"], REDACTED);
        assert_eq!(keys["keys_file"], "/etc/keys");
        assert_eq!(keys["header"], "x-api-key");
    }

    #[test]
    fn user_info_and_queries() {
        assert_eq!(redact_user_info("http://h:1/x"), "http://h:1/x");
        assert_eq!(
            redact_user_info("http://u@h/x@y"),
            "http://[redacted]@h/x@y"
        );
        assert_eq!(redact_user_info("not a url"), "not a url");
        assert_eq!(redact_query("/x"), "/x");
        assert_eq!(redact_query("/x?a={id}&b="), "/x?a={id}&b=");
        assert_eq!(redact_query("/x?a={id}c"), "/x?a=[redacted]");
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
        assert_ne!(
            compile(&TOML.replace("k3y", "k4y"), &env("v1"))
                .unwrap()
                .hash,
            hash(&env("v1")),
            "a changed literal secret changes the hash"
        );
        assert_eq!(hash(&env("v1")).len(), 16);
    }

    #[test]
    fn the_hash_is_sha256_of_the_document_without_secrets() {
        let toml = "[upstreams.u]\nurl = \"http://h\"\n[[routes]]\npath = \"/r\"\nproxy = { upstream = \"u\" }\n";
        let compiled = compile(toml, &Env::default()).unwrap();
        let mut sha = digest::Context::new(&digest::SHA256);
        sha.update(b"fanout config hash v1\n");
        sha.update(&serde_json::to_vec(&*compiled.document).unwrap());
        let expected: String = sha.finish().as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(compiled.hash, expected);
    }

    #[test]
    fn places_resolve() {
        let mut v = serde_json::json!({"routes": [{"backends": [{}, {"path": "x"}]}]});
        *lookup(&mut v, "routes[0].backends[1].path").unwrap() = Value::from("y");
        assert_eq!(v["routes"][0]["backends"][1]["path"], "y");
        assert!(lookup(&mut v, "routes[3].path").is_none());
    }

    #[test]
    fn the_cluster_store_password_is_redacted_one_url_or_many() {
        let one = "[cluster]\nredis = \"redis://:s3cret@cache:6379/0\"\n";
        let (doc, _) = document(&load_str(one, &Env::default()).unwrap());
        assert_eq!(doc["cluster"]["redis"], "redis://[redacted]@cache:6379/0");
        let many = "[cluster]\nredis = [\"redis://:s3cret@a:6379\", \"redis://b:6379\"]\n";
        let (doc, _) = document(&load_str(many, &Env::default()).unwrap());
        assert_eq!(doc["cluster"]["redis"][0], "redis://[redacted]@a:6379");
        assert_eq!(doc["cluster"]["redis"][1], "redis://b:6379");
    }
}
