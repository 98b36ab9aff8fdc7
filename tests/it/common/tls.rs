//! TLS test support: a CA made by rcgen that issues server and client certificates
//! with a chosen validity, their PEM files written to a scratch directory, and a TLS
//! client (tokio-rustls, ring) that connects with a chosen SNI, roots and client
//! certificate, tells which certificate the server presented and which protocol ALPN
//! chose, and sends a tiny HTTP/1.1 GET over the connection.
//!
//! ```ignore
//! let ca = TestCa::new("test CA");
//! let server = ca.server(&["localhost"]);
//! let (cert, key) = server.write(&dir, "server");
//! // [server.tls] cert = "{cert}" key = "{key}"
//! let mut conn = TlsClient::new().roots(&ca).connect(gw.addr, "localhost").await.unwrap();
//! assert_eq!(conn.peer_certificate(), Some(server.der.clone()));
//! let response = conn.get("/healthz").await.unwrap();
//! ```

// Shared by several suites (tls_certs, tls_edge, tls_upstream, demo): a helper one of
// them does not call yet is not dead.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// One day, the unit certificate validity is chosen in.
pub const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// A certificate authority for one test: its certificate (to trust) and its key (to
/// issue with).
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA certificate, DER.
    pub der: CertificateDer<'static>,
}

/// A certificate issued by a [`TestCa`], with its key.
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate, DER: compare it with [`TlsConn::peer_certificate`].
    pub der: CertificateDer<'static>,
    /// Its serial number, big-endian bytes (unique in the run).
    pub serial: Vec<u8>,
    /// Its subject's common name.
    pub common_name: String,
}

/// What a certificate is for, and when it is valid.
pub struct CertRequest<'a> {
    /// The subject's common name.
    pub common_name: &'a str,
    /// DNS names (or IP addresses) of the subject alternative name extension.
    pub names: &'a [&'a str],
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// Client authentication (true) or server authentication (false).
    pub client: bool,
}

fn fresh_serial() -> Vec<u8> {
    // Eight bytes whose first is 1 to 0x7f: positive with no leading zero, so the DER
    // INTEGER a certificate carries is these bytes as they are. (Stripping the zeros of
    // a smaller number could leave a first byte of 0x80 or more, which DER prefixes with
    // a zero the comparison then misses.)
    let mut bytes = fastrand::u64(..).to_be_bytes();
    bytes[0] = fastrand::u8(1..0x80);
    bytes.to_vec()
}

impl TestCa {
    /// A new CA named `name`, valid from a day ago for ten years.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = (SystemTime::now() - DAY).into();
        params.not_after = (SystemTime::now() + 3650 * DAY).into();
        params.serial_number = Some(SerialNumber::from_slice(&fresh_serial()));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            der: cert.der().clone(),
        }
    }

    /// A server certificate for `names` (the first is also the common name), valid from
    /// a day ago for a year.
    pub fn server(&self, names: &[&str]) -> Issued {
        self.server_valid(
            names,
            SystemTime::now() - DAY,
            SystemTime::now() + 365 * DAY,
        )
    }

    /// A server certificate for `names`, valid from `not_before` to `not_after`.
    pub fn server_valid(
        &self,
        names: &[&str],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Issued {
        self.issue(&CertRequest {
            common_name: names.first().copied().unwrap_or("fanout test server"),
            names,
            not_before,
            not_after,
            client: false,
        })
    }

    /// A client certificate whose subject is `CN=common_name`, valid from a day ago for
    /// a year.
    pub fn client(&self, common_name: &str) -> Issued {
        self.issue(&CertRequest {
            common_name,
            names: &[],
            not_before: SystemTime::now() - DAY,
            not_after: SystemTime::now() + 365 * DAY,
            client: true,
        })
    }

    /// A client certificate as [`Self::client`] gives, with `uris` (SPIFFE ids, say)
    /// among its subject alternative names.
    pub fn client_with_uris(&self, common_name: &str, uris: &[&str]) -> Issued {
        let request = CertRequest {
            common_name,
            names: &[],
            not_before: SystemTime::now() - DAY,
            not_after: SystemTime::now() + 365 * DAY,
            client: true,
        };
        self.issue_with_uris(&request, uris)
    }

    /// A certificate as `request` says, with a new ECDSA P-256 key.
    pub fn issue(&self, request: &CertRequest<'_>) -> Issued {
        self.issue_with_uris(request, &[])
    }

    fn issue_with_uris(&self, request: &CertRequest<'_>, uris: &[&str]) -> Issued {
        let names: Vec<String> = request.names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(*uri).unwrap(),
            ));
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, request.common_name);
        params.not_before = request.not_before.into();
        params.not_after = request.not_after.into();
        let serial = fresh_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if request.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            serial,
            common_name: request.common_name.to_string(),
        }
    }

    /// Writes the CA certificate to `dir/{stem}.crt` and returns its path.
    pub fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let path = dir.join(format!("{stem}.crt"));
        std::fs::write(&path, &self.cert_pem).unwrap();
        path
    }
}

