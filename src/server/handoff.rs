//! Handing a connection to hyper: the bytes already read are replayed in front of the
//! socket, and hyper serves the connection from there to its end (request bodies,
//! upgrades, h2c, malformed requests), watched for graceful shutdown. Requests hyper
//! parses itself are refused as the own connection would refuse them (no or two `Host`).
//! An upgrade request carries the drain with it, so that the tunnel it may become holds
//! graceful shutdown as the connection did.

use super::ConnService;
use super::send_timeout::SendTimeout;
use super::send_watch::{SendWatch, Watched};
use super::settings::{ConnSettings, refusal};
use super::stream_tasks::WithStreams;
use crate::body::{Body, ClientBody};
use crate::http1::Refusal;
use crate::proxy::Drain;
use bytes::{Buf, Bytes};
use futures_util::future::{Either, Ready, ready};
use http::header::HOST;
use http::{Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tower::Service;

/// Serves the rest of the connection with hyper. `read`: bytes taken from the socket
/// that hyper has to see first.
pub async fn serve<S: ConnService, IO>(
    stream: IO,
    read: Bytes,
    service: S,
    settings: &ConnSettings,
    mut shutdown: watch::Receiver<()>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let send_watch = Arc::new(SendWatch::new(settings.send_timeout));
    let service = Checked {
        service,
        send_watch: send_watch.clone(),
        drain: Drain {
            shutdown: shutdown.clone(),
            grace: settings.shutdown_grace,
        },
    };
    let stream = SendTimeout::new(stream, settings.send_timeout);
    let io = TokioIo::new(Replayed { read, stream });
    let connection = settings
        .hyper
        .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
        .into_owned();
    let mut connection = std::pin::pin!(WithStreams::new(connection));
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().connection().graceful_shutdown();
            connection.await
        }
        () = send_watch.overdue() => {
            // An HTTP/2 answer's client granted no window for send_timeout: dropping the
            // connection is the one way to end its stream.
            tracing::debug!("closing an HTTP/2 connection whose client took no bytes");
            return;
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// The connection's service behind the `Host` rules of RFC 9112 §3.2, which hyper does
/// not apply: an HTTP/1.1 request has exactly one, an HTTP/1.0 request at most one
/// (HTTP/2 carries `:authority`). The own connection's other refusal, a request with
/// both `Content-Length` and `Transfer-Encoding`, cannot be seen here: hyper drops the
/// length before the service sees the request, reads the body by its chunks and closes
/// the connection after the answer. On HTTP/2 the answer's body is watched for a reader
/// that stops taking it.
#[derive(Clone)]
struct Checked<S> {
    service: S,
    /// The connection's HTTP/2 answers, watched for a reader that stops taking them.
    send_watch: Arc<SendWatch>,
    /// Put on upgrade requests, for the tunnel they may become.
    drain: Drain,
}

impl<S: ConnService> Service<Request<Incoming>> for Checked<S> {
    type Response = Response<Watched>;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response<Watched>, Infallible>>, Watching<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Incoming>) -> Self::Future {
        if let Some(why) = host_refusal(&request) {
            return Either::Left(ready(Ok(refusal(why).map(Watched::unwatched))));
        }
        // hyper puts an upgrade handle on requests that ask for one, and only on them.
        if request.extensions().get::<OnUpgrade>().is_some() {
            request.extensions_mut().insert(self.drain.clone());
        }
        let watch = (request.version() == Version::HTTP_2).then(|| self.send_watch.clone());
        Either::Right(Watching {
            answer: self.service.call(request.map(ClientBody::Streamed)),
            watch,
        })
    }
}

pin_project! {
    /// An answer whose body, with `watch`, is watched by the connection's [`SendWatch`].
    struct Watching<F> {
        #[pin]
        answer: F,
        watch: Option<Arc<SendWatch>>,
    }
}

impl<F: Future<Output = Result<Response<Body>, Infallible>>> Future for Watching<F> {
    type Output = Result<Response<Watched>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = ready!(this.answer.poll(cx));
        Poll::Ready(Ok(match this.watch.take() {
            Some(watch) if !response.body().is_end_stream() => {
                response.map(|body| watch.watch(body))
            }
            _ => response.map(Watched::unwatched),
        }))
    }
}

fn host_refusal<B>(request: &Request<B>) -> Option<Refusal> {
    let hosts = || request.headers().get_all(HOST).iter().count();
    match request.version() {
        Version::HTTP_11 if hosts() == 0 => Some(Refusal::NoHost),
        Version::HTTP_11 | Version::HTTP_10 if hosts() > 1 => Some(Refusal::TwoHosts),
        _ => None,
    }
}

/// A socket with bytes already read from it put back in front, and its writes bounded by
/// the send timeout.
struct Replayed<IO> {
    read: Bytes,
    stream: SendTimeout<IO>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Replayed<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.has_remaining() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Replayed<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
