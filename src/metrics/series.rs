//! The series a route or a backend records on every request, made once per snapshot
//! and held by it, so recording is an increment and an observe, not a label lookup;
//! and the recording of a request's answer and a backend call's outcome.

use super::label::{ExemplarHistogram, observe, seconds};
use super::{BackendLabels, Label, Metrics, OutcomeLabels, RequestLabels, RouteLabels};
use crate::trace::TraceId;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;
use std::time::Duration;

/// A route's latency histogram and its count of 200 answers (most answers), held by the
/// route: recording them needs no hashed lookup of the label set per request. Made at
/// build, so a route's series show 0 before its first request.
#[derive(Debug, Clone)]
pub struct RouteSeries {
    pub(super) seconds: ExemplarHistogram,
    pub(super) ok: Counter,
    /// The dashboard's sliding window of this route (`crate::stats`).
    pub window: Arc<crate::stats::RouteWindow>,
}

/// A backend's latency histogram and its counts of the common outcomes, `ok` and `hit`.
#[derive(Debug, Clone)]
pub struct BackendSeries {
    pub(super) seconds: Histogram,
    pub(super) ok: Counter,
    pub(super) hit: Counter,
    /// The dashboard's sliding window of this backend (`crate::stats`).
    pub window: Arc<crate::stats::BackendWindow>,
}

impl Metrics {
    /// A route's series that every request records, made once per snapshot. A route
    /// with a rate limit also gets its `rate_limited_total` at 0.
    pub fn route_series(&self, route: &Label, limited: bool) -> RouteSeries {
        let labels = RouteLabels {
            route: route.clone(),
        };
        if limited {
            let _ = self.rate_limited.get_or_create(&labels);
        }
        RouteSeries {
            seconds: self.request_seconds.get_or_create(&labels).clone(),
            ok: self
                .requests
                .get_or_create(&RequestLabels {
                    route: route.clone(),
                    status: 200,
                })
                .clone(),
            window: self.stats.route(route.as_str()),
        }
    }

    /// A backend's series that every call records, made once per snapshot.
    pub fn backend_series(&self, route: &Label, backend: &Label) -> BackendSeries {
        let labels = BackendLabels {
            route: route.clone(),
            backend: backend.clone(),
        };
        let outcome = |code| {
            self.backend_outcomes
                .get_or_create(&OutcomeLabels {
                    route: route.clone(),
                    backend: backend.clone(),
                    code,
                })
                .clone()
        };
        BackendSeries {
            seconds: self.backend_seconds.get_or_create(&labels).clone(),
            ok: outcome("ok"),
            hit: outcome("hit"),
            window: self.stats.backend(route.as_str(), backend.as_str()),
        }
    }

    /// Records an answer: through the route's `series` when it has one (a matched
    /// route), by lookup otherwise and for a status other than 200. `trace` is the id
    /// of the request's trace when it was sampled: the latency's exemplar.
    pub fn request(
        &self,
        route: &Label,
        series: Option<&RouteSeries>,
        status: u16,
        elapsed: Duration,
        trace: Option<TraceId>,
    ) {
        let seconds = seconds(elapsed);
        if let Some(series) = series {
            series.window.record(crate::stats::now(), status, elapsed);
        }
        match series {
            Some(series) => observe(&series.seconds, seconds, trace),
            None => observe(
                &self.request_seconds.get_or_create(&RouteLabels {
                    route: route.clone(),
                }),
                seconds,
                trace,
            ),
        }
        if let Some(series) = series.filter(|_| status == 200) {
            series.ok.inc();
            return;
        }
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                status,
            })
            .inc();
    }

    /// Records one backend call's outcome `code` and time.
    pub fn backend(
        &self,
        route: &Label,
        backend: &Label,
        series: &BackendSeries,
        code: &'static str,
        elapsed: Duration,
    ) {
        series.seconds.observe(seconds(elapsed));
        series.window.record(crate::stats::now(), code, elapsed);
        match code {
            "ok" => series.ok.inc(),
            "hit" => series.hit.inc(),
            _ => self
                .backend_outcomes
                .get_or_create(&OutcomeLabels {
                    route: route.clone(),
                    backend: backend.clone(),
                    code,
                })
                .inc(),
        };
    }
}
