//! TLS at the edge: the rustls server config the main listener's handshakes use, built
//! from `[server.tls]` (already read and checked by `config::validate`) with every
//! reload, so a new certificate serves the next handshake and connections already open
//! keep theirs; a reload that leaves `[server.tls]` as it was keeps the sessions clients
//! resume. ALPN offers `h2` before `http/1.1`.
//!
//! A certificate is chosen by the name the client sends (SNI): an exact name first, then
//! a `*.` wildcard covering exactly one label (`*.example.com` answers `a.example.com`,
//! not `a.b.example.com`, as browsers match), then the first certificate listed, which
//! also answers a client that sends no name.

pub mod client_cert;

use crate::config::{ServerCert, ServerTlsSpec, TlsVersion};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Makes ring the process's default crypto provider, if none is yet. fanout's own TLS
/// configs name ring themselves; this is for the clients built inside dependencies
/// (reqwest under opentelemetry-otlp's HTTP exporter), which panic without a default:
/// reqwest is built with `rustls-no-provider`, so that it brings no second provider.
pub fn install_default_provider() {
    // An error means one is installed already: the first one stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a server config could not be built from a checked spec.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("server.tls.client_ca: cannot verify client certificates with it: {0}")]
    ClientCa(#[from] rustls::server::VerifierBuilderError),
}

/// The handshake settings of `spec`. `previous`: the settings a reload replaces, with
/// their spec. When the spec is unchanged (a reload of routes, upstreams, limits), the
/// new settings keep the old ones' session store and ticketer, so a client resumes its
/// session across the reload instead of paying a full handshake; when anything in
/// `[server.tls]` changed (a certificate, the client CA, `client_auth`, `min_version`),
/// they start afresh, so no session resumes past a policy or a certificate the listener
/// no longer has.
pub fn server_config(
    spec: &ServerTlsSpec,
    previous: Option<(&ServerTlsSpec, &rustls::ServerConfig)>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match spec.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?;
    let builder = match &spec.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let mut roots = rustls::RootCertStore::empty();
            for root in &auth.roots {
                roots.add(root.clone())?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth.required {
                verifier.build()?
            } else {
                verifier.allow_unauthenticated().build()?
            };
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(CertBySni::new(&spec.certs)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if let Some((before, settings)) = previous
        && before == spec
    {
        config.session_storage = settings.session_storage.clone();
        config.ticketer = settings.ticketer.clone();
    }
    Ok(Arc::new(config))
}

/// The `fanout_tls_cert_expiry_seconds` series of a snapshot: each certificate's first
/// server name (its place when it has none) and its `notAfter`.
pub fn expiry_series(spec: Option<&ServerTlsSpec>) -> Vec<(String, i64)> {
    spec.map_or_else(Vec::new, |spec| {
        spec.certs
            .iter()
            .map(|c| {
                let name = c.names.first().unwrap_or(&c.place).clone();
                (name, c.not_after)
            })
            .collect()
    })
}

/// Picks the certificate for a handshake by the server name the client sent.
#[derive(Debug)]
pub struct CertBySni {
    /// Exact names.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com`, keyed by `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertBySni {
    /// The resolver of `certs`, the first the default. Validation made every name
    /// lowercase and unique across certificates, and `certs` non-empty.
    pub fn new(certs: &[ServerCert]) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certs {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.insert(parent.to_string(), cert.key.clone()),
                    None => exact.insert(name.clone(), cert.key.clone()),
                };
            }
        }
        Self {
            exact,
            wildcard,
            default: certs[0].key.clone(),
        }
    }

    /// The certificate for `server_name` (`None`: the client sent no name).
    pub fn choose(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(cert) = self.exact.get(&name) {
            return cert;
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for CertBySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.choose(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(place: &str, names: &[&str]) -> ServerCert {
        let key = rcgen::KeyPair::generate().unwrap();
        let issued = rcgen::CertificateParams::new(vec!["x.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        ServerCert {
            place: place.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            key: Arc::new(CertifiedKey::new(vec![issued.der().clone()], signing)),
            not_after: 0,
            serial: String::new(),
            cert_path: Default::default(),
            key_path: Default::default(),
        }
    }

    #[test]
    fn exact_names_win_over_wildcards_which_cover_one_label() {
        let certs = [
            cert("default", &["default.test"]),
            cert("wild", &["*.example.com"]),
            cert("exact", &["api.example.com"]),
        ];
        let sni = CertBySni::new(&certs);
        let which = |name: Option<&str>| {
            let chosen = sni.choose(name);
            certs
                .iter()
                .find(|c| Arc::ptr_eq(&c.key, chosen))
                .unwrap()
                .place
                .clone()
        };
        assert_eq!(which(Some("api.example.com")), "exact");
        assert_eq!(which(Some("API.Example.com.")), "exact");
        assert_eq!(which(Some("www.example.com")), "wild");
        assert_eq!(which(Some("a.b.example.com")), "default");
        assert_eq!(which(Some("example.com")), "default");
        assert_eq!(which(Some("unknown.test")), "default");
        assert_eq!(which(None), "default");
    }
}
