//! One copy on its way: a task of its own, holding the permit of its mirror's
//! `max_in_flight` the copy was made with until it ends; the answer read whole (up to the shadow's
//! `max_response`) and dropped; the outcome counted.

use super::Copy;
use crate::upstream::CallError;
use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::gauge::Gauge;

/// Sends `copy` with `body` from a task of its own, holding the place among its
/// mirror's `max_in_flight` the copy was made with. Never waits.
pub(super) fn spawn(copy: Copy, body: Vec<Bytes>) {
    let mirror = copy.mirror.clone();
    // A body dropped as the runtime shuts down has no runtime to send from.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let in_flight = InFlight::enter(&mirror.series.in_flight);
    runtime.spawn(async move {
        let _in_flight = in_flight;
        let series = &mirror.series;
        match tokio::time::timeout(mirror.timeout, deliver(&copy, body)).await {
            Ok(Outcome::Ok) => series.ok.inc(),
            Ok(Outcome::Error) => series.error.inc(),
            Err(_) => series.timeout.inc(),
        };
    });
}

/// How a copy ended, short of its timeout.
enum Outcome {
    /// The shadow answered (any status below 500), and the answer was read.
    Ok,
    /// No usable answer: refused, reset, garbage, too large, or a 5xx.
    Error,
}

/// Sends the copy and reads its answer whole, bounded by the shadow's `max_response`.
async fn deliver(copy: &Copy, body: Vec<Bytes>) -> Outcome {
    let shadow = &copy.mirror.upstream;
    let body = join(body);
    let transport = &shadow.transport;
    let Ok(target) = transport.target(&copy.url) else {
        return Outcome::Error;
    };
    let answer = transport
        .fetch_whole(
            &copy.method,
            &target,
            &copy.headers,
            Some(&copy.traceparent),
            body.as_ref(),
            shadow.spec.max_response,
            &[],
        )
        .await;
    match answer {
        Ok(whole) if whole.status.is_server_error() => Outcome::Error,
        Ok(_) => Outcome::Ok,
        // 3xx and 4xx: an answer, if not a 2xx; whether it matches the primary's is
        // for the shadow's own logs to say.
        Err(CallError::Status { status, .. }) if !status.is_server_error() => Outcome::Ok,
        Err(error) => {
            tracing::debug!(upstream = %shadow.spec.name, %error, "mirror copy failed");
            Outcome::Error
        }
    }
}

/// The body's chunks as one buffer; `None` for no body.
fn join(chunks: Vec<Bytes>) -> Option<Bytes> {
    match chunks.len() {
        0 => None,
        1 => chunks.into_iter().next(),
        _ => {
            let mut whole = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in chunks {
                whole.extend_from_slice(&chunk);
            }
            Some(whole.freeze())
        }
    }
}

/// A copy in flight, counted in `fanout_mirror_in_flight` until the task ends (or is
/// dropped with the runtime); the copy itself holds its mirror's permit.
struct InFlight {
    gauge: Gauge,
}

impl InFlight {
    fn enter(gauge: &Gauge) -> Self {
        gauge.inc();
        Self {
            gauge: gauge.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