impl Issued {
    /// Writes the certificate to `dir/{stem}.crt` and its key to `dir/{stem}.key`;
    /// returns both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    /// Replaces the files at `cert` and `key` as a deployment tool does: each written to
    /// a temporary file beside it, then renamed over (the key first, then the cert).
    pub fn replace(&self, cert: &Path, key: &Path) {
        for (path, text) in [(key, &self.key_pem), (cert, &self.cert_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }

    /// The certificate (alone) and its key, as a TLS client presents them.
    pub fn identity(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        use rustls::pki_types::pem::PemObject;
        let key = PrivatePkcs8KeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        (vec![self.der.clone()], PrivateKeyDer::Pkcs8(key))
    }
}

/// A TLS client's settings: which roots it trusts (none: it accepts any certificate),
/// the certificate it presents, ALPN, and whether it sends SNI.
#[derive(Clone)]
pub struct TlsClient {
    roots: Option<Vec<CertificateDer<'static>>>,
    identity: Option<Issued>,
    alpn: Vec<Vec<u8>>,
    send_sni: bool,
}

impl Default for TlsClient {
    fn default() -> Self {
        Self::new()
    }
}

impl TlsClient {
    /// A client that accepts any server certificate (tests look at which one came),
    /// offers ALPN `http/1.1` and sends SNI.
    pub fn new() -> Self {
        TlsClient {
            roots: None,
            identity: None,
            alpn: vec![b"http/1.1".to_vec()],
            send_sni: true,
        }
    }

    /// Verifies the server's certificate against `ca` (and the name connected to).
    pub fn roots(mut self, ca: &TestCa) -> Self {
        self.roots.get_or_insert_with(Vec::new).push(ca.der.clone());
        self
    }

    /// Presents `cert` (with its key) when the server asks for a client certificate.
    pub fn identity(mut self, cert: &Issued) -> Self {
        self.identity = Some(cert.clone());
        self
    }

    /// Offers these ALPN protocols, in order (`&["h2", "http/1.1"]`); none: no ALPN.
    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        self.alpn = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self
    }

    /// Sends no server name (SNI) in the hello; the name is still used for verification.
    pub fn without_sni(mut self) -> Self {
        self.send_sni = false;
        self
    }

    fn config(&self) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match &self.roots {
            Some(roots) => {
                let mut store = rustls::RootCertStore::empty();
                for root in roots {
                    store.add(root.clone()).unwrap();
                }
                builder.with_root_certificates(store)
            }
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider))),
        };
        let mut config = match &self.identity {
            Some(issued) => {
                let (chain, key) = issued.identity();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        config.enable_sni = self.send_sni;
        config
    }

    /// Connects to `addr` and does the handshake for `server_name` (a DNS name or an IP
    /// address). The error is the handshake's: a refused certificate, an alert.
    pub async fn connect(&self, addr: SocketAddr, server_name: &str) -> std::io::Result<TlsConn> {
        connect_with(Arc::new(self.config()), addr, server_name).await
    }

    /// These settings for several connections, sharing one session cache: a later
    /// connection resumes an earlier one's session when the server lets it.
    pub fn resuming(&self) -> ResumingClient {
        ResumingClient(Arc::new(self.config()))
    }

    /// Connects, sends `GET path` with `Connection: close` and returns the response.
    pub async fn get(
        &self,
        addr: SocketAddr,
        server_name: &str,
        path: &str,
    ) -> std::io::Result<TlsResponse> {
        self.connect(addr, server_name).await?.get(path).await
    }
}

