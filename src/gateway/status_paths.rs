//! The status paths of async routes in a snapshot (`async.status_path`), matched before
//! the route table: which status path a request is on and the job id in it, the auth
//! its routes share, and how long a cancel is kept. A status path a reload drops is
//! kept, retired, until the answers of the jobs started before have expired.

use super::auth::RouteAuth;
use crate::config::RouteSpec;
use crate::metrics::{Label, Metrics, RouteSeries};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The status paths of a snapshot, matched before the route table.
#[derive(Debug)]
pub(super) struct StatusPaths {
    router: matchit::Router<usize>,
    entries: Vec<StatusPath>,
}

/// One status path, shared by the async routes that name it.
#[derive(Debug)]
pub(super) struct StatusPath {
    pattern: String,
    /// Set on a status path a reload removed: it answers for the jobs started before
    /// until then (their longest `job_timeout` and `result_ttl`), then no more.
    retired_until: Option<Instant>,
    pub(super) label: Label,
    pub(super) series: RouteSeries,
    /// The routes' `auth` providers, optional: a status request proves its identity
    /// with them (none: the `Authorization` header's hash is the owner).
    pub(super) auth: Option<RouteAuth>,
    /// The longest `result_ttl` of the routes sharing it: how long a cancel is kept.
    pub(super) result_ttl: Duration,
    /// The longest `job_timeout` of those routes plus the margin: the cancel flag's TTL.
    pub(super) cancel_ttl: Duration,
}

impl StatusPaths {
    /// The status paths of `routes`, and those of `previous` no route names any more
    /// (retired: they answer until their jobs' answers expire); `None` when there are
    /// none.
    pub(super) fn build(
        routes: &[RouteSpec],
        providers: &BTreeMap<String, Arc<crate::auth::Provider>>,
        metrics: &Metrics,
        previous: Option<&StatusPaths>,
    ) -> Option<Self> {
        let mut paths = Self {
            router: matchit::Router::new(),
            entries: Vec::new(),
        };
        let mut patterns: Vec<&str> = Vec::new();
        for route in routes {
            let Some(spec) = &route.async_job else {
                continue;
            };
            let cancel_ttl = spec.job_timeout + crate::jobs::PENDING_MARGIN;
            if let Some(i) = patterns.iter().position(|p| *p == spec.status_path) {
                let entry = &mut paths.entries[i];
                entry.result_ttl = entry.result_ttl.max(spec.result_ttl);
                entry.cancel_ttl = entry.cancel_ttl.max(cancel_ttl);
                continue;
            }
            // Validation refused a status path the router would refuse.
            if paths
                .router
                .insert(&spec.status_path, patterns.len())
                .is_err()
            {
                continue;
            }
            patterns.push(&spec.status_path);
            let label = Label::new(&spec.status_path);
            let auth = route.auth.as_ref().map(|a| RouteAuth {
                providers: a
                    .providers
                    .iter()
                    .filter_map(|name| providers.get(name).cloned())
                    .collect(),
                optional: true,
                require: None,
            });
            paths.entries.push(StatusPath {
                pattern: spec.status_path.clone(),
                retired_until: None,
                series: metrics.route_series(&label, false),
                label,
                auth,
                result_ttl: spec.result_ttl,
                cancel_ttl,
            });
        }
        let now = Instant::now();
        for old in previous.map_or(&[][..], |p| &p.entries[..]) {
            let kept = patterns.contains(&old.pattern.as_str())
                || old.retired_until.is_some_and(|until| until <= now);
            if kept
                || paths
                    .router
                    .insert(&old.pattern, paths.entries.len())
                    .is_err()
            {
                continue;
            }
            paths.entries.push(StatusPath {
                pattern: old.pattern.clone(),
                retired_until: Some(
                    old.retired_until
                        .unwrap_or(now + old.cancel_ttl + old.result_ttl),
                ),
                label: old.label.clone(),
                series: old.series.clone(),
                auth: old.auth.as_ref().map(|a| RouteAuth {
                    providers: a.providers.clone(),
                    optional: true,
                    require: None,
                }),
                result_ttl: old.result_ttl,
                cancel_ttl: old.cancel_ttl,
            });
        }
        (!paths.entries.is_empty()).then_some(paths)
    }

    /// The status path `path` is on, and the job id in it.
    pub(super) fn find<'s, 'p>(&'s self, path: &'p str) -> Option<(&'s StatusPath, &'p str)> {
        let found = self.router.at(path).ok()?;
        let id = found.params.get("job")?;
        let entry = &self.entries[*found.value];
        if entry
            .retired_until
            .is_some_and(|until| until <= Instant::now())
        {
            return None;
        }
        Some((entry, id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, compile};

    fn routes(async_: bool) -> Vec<RouteSpec> {
        let extra = if async_ {
            "async = { status_path = \"/jobs/{job}\", job_timeout = \"1m\", result_ttl = \"2m\" }"
        } else {
            ""
        };
        let toml = format!(
            "[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"/r\"\n\
             proxy = {{ upstream = \"u\", path = \"/\" }}\n{extra}\n"
        );
        compile(&toml, &Env::default()).unwrap().routes
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_status_path_answers_until_its_jobs_answers_expire() {
        let metrics = Metrics::new();
        let none = BTreeMap::new();
        assert!(StatusPaths::build(&routes(false), &none, &metrics, None).is_none());
        let first = StatusPaths::build(&routes(true), &none, &metrics, None).unwrap();
        let (_, id) = first.find("/jobs/abc").unwrap();
        assert_eq!(id, "abc");
        assert!(first.find("/jobs/abc/x").is_none());
        let retired = StatusPaths::build(&routes(false), &none, &metrics, Some(&first)).unwrap();
        // Kept through a second reload with the same deadline, not a new one.
        tokio::time::advance(Duration::from_secs(60)).await;
        let again = StatusPaths::build(&routes(false), &none, &metrics, Some(&retired)).unwrap();
        // job_timeout 1m + 60 s margin + result_ttl 2m after the first reload.
        tokio::time::advance(Duration::from_secs(179)).await;
        assert!(again.find("/jobs/abc").is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(again.find("/jobs/abc").is_none());
        assert!(StatusPaths::build(&routes(false), &none, &metrics, Some(&again)).is_none());
    }
}
