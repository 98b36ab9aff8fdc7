//! Client certificates: arbitrary bytes read as a certificate's DER, as the TLS listener
//! reads a verified client certificate (`tls::client_cert`).
//!
//! Properties:
//! 1. Nothing panics, on any bytes.
//! 2. A certificate that reads has a 64-digit lowercase hex fingerprint, a subject with
//!    no control character, and an `x-forwarded-client-cert` value whose fields, split
//!    as Envoy splits them (`;` outside quoted strings), start with `Hash=` the
//!    fingerprint and `Subject=` the subject: no field of the certificate forges another.
#![no_main]

use fanout::tls::client_cert::ClientCert;
use libfuzzer_sys::fuzz_target;

/// The keys of an element's fields and the Subject's unescaped value.
fn fields(value: &str) -> (Vec<String>, Vec<String>) {
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    let (mut current, mut in_key, mut quoted, mut escaped) = (String::new(), true, false, false);
    for c in value.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == ';' {
            values.push(std::mem::take(&mut current));
            in_key = true;
        } else if in_key && c == '=' {
            keys.push(std::mem::take(&mut current));
            in_key = false;
        } else {
            current.push(c);
        }
    }
    values.push(current);
    (keys, values)
}

fuzz_target!(|data: &[u8]| {
    let Ok(cert) = ClientCert::parse(data) else {
        return;
    };
    assert_eq!(cert.fingerprint.len(), 64);
    assert!(cert.fingerprint.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(!cert.subject.chars().any(char::is_control), "{:?}", cert.subject);
    let value = cert.header.to_str().map(str::to_string).unwrap_or_else(|_| {
        String::from_utf8_lossy(cert.header.as_bytes()).into_owned()
    });
    let (keys, values) = fields(&value);
    assert_eq!(keys.len(), 2 + cert.dns.len() + cert.uri.len(), "{value}");
    assert_eq!((keys[0].as_str(), keys[1].as_str()), ("Hash", "Subject"), "{value}");
    assert_eq!(values[0], cert.fingerprint);
    assert_eq!(values[1], &*cert.subject, "{value}");
});
