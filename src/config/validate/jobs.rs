//! Validation of a route's `async` (async routes, README "Async routes"): the status
//! path's form, the durations and `max_jobs`, on the route; and, once every route is
//! compiled, that no status path collides with a route or with another status path.
//!
//! Rules:
//! - `status_path` starts with `/` and has exactly one parameter, a whole `{job}`
//!   segment (`/jobs/{job}`, `/v1/{job}/status`).
//! - It is matched before the route table, so it must not equal a route's path nor
//!   match one (`/jobs/{job}` would hide a route `/jobs/recent`): either would make
//!   that route unreachable. A catch-all route (`/{*rest}`) that the status path
//!   shadows for the status path's own URLs is allowed.
//! - Two async routes may share one status path (ids are unguessable and name one job
//!   whichever route started it), but only with the same `auth` providers, since the
//!   status request proves its identity with them.
//! - Two different status paths must not be ambiguous to the router.
//! - `job_timeout` and `result_ttl` are more than 0; `max_jobs` is at least 1.

use super::Problems;
use crate::config::{AsyncConfig, AsyncSpec, RouteSpec};
use crate::router::{param_names, route_path_problem};
use std::time::Duration;

/// Checks one route's `async` (at `place` = `routes[i]`).
pub(super) fn async_spec(place: &str, a: &AsyncConfig, p: &mut Problems) -> AsyncSpec {
    let at = format!("{place}.async");
    status_path_form(&format!("{at}.status_path"), &a.status_path, p);
    let positive = |field: &str, text: &str, p: &mut Problems| {
        let d = p.duration(&format!("{at}.{field}"), text);
        if d == Duration::ZERO {
            p.add(
                format!("{at}.{field}"),
                format!("must be more than 0, such as \"5m\"; got \"{text}\""),
            );
        }
        d
    };
    let job_timeout = positive("job_timeout", &a.job_timeout, p);
    let result_ttl = positive("result_ttl", &a.result_ttl, p);
    if a.max_jobs == 0 {
        p.add(
            format!("{at}.max_jobs"),
            "must be at least 1; leave it out for the default of 10000",
        );
    }
    AsyncSpec {
        status_path: a.status_path.clone(),
        job_timeout,
        result_ttl,
        max_jobs: a.max_jobs.max(1),
    }
}

fn status_path_form(place: &str, path: &str, p: &mut Problems) {
    if !path.starts_with('/') {
        p.add(
            place,
            format!("\"{path}\" must start with \"/\", such as \"/jobs/{{job}}\""),
        );
        return;
    }
    let params = param_names(path);
    let whole_segments = path.split('/').filter(|s| *s == "{job}").count();
    if params != ["job"] || whole_segments != 1 {
        p.add(
            place,
            format!(
                "\"{path}\" must hold exactly one parameter, a whole segment {{job}}, and no other, such as \"/jobs/{{job}}\""
            ),
        );
        return;
    }
    if let Some(problem) = route_path_problem(path) {
        p.add(place, problem);
    }
}

/// Checks the status paths of the compiled `routes` against the routes and each other.
/// `places[i]` is the index in `[[routes]]` of `routes[i]`.
pub(super) fn status_paths(routes: &[RouteSpec], places: &[usize], p: &mut Problems) {
    // Status path → the first route (index into `routes`) that declared it.
    let mut seen: Vec<(&str, usize)> = Vec::new();
    let mut router = matchit::Router::new();
    for (i, route) in routes.iter().enumerate() {
        let Some(spec) = &route.async_job else {
            continue;
        };
        let place = format!("routes[{}].async.status_path", places[i]);
        let path = spec.status_path.as_str();
        if let Some(&(_, first)) = seen.iter().find(|(s, _)| *s == path) {
            let providers = |r: &RouteSpec| r.auth.as_ref().map(|a| a.providers.clone());
            if providers(&routes[first]) != providers(route) {
                p.add(
                    place,
                    format!(
                        "\"{path}\" is also routes[{}]'s status path, which has other `auth` providers; \
                         a shared status path needs the same `auth` on both routes, or give this one its own",
                        places[first]
                    ),
                );
            }
            continue;
        }
        seen.push((path, i));
        if let Err(e) = router.insert(path, ()) {
            p.add(
                &place,
                format!("\"{path}\" is ambiguous with another status path ({e}); make them differ by a literal segment"),
            );
            continue;
        }
        let mut one = matchit::Router::new();
        if one.insert(path, ()).is_err() {
            continue;
        }
        for (j, other) in routes.iter().enumerate() {
            if other.path == path || one.at(&other.path).is_ok() {
                p.add(
                    &place,
                    format!(
                        "\"{path}\" matches routes[{}]'s path \"{}\", which status URLs would hide; \
                         choose a status path no route uses, such as \"/jobs/{{job}}\"",
                        places[j], other.path
                    ),
                );
            }
        }
    }
}
