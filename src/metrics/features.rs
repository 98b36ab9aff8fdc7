//! Metrics of the traffic features: a weighted canary's requests per upstream and a
//! mirror entry's copies (by outcome, dropped by reason, in flight per shadow upstream).

use super::{Label, Metrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

impl Metrics {
    /// The request counter of one canary upstream, made at build (so it shows 0 before
    /// its first request) and held by the canary: counting needs no lookup. `backend`
    /// is empty on a proxy route.
    pub fn canary_requests(&self, route: &Label, backend: &str, upstream: &str) -> Counter {
        self.canary_requests
            .get_or_create(&CanaryLabels {
                route: route.clone(),
                backend: backend.to_owned(),
                upstream: upstream.to_owned(),
            })
            .clone()
    }

    /// The series one mirror entry records, made at build (so they show 0 before the
    /// first copy): a copy's outcome or drop costs an increment, not a label lookup.
    pub fn mirror_series(&self, route: &Label, upstream: &Label) -> MirrorSeries {
        let outcome = |outcome| {
            self.mirror_requests
                .get_or_create(&MirrorOutcomeLabels {
                    route: route.clone(),
                    upstream: upstream.clone(),
                    outcome,
                })
                .clone()
        };
        let dropped = |reason| {
            self.mirror_dropped
                .get_or_create(&MirrorDropLabels {
                    route: route.clone(),
                    upstream: upstream.clone(),
                    reason,
                })
                .clone()
        };
        MirrorSeries {
            ok: outcome("ok"),
            error: outcome("error"),
            timeout: outcome("timeout"),
            dropped_in_flight: dropped("in_flight"),
            dropped_too_large: dropped("body_too_large"),
            in_flight: self
                .mirror_in_flight
                .get_or_create(&MirrorUpstreamLabels {
                    upstream: upstream.clone(),
                })
                .clone(),
        }
    }
}

/// `fanout_canary_requests_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CanaryLabels {
    route: Label,
    backend: String,
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MirrorOutcomeLabels {
    route: Label,
    upstream: Label,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MirrorDropLabels {
    route: Label,
    upstream: Label,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MirrorUpstreamLabels {
    upstream: Label,
}

/// One mirror entry's counters and its shadow upstream's in-flight gauge.
#[derive(Debug, Clone)]
pub struct MirrorSeries {
    pub ok: Counter,
    pub error: Counter,
    pub timeout: Counter,
    pub dropped_in_flight: Counter,
    pub dropped_too_large: Counter,
    pub in_flight: Gauge,
}
