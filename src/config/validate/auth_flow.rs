//! Validation of how the identity flows on: a route's templates read `{auth...}` only
//! when the route has `auth`, and no template or upstream header replaces a header a
//! provider's `claims_to_headers` sets from the identity.

use super::Problems;
use crate::auth::ProviderSpec;
use crate::config::{RateLimitSpec, RouteConfig, RouteKind, RouteSpec, UpstreamSpec};
use crate::limits::LimitKey;
use crate::template::Source;
use http::HeaderName;
use std::collections::BTreeMap;

/// A route without `auth` has no identity to read: each template that reads one is
/// refused, at its place.
pub(super) fn identity_reads(place: &str, r: &RouteConfig, kind: &RouteKind, p: &mut Problems) {
    if r.auth.is_some() {
        return;
    }
    let mut refuse = |at: String, what: &str| {
        p.add(
            at,
            format!(
                "reads the request's identity ({{{what}}}) but the route has no `auth`; \
                 add auth = \"PROVIDER\" to the route, or remove the placeholder"
            ),
        );
    };
    let first = |mut sources: Box<dyn Iterator<Item = &Source> + '_>| {
        sources.find(|s| s.reads_auth()).map(Source::describe)
    };
    match kind {
        RouteKind::Proxy(proxy) => {
            if let Some(what) = first(Box::new(proxy.path.sources())) {
                refuse(format!("{place}.proxy.path"), &what);
            }
        }
        RouteKind::Aggregate(spec) => {
            for (i, b) in spec.backends.iter().enumerate() {
                let at = format!("{place}.backends[{i}]");
                if let Some(what) = first(Box::new(b.path.sources())) {
                    refuse(format!("{at}.path"), &what);
                }
                if let Some(what) = first(Box::new(b.body.iter().flat_map(|t| t.sources()))) {
                    refuse(format!("{at}.body"), &what);
                }
                for (name, t) in &b.headers {
                    if let Some(what) = first(Box::new(t.sources())) {
                        refuse(format!("{at}.headers.{name}"), &what);
                    }
                }
                if b.when.as_ref().is_some_and(|c| c.reads_auth()) {
                    refuse(format!("{at}.when"), "auth");
                }
            }
        }
    }
}

