//! Validation of weighted canaries: a proxy route's `proxy` table or a backend names
//! either one `upstream` or `upstreams = [{ name, weight }]` (never both), every name is
//! declared and listed once, weights are integers ≥ 0 adding up to more than 0, and
//! `sticky` parses (an `auth:` key on a route with `auth`).

use super::{Problems, known_upstream};
use crate::config::{CanarySpec, RouteConfig, StickyKey, WeightedUpstreamConfig};

/// Checks the `upstream`, `upstreams` and `sticky` of the table at `place` (a route's
/// `proxy`, or a backend). Returns the upstream a call goes to without a canary (with
/// one: its first upstream's name) and the compiled canary.
pub(super) fn upstreams(
    place: &str,
    upstream: &str,
    upstreams: Option<&[WeightedUpstreamConfig]>,
    sticky: Option<&str>,
    known: &[&str],
    p: &mut Problems,
) -> (String, Option<CanarySpec>) {
    let Some(list) = upstreams else {
        if sticky.is_some() {
            p.add(
                format!("{place}.sticky"),
                "keeps a client on its pick among upstreams, but there is one upstream; \
                 list them in upstreams = [{ name = \"...\", weight = N }], or remove sticky",
            );
        }
        known_upstream(&format!("{place}.upstream"), upstream, known, p);
        return (upstream.to_owned(), None);
    };
    if !upstream.is_empty() {
        p.add(
            format!("{place}.upstreams"),
            "is set with upstream; name one upstream, or list weighted upstreams, not both",
        );
    }
    if list.is_empty() {
        p.add(
            format!("{place}.upstreams"),
            "is empty; list at least one { name = \"...\", weight = N }",
        );
        return (upstream.to_owned(), None);
    }
    let mut picked = Vec::with_capacity(list.len());
    let mut total: u64 = 0;
    for (i, entry) in list.iter().enumerate() {
        let at = format!("{place}.upstreams[{i}]");
        known_upstream(&format!("{at}.name"), &entry.name, known, p);
        if list[..i].iter().any(|e| e.name == entry.name) {
            p.add(
                format!("{at}.name"),
                format!(
                    "\"{}\" is listed twice; list each upstream once, with its whole weight",
                    entry.name
                ),
            );
        }
        let weight = match u32::try_from(entry.weight) {
            Ok(w) => w,
            Err(_) => {
                p.add(
                    format!("{at}.weight"),
                    format!(
                        "{} is not a weight; use an integer from 0 (never picked) to {}",
                        entry.weight,
                        u32::MAX
                    ),
                );
                0
            }
        };
        total += u64::from(weight);
        picked.push((entry.name.clone(), weight));
    }
    if total == 0 && list.iter().all(|e| e.weight >= 0) {
        p.add(
            format!("{place}.upstreams"),
            "the weights add up to 0, so no upstream could be picked; give at least one a weight above 0",
        );
    }
    let sticky = sticky.and_then(|text| {
        StickyKey::parse(text)
            .map_err(|e| p.add(format!("{place}.sticky"), e))
            .ok()
    });
    let first = picked[0].0.clone();
    (
        first,
        Some(CanarySpec {
            upstreams: picked,
            sticky,
        }),
    )
}

