//! `[tracing]` at run time: the sampling decision, and the export of recorded spans to
//! an OTLP collector off the request path.
//!
//! A request's task does two cheap things: at its start [`Tracing::context`] decides
//! sampling and, when an endpoint is set, gives the request a [`SpanLog`]; at its end
//! [`Tracing::finish`] hands the request's plain records to a bounded queue with a
//! `try_send`. The queue is bounded twice, in requests ([`QUEUE`]) and in the bytes
//! their records hold ([`QUEUE_BYTES`]: a request's client spans are as many as its
//! tries, each with its path); a full queue drops them (counted in
//! `fanout_spans_dropped_total`); the request never waits. A thread of its own (`fanout-otlp`) drains the queue once a
//! second, turns the records into the SDK's `SpanData` and exports them in batches
//! through `opentelemetry-otlp`'s exporter, each export bounded by a timeout: a hung or
//! unreachable collector fills the queue, never slows a request.
//!
//! The SDK's `BatchSpanProcessor` is not used: it takes finished `SpanData`, which would
//! be built (names, attribute vectors, `Cow`s) on the request's task for every span,
//! sampled out or not, and its drop count is not a metric of ours.

use super::record::{ClientSpan, SpanLog};
use super::{TraceContext, TraceId};
use crate::config::{ExportSpec, OtlpProtocol, TracingSpec};
use http::{HeaderMap, Method};
use opentelemetry::trace::{SpanContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use prometheus_client::metrics::counter::Counter;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

use super::queue::QueuedBytes;
pub use super::queue::{QUEUE, QUEUE_BYTES};
/// How often the exporter drains the queue.
pub const EXPORT_EVERY: Duration = Duration::from_secs(1);
/// Most spans in one export.
pub const BATCH: usize = 512;
/// An export that takes longer is given up (its spans counted as dropped).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Export failures are warned about at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The tracing of one config: the sampler and, with an endpoint, the exporter's queue.
/// A reload that changes `[tracing]` builds another; the old exporter thread exports
/// what it still holds and ends when the last snapshot using it is dropped.
#[derive(Debug)]
pub struct Tracing {
    pub spec: TracingSpec,
    /// Sampled when the trace id's last 8 bytes are below this.
    threshold: u64,
    queue: Option<mpsc::Sender<RequestSpans>>,
    /// The bytes the queue's records hold, shared with the exporter.
    queued: Arc<QueuedBytes>,
    dropped: Counter,
}

/// One finished request's spans, as recorded.
#[derive(Debug)]
pub struct RequestSpans {
    pub context: TraceContextIds,
    pub start: SystemTime,
    pub end: SystemTime,
    pub route: String,
    pub method: Method,
    pub path: String,
    pub status: u16,
    /// The subject of the identity the route's `auth` proved: `enduser.id`.
    pub user: Option<Arc<str>>,
    pub clients: Vec<ClientSpan>,
}

impl RequestSpans {
    /// Bytes the record holds (about: the allocator rounds up), what [`QUEUE_BYTES`]
    /// bounds.
    pub fn weight(&self) -> usize {
        let clients: usize = self
            .clients
            .iter()
            .map(|c| c.path.len() + c.upstream.len() + c.backend.as_ref().map_or(0, String::len))
            .sum();
        size_of::<Self>()
            + self.route.len()
            + self.path.len()
            + self.user.as_ref().map_or(0, |u| u.len())
            + self.clients.capacity() * size_of::<ClientSpan>()
            + clients
    }
}

/// The ids of a request's server span.
#[derive(Debug, Clone, Copy)]
pub struct TraceContextIds {
    pub trace_id: TraceId,
    pub span_id: super::SpanId,
    pub parent: Option<super::SpanId>,
}

impl Tracing {
    /// The tracing `spec` asks for; with an endpoint, its exporter thread is started.
    /// Spans that are not exported are counted in `dropped`.
    pub fn new(spec: TracingSpec, dropped: Counter) -> Self {
        let threshold = if spec.sample_ratio >= 1.0 {
            u64::MAX
        } else {
            (spec.sample_ratio * u64::MAX as f64) as u64
        };
        let queued = Arc::new(QueuedBytes::new(QUEUE_BYTES));
        let queue = spec.export.clone().map(|export| {
            // The HTTP exporter builds a reqwest client, which needs one.
            crate::tls::install_default_provider();
            let (tx, rx) = mpsc::channel(QUEUE);
            let (service, dropped) = (spec.service_name.clone(), dropped.clone());
            let taken = queued.clone();
            let started = std::thread::Builder::new()
                .name("fanout-otlp".into())
                .spawn(move || exporter_thread(export, service, rx, taken, dropped));
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start the span exporter; spans are dropped");
            }
            tx
        });
        Self {
            spec,
            threshold,
            queue,
            queued,
            dropped,
        }
    }

    /// Tracing that samples everything into a queue of `limit` bytes no exporter
    /// drains, for tests of the queue's bounds: the tracing, its drop counter and the
    /// queue's receiving end.
    #[cfg(test)]
    pub(super) fn undrained(limit: usize) -> (Self, Counter, mpsc::Receiver<RequestSpans>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Counter::default();
        let spec = TracingSpec {
            export: None,
            sample_ratio: 1.0,
            service_name: "test".into(),
        };
        let tracing = Self {
            spec,
            threshold: u64::MAX,
            queue: Some(tx),
            queued: Arc::new(QueuedBytes::new(limit)),
            dropped: dropped.clone(),
        };
        (tracing, dropped, rx)
    }

    /// Whether a new trace with this id is sampled (`sample_ratio` of them are).
    pub fn sample(&self, id: TraceId) -> bool {
        let low = u64::from_be_bytes(id.0[8..16].try_into().expect("8 bytes"));
        self.threshold == u64::MAX || low < self.threshold
    }

    /// The trace context of a request with these headers, recording its spans when
    /// they are exported.
    pub fn context(&self, headers: &HeaderMap) -> TraceContext {
        let mut context = TraceContext::of(headers, |id| self.sample(id));
        if self.queue.is_some() {
            context.log = Some(SpanLog::new());
        }
        context
    }

    /// Hands a finished request's spans to the exporter: when its trace is sampled, or
    /// whatever the sampler said when it failed (a 5xx, or a backend that failed).
    /// Returns the trace's id when its spans were handed over: the latency's exemplar
    /// links only to traces the collector will have.
    pub fn finish(
        &self,
        context: &TraceContext,
        route: &str,
        method: &Method,
        path: &str,
        status: u16,
        user: Option<&Arc<str>>,
    ) -> Option<TraceId> {
        let (Some(queue), Some(log)) = (&self.queue, &context.log) else {
            return None;
        };
        let clients = log.take();
        let failed = status >= 500 || log.failed();
        if !context.server.sampled() && !failed {
            return None;
        }
        let spans = RequestSpans {
            context: TraceContextIds {
                trace_id: context.server.trace_id,
                span_id: context.server.span_id,
                parent: context.parent,
            },
            start: log.started,
            end: SystemTime::now(),
            route: route.to_owned(),
            method: method.clone(),
            path: super::record::span_path(path),
            status,
            user: user.cloned(),
            clients,
        };
        let weight = spans.weight();
        if !self.queued.take(weight) {
            self.dropped.inc_by(1 + spans.clients.len() as u64);
            return None;
        }
        match queue.try_send(spans) {
            Ok(()) => Some(context.server.trace_id),
            Err(e) => {
                self.queued.give_back(weight);
                let spans = match e {
                    mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => s,
                };
                self.dropped.inc_by(1 + spans.clients.len() as u64);
                None
            }
        }
    }
}

