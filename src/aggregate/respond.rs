//! The respond stage: the merged answer of an aggregate route from its backends'
//! outcomes. The body from every backend's JSON (or its default, or nothing with
//! `on_error = "omit"`), the status (`status_from`) and copied headers
//! (`headers_from`), `X-Fanout-Complete`, `Server-Timing`, the per-backend metrics, and
//! the outcome codes for the log.

use super::error::{AggregateError, BackendError};
use super::merge::{Failure, Piece, merge};
use super::scope::{AggregateRoute, BackendAnswer, Outcome};
use crate::access_log::BackendOutcome;
use crate::body::{Body, empty, full};
use crate::config::{BackendSpec, OnError};
use crate::upstream::CallError;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderName, Response, StatusCode};
use std::time::Duration;

static X_FANOUT_COMPLETE: HeaderName = HeaderName::from_static("x-fanout-complete");
static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Each backend's outcome code and call time, in the route's order, for the access log.
#[derive(Debug, Clone)]
pub struct BackendOutcomes(pub Box<[BackendOutcome]>);

/// Whether a backend failed, or some of its `for_each` calls did.
fn has_problem(outcome: &Outcome) -> bool {
    !matches!(&outcome.result, Ok(a) if a.failed_elements.is_none())
}

/// The backend's answer, if it was called and answered.
fn answered(outcome: &Outcome) -> Option<&BackendAnswer> {
    outcome.result.as_ref().ok().filter(|a| !a.is_skipped())
}

/// Whether the backend's key is left out of the merged body: `on_error = "omit"` and it
/// failed or was skipped.
fn left_out(spec: &BackendSpec, outcome: &Outcome) -> bool {
    spec.on_error == OnError::Omit && answered(outcome).is_none()
}

/// The status of the route's answer: `status_from`'s backend's, when it answered with a
/// 2xx; else 200.
fn answer_status(route: &AggregateRoute, outcomes: &[Outcome]) -> StatusCode {
    route
        .status_from
        .and_then(|i| answered(&outcomes[i]))
        .map(|a| a.status)
        .filter(StatusCode::is_success)
        .unwrap_or(StatusCode::OK)
}

/// The upstream's status in a backend's failure, when it answered with one.
fn failed_status(error: &BackendError) -> Option<u16> {
    match error {
        BackendError::Call(CallError::Status { status, .. }) => Some(status.as_u16()),
        _ => None,
    }
}

/// What a client is told about a backend that failed, or whose `for_each` calls partly
/// failed: a stable code and a message.
fn problem(outcome: &Outcome) -> Option<(&'static str, String)> {
    match &outcome.result {
        Err(e) => Some((e.code(), e.to_string())),
        Ok(BackendAnswer {
            failed_elements: Some(f),
            ..
        }) => Some((
            f.first.code(),
            format!(
                "{} of {} element calls failed and are null; the first: {}",
                f.failed, f.total, f.first
            ),
        )),
        Ok(_) => None,
    }
}

/// The route's answer from its backends' outcomes, in the route's order: 502 or 504
/// when every backend failed, else the merged body with its headers, and the outcome
/// codes when the access log is on. `picks`: each backend's canary pick, by index (empty
/// on a route without canaries); a called canary backend's `Server-Timing` desc names
/// its upstream after the outcome, `desc="ok v2"`, and its log entry carries it.
pub(super) fn respond(
    route: &AggregateRoute,
    outcomes: &[Outcome],
    picks: &[usize],
) -> Result<(Response<Body>, Option<BackendOutcomes>), AggregateError> {
    if outcomes.iter().all(|o| o.result.is_err()) {
        let timed_out = outcomes
            .iter()
            .all(|o| matches!(o.result, Err(BackendError::Call(CallError::Timeout(_)))));
        return Err(AggregateError::AllBackendsFailed { timed_out });
    }
    // Collected first: the failures borrow their messages. Empty when all went well, the
    // common case, so that costs no allocation.
    let problems: Vec<Option<(&'static str, String)>> = if outcomes.iter().any(has_problem) {
        outcomes.iter().map(problem).collect()
    } else {
        Vec::new()
    };
    let mut pieces = Vec::with_capacity(outcomes.len());
    let mut failures = Vec::with_capacity(outcomes.len());
    let mut timing = String::with_capacity(outcomes.len() * 32);
    // Only the access log reads the outcomes: with it off, they are not collected.
    let mut logged = Vec::with_capacity(if route.access_log { outcomes.len() } else { 0 });
    for (i, (backend, outcome)) in route.backends.iter().zip(outcomes).enumerate() {
        let spec = &backend.spec;
        if let Some((code, message)) = problems.get(i).and_then(Option::as_ref) {
            failures.push(Failure {
                name: &spec.name,
                code,
                message,
                status: outcome.result.as_ref().err().and_then(failed_status),
                duration_ms: millis(outcome.elapsed),
            });
        }
        let (json, desc, code): (&[u8], &'static str, &'static str) = match &outcome.result {
            Ok(answer) if answer.failed_elements.is_some() => {
                (&answer.body, answer.desc, "partial")
            }
            Ok(answer) => (&answer.body, answer.desc, answer.desc),
            Err(e) => (&spec.default, e.timing_desc(), e.code()),
        };
        route.metrics.backend(
            &route.label,
            &backend.label,
            &backend.series,
            code,
            outcome.elapsed,
        );
        // A skipped backend called nobody: no upstream to name.
        let upstream = match &backend.canary {
            Some(canary) if !outcome.is_skipped() => {
                Some(&canary.choice(picks.get(i).copied().unwrap_or(0)).name)
            }
            _ => None,
        };
        if route.access_log {
            logged.push(BackendOutcome {
                name: backend.label.clone(),
                code,
                elapsed: outcome.elapsed,
                upstream: upstream.cloned(),
            });
        }
        if !left_out(spec, outcome) {
            pieces.push(Piece {
                name: &spec.name,
                mode: spec.merge,
                json,
            });
        }
        if !timing.is_empty() {
            timing.push_str(", ");
        }
        timing.push_str(&spec.name);
        timing.push_str(";dur=");
        push_millis(&mut timing, outcome.elapsed);
        timing.push_str(";desc=\"");
        timing.push_str(desc);
        if let Some(upstream) = upstream {
            timing.push(' ');
            push_quoted_text(&mut timing, upstream.as_str());
        }
        timing.push('"');
    }
    let errors = route
        .errors_field
        .as_deref()
        .map(|f| (f, failures.as_slice()));
    let status = answer_status(route, outcomes);
    // A 204 or 205 has no content (RFC 9110 §15.3.5, §15.3.6): nothing is merged and
    // no type is sent.
    let bodiless = matches!(status, StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT);
    let mut response = if bodiless {
        Response::new(empty())
    } else {
        let mut response = Response::new(full(merge(&pieces, errors)));
        let json = HeaderValue::from_static("application/json");
        response.headers_mut().insert(CONTENT_TYPE, json);
        response
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    for (i, names) in &route.headers_from {
        let Some(answer) = answered(&outcomes[*i]) else {
            continue;
        };
        for name in names {
            for value in answer.headers.get_all(name) {
                h.append(name.clone(), value.clone());
            }
        }
    }
    let complete = if failures.is_empty() { "true" } else { "false" };
    h.insert(
        X_FANOUT_COMPLETE.clone(),
        HeaderValue::from_static(complete),
    );
    // As Bytes, the value keeps the string's buffer instead of copying it.
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(timing)) {
        h.insert(SERVER_TIMING.clone(), v);
    }
    Ok((
        response,
        route
            .access_log
            .then(|| BackendOutcomes(logged.into_boxed_slice())),
    ))
}

