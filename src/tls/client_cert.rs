//! The identity of a verified client certificate (mutual TLS): its subject as an RFC 4514
//! string, its DNS and URI subject alternative names, the SHA-256 fingerprint of its DER,
//! and the `x-forwarded-client-cert` value upstreams get, in Envoy's format:
//! `Hash=<fingerprint>;Subject="<subject>";URI=<uri>;DNS=<dns>`.
//!
//! Read once per connection, after the handshake verified the certificate; every request
//! of the connection shares it. The parser takes any bytes and never panics (the fuzz
//! target `client_cert` holds it to that), though only certificates rustls verified
//! reach it.
//!
//! Quoting: the subject is always a quoted string, and a SAN that holds `"`, `,`, `;`,
//! `=` or `\` is quoted too, with `"` and `\` escaped by `\`, so no certificate field
//! can end its own element and forge another (`Hash=` in a common name stays inside
//! the quotes). RFC 4514 already escapes control characters as `\XX`, so the value is
//! always a valid header value.

use http::HeaderValue;
use std::fmt::Write as _;
use std::sync::Arc;
use x509_parser::asn1_rs::ToDer;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::Oid;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// The header name upstreams get the identity in; a client's copy is never passed.
pub const X_FORWARDED_CLIENT_CERT: http::HeaderName =
    http::HeaderName::from_static("x-forwarded-client-cert");

/// What the gateway knows of a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject DN as RFC 4514 writes it, most specific first: `CN=alice,O=Example`.
    pub subject: Arc<str>,
    /// The DNS names among its subject alternative names.
    pub dns: Vec<String>,
    /// The URIs among its subject alternative names (SPIFFE ids, say).
    pub uri: Vec<String>,
    /// The SHA-256 of its DER, lowercase hex.
    pub fingerprint: String,
    /// The `x-forwarded-client-cert` value, made once.
    pub header: HeaderValue,
}

/// Why a certificate's DER could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ClientCertError {
    #[error("the client certificate is not valid DER X.509: {0}")]
    Parse(String),
    #[error("the client certificate has trailing bytes after its DER")]
    Trailing,
}

impl ClientCert {
    /// Reads the certificate `der`.
    pub fn parse(der: &[u8]) -> Result<Self, ClientCertError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| ClientCertError::Parse(e.to_string()))?;
        if !rest.is_empty() {
            return Err(ClientCertError::Trailing);
        }
        let subject = rfc4514(cert.subject());
        let (mut dns, mut uri) = (Vec::new(), Vec::new());
        // A malformed extension leaves the names out rather than the identity: the
        // subject and fingerprint stand alone.
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns.push((*n).to_string()),
                    GeneralName::URI(u) => uri.push((*u).to_string()),
                    _ => {}
                }
            }
        }
        let fingerprint = hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
        let header = forwarded_value(&fingerprint, &subject, &dns, &uri);
        Ok(Self {
            subject: subject.into(),
            dns,
            uri,
            fingerprint,
            header,
        })
    }
}

/// The `x-forwarded-client-cert` value of a certificate's parts.
fn forwarded_value(
    fingerprint: &str,
    subject: &str,
    dns: &[String],
    uri: &[String],
) -> HeaderValue {
    let mut value = format!("Hash={fingerprint};Subject=");
    quoted(subject, &mut value);
    for (key, names) in [("URI", uri), ("DNS", dns)] {
        for name in names {
            value.push(';');
            value.push_str(key);
            value.push('=');
            if name.contains(['"', ',', ';', '=', '\\']) || name.is_empty() {
                quoted(name, &mut value);
            } else {
                value.push_str(name);
            }
        }
    }
    // Control characters are escaped in the subject; a SAN holding one (it is IA5) has
    // them replaced, so the value is always a header.
    HeaderValue::from_str(&value).unwrap_or_else(|_| {
        let cleaned: String = value
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        HeaderValue::from_str(&cleaned).expect("no control characters are left")
    })
}

/// `text` as a quoted string: `"` and `\` escaped by `\`.
fn quoted(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A distinguished name as RFC 4514 §2 writes it: the RDNs in reverse order of their
/// encoding, separated by `,`; an RDN's attributes by `+`.
pub fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<_> = name.iter_rdn().collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attribute) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            write_attribute(attribute, &mut out);
        }
    }
    out
}

/// `TYPE=value`: the short names RFC 4514 §3 lists, other types as a dotted OID; a value
/// of a string type as escaped text, any other as `#` and the hex of its DER.
fn write_attribute(attribute: &AttributeTypeAndValue<'_>, out: &mut String) {
    let oid = attribute.attr_type();
    match short_name(oid) {
        Some(name) => out.push_str(name),
        None => out.push_str(&oid.to_id_string()),
    }
    out.push('=');
    match attribute_text(attribute) {
        Some(text) => escape_value(&text, out),
        None => {
            out.push('#');
            let der = attribute.attr_value().to_der_vec().unwrap_or_default();
            out.push_str(&hex(&der));
        }
    }
}

/// The text of a value of a string type (UTF-8, printable, IA5, numeric, teletex taken
/// as Latin-1, BMP as UTF-16); `None` for any other type.
fn attribute_text(attribute: &AttributeTypeAndValue<'_>) -> Option<String> {
    use x509_parser::asn1_rs::Tag;
    let value = attribute.attr_value();
    let data = value.data;
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString => {
            std::str::from_utf8(data).ok().map(str::to_string)
        }
        Tag::T61String | Tag::VisibleString => Some(data.iter().map(|&b| b as char).collect()),
        Tag::BmpString if data.len() % 2 == 0 => {
            let units = data
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    }
}

/// Escapes a value as RFC 4514 §2.4 asks: `"+,;<>\` with a backslash, a leading `#` or
/// space and a trailing space too, and control characters as `\XX`.
fn escape_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_control() => {
                let mut bytes = [0u8; 4];
                for b in c.encode_utf8(&mut bytes).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

/// The short names of RFC 4514 §3.
fn short_name(oid: &Oid<'_>) -> Option<&'static str> {
    const NAMES: [(&[u64], &str); 9] = [
        (&[2, 5, 4, 3], "CN"),
        (&[2, 5, 4, 7], "L"),
        (&[2, 5, 4, 8], "ST"),
        (&[2, 5, 4, 10], "O"),
        (&[2, 5, 4, 11], "OU"),
        (&[2, 5, 4, 6], "C"),
        (&[2, 5, 4, 9], "STREET"),
        (&[0, 9, 2342, 19200300, 100, 1, 25], "DC"),
        (&[0, 9, 2342, 19200300, 100, 1, 1], "UID"),
    ];
    let arcs: Vec<u64> = oid.iter()?.collect();
    NAMES
        .iter()
        .find(|(known, _)| *known == arcs.as_slice())
        .map(|(_, name)| *name)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
#[path = "client_cert_tests.rs"]
mod tests;
