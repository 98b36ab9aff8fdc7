//! The gateway's own HTTP/1.1 client connection, over a plain socket or TLS
//! ([`ClientStream`]). It serves the common request (no body or a small one read whole,
//! no upgrade) on the connection's task with no channel or dispatcher in between, holds
//! no buffer of its own while idle, and hands anything else to hyper (`handoff`).

use super::read_buffers::{self, READ_SIZE};
use super::settings::{ConnSettings, refusal};
use super::tls_socket::TlsSocket;
use super::{ConnService, SendTimeout, handoff};
use crate::body::ClientBody;
use crate::http1::server::{ResponseStream, write_response};
use crate::http1::{MAX_HEAD, ParsedRequest, Refusal, parse_request_head};
use bytes::BytesMut;
use http::Method;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

/// The byte stream of a client connection: a plain socket, read by waiting for
/// readiness and then reading once without a waker (no buffer is held while waiting),
/// or TLS over one, read the same way through its record layer.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether written bytes can wait inside the stream (TLS records not yet on the
    /// socket) until it is flushed.
    const BUFFERS_WRITES: bool;

    /// Resolves once a read may find bytes (or the end): then [`fill`] reads them, or
    /// finds none after all and the connection waits again.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl ClientStream for TcpStream {
    const BUFFERS_WRITES: bool = false;

    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }
}

impl ClientStream for TlsStream<TlsSocket> {
    const BUFFERS_WRITES: bool = true;

    /// Plaintext already decrypted (a request that came with the handshake's last
    /// flight, or a pipelined one), or the client's `close_notify`, is there at once;
    /// otherwise the socket's readiness. A part of a record makes the socket readable
    /// and the read find nothing: the connection waits again, as on a plain socket.
    async fn readable(&self) -> io::Result<()> {
        let (socket, session) = self.get_ref();
        if !session.wants_read() {
            return Ok(());
        }
        socket.0.readable().await
    }
}

impl<IO: ClientStream> ResponseStream for SendTimeout<&mut IO> {
    const BUFFERS_WRITES: bool = IO::BUFFERS_WRITES;
}