/// The exporter's thread: a runtime of its own, so exports never take a worker's time.
fn exporter_thread(
    export: ExportSpec,
    service: String,
    rx: mpsc::Receiver<RequestSpans>,
    queued: Arc<QueuedBytes>,
    dropped: Counter,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the span exporter; spans are dropped");
            return;
        }
    };
    runtime.block_on(run_exporter(export, service, rx, queued, dropped));
}

fn build_exporter(
    export: &ExportSpec,
    service: String,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let mut exporter = match export.protocol {
        OtlpProtocol::Grpc => builder
            .with_tonic()
            .with_endpoint(&export.endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()?,
        http => builder
            .with_http()
            .with_endpoint(&export.endpoint)
            .with_protocol(match http {
                OtlpProtocol::HttpJson => Protocol::HttpJson,
                _ => Protocol::HttpBinary,
            })
            .with_timeout(EXPORT_TIMEOUT)
            .build()?,
    };
    exporter.set_resource(&Resource::builder_empty().with_service_name(service).build());
    Ok(exporter)
}

async fn run_exporter(
    export: ExportSpec,
    service: String,
    mut rx: mpsc::Receiver<RequestSpans>,
    queued: Arc<QueuedBytes>,
    dropped: Counter,
) {
    let exporter = match build_exporter(&export, service) {
        Ok(exporter) => Some(exporter),
        Err(e) => {
            tracing::error!(endpoint = %export.endpoint, error = %e, "cannot build the span exporter; spans are dropped");
            None
        }
    };
    let scope = InstrumentationScope::builder("fanout")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let mut warned: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(EXPORT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Between ticks the queue is only filled: no wake-up per request.
        tick.tick().await;
        let mut batch = Vec::new();
        let closed = loop {
            match rx.try_recv() {
                Ok(request) => {
                    span_data(&request, &scope, &mut batch);
                    queued.give_back(request.weight());
                    if batch.len() >= BATCH {
                        let full = std::mem::take(&mut batch);
                        send(exporter.as_ref(), full, &dropped, &mut warned, &export).await;
                    }
                }
                Err(mpsc::error::TryRecvError::Empty) => break false,
                Err(mpsc::error::TryRecvError::Disconnected) => break true,
            }
        };
        if !batch.is_empty() {
            send(exporter.as_ref(), batch, &dropped, &mut warned, &export).await;
        }
        if closed {
            if let Some(exporter) = &exporter {
                let _ = exporter.shutdown();
            }
            return;
        }
    }
}

/// Exports one batch; what cannot be exported is counted and warned about (at most once
/// every few seconds).
async fn send(
    exporter: Option<&opentelemetry_otlp::SpanExporter>,
    batch: Vec<SpanData>,
    dropped: &Counter,
    warned: &mut Option<tokio::time::Instant>,
    export: &ExportSpec,
) {
    let count = batch.len() as u64;
    let error = match exporter {
        None => None,
        Some(exporter) => {
            match tokio::time::timeout(EXPORT_TIMEOUT, exporter.export(batch)).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {}s", EXPORT_TIMEOUT.as_secs())),
            }
        }
    };
    dropped.inc_by(count);
    let now = tokio::time::Instant::now();
    if let Some(error) = error
        && warned.is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
    {
        *warned = Some(now);
        tracing::warn!(endpoint = %export.endpoint, spans = count, %error, "span export failed; spans dropped");
    }
}

