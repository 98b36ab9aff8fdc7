//! The TLS keys of `gateway.toml` as written: `[server.tls]` (the gateway's own
//! certificates, mutual TLS) and an upstream's `tls` (how the gateway checks and proves
//! itself to an upstream). Files are read and checked in `validate::tls`.

use serde::{Deserialize, Serialize};

/// `[server.tls]`: the main listener speaks TLS (HTTP/2 and HTTP/1.1 by ALPN).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerTlsConfig {
    /// PEM file of the certificate, its intermediates after it. With `key`; leave both
    /// out when `[[server.tls.certs]]` lists the certificates.
    pub cert: Option<String>,
    /// PEM file of `cert`'s private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
    /// Several certificates, chosen by the name the client asks for (SNI); the first is
    /// the default for a client that names none or a name no certificate has.
    pub certs: Vec<TlsCertConfig>,
    /// The oldest TLS version accepted: `"1.2"` or `"1.3"`.
    pub min_version: String,
    /// PEM file of the CAs whose client certificates are accepted: mutual TLS.
    pub client_ca: Option<String>,
    /// With `client_ca`: `"required"` (a handshake without a valid client certificate
    /// fails) or `"optional"` (a client may present none; one it presents must be valid).
    /// Default with `client_ca`: `"required"`; without `client_ca` it is an error.
    pub client_auth: Option<String>,
}

impl Default for ServerTlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            certs: Vec::new(),
            min_version: "1.2".into(),
            client_ca: None,
            client_auth: None,
        }
    }
}

/// `[[server.tls.certs]]`: one certificate of several, picked by SNI.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsCertConfig {
    /// PEM file of the certificate, its intermediates after it.
    pub cert: String,
    /// PEM file of its private key.
    pub key: String,
    /// Server names (SNI) this certificate answers, `*.example.com` allowed; default:
    /// the DNS names the certificate itself holds.
    pub names: Vec<String>,
}

/// An upstream's `tls = { ... }`: how its certificate is checked and what the gateway
/// presents to it. Without it an `https://` upstream is checked against the platform's
/// roots.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTlsConfig {
    /// PEM file of the CAs trusted for this upstream, in place of the platform's roots.
    pub ca: Option<String>,
    /// PEM file of the client certificate presented to the upstream (mutual TLS); with `key`.
    pub cert: Option<String>,
    /// PEM file of `cert`'s private key.
    pub key: Option<String>,
    /// The name sent as SNI and checked against the upstream's certificate; default: the
    /// URL's host.
    pub server_name: Option<String>,
    /// Accept any certificate the upstream presents. For tests only: a warning is logged
    /// at every load.
    pub insecure_skip_verify: bool,
}

/// `[server.tls]` checked: every file read, every key matched to its certificate.
#[derive(Debug, Clone)]
pub struct ServerTlsSpec {
    /// The certificates, the default first.
    pub certs: Vec<ServerCert>,
    pub min_version: TlsVersion,
    /// `client_ca` and `client_auth`; `None`: no client certificate is asked for.
    pub client_auth: Option<ClientAuthSpec>,
}

/// One certificate the listener presents.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// Where it is configured (`server.tls`, `server.tls.certs[1]`): names it in errors,
    /// logs and the `fanout_tls_cert_expiry_seconds{name}` metric.
    pub place: String,
    /// The server names (SNI) it answers, lowercase; `*.` prefixes allowed. Empty only
    /// for the default certificate when it holds no DNS name.
    pub names: Vec<String>,
    /// The chain and the signing key, as rustls uses them.
    pub key: std::sync::Arc<rustls::sign::CertifiedKey>,
    /// The end certificate's `notAfter`, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The end certificate's serial number, colon-separated hex: says which
    /// certificate a reload swapped in.
    pub serial: String,
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
}

/// The oldest TLS version a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Mutual TLS: the CAs client certificates must chain to.
#[derive(Debug, Clone)]
pub struct ClientAuthSpec {
    /// The CA certificates of `client_ca`.
    pub roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// `client_auth = "required"`.
    pub required: bool,
    pub ca_path: std::path::PathBuf,
}

impl PartialEq for ServerTlsSpec {
    fn eq(&self, other: &Self) -> bool {
        self.min_version == other.min_version
            && self.client_auth == other.client_auth
            && self.certs.len() == other.certs.len()
            && self.certs.iter().zip(&other.certs).all(|(a, b)| a == b)
    }
}

impl PartialEq for ServerCert {
    fn eq(&self, other: &Self) -> bool {
        self.place == other.place
            && self.names == other.names
            && self.key.cert == other.key.cert
            && self.cert_path == other.cert_path
            && self.key_path == other.key_path
    }
}

impl PartialEq for ClientAuthSpec {
    fn eq(&self, other: &Self) -> bool {
        self.roots == other.roots && self.required == other.required
    }
}

/// An upstream's `tls` checked, its files read.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTlsSpec {
    /// The CAs of `ca`; `None`: the platform's verifier.
    pub roots: Option<Vec<rustls::pki_types::CertificateDer<'static>>>,
    /// The client certificate chain and its key (PKCS#8 DER), for mutual TLS.
    pub client_cert: Option<(Vec<rustls::pki_types::CertificateDer<'static>>, Vec<u8>)>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}
