//! A route's and a backend's sliding windows: counts per second for five minutes, and
//! latency histograms per ten seconds for the last minute, all tagged cells (see
//! `tagged`), so recording takes no lock and reading needs none either.

use super::tagged::{TaggedBuckets, TaggedCount};
use std::time::Duration;

/// Seconds of per-second counts kept: the chart's five minutes.
pub const SERIES_SECONDS: u64 = 300;
/// Seconds per latency histogram.
pub const LATENCY_PERIOD: u64 = 10;
/// Latency histograms kept: percentiles are over the last 50–60 s.
pub const LATENCY_PERIODS: u64 = 6;
/// Seconds the request rate is averaged over.
pub const RATE_SECONDS: u64 = 10;
/// Seconds the error rate, 429s and outcome mix are counted over.
pub const RECENT_SECONDS: u64 = 60;

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// The latency histograms of the last minute, one per ten seconds.
#[derive(Debug)]
struct LatencyRing(Box<[TaggedBuckets]>);

impl Default for LatencyRing {
    fn default() -> Self {
        Self(
            (0..LATENCY_PERIODS)
                .map(|_| TaggedBuckets::default())
                .collect(),
        )
    }
}

impl LatencyRing {
    fn record(&self, now: u64, elapsed: Duration) {
        let period = now / LATENCY_PERIOD;
        self.0[(period % LATENCY_PERIODS) as usize].record(period, micros(elapsed));
    }

    /// Every sample of the window ending at `now`, as (µs, count), into `into`.
    fn collect(&self, now: u64, into: &mut impl FnMut(u64, u64)) {
        let last = now / LATENCY_PERIOD;
        for period in last.saturating_sub(LATENCY_PERIODS - 1)..=last {
            for (value, count) in self.0[(period % LATENCY_PERIODS) as usize].counts(period) {
                into(value, count);
            }
        }
    }
}

/// Counts of one second.
#[derive(Debug, Default)]
struct Second {
    requests: TaggedCount,
    errors: TaggedCount,
    limited: TaggedCount,
}

/// A route's window: requests, errors (5xx) and 429s per second, latency per 10 s.
#[derive(Debug)]
pub struct RouteWindow {
    seconds: Box<[Second]>,
    latency: LatencyRing,
}

impl Default for RouteWindow {
    fn default() -> Self {
        Self {
            seconds: (0..SERIES_SECONDS).map(|_| Second::default()).collect(),
            latency: LatencyRing::default(),
        }
    }
}

/// What a route's window says at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteReading {
    /// Requests per second over the last [`RATE_SECONDS`].
    pub rate: f64,
    /// Over the last [`RECENT_SECONDS`]: requests, 5xx answers, 429s.
    pub requests: u64,
    pub errors: u64,
    pub limited: u64,
    /// Requests per second, one point per `step` seconds, oldest first, five minutes.
    pub series: Vec<u64>,
}

impl RouteWindow {
    /// Counts an answer with `status` that took `elapsed`, at second `now`.
    pub fn record(&self, now: u64, status: u16, elapsed: Duration) {
        let second = &self.seconds[(now % SERIES_SECONDS) as usize];
        second.requests.add(now, 1);
        if status >= 500 {
            second.errors.add(now, 1);
        } else if status == 429 {
            second.limited.add(now, 1);
        }
        self.latency.record(now, elapsed);
    }

    fn second(&self, at: u64) -> &Second {
        &self.seconds[(at % SERIES_SECONDS) as usize]
    }

    /// Sums `field` over the `span` seconds ending at `now` (fewer at the clock's start).
    fn sum(&self, now: u64, span: u64, field: impl Fn(&Second, u64) -> u64) -> u64 {
        let first = (now + 1).saturating_sub(span);
        (first..=now).map(|s| field(self.second(s), s)).sum()
    }

    /// The counts at second `now`, with the chart's points `step` seconds apart.
    pub fn read(&self, now: u64, step: u64) -> RouteReading {
        let step = step.clamp(1, SERIES_SECONDS);
        let points = SERIES_SECONDS / step;
        let series = (0..points)
            .map(|k| {
                let end = now as i64 - ((points - 1 - k) * step) as i64;
                if end < 0 {
                    return 0;
                }
                self.sum(end as u64, step, |s, at| s.requests.get(at))
            })
            .collect();
        RouteReading {
            rate: self.sum(now, RATE_SECONDS, |s, at| s.requests.get(at)) as f64
                / RATE_SECONDS as f64,
            requests: self.sum(now, RECENT_SECONDS, |s, at| s.requests.get(at)),
            errors: self.sum(now, RECENT_SECONDS, |s, at| s.errors.get(at)),
            limited: self.sum(now, RECENT_SECONDS, |s, at| s.limited.get(at)),
            series,
        }
    }

    /// The latency samples of the last minute, into `into` as (µs, count).
    pub fn latencies(&self, now: u64, into: &mut impl FnMut(u64, u64)) {
        self.latency.collect(now, into);
    }
}

/// The outcome mix the dashboard shows for a backend, from a call's outcome code.
pub const OUTCOMES: [&str; 7] = [
    "ok", "hit", "stale", "timeout", "error", "default", "skipped",
];

/// The [`OUTCOMES`] index of an outcome code as `Metrics::backend` gets it: `partial`
/// is an answer (ok), the shared cache's hit a hit, a template that could not render
/// falls back to the backend's default, every other failure code is an error.
pub fn outcome_index(code: &str) -> usize {
    match code {
        "ok" | "partial" => 0,
        "hit" | "shared" => 1,
        "stale" => 2,
        "timeout" => 3,
        "default" | "missing_value" | "invalid_value" => 5,
        "skipped" => 6,
        _ => 4,
    }
}

/// A backend's window: calls by outcome and latency, per 10 s, for the last minute.
#[derive(Debug)]
pub struct BackendWindow {
    outcomes: Box<[[TaggedCount; OUTCOMES.len()]]>,
    latency: LatencyRing,
}

impl Default for BackendWindow {
    fn default() -> Self {
        Self {
            outcomes: (0..LATENCY_PERIODS).map(|_| Default::default()).collect(),
            latency: LatencyRing::default(),
        }
    }
}

impl BackendWindow {
    /// Counts a call with outcome `code` that took `elapsed`, at second `now`.
    pub fn record(&self, now: u64, code: &str, elapsed: Duration) {
        let period = now / LATENCY_PERIOD;
        self.outcomes[(period % LATENCY_PERIODS) as usize][outcome_index(code)].add(period, 1);
        // A skipped backend was not called: it has no latency.
        if code != "skipped" {
            self.latency.record(now, elapsed);
        }
    }

    /// Calls of the last minute by [`OUTCOMES`] index.
    pub fn outcomes(&self, now: u64) -> [u64; OUTCOMES.len()] {
        let mut counts = [0; OUTCOMES.len()];
        let last = now / LATENCY_PERIOD;
        for period in last.saturating_sub(LATENCY_PERIODS - 1)..=last {
            let slot = &self.outcomes[(period % LATENCY_PERIODS) as usize];
            for (count, cell) in counts.iter_mut().zip(slot.iter()) {
                *count += cell.get(period);
            }
        }
        counts
    }

    pub fn latencies(&self, now: u64, into: &mut impl FnMut(u64, u64)) {
        self.latency.collect(now, into);
    }
}
