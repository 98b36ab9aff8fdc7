//! A TLS client connection: the handshake (bounded by `header_read_timeout`, as a request
//! head is), then hyper serves what the client chose by ALPN, HTTP/2 or HTTP/1.1.

use super::settings::ConnSettings;
use super::{ConnService, handoff};
use bytes::Bytes;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Serves one connection over TLS with `config`, the snapshot's at accept.
pub async fn serve<S: ConnService>(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    service: S,
    settings: Arc<ConnSettings>,
    shutdown: watch::Receiver<()>,
) {
    let handshake = TlsAcceptor::from(config).accept(stream);
    let stream = match tokio::time::timeout(settings.header_read_timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return;
        }
    };
    handoff::serve(stream, Bytes::new(), service, &settings, shutdown).await;
}
