//! The alternative to the own client, measured against it: hyper's own
//! `client::conn::http1` connection, one handshake per pooled connection, the connection
//! future driven on the caller's task (no spawned task), idle connections in a LIFO pool.

use super::{ExchangeError, Pool};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{Connection, SendRequest, handshake};
use hyper_util::rt::TokioIo;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::net::TcpStream;
use tokio::time::Instant;

type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One connection: the handle requests go through and the future that does its I/O.
pub struct Driven {
    sender: SendRequest<Full<Bytes>>,
    conn: Pin<Box<Conn>>,
    /// The connection future has completed: never poll it again.
    done: bool,
}

impl Driven {
    /// Drives the connection's I/O; `Ready` once it has ended.
    fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ExchangeError>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        let polled = self.conn.as_mut().poll(cx);
        if polled.is_ready() {
            self.done = true;
        }
        polled.map_err(failed)
    }
}

impl std::fmt::Debug for Driven {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Driven")
    }
}

/// The hyper-connection pool of one upstream (addresses and limits from `base`).
#[derive(Debug)]
pub struct HyperConnPool {
    pub base: Pool,
    idle: Mutex<Vec<(Driven, Instant)>>,
}

fn failed(e: impl std::fmt::Display) -> ExchangeError {
    ExchangeError::Failed(e.to_string())
}

impl HyperConnPool {
    pub fn new(base: Pool) -> Self {
        Self {
            base,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends one request and reads the whole answer of at most `limit` bytes.
    pub async fn send(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Option<&Bytes>,
        limit: u64,
    ) -> Result<(http::response::Parts, Bytes), ExchangeError> {
        let (mut driven, answer) = self.start(method, path, headers, body).await?;
        let (parts, mut body) = answer.into_parts();
        let mut whole = crate::http1::Collected::new(limit);
        loop {
            let frame = drive(&mut driven, body.frame()).await?;
            match frame {
                None => break,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        whole
                            .push(data)
                            .map_err(|_| ExchangeError::TooLarge(limit))?;
                    }
                }
                Some(Err(e)) => return Err(failed(e)),
            }
        }
        self.checkin(driven);
        Ok((parts, whole.finish()))
    }

    /// Sends one bodiless request; the answer's body streams, driving the connection.
    pub async fn open(
        self: &Arc<Self>,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response<DrivenBody>, ExchangeError> {
        let (driven, answer) = self.start(method, path, headers, None).await?;
        Ok(answer.map(|body| DrivenBody {
            body,
            driven: Some(driven),
            pool: self.clone(),
        }))
    }

    async fn start(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: Option<&Bytes>,
    ) -> Result<(Driven, Response<Incoming>), ExchangeError> {
        let mut headers = headers.clone();
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
        if !headers.contains_key(header::HOST) {
            headers.insert(header::HOST, self.base.host.clone());
        }
        loop {
            let (mut driven, pooled) = match self.checkout().await {
                Some(driven) => (driven, true),
                None => (self.connect().await?, false),
            };
            let mut request = Request::new(Full::new(body.cloned().unwrap_or_default()));
            *request.method_mut() = method.clone();
            *request.uri_mut() = path.parse().map_err(failed)?;
            *request.headers_mut() = headers.clone();
            let send = driven.sender.send_request(request);
            let sent = drive_send(&mut driven.conn, &mut driven.done, send).await;
            match sent {
                Ok(Ok(answer)) => return Ok((driven, answer)),
                Ok(Err(e)) if pooled && e.is_canceled() => continue,
                Ok(Err(e)) => return Err(failed(e)),
                Err(_) if pooled && super::is_idempotent(method) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn connect(&self) -> Result<Driven, ExchangeError> {
        let stream = match tokio::time::timeout(
            self.base.connect_timeout,
            TcpStream::connect(&self.base.addr),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(ExchangeError::Connect(e.to_string())),
            Err(_) => {
                let after = humantime::format_duration(self.base.connect_timeout);
                return Err(ExchangeError::Connect(format!(
                    "no connection within {after}"
                )));
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = handshake(TokioIo::new(stream)).await.map_err(failed)?;
        Ok(Driven {
            sender,
            conn: Box::pin(conn),
            done: false,
        })
    }

    /// The most recently used idle connection that is still open and ready.
    async fn checkout(&self) -> Option<Driven> {
        loop {
            let (mut driven, since) = self.idle.lock().expect("never poisoned").pop()?;
            if since.elapsed() >= self.base.idle_timeout {
                continue;
            }
            let ready = poll_fn(|cx| {
                if driven.poll_conn(cx).is_ready() {
                    return Poll::Ready(false);
                }
                driven.sender.poll_ready(cx).map(|r| r.is_ok())
            })
            .await;
            if ready {
                return Some(driven);
            }
        }
    }

    fn checkin(&self, mut driven: Driven) {
        // One turn of the connection so that it takes up the finished exchange.
        let mut cx = Context::from_waker(Waker::noop());
        if driven.poll_conn(&mut cx).is_ready() {
            return;
        }
        let mut idle = self.idle.lock().expect("never poisoned");
        if idle.len() < self.base.max_idle {
            idle.push((driven, Instant::now()));
        }
    }
}

/// Polls `work` while driving the connection; the connection ending first is an error.
async fn drive<F: Future>(driven: &mut Driven, work: F) -> Result<F::Output, ExchangeError> {
    drive_send(&mut driven.conn, &mut driven.done, work).await
}

async fn drive_send<F: Future>(
    conn: &mut Pin<Box<Conn>>,
    done: &mut bool,
    work: F,
) -> Result<F::Output, ExchangeError> {
    let mut work = std::pin::pin!(work);
    poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if !*done {
            match conn.as_mut().poll(cx) {
                Poll::Ready(Ok(())) => *done = true,
                Poll::Ready(Err(e)) => {
                    *done = true;
                    return Poll::Ready(Err(failed(e)));
                }
                Poll::Pending => return Poll::Pending,
            }
            if let Poll::Ready(out) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(out));
            }
        }
        Poll::Ready(Err(failed("connection closed before the whole answer")))
    })
    .await
}

/// A streamed answer body that drives its connection and returns it to the pool at the
/// end.
pub struct DrivenBody {
    body: Incoming,
    driven: Option<Driven>,
    pool: Arc<HyperConnPool>,
}

impl std::fmt::Debug for DrivenBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DrivenBody")
    }
}

impl Body for DrivenBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(driven) = this.driven.as_mut() {
            // The connection's I/O feeds the body; its end is seen through the body.
            let _ = driven.poll_conn(cx);
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame
            && let Some(driven) = this.driven.take()
        {
            this.pool.checkin(driven);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
