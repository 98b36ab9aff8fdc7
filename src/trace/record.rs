//! Recording a request's spans while it is served, as plain structs: the ids, the times
//! and a few attributes, nothing of the OpenTelemetry SDK's (the exporter's thread turns
//! them into its `SpanData`). Only a gateway with an `otlp_endpoint` records: otherwise a
//! request carries no [`SpanLog`] and an upstream try costs one random span id.
//!
//! Every upstream try (each retry and hedge, see `upstream::retry`) opens a
//! [`TrySpan`]; it is written into the request's log when the try ends or, for a try
//! dropped unfinished (the hedge that lost), when it is dropped.

use super::{SpanId, TraceParent};
use http::Method;

/// The longest `url.path` a span keeps, in bytes: a request target may be up to the
/// head's limit (64 KiB), and a span waiting in the export queue would hold it all.
/// Longer ones are cut at a character boundary, as OpenTelemetry's attribute value
/// length limit cuts them.
pub const MAX_PATH: usize = 1024;

/// `path` as a span keeps it: at most [`MAX_PATH`] bytes.
pub fn span_path(path: &str) -> String {
    path[..path.floor_char_boundary(MAX_PATH)].to_owned()
}
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The upstream spans one request recorded, and when its server span started.
#[derive(Debug)]
pub struct SpanLog {
    pub started: SystemTime,
    spans: Mutex<Vec<ClientSpan>>,
    /// A backend of the request failed (its last try, not one a retry made good).
    failed: AtomicBool,
}

/// One upstream try, as recorded.
#[derive(Debug, Clone)]
pub struct ClientSpan {
    pub span_id: SpanId,
    pub start: SystemTime,
    pub end: SystemTime,
    /// The aggregate backend the try was for; `None` on a proxy route.
    pub backend: Option<String>,
    pub upstream: String,
    pub method: Method,
    /// The path (and query) the try asked for.
    pub path: String,
    /// The answer's status, when there was one.
    pub status: Option<u16>,
    /// `ok`, an upstream error's stable code (`timeout`, `bad_status`, ...), or
    /// `cancelled` for a try dropped unfinished (a hedge that lost).
    pub outcome: &'static str,
}

impl ClientSpan {
    /// Whether the try failed (a cancelled hedge did not).
    pub fn failed(&self) -> bool {
        !matches!(self.outcome, "ok" | "cancelled")
    }
}

impl SpanLog {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            started: SystemTime::now(),
            spans: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
        })
    }

    /// Marks the request as one with a failed backend: its spans are exported whatever
    /// the sampler said.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }

    /// Whether a backend of the request failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// The spans recorded so far, taken out.
    pub fn take(&self) -> Vec<ClientSpan> {
        std::mem::take(&mut *self.spans.lock().expect("never poisoned"))
    }

    fn push(&self, span: ClientSpan) {
        self.spans.lock().expect("never poisoned").push(span);
    }
}

/// What an upstream call needs to trace its tries: the server span they are children of,
/// and the request's log when spans are recorded. Owned, so that a cached call that runs
/// on after its request (a stale-while-revalidate refresh) can carry it.
#[derive(Debug, Clone)]
pub struct CallTrace {
    pub parent: TraceParent,
    pub log: Option<Arc<SpanLog>>,
    /// The aggregate backend calling; only kept when recording.
    pub backend: Option<String>,
}

impl CallTrace {
    /// A call under `parent` for `backend`, recorded in `log` when there is one.
    pub fn new(parent: TraceParent, log: Option<&Arc<SpanLog>>, backend: Option<&str>) -> Self {
        Self {
            parent,
            log: log.cloned(),
            backend: log.and(backend).map(str::to_owned),
        }
    }

    /// The tries of one call to `upstream`: `method` on `path`.
    pub fn tries<'a>(&'a self, upstream: &'a str, method: &'a Method, path: &'a str) -> Tries<'a> {
        Tries {
            call: self,
            upstream,
            method,
            path,
        }
    }
}

/// The tries of one upstream call, each a span of its own.
#[derive(Clone, Copy)]
pub struct Tries<'a> {
    call: &'a CallTrace,
    upstream: &'a str,
    method: &'a Method,
    path: &'a str,
}

