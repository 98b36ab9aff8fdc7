//! The execute stage: runs a route's plan for one request. Every backend starts the
//! moment the answers it reads have arrived (those reading none at once), the calls run
//! concurrently, and a required backend's failure ends the request at once, cancelling
//! the calls still running. How a backend is started (its `when`, its URL, the cache, the
//! call) is the orchestrator's [`Launch`]: this stage only decides when.
//!
//! A backend its `when` skipped is not a failure: its outcome is its default, and every
//! backend reading its answer is skipped in turn, without a call, once its own inputs
//! are in.

use super::error::AggregateError;
use super::scope::{AggregateRoute, Outcome};
use crate::template::Answered;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;

/// Starts one backend of a request.
pub(super) trait Launch {
    /// A backend's call in flight.
    type Call: Future<Output = Outcome>;

    /// Starts backend `i`, whose inputs have all arrived: `answers` holds, by backend
    /// index, the answers (before shaping) that other backends read.
    fn start(
        &self,
        i: usize,
        answers: &[Option<Answered>],
    ) -> impl Future<Output = Started<Self::Call>>;
}

/// What starting a backend gave.
#[expect(
    clippy::large_enum_variant,
    reason = "moved once, straight into the request's progress; a box would allocate on the cache-hit path"
)]
pub(super) enum Started<C> {
    /// The outcome at once: a fresh cache hit, or a URL that could not be rendered.
    Done(Outcome),
    /// A call to wait for.
    Running(C),
}

/// Runs every backend of `route` in the order its plan allows. Returns their outcomes in
/// the route's order, or the error that ended the request.
pub(super) async fn execute<L: Launch>(
    route: &AggregateRoute,
    launch: &L,
) -> Result<Vec<Outcome>, AggregateError> {
    let mut progress = Progress::new(route);
    // Made at the first call: a request answered from the cache needs none.
    let mut calls = None;
    loop {
        while let Some(i) = progress.ready.pop() {
            if progress.reads_skipped(i) {
                let skipped = Outcome::skipped(&route.backends[i].spec.default);
                progress.finish(route, i, skipped)?;
                continue;
            }
            match launch.start(i, &progress.answers).await {
                Started::Done(outcome) => progress.finish(route, i, outcome)?,
                Started::Running(call) => calls
                    .get_or_insert_with(FuturesUnordered::new)
                    .push(call.map(move |outcome| (i, outcome))),
            }
        }
        // Dropping `calls` (when a required backend fails) cancels those still running.
        let Some(running) = calls.as_mut() else {
            break;
        };
        let Some((i, outcome)) = running.next().await else {
            break;
        };
        progress.finish(route, i, outcome)?;
    }
    Ok(progress
        .outcomes
        .into_iter()
        .map(|o| o.expect("every backend ran: a plan has no cycle"))
        .collect())
}

/// One request's progress through the route's plan.
struct Progress {
    outcomes: Vec<Option<Outcome>>,
    /// Answers (before shaping) that other backends read, by backend index.
    answers: Vec<Option<Answered>>,
    /// How many answers each backend still waits for.
    waits: Vec<usize>,
    /// Backends whose answers have all arrived, not yet started.
    ready: Vec<usize>,
    /// Backends that read a skipped backend's answer, so are skipped too.
    skip: Vec<bool>,
}

impl Progress {
    fn new(route: &AggregateRoute) -> Self {
        let plan = &route.plan;
        let n = route.backends.len();
        // Without dependencies nobody waits or reads: no countdown, no answers kept.
        let (answers, waits, skip) = if plan.has_dependencies() {
            (vec![None; n], plan.waits().to_vec(), vec![false; n])
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        Self {
            outcomes: (0..n).map(|_| None).collect(),
            answers,
            waits,
            ready: plan.starts().collect(),
            skip,
        }
    }

    /// Whether backend `i` reads the answer of a backend that was skipped.
    fn reads_skipped(&self, i: usize) -> bool {
        self.skip.get(i).copied().unwrap_or(false)
    }

    /// Records a backend's outcome and readies the backends that waited for it. A
    /// required backend's failure ends the request.
    fn finish(
        &mut self,
        route: &AggregateRoute,
        i: usize,
        mut outcome: Outcome,
    ) -> Result<(), AggregateError> {
        let backend = &route.backends[i];
        match &mut outcome.result {
            Err(error) => {
                tracing::warn!(backend = %backend.spec.name, code = error.code(), error = %error, "backend failed");
                if backend.spec.required() {
                    route.metrics.backend(
                        &route.label,
                        &backend.label,
                        &backend.series,
                        error.code(),
                        outcome.elapsed,
                    );
                    return Err(AggregateError::required(&backend.spec.name, error));
                }
            }
            Ok(answer) => {
                if let Some(raw) = answer.raw.take() {
                    self.answers[i] = Some(raw);
                }
            }
        }
        let skipped = outcome.is_skipped();
        for &reader in route.plan.readers(i) {
            if skipped {
                self.skip[reader] = true;
            }
            self.waits[reader] -= 1;
            if self.waits[reader] == 0 {
                self.ready.push(reader);
            }
        }
        self.outcomes[i] = Some(outcome);
        Ok(())
    }
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod tests;