/// `text` as the inside of a quoted-string: `"` and `\` escaped.
fn push_quoted_text(out: &mut String, text: &str) {
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `elapsed` in milliseconds with one decimal, rounded half up, as a number.
fn millis(elapsed: Duration) -> f64 {
    ((elapsed.as_micros() + 50) / 100) as f64 / 10.0
}

/// `elapsed` in milliseconds with one decimal, rounded half up (`12.3`), written with
/// integers: `{:.1}` on an `f64` ran the float formatter once per backend.
fn push_millis(out: &mut String, elapsed: Duration) {
    let tenths = (elapsed.as_micros() + 50) / 100;
    let mut digits = itoa::Buffer::new();
    out.push_str(digits.format(tenths / 10));
    out.push('.');
    out.push(char::from(b'0' + (tenths % 10) as u8));
}

#[cfg(test)]
mod tests {
    use super::{BackendAnswer, BackendError, Outcome, left_out, millis, push_millis};
    use crate::config::{BackendSpec, Env, RouteKind, compile};
    use crate::upstream::CallError;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use std::time::Duration;

    /// Backends `d` (`on_error = "default"`), `o` (`"omit"`) and `f` (`"fail"`).
    fn specs() -> Vec<BackendSpec> {
        let mut toml = String::from(
            "[upstreams.m]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"/r\"\n",
        );
        for (name, policy) in [("d", "default"), ("o", "omit"), ("f", "fail")] {
            toml.push_str(&format!(
                "[[routes.backends]]\nname = \"{name}\"\nupstream = \"m\"\npath = \"/\"\non_error = \"{policy}\"\n"
            ));
        }
        let compiled = compile(&toml, &Env::default()).unwrap();
        match compiled.routes.into_iter().next().unwrap().kind {
            RouteKind::Aggregate(a) => a.backends,
            RouteKind::Proxy(_) => unreachable!(),
        }
    }

    fn answered(desc: &'static str) -> Outcome {
        Outcome {
            result: Ok(BackendAnswer {
                body: Bytes::from_static(b"{}"),
                desc,
                raw: None,
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                failed_elements: None,
            }),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn only_omit_leaves_a_failed_or_skipped_backend_out() {
        let failed = || Outcome::failed(BackendError::Call(CallError::Timeout(Duration::ZERO)));
        for spec in specs() {
            let omit = spec.name == "o";
            assert_eq!(left_out(&spec, &failed()), omit, "{} failed", spec.name);
            assert_eq!(
                left_out(&spec, &answered("skipped")),
                omit,
                "{} skipped",
                spec.name
            );
            for desc in ["ok", "hit", "stale"] {
                assert!(!left_out(&spec, &answered(desc)), "{} {desc}", spec.name);
            }
        }
    }

    #[test]
    fn duration_ms_is_the_server_timing_value_as_a_number() {
        for micros in [0, 49, 50, 12_345, 12_350, 999_960] {
            let mut text = String::new();
            push_millis(&mut text, Duration::from_micros(micros));
            let number = millis(Duration::from_micros(micros));
            assert_eq!(serde_json::to_string(&number).unwrap(), text, "{micros} µs");
        }
    }

    #[test]
    fn milliseconds_have_one_decimal_rounded_half_up() {
        for (micros, text) in [
            (0, "0.0"),
            (49, "0.0"),
            (50, "0.1"),
            (12_345, "12.3"),
            (12_350, "12.4"),
            (999_960, "1000.0"),
            (63_400, "63.4"),
        ] {
            let mut out = String::new();
            push_millis(&mut out, Duration::from_micros(micros));
            assert_eq!(out, text, "{micros} µs");
        }
    }
}
