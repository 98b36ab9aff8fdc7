//! Validation of an upstream's `tls` and `h2c`: which scheme each belongs to, and the
//! CA, certificate and key files read, parsed and matched here, so `fanout check` and a
//! reload refuse what the upstream's client could not use.

use super::Problems;
use super::tls::read_certificates;
use crate::config::{UpstreamTlsConfig, UpstreamTlsSpec};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use std::sync::Arc;

/// Checks `tls` and `h2c` of the upstream at `place` whose URL has `scheme` (`None`:
/// the URL itself is wrong, and said so already).
pub(super) fn upstream_tls(
    place: &str,
    scheme: Option<&str>,
    tls: Option<&UpstreamTlsConfig>,
    h2c: bool,
    p: &mut Problems,
) -> Option<UpstreamTlsSpec> {
    if h2c && scheme == Some("https") {
        p.add(
            format!("{place}.h2c"),
            "h2c is cleartext HTTP/2 for an http:// upstream; an https:// upstream gets \
             HTTP/2 through ALPN when it offers it: remove h2c",
        );
    }
    let tls = tls?;
    let tls_place = format!("{place}.tls");
    if scheme == Some("http") {
        let fix = if h2c {
            "an h2c upstream is cleartext: remove tls, or write the url as https:// and remove h2c"
        } else {
            "tls applies to https:// upstreams: write the url as https://, or remove tls"
        };
        p.add(tls_place.clone(), fix);
    }
    if tls.insecure_skip_verify && tls.ca.is_some() {
        p.add(
            format!("{tls_place}.ca"),
            "is not used with insecure_skip_verify = true, which accepts any certificate: \
             remove one of them",
        );
    }
    let roots = tls
        .ca
        .as_ref()
        .and_then(|ca| read_certificates(&format!("{tls_place}.ca"), ca, p));
    let client_cert = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => client_cert(&tls_place, cert, key, p),
        (Some(_), None) => {
            p.add(
                format!("{tls_place}.key"),
                "is required with cert: the PEM file of the client certificate's private key",
            );
            None
        }
        (None, Some(_)) => {
            p.add(
                format!("{tls_place}.cert"),
                "is required with key: the PEM file of the client certificate to present",
            );
            None
        }
        (None, None) => None,
    };
    let server_name = tls.server_name.as_ref().and_then(|name| {
        ServerName::try_from(name.clone())
            .map_err(|_| {
                p.add(
                    format!("{tls_place}.server_name"),
                    format!("\"{name}\" is not a DNS name or IP address; write the name the upstream's certificate holds, such as \"api.internal\""),
                )
            })
            .ok()
    });
    Some(UpstreamTlsSpec {
        roots,
        client_cert,
        server_name,
        insecure_skip_verify: tls.insecure_skip_verify,
    })
}

/// The client certificate chain of `cert` with the key of `key`, checked to belong
/// together.
fn client_cert(place: &str, cert: &str, key: &str, p: &mut Problems) -> Option<Arc<CertifiedKey>> {
    let chain = read_certificates(&format!("{place}.cert"), cert, p);
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| {
            p.add(
                format!("{place}.key"),
                format!("cannot read {key}: {e}; check the path, its permissions and that it is a PEM private key"),
            )
        })
        .ok()?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|e| {
            p.add(
                format!("{place}.key"),
                format!("{key} is not a usable key: {e}; give an RSA, ECDSA or Ed25519 key"),
            )
        })
        .ok()?;
    let certified = CertifiedKey::new(chain?, signing);
    if certified.keys_match().is_err() {
        p.add(
            format!("{place}.key"),
            format!("{key} is not the key of {cert}; give the key the certificate was issued for"),
        );
        return None;
    }
    Some(Arc::new(certified))
}

#[cfg(test)]
mod tests {
    use crate::config::{Env, compile};
    use std::path::PathBuf;

