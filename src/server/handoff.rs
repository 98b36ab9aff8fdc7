//! Handing a connection to hyper: the bytes already read are replayed in front of the
//! socket, and hyper serves the connection from there to its end (request bodies,
//! upgrades, h2c, malformed requests), watched for graceful shutdown. An upgrade request
//! carries the drain with it, so that the tunnel it may become holds graceful shutdown
//! as the connection did.

use super::ConnService;
use super::conn::ConnSettings;
use crate::body::ClientBody;
use crate::proxy::Drain;
use bytes::{Buf, Bytes};
use http::Request;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves the rest of the connection with hyper. `read`: bytes taken from the socket
/// that hyper has to see first.
pub async fn serve<S: ConnService>(
    stream: TcpStream,
    read: Bytes,
    service: S,
    settings: &ConnSettings,
    mut shutdown: watch::Receiver<()>,
) {
    let drain = Drain {
        shutdown: shutdown.clone(),
        grace: settings.shutdown_grace,
    };
    let service = service.map_request(move |mut request: Request<Incoming>| {
        // hyper puts an upgrade handle on requests that ask for one, and only on them.
        if request.extensions().get::<OnUpgrade>().is_some() {
            request.extensions_mut().insert(drain.clone());
        }
        request.map(ClientBody::Streamed)
    });
    let io = TokioIo::new(Replayed { read, stream });
    let connection = settings
        .hyper
        .serve_connection_with_upgrades(io, TowerToHyperService::new(service))
        .into_owned();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection closed with an error");
    }
}

/// A socket with bytes already read from it put back in front.
struct Replayed {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Replayed {
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

impl AsyncWrite for Replayed {
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
