//! Validation of an API key provider: `api_keys = { header, keys, keys_file }`.
//!
//! Keys are digested here (SHA-256), so the compiled spec holds no key. A `keys_file`
//! is read here too, on every load and reload: lines `NAME KEY` or `NAME sha256:HEX`,
//! blank lines and `#` comments ignored. A problem names the line, never the key.

use super::Problems;
use crate::auth::api_key::{ApiKeysSpec, KeyDigest, key_digest, parse_hashed};
use crate::config::AuthProviderConfig;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The shortest key accepted, in bytes: a shorter one can be guessed.
pub(crate) const MIN_KEY_LEN: usize = 16;

/// Compiles an API key provider; `None` when it has problems (reported).
pub(super) fn api_keys(
    place: &str,
    a: &AuthProviderConfig,
    p: &mut Problems,
) -> Option<ApiKeysSpec> {
    let config = a.api_keys.as_ref()?;
    let place = format!("{place}.api_keys");
    let before = p.0.len();
    let header = p.header_name(&format!("{place}.header"), &config.header);
    if let Some(h) = &header
        && matches!(
            h.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection"
        )
    {
        p.add(
            format!("{place}.header"),
            format!(
                "\"{h}\" describes the request itself; name a header of your own, such as x-api-key"
            ),
        );
    }
    // Name → (digest, where it was written), to report duplicates by place.
    let mut keys: BTreeMap<String, (KeyDigest, String)> = BTreeMap::new();
    for (name, key) in &config.keys {
        let at = format!("{place}.keys.{name}");
        if let Some(digest) = key_or_digest(&at, key, p) {
            add(&mut keys, name, digest, at, p);
        }
    }
    if let Some(path) = &config.keys_file {
        read_file(&format!("{place}.keys_file"), path, &mut keys, p);
    }
    if keys.is_empty() && p.0.len() == before {
        p.add(
            &place,
            "has no keys; add keys = { NAME = \"${ENV_VAR}\" } or a keys_file of NAME KEY lines",
        );
    }
    // The same key under two names would prove either: refused.
    let mut by_digest: BTreeMap<KeyDigest, &str> = BTreeMap::new();
    for (name, (digest, at)) in &keys {
        if let Some(first) = by_digest.insert(*digest, name) {
            p.add(
                at,
                format!("the key of \"{name}\" is also the key of \"{first}\"; give each client its own key"),
            );
        }
    }
    if p.0.len() != before {
        return None;
    }
    Some(ApiKeysSpec {
        header: header?,
        keys: keys
            .into_iter()
            .map(|(name, (digest, _))| (Arc::from(name), digest))
            .collect(),
    })
}

/// A key's digest: the digest written (`sha256:HEX`), or the key's own, at least
/// [`MIN_KEY_LEN`] bytes long.
fn key_or_digest(at: &str, key: &str, p: &mut Problems) -> Option<KeyDigest> {
    match parse_hashed(key) {
        Some(Ok(digest)) => Some(digest),
        Some(Err(why)) => {
            p.add(at, why);
            None
        }
        None if key.is_empty() => {
            p.add(
                at,
                "is empty; set the key, usually from the environment: \"${MY_KEY}\"",
            );
            None
        }
        None if key.len() < MIN_KEY_LEN => {
            p.add(
                at,
                format!(
                    "is shorter than {MIN_KEY_LEN} bytes, short enough to guess; use a random key \
                     such as `openssl rand -hex 32` prints"
                ),
            );
            None
        }
        None if http::HeaderValue::from_str(key).is_err() => {
            p.add(
                at,
                "holds a character a header cannot carry; use printable ASCII",
            );
            None
        }
        None => Some(key_digest(key.as_bytes())),
    }
}

fn add(
    keys: &mut BTreeMap<String, (KeyDigest, String)>,
    name: &str,
    digest: KeyDigest,
    at: String,
    p: &mut Problems,
) {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        p.add(
            &at,
            "a key's name is its client's identity: a non-empty word, no spaces",
        );
        return;
    }
    if let Some((_, first)) = keys.get(name) {
        p.add(
            &at,
            format!("the name \"{name}\" is already given to a key at {first}; names identify clients, one key each"),
        );
        return;
    }
    keys.insert(name.to_string(), (digest, at));
}

