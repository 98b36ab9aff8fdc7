//! What the gateway knows of the connection a request came on: the peer's address and,
//! on a TLS connection, the session's facts (the verified client certificate), read
//! once after the handshake and shared by every request of the connection. A plain
//! connection carries the address alone: no allocation, and `tls` is `None`.

use crate::tls::client_cert::ClientCert;
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;
use std::sync::Arc;

/// The client side of one connection, as every request on it sees it.
#[derive(Debug, Clone)]
pub struct ClientConnection {
    /// The peer's address (not a forwarded one).
    pub peer: SocketAddr,
    /// The TLS session; `None`: plain HTTP.
    pub tls: Option<Arc<TlsSession>>,
}

/// What a TLS handshake established that requests read.
#[derive(Debug, Default)]
pub struct TlsSession {
    /// The client certificate the handshake verified against `client_ca`; `None` when
    /// the client presented none (`client_auth = "optional"`, or no `client_ca`).
    pub client_cert: Option<ClientCert>,
}

impl ClientConnection {
    /// A plain HTTP connection from `peer`.
    pub fn plain(peer: SocketAddr) -> Self {
        Self { peer, tls: None }
    }

    /// A TLS connection from `peer`.
    pub fn tls(peer: SocketAddr, session: TlsSession) -> Self {
        Self {
            peer,
            tls: Some(Arc::new(session)),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The verified client certificate, when the connection has one.
    pub fn client_cert(&self) -> Option<&ClientCert> {
        self.tls.as_deref()?.client_cert.as_ref()
    }
}

impl From<SocketAddr> for ClientConnection {
    fn from(peer: SocketAddr) -> Self {
        Self::plain(peer)
    }
}

/// The header that tells an upstream the scheme the client used.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The `X-Forwarded-Proto` of a client connection: `https` over TLS, `http` otherwise.
pub fn forwarded_proto(https: bool) -> HeaderValue {
    HeaderValue::from_static(if https { "https" } else { "http" })
}
