//! Validation of a JWT provider's keys: `jwks_url`, `jwks_file` or `secret`, the
//! algorithms they may verify, and the claims checked (`issuer`, `audiences`,
//! `leeway`), `token_from` and `refresh`.

use super::Problems;
use crate::auth::jwt::keys::KeySet;
use crate::auth::jwt::{JwtSpec, KEY_SET_ALGORITHMS, KeySource, SECRET_ALGORITHMS, TokenFrom};
use crate::config::AuthProviderConfig;
use jsonwebtoken::Algorithm;
use std::sync::Arc;
use std::time::Duration;

/// The largest `leeway`: more would accept tokens long expired.
const MAX_LEEWAY: Duration = Duration::from_secs(600);
/// The range of `refresh`.
const REFRESH_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(86_400));
/// The shortest HMAC secret: RFC 7518 §3.2 asks for at least the hash's size (HS256).
const MIN_SECRET_BYTES: usize = 32;

/// Compiles a JWT provider; `None` when it has problems (reported).
pub(super) fn jwt(place: &str, a: &AuthProviderConfig, p: &mut Problems) -> Option<JwtSpec> {
    let before = p.0.len();
    let keys = key_source(place, a, p);
    let hmac = matches!(keys, Some(KeySource::Secret(_)));
    let algorithms = algorithms(place, a, hmac, p);
    let leeway = p.duration(&format!("{place}.leeway"), &a.leeway);
    if leeway > MAX_LEEWAY {
        p.add(
            format!("{place}.leeway"),
            "is more than 10m: clocks that far apart need fixing; use \"30s\" to \"5m\"",
        );
    }
    let token_from = match TokenFrom::parse(&a.token_from) {
        Ok(from) => Some(from),
        Err(why) => {
            p.add(format!("{place}.token_from"), why);
            None
        }
    };
    if let Some(issuer) = &a.issuer
        && issuer.is_empty()
    {
        p.add(
            format!("{place}.issuer"),
            "is empty; write the issuer's `iss`, such as \"https://id.example.com/\", or remove it",
        );
    }
    if a.audiences.iter().any(String::is_empty) {
        p.add(
            format!("{place}.audiences"),
            "holds an empty audience; write the `aud` values this gateway accepts",
        );
    }
    if p.0.len() != before {
        return None;
    }
    Some(JwtSpec {
        keys: keys?,
        issuer: a.issuer.clone(),
        audiences: a.audiences.clone(),
        algorithms: algorithms?,
        leeway,
        token_from: token_from?,
    })
}

fn key_source(place: &str, a: &AuthProviderConfig, p: &mut Problems) -> Option<KeySource> {
    if let Some(url) = &a.jwks_url {
        let at = format!("{place}.jwks_url");
        let refresh = p.duration(&format!("{place}.refresh"), &a.refresh);
        if !(REFRESH_RANGE.0..=REFRESH_RANGE.1).contains(&refresh) {
            p.add(
                format!("{place}.refresh"),
                "must be between 1s and 24h; \"5m\" suits most issuers",
            );
        }
        match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                p.add(
                    at,
                    format!(
                        "\"{url}\" is not an http(s) URL; write the issuer's JWKS address, \
                         such as \"https://id.example.com/.well-known/jwks.json\""
                    ),
                );
                return None;
            }
        }
        return Some(KeySource::Url {
            url: url.clone(),
            refresh,
        });
    }
    if let Some(path) = &a.jwks_file {
        let at = format!("{place}.jwks_file");
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                p.add(
                    at,
                    format!("cannot read {path}: {e}; check the path and its permissions"),
                );
                return None;
            }
        };
        return match KeySet::from_jwks(&bytes) {
            Ok(keys) => Some(KeySource::File {
                path: path.clone(),
                keys: Arc::new(keys),
            }),
            Err(why) => {
                p.add(
                    at,
                    format!(
                        "{path}: {why}; the file must be a JWKS, {{\"keys\": [{{\"kty\": ...}}]}}"
                    ),
                );
                None
            }
        };
    }
    let secret = a.secret.as_deref().unwrap_or_default();
    if secret.len() < MIN_SECRET_BYTES {
        let what = if secret.is_empty() {
            "is empty"
        } else {
            "is shorter than 32 bytes"
        };
        p.add(
            format!("{place}.secret"),
            format!(
                "{what}: an HMAC secret needs at least 32 random bytes; set it from the \
                 environment, secret = \"${{JWT_SECRET}}\""
            ),
        );
        return None;
    }
    Some(KeySource::Secret(Arc::new(KeySet::secret(
        secret.as_bytes(),
    ))))
}

fn algorithms(
    place: &str,
    a: &AuthProviderConfig,
    hmac: bool,
    p: &mut Problems,
) -> Option<Vec<Algorithm>> {
    let defaults = if hmac {
        SECRET_ALGORITHMS
    } else {
        KEY_SET_ALGORITHMS
    };
    let Some(names) = &a.algorithms else {
        return Some(defaults.to_vec());
    };
    let at = format!("{place}.algorithms");
    if names.is_empty() {
        p.add(
            &at,
            "is empty; remove it to accept the defaults, or list algorithms such as [\"ES256\"]",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for name in names {
        if name.eq_ignore_ascii_case("none") {
            p.add(
                &at,
                "\"none\" is never accepted: an unsigned token proves nothing; remove it",
            );
            ok = false;
            continue;
        }
        let Ok(alg) = name.parse::<Algorithm>() else {
            p.add(
                &at,
                format!(
                    "\"{name}\" is not a JWT algorithm the gateway verifies; use RS256/384/512, \
                     PS256/384/512, ES256/384 or EdDSA with a key set, HS256/384/512 with a secret"
                ),
            );
            ok = false;
            continue;
        };
        let is_hmac = SECRET_ALGORITHMS.contains(&alg);
        if is_hmac && !hmac {
            p.add(
                &at,
                format!(
                    "{name} needs a shared secret, and this provider has a key set: a public \
                     key must never serve as an HMAC secret; remove {name}, or use `secret` in \
                     another [auth.NAME]"
                ),
            );
            ok = false;
        } else if !is_hmac && hmac {
            p.add(
                &at,
                format!(
                    "{name} needs a key set (jwks_url or jwks_file), and this provider has a \
                     secret; use HS256/384/512, or declare another [auth.NAME] with the key set"
                ),
            );
            ok = false;
        } else if !out.contains(&alg) {
            out.push(alg);
        }
    }
    ok.then_some(out)
}