/// Every header some provider's `claims_to_headers` sets: set from the identity on an
/// authenticated request, and never the client's. A backend's header template or an
/// upstream's `headers` of that name would replace it (or, unauthenticated, pass a
/// value the upstream takes for the gateway's): refused. A template reading the
/// client's copy (`{header.x-user-id}`) would always find it removed: refused, with
/// the source to read instead.
pub(super) fn claim_header_owners(
    auth: &BTreeMap<String, ProviderSpec>,
    upstreams: &BTreeMap<String, UpstreamSpec>,
    routes: &[RouteSpec],
    route_places: &[usize],
    p: &mut Problems,
) {
    let owner = |name: &HeaderName| {
        auth.iter()
            .find(|(_, spec)| spec.claims_to_headers.iter().any(|(h, _)| h == name))
            .map(|(provider, _)| provider.as_str())
    };
    let set_here = |at: String, name: &HeaderName, p: &mut Problems| {
        if let Some(provider) = owner(name) {
            p.add(
                at,
                format!(
                    "\"{name}\" is set from the identity by [auth.{provider}].claims_to_headers; \
                     remove it here, or rename the header there"
                ),
            );
        }
    };
    let reads_client_copy =
        |at: String, sources: &mut dyn Iterator<Item = &Source>, p: &mut Problems| {
            for source in sources {
                let Source::Header(name) = source else {
                    continue;
                };
                if let Some(provider) = owner(name) {
                    p.add(
                        at,
                        format!(
                            "{{header.{name}}} would read the client's copy, which the gateway \
                         removes from every request since [auth.{provider}].claims_to_headers \
                         sets it; read the identity instead, such as {{auth.sub}} or \
                         {{auth.claims.NAME}}"
                        ),
                    );
                    return;
                }
            }
        };
    if auth.values().all(|spec| spec.claims_to_headers.is_empty()) {
        return;
    }
    for (upstream, spec) in upstreams {
        for name in spec.headers.keys() {
            set_here(format!("upstreams.{upstream}.headers.{name}"), name, p);
        }
    }
    for (route, index) in routes.iter().zip(route_places) {
        // The limit runs before the client's copies are removed: keyed on one, any
        // client would pick its own bucket by sending the header.
        if let Some(RateLimitSpec {
            key: LimitKey::Header(name),
            ..
        }) = &route.rate_limit
            && let Some(provider) = owner(name)
        {
            p.add(
                format!("routes[{index}].rate_limit.key"),
                format!(
                    "\"header:{name}\" would count the client's own copy, which the gateway \
                     replaces since [auth.{provider}].claims_to_headers sets it; key the limit \
                     on the identity with \"auth:sub\" (or \"auth:CLAIM\") and auth on the route"
                ),
            );
        }
        let spec = match &route.kind {
            RouteKind::Proxy(proxy) => {
                let at = format!("routes[{index}].proxy.path");
                reads_client_copy(at, &mut proxy.path.sources(), p);
                continue;
            }
            RouteKind::Aggregate(spec) => spec,
        };
        for (i, b) in spec.backends.iter().enumerate() {
            let at = format!("routes[{index}].backends[{i}]");
            reads_client_copy(format!("{at}.path"), &mut b.path.sources(), p);
            let body = &mut b.body.iter().flat_map(|t| t.sources());
            reads_client_copy(format!("{at}.body"), body, p);
            for (name, t) in &b.headers {
                set_here(format!("{at}.headers.{name}"), name, p);
                reads_client_copy(format!("{at}.headers.{name}"), &mut t.sources(), p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Env, compile};

    const PROVIDER: &str = r#"
        [auth.users]
        api_keys = { keys = { ada = "ada-key-0123456789abcdef" } }
        claims_to_headers = { "x-user-id" = "sub" }

        [upstreams.u]
        url = "http://127.0.0.1:9"
    "#;

    /// The check errors of `routes` (TOML) after [`PROVIDER`], as `place: message`.
    fn problems(routes: &str) -> Vec<String> {
        match compile(&format!("{PROVIDER}\n{routes}"), &Env::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_route_without_auth_cannot_read_the_identity() {
        let got = problems(
            r#"
            [[routes]]
            path = "/a"
            [[routes.backends]]
            name = "me"
            upstream = "u"
            path = "/users/{auth.sub}"
            method = "POST"
            body = { tenant = "{auth.claims.tenant}" }
            headers = { x-by = "{auth.provider}" }
            when = "auth.claims.plan == 'pro'"

            [[routes]]
            path = "/p/{*rest}"
            proxy = { upstream = "u", path = "/{auth.sub}/{rest}" }
            "#,
        );
        let expected = [
            "routes[0].backends[0].path",
            "routes[0].backends[0].body",
            "routes[0].backends[0].headers.x-by",
            "routes[0].backends[0].when",
            "routes[1].proxy.path",
        ];
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (problem, place) in got.iter().zip(expected) {
            assert!(problem.starts_with(place), "{problem}");
            assert!(problem.contains("add auth = \"PROVIDER\""), "{problem}");
        }
        assert!(got[0].contains("{auth.sub}"), "{}", got[0]);
    }

    #[test]
    fn a_route_with_auth_reads_the_identity() {
        let got = problems(
            r#"
            [[routes]]
            path = "/a"
            auth = "users"
            [[routes.backends]]
            name = "me"
            upstream = "u"
            path = "/users/{auth.sub}?t={auth.claims.tenant}"
            "#,
        );
        assert!(got.is_empty(), "{got:#?}");
    }

    #[test]
    fn a_backend_cannot_be_named_auth() {
        let got = problems(
            r#"
            [[routes]]
            path = "/a"
            [[routes.backends]]
            name = "auth"
            upstream = "u"
            path = "/x"
            "#,
        );
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("routes[0].backends[0].name"),
            "{}",
            got[0]
        );
        assert!(got[0].contains("reserved"), "{}", got[0]);
    }

    #[test]
    fn nothing_replaces_or_reads_the_client_copy_of_a_claim_header() {
        let got = problems(
            r#"
            [upstreams.v]
            url = "http://127.0.0.1:9"
            headers = { X-User-Id = "svc" }

            [[routes]]
            path = "/a"
            [[routes.backends]]
            name = "me"
            upstream = "u"
            path = "/users/{header.x-user-id}"
            method = "POST"
            headers = { x-user-id = "{query.who}" }
            "#,
        );
        let expected = [
            "upstreams.v.headers.x-user-id",
            "routes[0].backends[0].path",
            "routes[0].backends[0].headers.x-user-id",
        ];
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (problem, place) in got.iter().zip(expected) {
            assert!(problem.starts_with(place), "{problem}");
        }
        assert!(got[1].contains("{auth.sub}"), "{}", got[1]);
        assert!(
            got[2].contains("[auth.users].claims_to_headers"),
            "{}",
            got[2]
        );
    }

    #[test]
    fn a_rate_limit_cannot_be_keyed_on_the_clients_copy_of_a_claim_header() {
        let got = problems(
            r#"
            [[routes]]
            path = "/a"
            rate_limit = { rate = "10/min", key = "header:X-User-Id" }
            [[routes.backends]]
            name = "me"
            upstream = "u"
            path = "/me"
            "#,
        );
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].starts_with("routes[0].rate_limit.key"), "{}", got[0]);
        assert!(got[0].contains("auth:sub"), "{}", got[0]);
    }
}
