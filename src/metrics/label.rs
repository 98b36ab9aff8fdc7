//! Label values shared by every family (`Label`, made once, cloned per record) and
//! the latency histograms: bucket bounds, seconds from a `Duration`, and the request
//! histogram whose buckets carry a sampled trace's id as their exemplar.

use crate::trace::TraceId;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A label value made once (a route's path, a backend's name) and shared: recording a
/// metric clones an `Arc`, it does not build a `String` per request.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Label(Arc<str>);

impl Label {
    pub fn new(text: &str) -> Self {
        Self(Arc::from(text))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

/// A trace id as an exemplar's label value: 32 lowercase hex digits, written at scrape
/// time (recording one copies 16 bytes).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct TraceIdValue(TraceId);

impl EncodeLabelValue for TraceIdValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        // ASCII hex digits: always valid UTF-8.
        encoder.write_str(std::str::from_utf8(&self.0.to_hex()).unwrap_or_default())
    }
}

/// The exemplar of a request's latency: `trace_id`, the label Grafana and Tempo look up.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TraceLabels {
    trace_id: TraceIdValue,
}

/// Whole microseconds as seconds: `0.012345`, not the nearest binary fraction of the
/// nanosecond count.
pub(super) fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_micros() as f64 / 1e6
}

pub(super) type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// A request latency histogram: one exemplar slot per bucket, written only by a request
/// whose trace was sampled. Its observe takes a write lock around the histogram's own
/// mutex, exemplar or not: one more uncontended lock than a plain histogram, and no
/// allocation (a bucket's slot is made by its first exemplar, then overwritten).
pub(super) type ExemplarHistogram = HistogramWithExemplars<TraceLabels>;

/// 0.5 ms to about 16 s.
fn latency_bucket_bounds() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

pub(super) fn latency_buckets() -> Histogram {
    Histogram::new(latency_bucket_bounds())
}

pub(super) fn request_latency_buckets() -> ExemplarHistogram {
    HistogramWithExemplars::new(latency_bucket_bounds())
}

/// Records `seconds` with `trace` as its bucket's exemplar when there is one.
pub(super) fn observe(histogram: &ExemplarHistogram, seconds: f64, trace: Option<TraceId>) {
    match trace {
        None => histogram.observe(seconds, None, None),
        Some(id) => histogram.observe(
            seconds,
            Some(TraceLabels {
                trace_id: TraceIdValue(id),
            }),
            Some(SystemTime::now()),
        ),
    }
}
