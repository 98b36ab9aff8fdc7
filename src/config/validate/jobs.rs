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
//! - `job_timeout` and `result_ttl` are more than 0; `max_jobs` is at least 1;
//!   `max_result` is a size of at least 1 byte.
//! - `[jobs] max_memory` is a size of at least 1 byte and, without `[cluster]` (where
//!   jobs live in Redis), at least every async route's `max_result`: a larger answer
//!   would push every other finished answer out of the store.

use super::Problems;
use crate::config::units::parse_size;
use crate::config::{AsyncConfig, AsyncSpec, JobsConfig, RouteSpec};
use crate::router::{param_names, route_path_problem};

/// Checks one route's `async` (at `place` = `routes[i]`).
pub(super) fn async_spec(place: &str, a: &AsyncConfig, p: &mut Problems) -> AsyncSpec {
    let at = format!("{place}.async");
    status_path_form(&format!("{at}.status_path"), &a.status_path, p);
    // A zero duration is refused by the parser itself (with its place).
    let job_timeout = p.duration(&format!("{at}.job_timeout"), &a.job_timeout);
    let result_ttl = p.duration(&format!("{at}.result_ttl"), &a.result_ttl);
    if a.max_jobs == 0 {
        p.add(
            format!("{at}.max_jobs"),
            "must be at least 1; leave it out for the default of 10000",
        );
    }
    let max_result_at = format!("{at}.max_result");
    let max_result = p.size(&max_result_at, &a.max_result);
    if max_result == 0 && parse_size(&a.max_result).is_ok() {
        p.add(
            max_result_at,
            "must be more than 0; leave it out for the default of 1MiB",
        );
    }
    AsyncSpec {
        status_path: a.status_path.clone(),
        job_timeout,
        result_ttl,
        max_jobs: a.max_jobs.max(1),
        max_result: max_result.max(1),
    }
}

/// Checks `[jobs] max_memory`: bytes, at least 1; `None` when it is not.
pub(super) fn max_memory(jobs: &JobsConfig, p: &mut Problems) -> Option<u64> {
    let place = "jobs.max_memory";
    match parse_size(&jobs.max_memory) {
        Ok(0) => p.add(
            place,
            "must be more than 0; leave it out for the default of 256MiB",
        ),
        Ok(bytes) => return Some(bytes),
        Err(e) => p.add(place, e),
    }
    None
}