/// Reads `NAME KEY` lines into `keys`.
fn read_file(
    place: &str,
    path: &str,
    keys: &mut BTreeMap<String, (KeyDigest, String)>,
    p: &mut Problems,
) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            p.add(place, format!("cannot read \"{path}\": {e}"));
            return;
        }
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{place} (\"{path}\" line {})", i + 1);
        let mut words = line.split_whitespace();
        let (Some(name), Some(key), None) = (words.next(), words.next(), words.next()) else {
            p.add(
                at,
                "is not a NAME KEY line; write a name, a space, and the key (or sha256:HEX)",
            );
            continue;
        };
        if let Some(digest) = key_or_digest(&at, key, p) {
            add(keys, name, digest, at, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Env, compile};

    fn problems(toml: &str) -> String {
        match compile(toml, &Env::default()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const ROUTE: &str = r#"
        [upstreams.u]
        url = "http://127.0.0.1:9"
        [[routes]]
        path = "/x"
        proxy = { upstream = "u", path = "/" }
    "#;

    #[test]
    fn keys_compile_to_digests_and_names() {
        let toml = format!(
            "{ROUTE}\n[auth.k]\napi_keys = {{ keys = {{ mobile = \"0123456789abcdef\", web = \"sha256:{}\" }} }}",
            "ab".repeat(32)
        );
        let c = compile(&toml, &Env::default()).expect("valid");
        let crate::auth::ProviderSpecKind::ApiKeys(spec) = &c.auth["k"].kind else {
            panic!("api keys")
        };
        assert_eq!(spec.header.as_str(), "x-api-key");
        assert_eq!(&*spec.keys[0].0, "mobile");
        assert_eq!(spec.keys[0].1, super::key_digest(b"0123456789abcdef"));
        assert_eq!(spec.keys[1].1, [0xab; 32]);
    }

    #[test]
    fn bad_keys_are_reported_by_place_without_the_key() {
        let toml = format!(
            "{ROUTE}\n[auth.k]\napi_keys = {{ header = \"bad header\", keys = {{ a = \"\", b = \"short-key\", c = \"sha256:zz\", d = \"0123456789abcdef\", e = \"0123456789abcdef\" }} }}"
        );
        let e = problems(&toml);
        assert!(e.contains("auth.k.api_keys.header"), "{e}");
        assert!(e.contains("auth.k.api_keys.keys.a: is empty"), "{e}");
        assert!(
            e.contains("auth.k.api_keys.keys.b: is shorter than 16"),
            "{e}"
        );
        assert!(e.contains("auth.k.api_keys.keys.c: a hashed key"), "{e}");
        assert!(
            e.contains("auth.k.api_keys.keys.e: the key of \"e\" is also the key of \"d\""),
            "{e}"
        );
        assert!(
            !e.contains("short-key") && !e.contains("0123456789abcdef"),
            "{e}"
        );
    }

    #[test]
    fn a_provider_without_keys_is_refused() {
        let e = problems(&format!("{ROUTE}\n[auth.k]\napi_keys = {{}}"));
        assert!(e.contains("auth.k.api_keys: has no keys"), "{e}");
    }

    #[test]
    fn a_keys_file_is_read_with_comments_hashes_and_line_numbers() {
        let dir = std::env::temp_dir().join(format!("fanout-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(
            &good,
            format!(
                "# clients\n\nmobile 0123456789abcdef-mobile\n  web   sha256:{}  \n",
                "cd".repeat(32)
            ),
        )
        .unwrap();
        let toml = format!(
            "{ROUTE}\n[auth.k]\napi_keys = {{ keys_file = \"{}\" }}",
            good.display()
        );
        let c = compile(&toml, &Env::default()).expect("valid");
        let crate::auth::ProviderSpecKind::ApiKeys(spec) = &c.auth["k"].kind else {
            panic!("api keys")
        };
        let names: Vec<&str> = spec.keys.iter().map(|(n, _)| &**n).collect();
        assert_eq!(names, ["mobile", "web"]);

        let bad = dir.join("bad");
        std::fs::write(
            &bad,
            "mobile 0123456789abcdef-mobile\nonly-a-name\nmobile 0123456789abcdef-other\nx tiny-secret\n",
        )
        .unwrap();
        let e = problems(&format!(
            "{ROUTE}\n[auth.k]\napi_keys = {{ keys_file = \"{}\" }}",
            bad.display()
        ));
        assert!(e.contains("line 2): is not a NAME KEY line"), "{e}");
        assert!(
            e.contains("line 3): the name \"mobile\" is already given"),
            "{e}"
        );
        assert!(e.contains("line 4): is shorter than 16"), "{e}");
        assert!(!e.contains("tiny-secret") && !e.contains("-other"), "{e}");

        let e = problems(&format!(
            "{ROUTE}\n[auth.k]\napi_keys = {{ keys_file = \"{}\" }}",
            dir.join("absent").display()
        ));
        assert!(e.contains("auth.k.api_keys.keys_file: cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
