//! Validation of `[auth.NAME]` providers: what kind each is, and its
//! `claims_to_headers`. The kinds' own keys are checked in `auth_jwt` and `auth_keys`.

use super::Problems;
use super::auth_jwt::jwt;
use super::auth_keys::api_keys;
use crate::auth::{ProviderSpec, ProviderSpecKind};
use crate::config::AuthProviderConfig;
use crate::json_path::Path;
use std::collections::BTreeMap;

/// Compiles every provider; one with problems is left out (they are reported).
pub(super) fn providers(
    auth: &BTreeMap<String, AuthProviderConfig>,
    p: &mut Problems,
) -> BTreeMap<String, ProviderSpec> {
    let mut out = BTreeMap::new();
    for (name, config) in auth {
        if let Some(spec) = provider(name, config, p) {
            out.insert(name.clone(), spec);
        }
    }
    out
}

fn provider(name: &str, a: &AuthProviderConfig, p: &mut Problems) -> Option<ProviderSpec> {
    let place = format!("auth.{name}");
    let lowercase = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !lowercase {
        // FANOUT__AUTH__NAME__KEY overrides arrive lowercased.
        p.add(
            place.clone(),
            "provider names use lowercase letters, digits, _ and -",
        );
    }
    let sources = [
        ("jwks_url", a.jwks_url.is_some()),
        ("jwks_file", a.jwks_file.is_some()),
        ("secret", a.secret.is_some()),
        ("api_keys", a.api_keys.is_some()),
    ];
    let set: Vec<&str> = sources.iter().filter(|s| s.1).map(|s| s.0).collect();
    let claims_to_headers = claims_to_headers(&place, a, p);
    let kind = match set.as_slice() {
        [] => {
            p.add(
                place,
                "says nothing to check: set jwks_url, jwks_file or secret (JWTs), or api_keys",
            );
            return None;
        }
        ["api_keys"] => ProviderSpecKind::ApiKeys(api_keys(&place, a, p)?),
        [_] => ProviderSpecKind::Jwt(jwt(&place, a, p)?),
        _ => {
            p.add(
                place,
                format!(
                    "sets {}: a provider checks one kind of credential; keep one, \
                     or declare another [auth.NAME]",
                    set.join(" and ")
                ),
            );
            return None;
        }
    };
    Some(ProviderSpec {
        claims_to_headers: claims_to_headers?,
        kind,
    })
}

/// `claims_to_headers = { "x-user-id" = "sub" }`: valid header names the gateway may
/// set, each from a non-empty claim path.
fn claims_to_headers(
    place: &str,
    a: &AuthProviderConfig,
    p: &mut Problems,
) -> Option<Vec<(http::HeaderName, Path)>> {
    let mut ok = true;
    let mut out = Vec::new();
    for (header, claim) in &a.claims_to_headers {
        let at = format!("{place}.claims_to_headers.{header}");
        let Some(name) = p.header_name(&at, header) else {
            ok = false;
            continue;
        };
        const OWN: &[&str] = &[
            "host",
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "content-length",
            "proxy-connection",
        ];
        if OWN.contains(&name.as_str()) {
            p.add(
                &at,
                "the gateway sets this header itself; choose another name, such as x-user-id",
            );
            ok = false;
        }
        match Path::parse(claim) {
            Ok(path) => out.push((name, path)),
            Err(_) => {
                p.add(
                    &at,
                    format!(
                        "\"{claim}\" is not a claim; write a claim name such as \"sub\" \
                         or a path such as \"org.id\""
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}
