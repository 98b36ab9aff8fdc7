//! The rustls client settings of one upstream, from its `tls`: whose certificates are
//! trusted (the platform's verifier, the roots of `ca`, or any certificate with
//! `insecure_skip_verify`) and the client certificate presented for mutual TLS.

use crate::config::UpstreamTlsSpec;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_platform_verifier::BuilderVerifierExt;
use std::sync::Arc;

/// The client settings `tls` asks for; without it, the platform's verifier and no
/// client certificate. ALPN is left to the connector.
pub fn client_config(tls: Option<&UpstreamTlsSpec>) -> Result<ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match tls {
        Some(tls) if tls.insecure_skip_verify => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider.signature_verification_algorithms,
            ))),
        Some(UpstreamTlsSpec {
            roots: Some(roots), ..
        }) => {
            let mut store = RootCertStore::empty();
            // Every root was parsed at validation; one webpki cannot use is skipped.
            store.add_parsable_certificates(roots.iter().cloned());
            builder.with_root_certificates(store)
        }
        _ => builder.with_platform_verifier()?,
    };
    Ok(match tls.and_then(|tls| tls.client_cert.clone()) {
        Some(key) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key))),
        None => builder.with_no_client_auth(),
    })
}

/// `insecure_skip_verify`: any certificate is taken for any name, but the handshake's
/// signature is still checked against the certificate's key, so the connection is at
/// least with the holder of the certificate it presented.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
