//! Retries and hedging around one logical call: each try is admitted by the guard and
//! recorded with the breaker; retries only for idempotent calls, only after a connect
//! error or a 502/503/504, with a short jittered backoff, never past the deadline. Each
//! try is a span of its own: it gets its own `traceparent`, and is recorded (with its
//! status and outcome code) when the request's spans are.

use super::{CallError, Upstream};
use crate::trace::TraceParent;
use crate::trace::record::Tries;
use http::StatusCode;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How a try went: whether it counts as the upstream failing (for the breaker) and
/// whether another try could help.
pub trait TryOutcome {
    fn failed(&self) -> bool;
    fn retryable(&self) -> bool;
    /// The answer's status if there was one, and the outcome code (`ok` or the error's).
    fn describe(&self) -> (Option<u16>, &'static str);
}

fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

fn failed_call(e: &CallError) -> bool {
    match e {
        CallError::Timeout(_) | CallError::Connect(_) | CallError::Failed(_) => true,
        CallError::Status { status, .. } => status.is_server_error(),
        // Refused by the guard, or too large: says nothing about the upstream's health.
        _ => false,
    }
}

impl<T> TryOutcome for Result<T, CallError>
where
    T: AnswerStatus,
{
    fn failed(&self) -> bool {
        match self {
            Ok(answer) => answer.status().is_server_error(),
            Err(e) => failed_call(e),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            Ok(answer) => retryable_status(answer.status()),
            Err(CallError::Connect(_)) => true,
            Err(CallError::Status { status, .. }) => retryable_status(*status),
            Err(_) => false,
        }
    }

    fn describe(&self) -> (Option<u16>, &'static str) {
        match self {
            Ok(answer) if answer.status().is_server_error() => {
                (Some(answer.status().as_u16()), "bad_status")
            }
            Ok(answer) => (Some(answer.status().as_u16()), "ok"),
            Err(e @ CallError::Status { status, .. }) => (Some(status.as_u16()), e.code()),
            Err(e) => (None, e.code()),
        }
    }
}

/// The status of a successful try (a proxy passes 5xx answers through as answers).
pub trait AnswerStatus {
    fn status(&self) -> StatusCode;
}

impl AnswerStatus for super::WholeAnswer {
    fn status(&self) -> StatusCode {
        self.status
    }
}

impl AnswerStatus for crate::cache::Stored {
    fn status(&self) -> StatusCode {
        self.status
    }
}

impl<B> AnswerStatus for http::Response<B> {
    fn status(&self) -> StatusCode {
        http::Response::status(self)
    }
}

/// Runs `attempt` as the upstream's policy says: admitted, timed out at `deadline`,
/// hedged and retried when `repeatable` (an idempotent call whose request can be sent
/// again). Each try is one of `tries`: `attempt` is given its `traceparent`.
pub async fn run<T, F, Fut>(
    upstream: &Upstream,
    repeatable: bool,
    deadline: Instant,
    tries: Tries<'_>,
    attempt: F,
) -> Result<T, CallError>
where
    F: Fn(TraceParent) -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
    Result<T, CallError>: TryOutcome,
{
    let spec = &upstream.spec;
    let budget = super::budget(deadline);
    let one_try = || async {
        let (traceparent, mut span) = tries.start();
        let result = async {
            let permit = upstream.guard.admit(deadline).await?;
            let result = match tokio::time::timeout_at(deadline, attempt(traceparent)).await {
                Ok(result) => result,
                Err(_) => Err(CallError::Timeout(budget)),
            };
            permit.record(result.failed());
            result
        }
        .await;
        let (status, outcome) = result.describe();
        span.end(status, outcome);
        result
    };
    let mut retries_left = if repeatable { spec.retries } else { 0 };
    let mut backoff = Duration::from_millis(20);
    loop {
        let result = match spec.hedge_after.filter(|_| repeatable) {
            // Boxed: two tries and a timer, carried by every call's future unboxed,
            // though only an upstream with `hedge_after` runs this.
            Some(after) => Box::pin(hedged(&one_try, after)).await,
            None => one_try().await,
        };
        if retries_left == 0 || !result.retryable() {
            return result;
        }
        // Jittered so that many clients retrying at once do not arrive together.
        let pause = backoff.mul_f64(0.5 + fastrand::f64());
        if Instant::now() + pause >= deadline {
            return result;
        }
        tracing::debug!(upstream = %spec.name, ?pause, "retrying");
        tokio::time::sleep(pause).await;
        retries_left -= 1;
        backoff *= 2;
    }
}

/// Starts a second try if the first has not answered after `after`. The first answer
/// that another try could not improve wins; the other try is dropped, which cancels it.
async fn hedged<T, F, Fut>(one_try: &F, after: Duration) -> Result<T, CallError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
    Result<T, CallError>: TryOutcome,
{
    let first = one_try();
    tokio::pin!(first);
    tokio::select! {
        result = &mut first => return result,
        () = tokio::time::sleep(after) => {}
    }
    let second = one_try();
    tokio::pin!(second);
    tokio::select! {
        result = &mut first => if result.retryable() { second.await } else { result },
        result = &mut second => if result.retryable() { first.await } else { result },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Result<crate::cache::Stored, CallError> {
        Ok(crate::cache::Stored {
            status: StatusCode::from_u16(code).unwrap(),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
        })
    }

    #[test]
    fn what_is_retried() {
        for code in [502, 503, 504] {
            assert!(status(code).retryable(), "{code}");
            assert!(status(code).failed(), "{code}");
        }
        assert!(!status(500).retryable());
        assert!(status(500).failed());
        assert!(!status(404).retryable());
        assert!(
            !status(404).failed(),
            "a 4xx is the client's problem, not the upstream's"
        );
        let err = |e: CallError| -> Result<crate::cache::Stored, CallError> { Err(e) };
        assert!(err(CallError::Connect("refused".into())).retryable());
        assert!(
            !err(CallError::Timeout(Duration::from_secs(1))).retryable(),
            "the deadline is shared: no time to retry"
        );
        assert!(err(CallError::Timeout(Duration::from_secs(1))).failed());
        assert!(
            !err(CallError::CircuitOpen).failed(),
            "a refusal is not the upstream failing"
        );
        assert!(!err(CallError::Overloaded("x".into())).retryable());
    }
}
