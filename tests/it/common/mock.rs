//! The mock upstream: routes of [`Reply`]s served by hyper on `127.0.0.1:0`, recording
//! each request, counting hits, requests in flight and streams cancelled.

use super::reply::{Behaviour, Reply, fill_template};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// Path and query exactly as they arrived (still percent-encoded).
    pub target: String,
    pub headers: HeaderMap,
    /// Empty for sinks, which never hold a body.
    pub body: Bytes,
    /// When the request's head arrived.
    pub arrived: Instant,
}

#[derive(Default)]
struct MockState {
    routes: Mutex<Vec<(String, Reply)>>,
    hits: Mutex<HashMap<String, usize>>,
    requests: Mutex<Vec<Recorded>>,
    /// Streams whose reader went away before the end, and hanging answers whose
    /// caller closed the connection.
    cancelled: AtomicUsize,
    /// Bytes sinks have read so far.
    sunk: AtomicU64,
    /// Requests between arrival and their answer's headers.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
}

/// Counts a request in flight until its answer's headers are ready.
struct InFlight(Arc<MockState>);

impl InFlight {
    fn enter(state: &Arc<MockState>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Builds a mock upstream: `MockUpstream::builder().route("/users/1", Reply::json(..))`.
#[derive(Default)]
pub struct MockBuilder {
    routes: Vec<(String, Reply)>,
}

impl MockBuilder {
    /// Answers requests whose path is exactly `path` (`*` matches every path).
    pub fn route(mut self, path: &str, reply: Reply) -> Self {
        self.routes.push((path.into(), reply));
        self
    }

    pub async fn start(self) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(MockState {
            routes: Mutex::new(self.routes),
            ..Default::default()
        });
        let task = tokio::spawn(accept_loop(listener, state.clone()));
        MockUpstream { addr, state, task }
    }
}

/// A running mock upstream. Stops when dropped.
pub struct MockUpstream {
    pub addr: SocketAddr,
    state: Arc<MockState>,
    task: JoinHandle<()>,
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MockUpstream {
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received for `path` (query ignored).
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().unwrap().values().sum()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Changes what `path` answers from now on.
    pub fn set_reply(&self, path: &str, reply: Reply) {
        let mut routes = self.state.routes.lock().unwrap();
        routes.retain(|(p, _)| p != path);
        routes.insert(0, (path.into(), reply));
    }

    /// Response streams abandoned by their reader before the end, and hanging answers
    /// (`Reply::hang`) whose caller closed the connection.
    pub fn cancelled(&self) -> usize {
        self.state.cancelled.load(Ordering::SeqCst)
    }

    /// Bytes read by sinks so far.
    pub fn sunk(&self) -> u64 {
        self.state.sunk.load(Ordering::SeqCst)
    }

    /// The most requests this upstream has had in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.state.peak_in_flight.load(Ordering::SeqCst)
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<MockState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let service = hyper::service::service_fn(move |r| handle(state.clone(), r));
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn whole(bytes: Bytes) -> MockBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Counts a stream as cancelled if it is dropped before its end.
struct EndGuard {
    state: Arc<MockState>,
    finished: bool,
}

impl EndGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.state.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn handle(
    state: Arc<MockState>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, std::io::Error> {
    let arrived = Instant::now();
    let _in_flight = InFlight::enter(&state);
    let (parts, mut body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let nth = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let reply = {
        let routes = state.routes.lock().unwrap();
        routes
            .iter()
            .find(|(p, _)| *p == path)
            .or_else(|| routes.iter().find(|(p, _)| p == "*"))
            .map(|(_, r)| r.clone())
    };
    let reply = match reply {
        Some(Reply {
            behaviour: Behaviour::Sequence(replies),
            ..
        }) => Some(replies[(nth - 1) % replies.len()].clone()),
        other => other,
    };
    let sink = matches!(
        reply,
        Some(Reply {
            behaviour: Behaviour::Sink,
            ..
        })
    );
    let received = if sink {
        // Streamed: counted, never held.
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(std::io::Error::other)?;
            if let Some(data) = frame.data_ref() {
                n += data.len() as u64;
                state.sunk.fetch_add(data.len() as u64, Ordering::SeqCst);
            }
        }
        Bytes::from(format!(r#"{{"received":{n}}}"#))
    } else {
        body.collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default()
    };
    state.requests.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body: if sink { Bytes::new() } else { received.clone() },
        arrived,
    });
    let Some(reply) = reply else {
        let mut r = Response::new(whole(Bytes::from_static(br#"{"error":"no mock route"}"#)));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    };
    tokio::time::sleep(reply.latency).await;
    if let Some(gate) = &reply.gate {
        gate.pass().await;
    }
    let reply = if reply.templated {
        Reply {
            body: Bytes::from(fill_template(
                std::str::from_utf8(&reply.body).unwrap(),
                &parts.headers,
            )),
            headers: reply
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), fill_template(v, &parts.headers)))
                .collect(),
            ..reply
        }
    } else {
        reply
    };
    let out = match reply.behaviour {
        Behaviour::Sequence(_) => unreachable!("a sequence was resolved to one of its replies"),
        Behaviour::Hang => {
            // Dropped only when the caller goes away: counted as cancelled.
            let _guard = EndGuard {
                state: state.clone(),
                finished: false,
            };
            std::future::pending::<MockBody>().await
        }
        Behaviour::Reset => return Err(std::io::Error::other("mock reset")),
        Behaviour::Echo | Behaviour::Sink => whole(received),
        Behaviour::Answer => whole(reply.body.clone()),
        Behaviour::Source(total) => {
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let guard = EndGuard {
                state: state.clone(),
                finished: false,
            };
            let stream = futures_util::stream::unfold((total, guard), move |(left, mut guard)| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        guard.finish();
                        return None;
                    }
                    let n = left.min(chunk.len() as u64);
                    let frame = Frame::data(chunk.slice(..n as usize));
                    Some((Ok::<_, std::io::Error>(frame), (left - n, guard)))
                }
            });
            StreamBody::new(stream).boxed()
        }
        Behaviour::Events { count, every, text } => {
            let guard = EndGuard {
                state: state.clone(),
                finished: false,
            };
            let stream =
                futures_util::stream::unfold((0usize, guard), move |(i, mut guard)| async move {
                    if i == count {
                        guard.finish();
                        return None;
                    }
                    if i > 0 {
                        tokio::time::sleep(every).await;
                    }
                    let frame = Frame::data(Bytes::from(format!("{text}{i}\n")));
                    Some((Ok::<_, std::io::Error>(frame), (i + 1, guard)))
                });
            StreamBody::new(stream).boxed()
        }
    };
    let mut response = Response::new(out);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    for (k, v) in &reply.headers {
        response.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    Ok(response)
}
