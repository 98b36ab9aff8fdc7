//! A TLS client connection: the handshake (bounded by `header_read_timeout`, as a request
//! head is), then what the handshake established is read once (the verified client
//! certificate, see `tls::client_cert`) and the connection is served as the client chose
//! by ALPN: HTTP/2 by hyper, HTTP/1.1 (or no ALPN) by the gateway's own connection
//! (`conn`), as on a plain socket.

use super::settings::ConnSettings;
use super::tls_socket::TlsSocket;
use super::{ConnService, conn, handoff};
use crate::connection::{ClientConnection, TlsSession};
use crate::tls::client_cert::ClientCert;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Serves one connection from `peer` over TLS with `config`, the snapshot's at accept;
/// `service` makes the connection's service once the handshake is done.
pub async fn serve<S: ConnService>(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<rustls::ServerConfig>,
    service: impl FnOnce(ClientConnection) -> S,
    settings: Arc<ConnSettings>,
    shutdown: watch::Receiver<()>,
) {
    let handshake = TlsAcceptor::from(config).accept(TlsSocket(stream));
    let accepted = match tokio::time::timeout(settings.header_read_timeout, handshake).await {
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
    // Read in a block, and the stream moved out of it: a local that was ever borrowed
    // keeps its place in the task's future after it is moved on, and the stream is
    // 1.2 KB.
    let (stream, service, h2) = {
        let stream = accepted;
        let Some(session) = session(stream.get_ref().1) else {
            return;
        };
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        (stream, service(ClientConnection::tls(peer, session)), h2)
    };
    if h2 {
        // Boxed: hyper's connection is larger than the rest of this future, which every
        // TLS connection's task carries, also while idle.
        Box::pin(handoff::serve(
            stream,
            Bytes::new(),
            service,
            &settings,
            shutdown,
        ))
        .await;
    } else {
        conn::serve(stream, service, settings, shutdown).await;
    }
}

/// What requests read of the session; `None` when a verified client certificate cannot
/// be read (the connection is closed: its requests would go on without the identity
/// the certificate proves).
fn session(connection: &rustls::ServerConnection) -> Option<TlsSession> {
    let Some(end) = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
    else {
        return Some(TlsSession::default());
    };
    match ClientCert::parse(end) {
        Ok(cert) => Some(TlsSession {
            client_cert: Some(cert),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "a verified client certificate cannot be read; closing the connection");
            None
        }
    }
}
