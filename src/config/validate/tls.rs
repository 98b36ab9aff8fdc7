//! Validation of `[server.tls]`: the certificate, key and client CA files are read,
//! parsed and matched here, so `fanout check` and a reload refuse what the listener could
//! not use: a key that is not its certificate's, an expired certificate, two entries
//! claiming one server name. A certificate that expires within [`EXPIRY_WARNING`] is a
//! warning: served, but reported by `check` and logged at start and on every reload.

use super::Problems;
use crate::config::{ClientAuthSpec, ServerCert, ServerTlsConfig, ServerTlsSpec, TlsVersion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A certificate that expires sooner than this is reported as a warning.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

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
    let client_auth = client_auth(t, p);
    let certs = certificates(t, p)?;
    Some(ServerTlsSpec {
        certs,
        min_version,
        client_auth: client_auth?,
    })
}

/// The certificates of either form, the default first; `None` after a problem.
fn certificates(t: &ServerTlsConfig, p: &mut Problems) -> Option<Vec<ServerCert>> {
    match (&t.cert, &t.key, t.certs.is_empty()) {
        (Some(cert), Some(key), true) => Some(vec![server_cert("server.tls", cert, key, &[], p)?]),
        (Some(_), Some(_), false) => {
            p.add(
                "server.tls",
                "sets both cert/key and [[server.tls.certs]]; keep one: cert and key for one \
                 certificate, [[server.tls.certs]] for several",
            );
            None
        }
        (Some(_), None, _) => {
            p.add(
                "server.tls.key",
                "is required with cert: the PEM file of the certificate's private key",
            );
            None
        }
        (None, Some(_), _) => {
            p.add(
                "server.tls.cert",
                "is required with key: the PEM file of the certificate (its chain after it)",
            );
            None
        }
        (None, None, true) => {
            p.add(
                "server.tls",
                "names no certificate; set cert and key (PEM files), or list \
                 [[server.tls.certs]] entries",
            );
            None
        }
        (None, None, false) => certificate_list(t, p),
    }
}