    /// The problems of an upstream `up` at `url` with `keys`, or "" when it compiles.
    fn problems(url: &str, keys: &str) -> String {
        let toml = format!(
            "[upstreams.up]\nurl = \"{url}\"\n{keys}\n[[routes]]\npath = \"/r\"\n\
             proxy = {{ upstream = \"up\", path = \"/\" }}\n"
        );
        match compile(&toml, &Env::default()) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    /// A directory of PEM files: `ca.pem`, and two certificates with their keys
    /// (`a.pem`/`a.key`, `b.pem`/`b.key`); the test removes it when done.
    fn pem_files(what: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("fanout-upstream-tls-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a", "b"] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![format!("{name}.internal")])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        std::fs::copy(dir.join("a.pem"), dir.join("ca.pem")).unwrap();
        dir
    }

    #[test]
    fn a_good_tls_compiles_with_its_files_read() {
        let dir = pem_files("good");
        let d = dir.display();
        let keys = format!(
            "tls = {{ ca = \"{d}/ca.pem\", cert = \"{d}/a.pem\", key = \"{d}/a.key\", server_name = \"api.internal\" }}"
        );
        let toml = format!(
            "[upstreams.up]\nurl = \"https://10.0.0.1\"\n{keys}\n[[routes]]\npath = \"/r\"\n\
             proxy = {{ upstream = \"up\", path = \"/\" }}\n"
        );
        let compiled = compile(&toml, &Env::default()).unwrap();
        let tls = compiled.upstreams["up"].tls.clone().unwrap();
        assert_eq!(tls.roots.unwrap().len(), 1);
        assert!(tls.client_cert.is_some());
        assert_eq!(tls.server_name.unwrap().to_str(), "api.internal");
        assert_eq!(problems("http://127.0.0.1:9000", "h2c = true"), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_and_h2c_each_belong_to_one_scheme() {
        let e = problems(
            "http://127.0.0.1:9000",
            "tls = { insecure_skip_verify = true }",
        );
        assert!(
            e.contains("upstreams.up.tls") && e.contains("https://"),
            "{e}"
        );
        let e = problems("http://127.0.0.1:9000", "h2c = true\ntls = {}");
        assert!(
            e.contains("upstreams.up.tls") && e.contains("remove tls"),
            "{e}"
        );
        let e = problems("https://127.0.0.1:9000", "h2c = true");
        assert!(e.contains("upstreams.up.h2c") && e.contains("ALPN"), "{e}");
    }

    #[test]
    fn each_bad_file_or_pair_is_named_with_its_place_and_fix() {
        let dir = pem_files("bad");
        let d = dir.display();
        let url = "https://api.internal";
        let e = problems(url, &format!("tls = {{ cert = \"{d}/a.pem\" }}"));
        assert!(
            e.contains("upstreams.up.tls.key") && e.contains("required with cert"),
            "{e}"
        );
        let e = problems(url, &format!("tls = {{ key = \"{d}/a.key\" }}"));
        assert!(
            e.contains("upstreams.up.tls.cert") && e.contains("required with key"),
            "{e}"
        );
        let e = problems(url, &format!("tls = {{ ca = \"{d}/missing.pem\" }}"));
        assert!(
            e.contains("upstreams.up.tls.ca") && e.contains("cannot read"),
            "{e}"
        );
        let e = problems(url, &format!("tls = {{ ca = \"{d}/a.key\" }}"));
        assert!(
            e.contains("upstreams.up.tls.ca") && e.contains("no certificate"),
            "{e}"
        );
        let e = problems(
            url,
            &format!("tls = {{ cert = \"{d}/a.pem\", key = \"{d}/b.key\" }}"),
        );
        assert!(
            e.contains("upstreams.up.tls.key") && e.contains("is not the key of"),
            "{e}"
        );
        let e = problems(
            url,
            &format!("tls = {{ cert = \"{d}/a.pem\", key = \"{d}/a.pem\" }}"),
        );
        assert!(
            e.contains("upstreams.up.tls.key") && e.contains("cannot read"),
            "{e}"
        );
        let e = problems(url, "tls = { server_name = \"not a name!\" }");
        assert!(e.contains("upstreams.up.tls.server_name"), "{e}");
        let e = problems(
            url,
            &format!("tls = {{ ca = \"{d}/ca.pem\", insecure_skip_verify = true }}"),
        );
        assert!(
            e.contains("upstreams.up.tls.ca") && e.contains("remove one"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
