use super::*;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

/// A self-signed certificate with `dn` (in encoding order) and `sans`.
fn cert(dn: &[(DnType, &str)], sans: Vec<SanType>) -> Vec<u8> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut name = DistinguishedName::new();
    for (kind, value) in dn {
        name.push(kind.clone(), *value);
    }
    params.distinguished_name = name;
    params.subject_alt_names = sans;
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn the_subject_is_rfc4514_most_specific_first() {
    let der = cert(
        &[
            (DnType::OrganizationName, "Example"),
            (DnType::CommonName, "alice"),
        ],
        vec![],
    );
    let parsed = ClientCert::parse(&der).unwrap();
    assert_eq!(&*parsed.subject, "CN=alice,O=Example");
}

#[test]
fn the_fingerprint_is_the_sha256_of_the_der_in_lowercase_hex() {
    let der = cert(&[(DnType::CommonName, "alice")], vec![]);
    let parsed = ClientCert::parse(&der).unwrap();
    let expected: String = ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(parsed.fingerprint, expected);
    assert_eq!(parsed.fingerprint.len(), 64);
}

#[test]
fn dns_and_uri_names_are_read_and_sent_after_the_subject() {
    let der = cert(
        &[(DnType::CommonName, "svc")],
        vec![
            SanType::DnsName("svc.example.com".try_into().unwrap()),
            SanType::URI("spiffe://example.com/svc".try_into().unwrap()),
            SanType::IpAddress("10.0.0.1".parse().unwrap()),
        ],
    );
    let parsed = ClientCert::parse(&der).unwrap();
    assert_eq!(parsed.dns, ["svc.example.com"]);
    assert_eq!(parsed.uri, ["spiffe://example.com/svc"]);
    assert_eq!(
        parsed.header.to_str().unwrap(),
        format!(
            "Hash={};Subject=\"CN=svc\";URI=spiffe://example.com/svc;DNS=svc.example.com",
            parsed.fingerprint
        )
    );
}

#[test]
fn a_quote_or_semicolon_in_the_subject_cannot_forge_a_field() {
    let der = cert(
        &[(DnType::CommonName, "x\";Hash=forged;Subject=\"evil")],
        vec![SanType::URI("a;DNS=forged".try_into().unwrap())],
    );
    let parsed = ClientCert::parse(&der).unwrap();
    // RFC 4514 escapes `"` and `;`; the header quotes and escapes again.
    assert_eq!(
        &*parsed.subject,
        "CN=x\\\"\\;Hash=forged\\;Subject=\\\"evil"
    );
    let value = parsed.header.to_str().unwrap();
    let fields = split_fields(value);
    assert_eq!(
        fields.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["Hash", "Subject", "URI"],
        "{value}"
    );
    assert_eq!(fields[0].1, parsed.fingerprint);
    assert_eq!(fields[1].1, &*parsed.subject);
    assert_eq!(fields[2].1, "a;DNS=forged");
}

/// Splits an `x-forwarded-client-cert` element as Envoy does: `;` between fields,
/// except inside a quoted string, where `\` escapes the next character.
fn split_fields(value: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let (mut key, mut current) = (String::new(), String::new());
    let (mut in_key, mut quoted, mut escaped) = (true, false, false);
    for c in value.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == ';' {
            fields.push((std::mem::take(&mut key), std::mem::take(&mut current)));
            in_key = true;
        } else if in_key && c == '=' {
            key = std::mem::take(&mut current);
            in_key = false;
        } else {
            current.push(c);
        }
    }
    fields.push((key, current));
    fields
}

#[test]
fn special_characters_are_escaped_as_rfc4514_asks() {
    let der = cert(
        &[
            (DnType::CommonName, " #lead, a+b <x> back\\slash "),
            (
                DnType::CustomDnType(vec![1, 2, 840, 113549, 1, 9, 1]),
                "a@example.com",
            ),
        ],
        vec![],
    );
    let parsed = ClientCert::parse(&der).unwrap();
    assert_eq!(
        &*parsed.subject,
        "1.2.840.113549.1.9.1=a@example.com,CN=\\ #lead\\, a\\+b \\<x\\> back\\\\slash\\ "
    );
}

#[test]
fn a_control_character_is_escaped_as_hex_and_the_header_stays_valid() {
    let der = cert(&[(DnType::CommonName, "a\nb")], vec![]);
    let parsed = ClientCert::parse(&der).unwrap();
    assert_eq!(&*parsed.subject, "CN=a\\0Ab");
    assert!(
        parsed
            .header
            .to_str()
            .unwrap()
            .contains("Subject=\"CN=a\\\\0Ab\"")
    );
}

#[test]
fn bytes_that_are_not_a_certificate_are_an_error() {
    assert!(ClientCert::parse(b"").is_err());
    assert!(ClientCert::parse(b"not a certificate").is_err());
    let mut der = cert(&[(DnType::CommonName, "alice")], vec![]);
    der.push(0);
    assert!(matches!(
        ClientCert::parse(&der),
        Err(ClientCertError::Trailing)
    ));
    der.truncate(der.len() / 2);
    assert!(ClientCert::parse(&der).is_err());
}