impl<'a> Tries<'a> {
    /// Starts a try: its `traceparent`, and its span, recorded when it ends.
    pub fn start(&self) -> (TraceParent, TrySpan<'a>) {
        let traceparent = self.call.parent.child();
        let open = self.call.log.as_deref().map(|log| (log, SystemTime::now()));
        let span = TrySpan {
            tries: *self,
            span_id: traceparent.span_id,
            open,
            ended: None,
        };
        (traceparent, span)
    }
}

/// One try's span until it ends. Dropped, it is written into the request's log: as the
/// try ended, or `cancelled` when it never did.
pub struct TrySpan<'a> {
    tries: Tries<'a>,
    span_id: SpanId,
    /// The log and the start time, when recording.
    open: Option<(&'a SpanLog, SystemTime)>,
    ended: Option<(Option<u16>, &'static str)>,
}

impl TrySpan<'_> {
    /// Records how the try ended: the answer's status if any, and its outcome code.
    pub fn end(&mut self, status: Option<u16>, outcome: &'static str) {
        self.ended = Some((status, outcome));
    }
}

impl Drop for TrySpan<'_> {
    fn drop(&mut self) {
        let Some((log, start)) = self.open else {
            return;
        };
        let (status, outcome) = self.ended.unwrap_or((None, "cancelled"));
        let t = &self.tries;
        log.push(ClientSpan {
            span_id: self.span_id,
            start,
            end: SystemTime::now(),
            backend: t.call.backend.clone(),
            upstream: t.upstream.to_owned(),
            method: t.method.clone(),
            path: span_path(t.path),
            status,
            outcome,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{SAMPLED, TraceId};

    fn parent() -> TraceParent {
        TraceParent {
            trace_id: TraceId::random(),
            span_id: SpanId::random(),
            flags: SAMPLED,
        }
    }

    #[test]
    fn without_a_log_a_try_is_only_a_new_span_id() {
        let call = CallTrace::new(parent(), None, Some("user"));
        assert_eq!(call.backend, None, "nothing kept when not recording");
        let tries = call.tries("users", &Method::GET, "/u/1");
        let (a, _) = tries.start();
        let (b, _) = tries.start();
        assert_eq!(a.trace_id, call.parent.trace_id);
        assert_ne!(a.span_id, b.span_id);
    }

    #[test]
    fn each_try_is_recorded_as_it_ended_or_cancelled() {
        let log = SpanLog::new();
        let call = CallTrace::new(parent(), Some(&log), Some("user"));
        let tries = call.tries("users", &Method::GET, "/u/1");
        let (first, mut span) = tries.start();
        span.end(Some(503), "bad_status");
        drop(span);
        let (second, hedge) = tries.start();
        drop(hedge);
        let spans = log.take();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].span_id, first.span_id);
        assert_eq!(
            (spans[0].status, spans[0].outcome),
            (Some(503), "bad_status")
        );
        assert!(spans[0].failed());
        assert_eq!(spans[1].span_id, second.span_id);
        assert_eq!(spans[1].outcome, "cancelled");
        assert!(!spans[1].failed());
        assert_eq!(spans[1].backend.as_deref(), Some("user"));
        assert_eq!(
            (spans[1].upstream.as_str(), spans[1].path.as_str()),
            ("users", "/u/1")
        );
        assert!(log.take().is_empty());
    }

    #[test]
    fn a_long_path_is_cut_at_a_character_boundary() {
        assert_eq!(span_path("/u/1?q=2"), "/u/1?q=2");
        let exact = "a".repeat(MAX_PATH);
        assert_eq!(span_path(&exact), exact);
        // 'é' is two bytes: the one that would straddle the limit is left out whole.
        let long = format!("{}é{}", "a".repeat(MAX_PATH - 1), "b".repeat(70_000));
        assert_eq!(span_path(&long), "a".repeat(MAX_PATH - 1));
        let log = SpanLog::new();
        let call = CallTrace::new(parent(), Some(&log), None);
        drop(call.tries("users", &Method::GET, &long).start());
        assert_eq!(log.take()[0].path.len(), MAX_PATH - 1);
    }
}
