//! Validation of `[server.tls]`: the certificate and key files are read, parsed and
//! matched here, so `fanout check` and a reload refuse a pair the listener could not use.

use super::Problems;
use crate::config::{ServerCert, ServerTlsConfig, ServerTlsSpec, TlsVersion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::Arc;

pub(super) fn server_tls(t: &ServerTlsConfig, p: &mut Problems) -> Option<ServerTlsSpec> {
    let min_version = match t.min_version.as_str() {
        "1.2" => TlsVersion::Tls12,
        "1.3" => TlsVersion::Tls13,
        other => {
            p.add(
                "server.tls.min_version",
                format!("\"{other}\" is not a TLS version fanout speaks; write \"1.2\" or \"1.3\""),
            );
            TlsVersion::Tls12
        }
    };
    let (Some(cert), Some(key)) = (&t.cert, &t.key) else {
        p.add(
            "server.tls",
            "names no certificate; set cert and key (PEM files)",
        );
        return None;
    };
    let cert = server_cert("server.tls", cert, key, p)?;
    Some(ServerTlsSpec {
        certs: vec![cert],
        min_version,
        client_auth: None,
    })
}

/// Reads one certificate chain and its key, and checks that they belong together.
fn server_cert(place: &str, cert: &str, key: &str, p: &mut Problems) -> Option<ServerCert> {
    let chain: Vec<CertificateDer<'static>> = match CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
    {
        Ok(chain) if !chain.is_empty() => chain,
        Ok(_) => {
            p.add(
                format!("{place}.cert"),
                format!("{cert} holds no certificate; give a PEM file with a CERTIFICATE block"),
            );
            return None;
        }
        Err(e) => {
            p.add(
                format!("{place}.cert"),
                format!(
                    "cannot read {cert}: {e}; check the path, its permissions and that it is PEM"
                ),
            );
            return None;
        }
    };
    let private = match PrivateKeyDer::from_pem_file(key) {
        Ok(private) => private,
        Err(e) => {
            p.add(
                format!("{place}.key"),
                format!("cannot read {key}: {e}; check the path, its permissions and that it is a PEM private key"),
            );
            return None;
        }
    };
    let signing = match rustls::crypto::ring::sign::any_supported_type(&private) {
        Ok(signing) => signing,
        Err(e) => {
            p.add(
                format!("{place}.key"),
                format!("{key} is not a usable key: {e}; give an RSA, ECDSA or Ed25519 key"),
            );
            return None;
        }
    };
    let certified = CertifiedKey::new(chain, signing);
    if certified.keys_match().is_err() {
        p.add(
            format!("{place}.key"),
            format!("{key} is not the key of {cert}; give the key the certificate was issued for"),
        );
        return None;
    }
    Some(ServerCert {
        place: place.to_string(),
        names: Vec::new(),
        key: Arc::new(certified),
        not_after: i64::MAX,
        cert_path: PathBuf::from(cert),
        key_path: PathBuf::from(key),
    })
}
