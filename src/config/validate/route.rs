//! Validation of `[[routes]]`: paths, methods, limits, and proxy or aggregate settings.

use super::backend::backends;
use super::{Problems, method};
use crate::config::*;
use crate::limits::{LimitKey, Rate};
use crate::router::{Methods, RouteTable, param_names, route_path_problem};
use crate::template::{Scope, Template, TemplateMode};
use http::Method;
use std::num::NonZeroU32;

fn rate_limit(place: &str, l: &RouteRateLimitConfig, p: &mut Problems) -> Option<RateLimitSpec> {
    let rate = Rate::parse(&l.rate)
        .map_err(|e| p.add(format!("{place}.rate"), e))
        .ok();
    let key = LimitKey::parse(&l.key)
        .map_err(|e| p.add(format!("{place}.key"), e))
        .ok();
    let burst = match l.burst {
        Some(0) => {
            p.add(
                format!("{place}.burst"),
                "must be at least 1; leave it out to allow the rate's count at once",
            );
            None
        }
        b => b.and_then(NonZeroU32::new),
    };
    if l.max_keys == 0 {
        p.add(
            format!("{place}.max_keys"),
            "must be at least 1; leave it out for the default of 100000",
        );
    }
    Some(RateLimitSpec {
        rate: rate?,
        burst,
        key: key?,
        max_keys: l.max_keys.max(1),
        scope: super::cluster::scope(&format!("{place}.scope"), &l.scope, p),
    })
}

#[allow(clippy::too_many_arguments)]
pub(super) fn route(
    place: &str,
    r: &RouteConfig,
    server: &ServerSpec,
    known: &[&str],
    providers: &[&str],
    p: &mut Problems,
    table: &mut RouteTable<usize>,
    index: usize,
) -> Option<RouteSpec> {
    if !r.path.starts_with('/') {
        p.add(
            format!("{place}.path"),
            format!("\"{}\" must start with \"/\"", r.path),
        );
        return None;
    }
    // `:id` and `*rest` are other routers' syntax; here they would match literally.
    for segment in r.path.split('/') {
        let hint = match segment.as_bytes().first() {
            Some(b':') => Some(format!("{{{}}}", &segment[1..])),
            Some(b'*') if segment.len() > 1 => Some(format!("{{{segment}}}")),
            _ => None,
        };
        if let Some(hint) = hint {
            p.add(
                format!("{place}.path"),
                format!(
                    "\"{segment}\" in \"{}\" would match only that literal text; write a parameter as {hint}",
                    r.path
                ),
            );
        }
    }
    if let Some(problem) = route_path_problem(&r.path) {
        p.add(format!("{place}.path"), problem);
    }
    let methods = match &r.methods {
        // A reverse proxy passes what it is sent; an aggregate reads.
        None if r.proxy.is_some() => Methods::Any,
        None => Methods::Only(vec![Method::GET]),
        Some(list) => {
            if list.is_empty() {
                p.add(
                    format!("{place}.methods"),
                    "is empty; list at least one method, such as [\"GET\"]",
                );
            }
            Methods::Only(
                list.iter()
                    .enumerate()
                    .filter_map(|(i, m)| method(&format!("{place}.methods[{i}]"), m, p))
                    .collect(),
            )
        }
    };
    // Checked before the rest, so a duplicate is reported even if this route has other
    // problems too.
    if let Err(e) = table.insert(&r.path, &methods, index) {
        p.add(format!("{place}.path"), e);
    }
    let forward_headers = r
        .forward_headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let hplace = format!("{place}.forward_headers[{i}]");
            let name = p.header_name(&hplace, h)?;
            // Hop-by-hop headers belong to one connection; the client library sets
            // Host and Content-Length per call.
            let per_connection = matches!(name.as_str(), "host" | "content-length")
                || crate::proxy::HOP_BY_HOP.contains(&name.as_str());
            if per_connection {
                p.add(
                    hplace,
                    format!(
                        "\"{h}\" describes the connection, not the request, and cannot be forwarded"
                    ),
                );
                return None;
            }
            if name.as_str().contains('_') && !r.underscores_in_headers {
                p.add(
                    hplace,
                    format!(
                        "\"{h}\" has an underscore, and such headers are dropped on the way upstream; \
                         set underscores_in_headers = true on the route to pass them"
                    ),
                );
                return None;
            }
            Some(name)
        })
        .collect();
    let timeout = match &r.timeout {
        Some(t) => p.duration(&format!("{place}.timeout"), t),
        None => server.request_timeout,
    };
    let max_body = r
        .max_body
        .as_ref()
        .map(|m| p.size(&format!("{place}.max_body"), m));
    let rate_limit = r
        .rate_limit
        .as_ref()
        .and_then(|l| rate_limit(&format!("{place}.rate_limit"), l, p));
    let auth = super::route_auth::route_auth(place, r, providers, p);
    super::canary::sticky_needs_auth(place, r, p);
    let async_job = r
        .async_job
        .as_ref()
        .map(|a| super::jobs::async_spec(place, a, p));
    let params = param_names(&r.path);
    let kind = match (&r.proxy, r.backends.is_empty()) {
        (Some(_), false) => {
            p.add(
                place,
                "has both `proxy` and `backends`; a route either proxies to one upstream or aggregates backends",
            );
            return None;
        }
        (None, true) => {
            p.add(
                place,
                "has neither `backends` nor `proxy`; add [[routes.backends]] or proxy = { upstream = \"...\", path = \"/{rest}\" }",
            );
            return None;
        }
        (Some(proxy), true) => {
            super::policy::proxy_answer_keys(place, r, p);
            let (upstream, canary) = super::canary::upstreams(
                &format!("{place}.proxy"),
                &proxy.upstream,
                proxy.upstreams.as_deref(),
                proxy.sticky.as_deref(),
                known,
                p,
            );
            let idle_timeout =
                p.duration(&format!("{place}.proxy.idle_timeout"), &proxy.idle_timeout);
            let path = Template::parse(&proxy.path, &Scope::params(&params), TemplateMode::Proxy)
                .map_err(|e| p.add(format!("{place}.proxy.path"), e))
                .ok()?;
            let cache_ttl = r
                .cache_ttl
                .as_ref()
                .map(|t| p.duration(&format!("{place}.cache_ttl"), t));
            if cache_ttl.is_some() && !methods.contains(&Method::GET) {
                p.add(
                    format!("{place}.cache_ttl"),
                    "only answers to GET are cached; add GET to methods or remove cache_ttl",
                );
            }
            let cache_scope =
                super::cluster::scope(&format!("{place}.cache_scope"), &r.cache_scope, p);
            if cache_scope == crate::config::Scope::Cluster && cache_ttl.is_none() {
                p.add(
                    format!("{place}.cache_scope"),
                    "shares cached answers, but the route caches none: set cache_ttl, or remove cache_scope",
                );
            }
            let upgrade = upgrades(&format!("{place}.proxy.upgrade"), &proxy.upgrade, p);
            let redirects = proxy
                .rewrite_location
                .then(|| redirect_prefixes(&r.path, &path))
                .flatten();
            RouteKind::Proxy(ProxySpec {
                upstream,
                path,
                preserve_host: proxy.preserve_host,
                idle_timeout,
                cache_ttl,
                cache_scope,
                upgrade,
                redirects,
                canary,
                mirror: super::mirror::proxy_mirrors(place, r, &params, known, p),
            })
        }
        (None, false) => {
            let bodiless = match &methods {
                Methods::Any => false,
                Methods::Only(list) => list.iter().all(|m| *m == Method::GET || *m == Method::HEAD),
            };
            if r.cache_ttl.is_some() {
                p.add(
                    format!("{place}.cache_ttl"),
                    "an aggregate route caches per backend: set cache_ttl in its [[routes.backends]]",
                );
            }
            if bodiless && let Some(i) = r.backends.iter().position(|b| b.forward_body) {
                p.add(
                    format!("{place}.backends[{i}].forward_body"),
                    "the route answers only GET/HEAD, which carry no body; add POST, PUT, PATCH or DELETE to methods",
                );
            }
            let spec = backends(place, r, &params, known, p)?;
            if bodiless {
                super::write::body_on_bodiless_route(place, &spec.backends, p);
            }
            RouteKind::Aggregate(spec)
        }
    };
    Some(RouteSpec {
        path: r.path.clone(),
        methods,
        timeout,
        forward_headers,
        errors_field: r.errors_field.clone(),
        max_body,
        rate_limit,
        underscores_in_headers: r.underscores_in_headers,
        auth,
        kind,
        async_job,
    })
}

