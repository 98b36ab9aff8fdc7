//! An OTLP trace receiver served by the test itself: what a collector is to the
//! gateway. It accepts `POST /v1/traces` in both OTLP/HTTP encodings (binary protobuf,
//! `application/x-protobuf`, and OTLP JSON, `application/json`: hex ids, camelCase
//! fields, 64-bit integers as strings), gzip-compressed or not, and OTLP/gRPC's
//! `TraceService/Export` (h2c) on the same port; decodes each export with the generated
//! OTLP types, and keeps the spans as plain structs a test can assert on: the span tree
//! (trace id, span id, parent), names, kinds, times, status, attributes (every value as
//! text) and the resource's `service.name`.
//!
//! An export the receiver cannot decode is answered 400 and recorded as a rejection;
//! [`OtlpReceiver::wait_for`] fails the test at once with the reason, so an exporter bug
//! reads as one, not as a timeout. [`OtlpReceiver::set_mode`] turns the receiver into a
//! collector that is down (503) or hung (reads the export, never answers), for tests of
//! what the gateway does when its collector fails.

use super::eventually_some;
use bytes::Bytes;
use fanout::trace::{SpanId, TraceId};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::codegen::Service as _;

/// The OTLP/gRPC export method's path.
const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// What a span was to its trace (OTLP's `SpanKind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

/// How a span ended (OTLP's `Status.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Unset,
    Ok,
    Error,
}

/// Something that happened during a span (a retry, a hedge), with its attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedEvent {
    pub name: String,
    pub time_unix_nano: u64,
    pub attributes: BTreeMap<String, String>,
}

/// One span as the receiver decoded it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span (OTLP sends an empty parent id).
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    pub kind: Kind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status: Status,
    pub status_message: String,
    /// Every attribute's value as text: strings as they are, ints and doubles in decimal,
    /// bools as `true`/`false`, arrays and maps as their JSON.
    pub attributes: BTreeMap<String, String>,
    pub events: Vec<ReceivedEvent>,
    /// The resource's `service.name`, if it had one.
    pub service_name: Option<String>,
    /// The instrumentation scope's name.
    pub scope: String,
}

impl ReceivedSpan {
    /// The attribute `key`'s value as text; `None` when the span lacks it.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// One export request as it arrived, whether it was accepted or not.
#[derive(Clone, Debug)]
pub struct ReceivedExport {
    /// `Content-Type`, without parameters: `application/x-protobuf`, `application/json`,
    /// or `application/grpc` for OTLP/gRPC.
    pub content_type: String,
    /// `Content-Encoding` (`grpc-encoding` for gRPC), if any (`gzip`).
    pub content_encoding: Option<String>,
    /// How many spans it held (0 when it was refused or undecodable).
    pub spans: usize,
}

/// How the receiver answers exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Decodes and stores the spans, answers 200 (gRPC: OK).
    Accept,
    /// Reads the export and answers 503 (gRPC: `UNAVAILABLE`) without storing it: a
    /// collector that is down behind a load balancer.
    Unavailable,
    /// Reads the export and never answers: a hung collector.
    Hang,
}

#[derive(Default)]
struct State {
    mode: Mutex<Option<Mode>>,
    spans: Mutex<Vec<ReceivedSpan>>,
    exports: Mutex<Vec<ReceivedExport>>,
    rejections: Mutex<Vec<String>>,
    /// Exports being answered now, and the most there ever were at once.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// Counts an export as in flight until dropped (answered, or its connection closed).
struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl State {
    fn mode(&self) -> Mode {
        self.mode.lock().unwrap().unwrap_or(Mode::Accept)
    }
}

/// The OTLP/gRPC side: tonic decodes the request, the spans land in the same state.
struct GrpcTraces {
    state: Arc<State>,
}

#[tonic::async_trait]
impl TraceService for GrpcTraces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _in_flight = InFlight::enter(&self.state);
        let mut export = ReceivedExport {
            content_type: "application/grpc".into(),
            content_encoding: request
                .metadata()
                .get("grpc-encoding")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            spans: 0,
        };
        let state = &self.state;
        match state.mode() {
            Mode::Accept => {}
            Mode::Unavailable => {
                state.exports.lock().unwrap().push(export);
                return Err(tonic::Status::unavailable("collector down"));
            }
            Mode::Hang => {
                state.exports.lock().unwrap().push(export);
                return std::future::pending().await;
            }
        }
        match spans_of(request.into_inner()) {
            Ok(spans) => {
                export.spans = spans.len();
                state.exports.lock().unwrap().push(export);
                state.spans.lock().unwrap().extend(spans);
                Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
            }
            Err(reason) => {
                state.exports.lock().unwrap().push(export);
                state.rejections.lock().unwrap().push(reason.clone());
                Err(tonic::Status::invalid_argument(reason))
            }
        }
    }
}