fn otel_ids(trace_id: TraceId, span_id: super::SpanId) -> SpanContext {
    SpanContext::new(
        opentelemetry::TraceId::from_bytes(trace_id.0),
        opentelemetry::SpanId::from_bytes(span_id.0),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

/// A request's server span and its upstream tries' client spans, as the SDK exports them.
pub fn span_data(request: &RequestSpans, scope: &InstrumentationScope, out: &mut Vec<SpanData>) {
    let ids = request.context;
    let route = request.route.clone();
    let status = request.status;
    let server = SpanData {
        span_context: otel_ids(ids.trace_id, ids.span_id),
        parent_span_id: ids.parent.map_or(opentelemetry::SpanId::INVALID, |p| {
            opentelemetry::SpanId::from_bytes(p.0)
        }),
        parent_span_is_remote: ids.parent.is_some(),
        span_kind: SpanKind::Server,
        name: Cow::Owned(format!("{} {}", request.method, request.route)),
        start_time: request.start,
        end_time: request.end,
        attributes: {
            let mut attributes = vec![
                KeyValue::new("http.request.method", request.method.to_string()),
                KeyValue::new("url.path", request.path.clone()),
                KeyValue::new("http.route", route.clone()),
                KeyValue::new("http.response.status_code", i64::from(status)),
            ];
            if let Some(user) = &request.user {
                attributes.push(KeyValue::new("enduser.id", user.to_string()));
            }
            attributes
        },
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if status >= 500 {
            Status::error(format!("answered {status}"))
        } else {
            Status::Unset
        },
        instrumentation_scope: scope.clone(),
    };
    out.push(server);
    out.extend(request.clients.iter().map(|c| {
        let mut attributes = vec![
            KeyValue::new("http.request.method", c.method.to_string()),
            KeyValue::new("url.path", c.path.clone()),
            KeyValue::new("http.route", route.clone()),
            KeyValue::new("fanout.upstream", c.upstream.clone()),
            KeyValue::new("fanout.outcome", c.outcome),
        ];
        if let Some(backend) = &c.backend {
            attributes.push(KeyValue::new("fanout.backend", backend.clone()));
        }
        if let Some(status) = c.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        let what = c.backend.as_deref().unwrap_or(&c.upstream);
        SpanData {
            span_context: otel_ids(ids.trace_id, c.span_id),
            parent_span_id: opentelemetry::SpanId::from_bytes(ids.span_id.0),
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: Cow::Owned(format!("{} {what}", c.method)),
            start_time: c.start,
            end_time: c.end,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: if c.failed() {
                Status::error(c.outcome)
            } else {
                Status::Unset
            },
            instrumentation_scope: scope.clone(),
        }
    }));
}