/// A `sticky = "auth:..."` reads the identity: the route must have `auth`.
pub(super) fn sticky_needs_auth(place: &str, r: &RouteConfig, p: &mut Problems) {
    if r.auth.is_some() {
        return;
    }
    let by_identity = |s: &Option<String>| s.as_deref().is_some_and(|s| s.starts_with("auth:"));
    let mut places = Vec::new();
    if let Some(proxy) = &r.proxy
        && by_identity(&proxy.sticky)
    {
        places.push(format!("{place}.proxy.sticky"));
    }
    for (i, b) in r.backends.iter().enumerate() {
        if by_identity(&b.sticky) {
            places.push(format!("{place}.backends[{i}].sticky"));
        }
    }
    for at in places {
        p.add(
            at,
            "keeps a client by its identity, but the route has no auth; add auth = \"NAME\", \
             or use header:NAME",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Env, RouteKind, StickyKey, compile};

    const UPSTREAMS: &str = r#"
        [upstreams.v1]
        url = "http://127.0.0.1:9"
        [upstreams.v2]
        url = "http://127.0.0.1:10"
    "#;

    fn problems(route: &str) -> String {
        let toml = format!("{UPSTREAMS}\n[[routes]]\npath = \"/r\"\n{route}");
        compile(&toml, &Env::default())
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn a_proxy_canary_compiles_with_its_weights_and_sticky_key() {
        let toml = format!(
            "{UPSTREAMS}\n[[routes]]\npath = \"/r\"\nproxy = {{ path = \"/\", sticky = \"header:x-user-id\", \
             upstreams = [{{ name = \"v1\", weight = 90 }}, {{ name = \"v2\", weight = 10 }}] }}"
        );
        let compiled = compile(&toml, &Env::default()).unwrap();
        let RouteKind::Proxy(proxy) = &compiled.routes[0].kind else {
            panic!("a proxy route");
        };
        assert_eq!(proxy.upstream, "v1");
        let canary = proxy.canary.as_ref().unwrap();
        assert_eq!(
            canary.upstreams,
            vec![("v1".to_string(), 90), ("v2".to_string(), 10)]
        );
        assert_eq!(
            canary.sticky,
            Some(StickyKey::Header("x-user-id".parse().unwrap()))
        );
        assert!(
            compiled
                .route_table()
                .contains("[v1 90, v2 10 (sticky header:x-user-id)] /")
        );
    }

    #[test]
    fn a_backend_canary_compiles() {
        let toml = format!(
            "{UPSTREAMS}\n[[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"b\"\npath = \"/\"\n\
             upstreams = [{{ name = \"v1\", weight = 0 }}, {{ name = \"v2\", weight = 3 }}]"
        );
        let compiled = compile(&toml, &Env::default()).unwrap();
        let RouteKind::Aggregate(agg) = &compiled.routes[0].kind else {
            panic!("an aggregate");
        };
        let canary = agg.backends[0].canary.as_ref().unwrap();
        assert_eq!(canary.weights(), vec![0, 3]);
        assert_eq!(canary.sticky, None);
    }

    #[test]
    fn every_mistake_is_reported_with_its_place() {
        let e = problems(
            "proxy = { upstream = \"v1\", path = \"/\", upstreams = [{ name = \"v1\", weight = 1 }] }",
        );
        assert!(
            e.contains("routes[0].proxy.upstreams: is set with upstream"),
            "{e}"
        );
        let e = problems("proxy = { path = \"/\", upstreams = [] }");
        assert!(e.contains("routes[0].proxy.upstreams: is empty"), "{e}");
        let e = problems(
            "proxy = { path = \"/\", upstreams = [{ name = \"v1\", weight = -1 }, { name = \"v3\", weight = 2 }, { name = \"v1\", weight = 1 }] }",
        );
        assert!(
            e.contains("routes[0].proxy.upstreams[0].weight: -1 is not a weight"),
            "{e}"
        );
        assert!(
            e.contains("routes[0].proxy.upstreams[1].name: no upstream \"v3\""),
            "{e}"
        );
        assert!(
            e.contains("routes[0].proxy.upstreams[2].name: \"v1\" is listed twice"),
            "{e}"
        );
        let e = problems(
            "proxy = { path = \"/\", upstreams = [{ name = \"v1\", weight = 0 }, { name = \"v2\", weight = 0 }] }",
        );
        assert!(
            e.contains("routes[0].proxy.upstreams: the weights add up to 0"),
            "{e}"
        );
        let e = problems(
            "proxy = { path = \"/\", sticky = \"ip\", upstreams = [{ name = \"v1\", weight = 1 }] }",
        );
        assert!(
            e.contains("routes[0].proxy.sticky: unknown key \"ip\""),
            "{e}"
        );
        let e = problems("proxy = { upstream = \"v1\", path = \"/\", sticky = \"header:x\" }");
        assert!(
            e.contains("routes[0].proxy.sticky: keeps a client on its pick"),
            "{e}"
        );
        let e = problems(
            "[[routes.backends]]\nname = \"b\"\npath = \"/\"\nsticky = \"auth:sub\"\n\
             upstreams = [{ name = \"v1\", weight = 1 }, { name = \"v2\", weight = 1 }]",
        );
        assert!(
            e.contains("routes[0].backends[0].sticky: keeps a client by its identity, but the route has no auth"),
            "{e}"
        );
        let e = problems("[[routes.backends]]\nname = \"b\"\npath = \"/\"\n");
        assert!(
            e.contains("routes[0].backends[0].upstream: is required"),
            "{e}"
        );
    }
}