/// A running receiver on `127.0.0.1`. Stops accepting when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OtlpReceiver {
    /// Starts a receiver in [`Mode::Accept`] on a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        Self { addr, state, task }
    }

    /// The collector's base URL, `http://127.0.0.1:PORT`: what `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// holds, and the OTLP/gRPC endpoint. OTLP/HTTP exports go to [`Self::traces_url`].
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The traces URL, `http://127.0.0.1:PORT/v1/traces`: what an exporter given a
    /// signal-specific endpoint posts to.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint())
    }

    /// Changes how later exports are answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    /// Every span accepted so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.state.spans.lock().unwrap().clone()
    }

    /// Every export request so far, accepted or not.
    pub fn exports(&self) -> Vec<ReceivedExport> {
        self.state.exports.lock().unwrap().clone()
    }

    /// Why each export that could not be decoded was refused.
    /// The most exports that were being answered at once (a hung one counts until its
    /// client gives up): 1 for an exporter that sends one export at a time.
    pub fn peak_in_flight(&self) -> usize {
        self.state.peak_in_flight.load(Ordering::SeqCst)
    }

    pub fn rejections(&self) -> Vec<String> {
        self.state.rejections.lock().unwrap().clone()
    }

    /// Waits until at least `n` spans were accepted and returns them all; fails the test
    /// at once if an export was refused as undecodable.
    pub async fn wait_for(&self, n: usize) -> Vec<ReceivedSpan> {
        let what = format!("{n} spans at the OTLP receiver");
        eventually_some(&what, async || {
            let rejections = self.rejections();
            assert!(rejections.is_empty(), "exports refused: {rejections:?}");
            let spans = self.spans();
            (spans.len() >= n).then_some(spans)
        })
        .await
    }

    /// Waits until at least `n` export requests arrived, whatever they were answered.
    pub async fn wait_for_exports(&self, n: usize) -> Vec<ReceivedExport> {
        let what = format!("{n} export requests at the OTLP receiver");
        eventually_some(&what, async || {
            let exports = self.exports();
            (exports.len() >= n).then_some(exports)
        })
        .await
    }
}

/// The spans of `spans` whose parent is `parent`, in arrival order.
pub fn children_of(spans: &[ReceivedSpan], parent: SpanId) -> Vec<&ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == Some(parent))
        .collect()
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let grpc = TraceServiceServer::new(GrpcTraces {
        state: state.clone(),
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (state, grpc) = (state.clone(), grpc.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let (state, mut grpc) = (state.clone(), grpc.clone());
            async move {
                if request.uri().path() == GRPC_EXPORT {
                    return grpc.call(request).await;
                }
                let response = handle(state, request).await?;
                Ok(response.map(tonic::body::Body::new))
            }
        });
        tokio::spawn(async move {
            // HTTP/1.1 and h2c both: exporters use either.
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_str(content_type).unwrap(),
    );
    response
}

/// The OTLP JSON and protobuf encodings, told apart by `Content-Type`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let _in_flight = InFlight::enter(&state);
    let (parts, body) = request.into_parts();
    if parts.uri.path() != "/v1/traces" {
        return Ok(answer(
            StatusCode::NOT_FOUND,
            "text/plain",
            "only /v1/traces",
        ));
    }
    if parts.method != Method::POST {
        return Ok(answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "POST only",
        ));
    }
    let text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
    };
    let content_type = text(header::CONTENT_TYPE).unwrap_or_default();
    let content_encoding = text(header::CONTENT_ENCODING);
    let body = body.collect().await.map(|c| c.to_bytes());
    let mut export = ReceivedExport {
        content_type: content_type.clone(),
        content_encoding: content_encoding.clone(),
        spans: 0,
    };
    match state.mode() {
        Mode::Accept => {}
        Mode::Unavailable => {
            state.exports.lock().unwrap().push(export);
            return Ok(answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "collector down",
            ));
        }
        Mode::Hang => {
            state.exports.lock().unwrap().push(export);
            return Ok(std::future::pending().await);
        }
    }
    let decoded = body
        .map_err(|e| format!("reading the body: {e}"))
        .and_then(|body| decompress(content_encoding.as_deref(), body))
        .and_then(|body| {
            let encoding = match content_type.as_str() {
                "application/x-protobuf" => Encoding::Protobuf,
                "application/json" => Encoding::Json,
                other => return Err(format!("unsupported content type {other:?}")),
            };
            Ok((encoding, spans_of(decode(encoding, &body)?)?))
        });
    let (encoding, spans) = match decoded {
        Ok(decoded) => decoded,
        Err(reason) => {
            state.exports.lock().unwrap().push(export);
            state.rejections.lock().unwrap().push(reason.clone());
            return Ok(answer(StatusCode::BAD_REQUEST, "text/plain", reason));
        }
    };
    export.spans = spans.len();
    state.exports.lock().unwrap().push(export);
    state.spans.lock().unwrap().extend(spans);
    // A full success: no `partialSuccess`.
    let reply = ExportTraceServiceResponse::default();
    Ok(match encoding {
        Encoding::Protobuf => answer(
            StatusCode::OK,
            "application/x-protobuf",
            reply.encode_to_vec(),
        ),
        Encoding::Json => answer(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&reply).unwrap(),
        ),
    })
}