/// Serves one client connection until the client closes it, a timeout passes, or
/// `shutdown` changes (after the request in flight is answered).
///
/// An `async` block rather than an `async fn`: an `async fn`'s future keeps its
/// arguments twice (as received, and moved into its body), which for a TLS stream is
/// 1.2 KB more in every connection's task.
#[allow(clippy::manual_async_fn)] // the reason above
pub fn serve<S: ConnService, IO: ClientStream>(
    mut stream: IO,
    mut service: S,
    settings: Arc<ConnSettings>,
    mut shutdown: watch::Receiver<()>,
) -> impl Future<Output = ()> {
    async move {
        let mut buf = BytesMut::new();
        let mut deadline = Instant::now() + settings.header_read_timeout;
        // One timer for the connection's life, moved only when it fires before `deadline`
        // or must fire sooner: re-arming it for every request costs more than the request's
        // parsing.
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        let mut served = false;
        loop {
            let (mut request, keep_alive, body_len) = loop {
                if !buf.is_empty() {
                    match parse_request_head(&mut buf) {
                        ParsedRequest::Request {
                            request,
                            keep_alive,
                            body_len,
                        } => break (request, keep_alive, body_len),
                        ParsedRequest::Partial => {}
                        // Boxed, as the hand-off: few connections take it.
                        ParsedRequest::Refused(why) => {
                            return Box::pin(refuse(stream, why, &settings)).await;
                        }
                        ParsedRequest::HandOff => {
                            let read = buf.freeze();
                            // Boxed: hyper's connection is larger than all of this
                            // future, and every connection would carry it.
                            return Box::pin(handoff::serve(
                                stream, read, service, &settings, shutdown,
                            ))
                            .await;
                        }
                    }
                }
                let idle = buf.is_empty();
                if timer.deadline() > deadline {
                    timer.as_mut().reset(deadline);
                }
                tokio::select! {
                    biased;
                    ready = stream.readable() => if ready.is_err() { return },
                    // Between requests a shutdown closes the connection; within a head it
                    // waits for the request, to answer it.
                    _ = shutdown.changed(), if idle => return,
                    () = &mut timer => {
                        if Instant::now() >= deadline {
                            return;
                        }
                        timer.as_mut().reset(deadline);
                        continue;
                    }
                }
                if buf.capacity() == 0 {
                    buf = read_buffers::take();
                }
                buf.reserve(READ_SIZE);
                match fill(&mut stream, &mut buf) {
                    Poll::Ready(Ok(0) | Err(_)) => return,
                    Poll::Ready(Ok(_)) if idle && served => {
                        deadline = Instant::now() + settings.header_read_timeout;
                    }
                    Poll::Ready(Ok(_)) => {}
                    // Woken without bytes after all: an idle connection keeps no buffer.
                    Poll::Pending if idle => read_buffers::give_back(&mut buf),
                    Poll::Pending => {}
                }
            };

            if body_len > 0 {
                // A small body is read whole before the request is routed, within the time
                // its head had: a client that stops sending it loses the connection.
                if !read_body(&mut stream, &mut buf, body_len, deadline).await {
                    return;
                }
                *request.body_mut() = ClientBody::Whole(buf.split_to(body_len).freeze());
            }
            let head_only = request.method() == Method::HEAD;
            let Ok(ready) = service.ready().await;
            let mut call = pin!(ready.call(request));
            let mut watching = true;
            let response = loop {
                tokio::select! {
                    biased;
                    response = call.as_mut() => break response,
                    ready = stream.readable(), if watching => {
                        if ready.is_err() {
                            return;
                        }
                        buf.reserve(READ_SIZE);
                        match fill(&mut stream, &mut buf) {
                            // The client is gone: dropping the call cancels its upstream calls.
                            Poll::Ready(Ok(0) | Err(_)) => return,
                            // A pipelined request, answered after this one.
                            Poll::Ready(Ok(_)) => watching = buf.len() <= MAX_HEAD,
                            Poll::Pending => {}
                        }
                    }
                }
            };
            let Ok(response) = response;
            let close = !keep_alive || !matches!(shutdown.has_changed(), Ok(false));
            let mut bounded = SendTimeout::new(&mut stream, settings.send_timeout);
            let written = write_response(&mut bounded, response, head_only, close);
            match written.await {
                Ok(true) => {}
                Ok(false) => {
                    // Our FIN follows the answer; the client reads it whole, then the end.
                    let _ = stream.shutdown().await;
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "writing a response failed");
                    return;
                }
            }
            served = true;
            deadline = Instant::now() + settings.keepalive_timeout;
            if buf.is_empty() {
                // The read buffer goes back to the worker's spares: an idle connection
                // holds none.
                read_buffers::give_back(&mut buf);
            }
        }
    }
}

/// Answers a refused request and closes the connection as nginx's lingering close does:
/// the answer and our FIN first, then what the client still sends (the rest of its body)
/// is read and dropped until it closes, for at most `header_read_timeout`, so that
/// closing with unread bytes does not reset the connection before the client has read
/// the answer.
async fn refuse<IO: ClientStream>(mut stream: IO, why: Refusal, settings: &ConnSettings) {
    let answer = refusal(why);
    let mut bounded = SendTimeout::new(&mut stream, settings.send_timeout);
    if write_response(&mut bounded, answer, false, true)
        .await
        .is_err()
    {
        return;
    }
    let _ = stream.shutdown().await;
    let drain = async {
        let mut sink = vec![0u8; 64 * 1024];
        while let Ok(1..) = stream.read(&mut sink).await {}
    };
    let _ = tokio::time::timeout(settings.header_read_timeout, drain).await;
}

/// Reads until `buf` holds `len` bytes; false when the client closed, or `deadline`
/// passed first. The usual body came with its head, and this reads nothing.
async fn read_body(
    stream: &mut impl ClientStream,
    buf: &mut BytesMut,
    len: usize,
    deadline: Instant,
) -> bool {
    while buf.len() < len {
        buf.reserve(len - buf.len());
        let ready = tokio::time::timeout_at(deadline, stream.readable()).await;
        if !matches!(ready, Ok(Ok(()))) {
            return false;
        }
        if let Poll::Ready(Ok(0) | Err(_)) = fill(stream, buf) {
            return false;
        }
    }
    true
}

/// One read into `buf` if the socket has bytes now. A short read tells tokio the socket
/// is drained, so the next `readable()` waits for the kernel instead of trying a read.
fn fill(stream: &mut impl ClientStream, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    let mut cx = Context::from_waker(Waker::noop());
    tokio_util::io::poll_read_buf(Pin::new(stream), &mut cx, buf)
}