/// `[[server.tls.certs]]`: every entry read, and every server name claimed once.
fn certificate_list(t: &ServerTlsConfig, p: &mut Problems) -> Option<Vec<ServerCert>> {
    let mut certs = Vec::new();
    let mut ok = true;
    for (i, entry) in t.certs.iter().enumerate() {
        let place = format!("server.tls.certs[{i}]");
        for (key, value, what) in [
            ("cert", &entry.cert, "the PEM file of the certificate"),
            ("key", &entry.key, "the PEM file of its private key"),
        ] {
            if value.is_empty() {
                p.add(format!("{place}.{key}"), format!("is required: {what}"));
                ok = false;
            }
        }
        if entry.cert.is_empty() || entry.key.is_empty() {
            continue;
        }
        match server_cert(&place, &entry.cert, &entry.key, &entry.names, p) {
            Some(cert) => {
                if cert.names.is_empty() && i > 0 {
                    p.add(
                        format!("{place}.names"),
                        format!(
                            "{} holds no DNS name, so no client could be given it; list the \
                             names it answers in names",
                            entry.cert
                        ),
                    );
                    ok = false;
                }
                certs.push(cert);
            }
            None => ok = false,
        }
    }
    for (j, cert) in certs.iter().enumerate() {
        for name in &cert.names {
            if let Some(first) = certs[..j].iter().find(|c| c.names.contains(name)) {
                p.add(
                    format!("{}.names", cert.place),
                    format!(
                        "\"{name}\" is also a name of {}; a name picks one certificate, so \
                         list it on one entry only",
                        first.place
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then_some(certs)
}

/// Reads one certificate chain and its key, checks that they belong together and that
/// the certificate is valid now, and takes its names (`names`, or its DNS SANs).
fn server_cert(
    place: &str,
    cert: &str,
    key: &str,
    names: &[String],
    p: &mut Problems,
) -> Option<ServerCert> {
    let chain = read_certificates(&format!("{place}.cert"), cert, p)?;
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
    let facts = match facts(&chain[0]) {
        Ok(facts) => facts,
        Err(e) => {
            p.add(
                format!("{place}.cert"),
                format!("{cert} is not an X.509 certificate fanout can read: {e}; give a PEM certificate"),
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
    if !validity(&format!("{place}.cert"), cert, &facts, p) {
        return None;
    }
    let names = if names.is_empty() {
        facts.dns_names.clone()
    } else {
        checked_names(&format!("{place}.names"), names, p)?
    };
    Some(ServerCert {
        place: place.to_string(),
        names,
        key: Arc::new(certified),
        not_after: facts.not_after,
        serial: facts.serial,
        cert_path: PathBuf::from(cert),
        key_path: PathBuf::from(key),
    })
}

/// What validation reads from an end certificate.
struct CertFacts {
    not_before: i64,
    not_after: i64,
    serial: String,
    /// Its DNS subject alternative names, lowercase.
    dns_names: Vec<String>,
}

fn facts(der: &CertificateDer<'_>) -> Result<CertFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(e.to_string()),
    };
    Ok(CertFacts {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        serial: cert.tbs_certificate.raw_serial_as_string(),
        dns_names,
    })
}

/// An expired or not yet valid certificate is a problem; one that expires within
/// [`EXPIRY_WARNING`] a warning. False after a problem.
fn validity(place: &str, path: &str, facts: &CertFacts, p: &mut Problems) -> bool {
    let now = unix_now();
    if facts.not_after <= now {
        p.add(
            place,
            format!(
                "{path} expired at {}; renew it, or point cert and key at a current pair",
                rfc3339(facts.not_after)
            ),
        );
        return false;
    }
    if facts.not_before > now {
        p.add(
            place,
            format!(
                "{path} is not valid before {}; check the clock, or use a certificate valid now",
                rfc3339(facts.not_before)
            ),
        );
        return false;
    }
    if facts.not_after - now < EXPIRY_WARNING.as_secs() as i64 {
        let days = (facts.not_after - now) / 86_400;
        p.warn(
            place,
            format!(
                "{path} expires at {} (in {days} day{}); renew it soon",
                rfc3339(facts.not_after),
                if days == 1 { "" } else { "s" }
            ),
        );
    }
    true
}

/// Explicit `names`: lowercase, non-empty, a `*.` wildcard only as the whole first label.
fn checked_names(place: &str, names: &[String], p: &mut Problems) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for name in names {
        let lower = name.to_ascii_lowercase();
        let rest = lower.strip_prefix("*.").unwrap_or(&lower);
        if rest.is_empty() || rest.contains('*') || rest.split('.').any(str::is_empty) {
            p.add(
                place,
                format!(
                    "\"{name}\" is not a server name; write a DNS name (api.example.com) or \
                     one wildcard label first (*.example.com)"
                ),
            );
            return None;
        }
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    Some(out)
}

/// The certificates of the PEM file `path`; at least one.
pub(super) fn read_certificates(
    place: &str,
    path: &str,
    p: &mut Problems,
) -> Option<Vec<CertificateDer<'static>>> {
    match CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
    {
        Ok(chain) if !chain.is_empty() => Some(chain),
        Ok(_) => {
            p.add(
                place,
                format!("{path} holds no certificate; give a PEM file with a CERTIFICATE block"),
            );
            None
        }
        Err(e) => {
            p.add(
                place,
                format!(
                    "cannot read {path}: {e}; check the path, its permissions and that it is PEM"
                ),
            );
            None
        }
    }
}

/// `client_ca` and `client_auth`: `Some(None)` without mutual TLS, `None` after a problem.
fn client_auth(t: &ServerTlsConfig, p: &mut Problems) -> Option<Option<ClientAuthSpec>> {
    let required = match t.client_auth.as_deref() {
        None | Some("required") => true,
        Some("optional") => false,
        Some(other) => {
            p.add(
                "server.tls.client_auth",
                format!(
                    "\"{other}\" is not a client_auth mode; write \"required\" or \"optional\""
                ),
            );
            return None;
        }
    };
    let Some(ca) = &t.client_ca else {
        if t.client_auth.is_some() {
            p.add(
                "server.tls.client_auth",
                "needs client_ca: the PEM file of the CAs client certificates must chain to",
            );
            return None;
        }
        return Some(None);
    };
    let roots = read_certificates("server.tls.client_ca", ca, p)?;
    let mut store = rustls::RootCertStore::empty();
    for root in &roots {
        if let Err(e) = store.add(root.clone()) {
            p.add(
                "server.tls.client_ca",
                format!("{ca} holds a certificate that cannot be a trust anchor: {e}; give CA certificates"),
            );
            return None;
        }
    }
    Some(Some(ClientAuthSpec {
        roots,
        required,
        ca_path: PathBuf::from(ca),
    }))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn rfc3339(unix: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}