fn decompress(encoding: Option<&str>, body: Bytes) -> Result<Bytes, String> {
    match encoding {
        None | Some("identity") => Ok(body),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .map_err(|e| format!("gunzip: {e}"))?;
            Ok(out.into())
        }
        Some(other) => Err(format!("unsupported content encoding {other:?}")),
    }
}

/// Decodes one OTLP/HTTP export body.
fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)
            .map_err(|e| format!("protobuf ExportTraceServiceRequest: {e}")),
        Encoding::Json => serde_json::from_slice::<ExportTraceServiceRequest>(body)
            .map_err(|e| format!("JSON ExportTraceServiceRequest: {e}")),
    }
}

/// One export's spans as plain structs.
fn spans_of(request: ExportTraceServiceRequest) -> Result<Vec<ReceivedSpan>, String> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans.resource.unwrap_or_default();
        let service_name = attributes(&resource.attributes).remove("service.name");
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                out.push(plain(span, service_name.clone(), scope.clone())?);
            }
        }
    }
    Ok(out)
}

fn plain(span: Span, service_name: Option<String>, scope: String) -> Result<ReceivedSpan, String> {
    let name = span.name;
    let bad = |what: &str, bytes: &[u8]| format!("span {name:?}: invalid {what} {bytes:02x?}");
    let trace_id = <[u8; 16]>::try_from(&span.trace_id[..])
        .ok()
        .filter(|id| *id != [0; 16])
        .map(TraceId)
        .ok_or_else(|| bad("trace id", &span.trace_id))?;
    let span_id = <[u8; 8]>::try_from(&span.span_id[..])
        .ok()
        .filter(|id| *id != [0; 8])
        .map(SpanId)
        .ok_or_else(|| bad("span id", &span.span_id))?;
    let parent_span_id = match &span.parent_span_id[..] {
        [] => None,
        bytes => Some(
            <[u8; 8]>::try_from(bytes)
                .ok()
                .filter(|id| *id != [0; 8])
                .map(SpanId)
                .ok_or_else(|| bad("parent span id", bytes))?,
        ),
    };
    let kind = match span::SpanKind::try_from(span.kind) {
        Ok(span::SpanKind::Unspecified) => Kind::Unspecified,
        Ok(span::SpanKind::Internal) => Kind::Internal,
        Ok(span::SpanKind::Server) => Kind::Server,
        Ok(span::SpanKind::Client) => Kind::Client,
        Ok(span::SpanKind::Producer) => Kind::Producer,
        Ok(span::SpanKind::Consumer) => Kind::Consumer,
        Err(_) => return Err(format!("span {name:?}: unknown kind {}", span.kind)),
    };
    let span_status = span.status.unwrap_or_default();
    let status = match status::StatusCode::try_from(span_status.code) {
        Ok(status::StatusCode::Unset) => Status::Unset,
        Ok(status::StatusCode::Ok) => Status::Ok,
        Ok(status::StatusCode::Error) => Status::Error,
        Err(_) => {
            return Err(format!(
                "span {name:?}: unknown status code {}",
                span_status.code
            ));
        }
    };
    let events = span
        .events
        .iter()
        .map(|e| ReceivedEvent {
            name: e.name.clone(),
            time_unix_nano: e.time_unix_nano,
            attributes: attributes(&e.attributes),
        })
        .collect();
    Ok(ReceivedSpan {
        trace_id,
        span_id,
        parent_span_id,
        kind,
        start_unix_nano: span.start_time_unix_nano,
        end_unix_nano: span.end_time_unix_nano,
        status,
        status_message: span_status.message,
        attributes: attributes(&span.attributes),
        events,
        service_name,
        scope,
        name,
    })
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), value_text(kv.value.as_ref())))
        .collect()
}

fn value_text(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => format!("{b:02x?}"),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| value_text(Some(v))).collect();
            serde_json::to_string(&items).unwrap()
        }
        Some(Value::KvlistValue(kv)) => serde_json::to_string(&attributes(&kv.values)).unwrap(),
        // An index into a profile's string table: meaningless without one.
        Some(Value::StringValueStrindex(i)) => format!("strindex {i}"),
    }
}