async fn connect_with(
    config: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    server_name: &str,
) -> std::io::Result<TlsConn> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = TlsConnector::from(config).connect(name, tcp).await?;
    Ok(TlsConn { stream })
}

/// A [`TlsClient`] whose connections share one session cache ([`TlsClient::resuming`]).
pub struct ResumingClient(Arc<rustls::ClientConfig>);

impl ResumingClient {
    /// GETs `path` on a new connection: the response, and whether its handshake resumed
    /// a session (the response is read whole, so the session tickets the server sends
    /// after the handshake are in the cache for the next connection).
    pub async fn get(
        &self,
        addr: SocketAddr,
        server_name: &str,
        path: &str,
    ) -> std::io::Result<(TlsResponse, bool)> {
        let conn = connect_with(self.0.clone(), addr, server_name).await?;
        let resumed =
            conn.stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        Ok((conn.get(path).await?, resumed))
    }
}

/// An established TLS connection.
pub struct TlsConn {
    pub stream: TlsStream<TcpStream>,
}

/// An HTTP/1.1 response read off a TLS connection.
#[derive(Debug, Clone)]
pub struct TlsResponse {
    pub status: u16,
    /// The head's lines after the status line, as sent.
    pub head: String,
    pub body: String,
}

impl TlsResponse {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

impl TlsConn {
    /// The end certificate the server presented.
    pub fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        let (_, conn) = self.stream.get_ref();
        conn.peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.clone().into_owned())
    }

    /// The protocol ALPN chose (`"h2"`, `"http/1.1"`), if any.
    pub fn alpn(&self) -> Option<String> {
        let (_, conn) = self.stream.get_ref();
        conn.alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// The TLS version negotiated.
    pub fn version(&self) -> Option<rustls::ProtocolVersion> {
        self.stream.get_ref().1.protocol_version()
    }

    /// Sends `GET path HTTP/1.1` with `Connection: close` and reads the response until
    /// the server closes. Over a connection that negotiated HTTP/1.1 (or no ALPN).
    pub async fn get(self, path: &str) -> std::io::Result<TlsResponse> {
        self.get_with(path, &[]).await
    }

    /// [`Self::get`] with `headers` too.
    pub async fn get_with(
        mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<TlsResponse> {
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.stream.write_all(request.as_bytes()).await?;
        self.stream.flush().await?;
        let mut out = Vec::new();
        let read = tokio::time::timeout(
            super::eventually::PATIENCE,
            self.stream.read_to_end(&mut out),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response"))?;
        // A server that closes without close_notify ends the stream with UnexpectedEof
        // after a complete response: the response still counts.
        if let Err(e) = read
            && (e.kind() != std::io::ErrorKind::UnexpectedEof || out.is_empty())
        {
            return Err(e);
        }
        parse_response(&out)
    }
}

fn parse_response(bytes: &[u8]) -> std::io::Result<TlsResponse> {
    let text = String::from_utf8_lossy(bytes);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let (status_line, rest) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let head = rest.replace("\r\n", "\n");
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(TlsResponse { status, head, body })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// The fields of a certificate tests compare: its serial (bytes) and its subject's CN.
pub fn serial_of(der: &CertificateDer<'_>) -> Vec<u8> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.tbs_certificate.raw_serial().to_vec()
}

/// Accepts any server certificate: for tests that look at which one was presented.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