/// Checks that each async route's `max_result` fits in the in-memory store's
/// `max_memory` (`places` as in [`status_paths`]).
pub(super) fn results_fit(
    routes: &[RouteSpec],
    places: &[usize],
    max_memory: u64,
    p: &mut Problems,
) {
    for (route, place) in routes.iter().zip(places) {
        let Some(spec) = &route.async_job else {
            continue;
        };
        if spec.max_result > max_memory {
            p.add(
                format!("routes[{place}].async.max_result"),
                format!(
                    "{} bytes is more than the job store holds ([jobs] max_memory, {max_memory} bytes); \
                     lower max_result or raise [jobs] max_memory",
                    spec.max_result
                ),
            );
        }
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

#[cfg(test)]
mod tests {
    use crate::config::{Env, compile};

    fn problems(routes: &str) -> Vec<String> {
        let toml = format!(
            "[upstreams.users]\nurl = \"http://127.0.0.1:9\"\n\
             [auth.keys]\napi_keys = {{ keys = {{ alice = \"alice-key-0123456789abcdef\" }} }}\n{routes}"
        );
        match compile(&toml, &Env::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    fn proxy(path: &str, extra: &str) -> String {
        format!(
            "[[routes]]\npath = \"{path}\"\nproxy = {{ upstream = \"users\", path = \"/\" }}\n{extra}\n"
        )
    }

    #[test]
    fn a_valid_async_route_compiles_with_its_durations() {
        let toml = "[upstreams.users]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"/report\"\n\
                    methods = [\"POST\"]\nproxy = { upstream = \"users\", path = \"/\" }\n\
                    async = { status_path = \"/jobs/{job}\", job_timeout = \"30s\", result_ttl = \"1m\", max_jobs = 3 }\n";
        let compiled = compile(toml, &Env::default()).expect("valid");
        let spec = compiled.routes[0].async_job.clone().expect("async");
        assert_eq!(spec.job_timeout, std::time::Duration::from_secs(30));
        assert_eq!(spec.result_ttl, std::time::Duration::from_secs(60));
        assert_eq!(spec.max_jobs, 3);
        assert_eq!(spec.status_url("abc"), "/jobs/abc");
    }

    #[test]
    fn jobs_max_memory_is_a_size_that_holds_each_max_result_unless_jobs_are_in_redis() {
        let plain = "[upstreams.users]\nurl = \"http://127.0.0.1:9\"\n";
        let compiled = compile(plain, &Env::default()).expect("valid");
        assert_eq!(compiled.jobs_max_memory, 256 << 20);
        let route = proxy(
            "/r",
            "async = { status_path = \"/jobs/{job}\", max_result = \"2KiB\" }",
        );
        for (jobs, expected) in [
            ("max_memory = \"0\"", "jobs.max_memory: must be more than 0"),
            ("max_memory = \"lots\"", "jobs.max_memory: "),
            ("max_size = \"1MiB\"", "jobs.max_size: unknown key"),
            (
                "max_memory = \"1KiB\"",
                "routes[0].async.max_result: 2048 bytes is more than the job store holds \
                 ([jobs] max_memory, 1024 bytes); lower max_result or raise [jobs] max_memory",
            ),
        ] {
            let got = problems(&format!("[jobs]\n{jobs}\n{route}"));
            assert!(
                got.iter().any(|p| p.starts_with(expected)),
                "{jobs}: {got:?}"
            );
        }
        assert!(problems(&format!("[jobs]\nmax_memory = \"2KiB\"\n{route}")).is_empty());
        // In the `[cluster]` store the budget does not apply.
        let clustered = format!(
            "[cluster]\nredis = \"redis://127.0.0.1:6379\"\n[jobs]\nmax_memory = \"1KiB\"\n{route}"
        );
        assert_eq!(problems(&clustered), Vec::<String>::new());
    }

    #[test]
    fn each_bad_field_is_reported_at_its_place() {
        let got = problems(&proxy(
            "/r",
            "async = { status_path = \"/jobs/{id}\", job_timeout = \"0s\", result_ttl = \"soon\", max_jobs = 0, extra = 1 }",
        ));
        let places: Vec<&str> = got.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            places,
            [
                "routes[0].async.extra",
                "routes[0].async.status_path",
                "routes[0].async.job_timeout",
                "routes[0].async.result_ttl",
                "routes[0].async.max_jobs"
            ],
            "{got:?}"
        );
        for bad in [
            "jobs/{job}",
            "/jobs/x{job}",
            "/jobs/{job}/{job}",
            "/jobs",
            "/{a}/{job}",
        ] {
            let got = problems(&proxy(
                "/r",
                &format!("async = {{ status_path = \"{bad}\" }}"),
            ));
            assert_eq!(got.len(), 1, "{bad}: {got:?}");
            assert!(got[0].starts_with("routes[0].async.status_path"), "{got:?}");
        }
    }

    #[test]
    fn a_status_path_may_not_hide_a_route() {
        let routes = proxy("/r", "async = { status_path = \"/jobs/{job}\" }")
            + &proxy("/jobs/recent", "")
            + &proxy("/jobs/{id}", "methods = [\"PUT\"]");
        let got = problems(&routes);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].starts_with("routes[0].async.status_path: \"/jobs/{job}\" matches routes[1]'s path \"/jobs/recent\""), "{got:?}");
        assert!(
            got[1].contains("routes[2]'s path \"/jobs/{id}\""),
            "{got:?}"
        );
        // A catch-all route is fine: the status path answers its own URLs.
        let routes =
            proxy("/r", "async = { status_path = \"/jobs/{job}\" }") + &proxy("/{*rest}", "");
        assert_eq!(problems(&routes), Vec::<String>::new());
    }

    #[test]
    fn a_status_path_is_shared_only_with_the_same_auth() {
        let async_ = "async = { status_path = \"/jobs/{job}\" }";
        let same = proxy("/a", async_) + &proxy("/b", async_);
        assert_eq!(problems(&same), Vec::<String>::new());
        let other = proxy("/a", async_) + &proxy("/b", &format!("auth = \"keys\"\n{async_}"));
        let got = problems(&other);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("routes[1].async.status_path: \"/jobs/{job}\" is also routes[0]'s"),
            "{got:?}"
        );
    }
}
