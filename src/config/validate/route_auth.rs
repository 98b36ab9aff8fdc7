//! Validation of a route's identity keys: `auth` (the providers, tried in order),
//! `auth_optional` and `require` (a CEL expression over the identity's claims), and a
//! `rate_limit.key` of `auth:...`, which needs `auth`.

use super::Problems;
use crate::condition::ClaimsCondition;
use crate::config::{RouteAuthSpec, RouteConfig};

/// Compiles a route's `auth`, `auth_optional` and `require`; `None` for a route without
/// `auth` (and when they have problems, reported). `providers`: every `[auth.NAME]`.
pub(super) fn route_auth(
    place: &str,
    r: &RouteConfig,
    providers: &[&str],
    p: &mut Problems,
) -> Option<RouteAuthSpec> {
    let known = || {
        if providers.is_empty() {
            "none (declare one in an [auth.NAME] section)".to_string()
        } else {
            providers.join(", ")
        }
    };
    let keyed_by_identity = r
        .rate_limit
        .as_ref()
        .is_some_and(|l| l.key.starts_with("auth:"));
    let Some(auth) = &r.auth else {
        for (set, key, what) in [
            (
                r.auth_optional,
                "auth_optional",
                "lets anonymous requests through",
            ),
            (
                r.require.is_some(),
                "require",
                "checks the identity's claims",
            ),
            (
                keyed_by_identity,
                "rate_limit.key",
                "keys the limit by identity",
            ),
        ] {
            if set {
                p.add(
                    format!("{place}.{key}"),
                    format!(
                        "{what}, but the route has no auth; add auth = \"NAME\" (known: {})",
                        known()
                    ),
                );
            }
        }
        return None;
    };
    let names = auth.names();
    let mut ok = true;
    if names.is_empty() {
        p.add(
            format!("{place}.auth"),
            format!(
                "is an empty list; name at least one provider (known: {})",
                known()
            ),
        );
        ok = false;
    }
    for (i, name) in names.iter().enumerate() {
        let at = match names.len() {
            1 if matches!(auth, crate::config::AuthProviders::One(_)) => format!("{place}.auth"),
            _ => format!("{place}.auth[{i}]"),
        };
        if !providers.contains(&name.as_str()) {
            p.add(at, format!("no provider \"{name}\"; known: {}", known()));
            ok = false;
        } else if names[..i].contains(name) {
            p.add(
                at,
                format!("\"{name}\" is listed twice; list each provider once"),
            );
            ok = false;
        }
    }
    let require = match &r.require {
        Some(expr) => match ClaimsCondition::compile(expr) {
            Ok(c) => Some(c),
            Err(e) => {
                p.add(format!("{place}.require"), e);
                ok = false;
                None
            }
        },
        None => None,
    };
    ok.then(|| RouteAuthSpec {
        providers: names.to_vec(),
        optional: r.auth_optional,
        require,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Env, compile};

    const BASE: &str = r#"
        [upstreams.u]
        url = "http://127.0.0.1:9"
        [auth.keys]
        api_keys = { keys = { mobile = "0123456789abcdef" } }
        [auth.partners]
        api_keys = { header = "x-partner-key", keys = { acme = "0123456789abcdef-acme" } }
    "#;

    fn problems(route: &str) -> String {
        let toml = format!(
            "{BASE}\n[[routes]]\npath = \"/x\"\nproxy = {{ upstream = \"u\", path = \"/\" }}\n{route}"
        );
        match compile(&toml, &Env::default()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_route_names_known_providers_in_order() {
        assert_eq!(problems("auth = \"keys\""), "");
        assert_eq!(
            problems(
                "auth = [\"partners\", \"keys\"]\nauth_optional = true\nrequire = \"sub != 'x'\""
            ),
            ""
        );
        let toml = format!(
            "{BASE}\n[[routes]]\npath = \"/x\"\nproxy = {{ upstream = \"u\", path = \"/\" }}\nauth = [\"partners\", \"keys\"]\nrequire = \"claims.role == 'admin'\""
        );
        let c = compile(&toml, &Env::default()).expect("valid");
        let auth = c.routes[0].auth.as_ref().expect("auth");
        assert_eq!(auth.providers, ["partners", "keys"]);
        assert!(!auth.optional);
        assert_eq!(
            auth.require.as_ref().unwrap().source(),
            "claims.role == 'admin'"
        );
    }

    #[test]
    fn unknown_empty_and_repeated_providers_are_refused() {
        let e = problems("auth = \"users\"");
        assert!(
            e.contains("routes[0].auth: no provider \"users\"; known: keys, partners"),
            "{e}"
        );
        let e = problems("auth = []");
        assert!(e.contains("routes[0].auth: is an empty list"), "{e}");
        let e = problems("auth = [\"keys\", \"keys\"]");
        assert!(
            e.contains("routes[0].auth[1]: \"keys\" is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn optional_require_and_auth_limits_need_auth() {
        let e = problems(
            "auth_optional = true\nrequire = \"sub == 'a'\"\nrate_limit = { rate = \"1/s\", key = \"auth:sub\" }",
        );
        assert!(e.contains("routes[0].auth_optional: lets anonymous"), "{e}");
        assert!(
            e.contains(
                "routes[0].require: checks the identity's claims, but the route has no auth"
            ),
            "{e}"
        );
        assert!(
            e.contains("routes[0].rate_limit.key: keys the limit by identity"),
            "{e}"
        );
    }

    #[test]
    fn bad_cel_is_reported_with_line_and_column() {
        let e = problems("auth = \"keys\"\nrequire = \"claims.role ==\"");
        assert!(
            e.contains("routes[0].require: syntax error at line 1, column"),
            "{e}"
        );
        let e = problems("auth = \"keys\"\nrequire = \"user.role == 'a'\"");
        assert!(
            e.contains("routes[0].require: \"user\" is not a name"),
            "{e}"
        );
    }
}