/// The protocols a proxy route lets clients upgrade to, in lower case.
fn upgrades(place: &str, list: &[String], p: &mut Problems) -> Vec<String> {
    list.iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b));
            if !token {
                p.add(
                    format!("{place}[{i}]"),
                    format!("\"{name}\" is not a protocol name; write one such as \"websocket\""),
                );
                return None;
            }
            let name = name.to_ascii_lowercase();
            if name == "h2c" || name.starts_with("h2c/") {
                p.add(
                    format!("{place}[{i}]"),
                    "h2c is never passed: an upstream that accepts it turns the connection into an \
                     HTTP/2 tunnel to any of its paths, past routes, limits and logs; remove it",
                );
                return None;
            }
            Some(name)
        })
        .collect()
}

/// The prefixes a route maps, when it maps one: route `P{*rest}` (or a path without
/// parameters, `P`) to upstream path `U{rest}` (or `U`).
fn redirect_prefixes(route: &str, upstream: &Template) -> Option<RedirectPrefixes> {
    let (upstream_prefix, param) = upstream.prefix_and_param()?;
    let client = match (route.rfind("/{*"), param) {
        (Some(at), Some(param)) if route[at + 3..].strip_suffix('}') == Some(param) => {
            &route[..=at]
        }
        (None, None) => route,
        _ => return None,
    };
    if client.contains(['{', '}']) {
        return None;
    }
    Some(RedirectPrefixes {
        upstream: upstream_prefix.to_string(),
        client: client.to_string(),
    })
}
