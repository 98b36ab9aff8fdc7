//! The gateway's own certificates over real sockets: `[server.tls]` served, chosen by
//! SNI, client certificates (mutual TLS), expiry checks and warnings, the expiry gauge,
//! and every mistake in `[server.tls]` refused with its place. Live rotation of the
//! files is `tls_rotation`.

use crate::common;

use common::tls::{DAY, TestCa, TlsClient};
use common::{scratch_dir, start_gateway, start_reloadable};
use fanout::config::{Env, compile};
use std::path::Path;
use std::time::SystemTime;

/// `[server.tls]` with one certificate: a client that trusts the CA gets the gateway's
/// certificate and an answer over HTTP/1.1, and ALPN offers h2 as well.
#[tokio::test]
async fn serves_http1_and_h2_over_tls_with_one_certificate() {
    let dir = scratch_dir("tls-smoke");
    let ca = TestCa::new("smoke CA");
    let server = ca.server(&["localhost"]);
    let (cert, key) = server.write(&dir, "server");
    let gw = start_gateway(&format!(
        "[server]\nhealth_path = \"/healthz\"\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ))
    .await;

    let conn = TlsClient::new()
        .roots(&ca)
        .connect(gw.addr, "localhost")
        .await
        .unwrap();
    assert_eq!(conn.peer_certificate(), Some(server.der.clone()));
    assert_eq!(conn.alpn().as_deref(), Some("http/1.1"));
    let response = conn.get("/healthz").await.unwrap();
    assert_eq!(response.status, 200, "{response:?}");
    assert!(response.body.contains("ok"), "{response:?}");

    let h2 = TlsClient::new()
        .roots(&ca)
        .alpn(&["h2", "http/1.1"])
        .connect(gw.addr, "localhost")
        .await
        .unwrap();
    assert_eq!(h2.alpn().as_deref(), Some("h2"));
}

fn pair_toml(cert: &Path, key: &Path) -> String {
    format!(
        "cert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

/// Three `[[server.tls.certs]]`: names from the certificate's SANs by default, an exact
/// name wins over a wildcard, a wildcard covers one label, and the first entry answers
/// a client that sends no name or one no entry has. Every choice verifies against the
/// CA for the name asked.
#[tokio::test]
async fn sni_chooses_exact_then_wildcard_then_the_first_entry() {
    let dir = scratch_dir("tls-sni");
    let ca = TestCa::new("sni CA");
    let default = ca.server(&["default.test", "other.test"]);
    let wild = ca.server(&["*.example.com"]);
    let exact = ca.server(&["api.example.com"]);
    let (dc, dk) = default.write(&dir, "default");
    let (wc, wk) = wild.write(&dir, "wild");
    let (ec, ek) = exact.write(&dir, "exact");
    let gw = start_gateway(&format!(
        "[server]\nhealth_path = \"/healthz\"\n\
         [[server.tls.certs]]\n{}\
         [[server.tls.certs]]\n{}names = [\"*.EXAMPLE.com\"]\n\
         [[server.tls.certs]]\n{}",
        pair_toml(&dc, &dk),
        pair_toml(&wc, &wk),
        pair_toml(&ec, &ek),
    ))
    .await;

    let verified = TlsClient::new().roots(&ca);
    for (name, expected) in [
        ("api.example.com", &exact),
        ("www.example.com", &wild),
        ("default.test", &default),
        ("other.test", &default),
    ] {
        let conn = verified.connect(gw.addr, name).await.unwrap();
        assert_eq!(
            conn.peer_certificate(),
            Some(expected.der.clone()),
            "{name}"
        );
        assert_eq!(conn.get("/healthz").await.unwrap().status, 200, "{name}");
    }
    let any = TlsClient::new();
    for name in ["a.b.example.com", "unknown.test"] {
        let conn = any.connect(gw.addr, name).await.unwrap();
        assert_eq!(conn.peer_certificate(), Some(default.der.clone()), "{name}");
    }
    let no_sni = verified
        .clone()
        .without_sni()
        .connect(gw.addr, "default.test")
        .await
        .unwrap();
    assert_eq!(no_sni.peer_certificate(), Some(default.der.clone()));
}

/// The problems of `toml` as `place: message` lines; panics when it is valid.
fn problems(toml: &str) -> Vec<String> {
    match compile(toml, &Env::default()) {
        Ok(_) => panic!("valid, but expected problems:\n{toml}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn assert_problem(toml: &str, place: &str, says: &str) {
    let found = problems(toml);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(&format!("{place}: ")) && p.contains(says)),
        "expected {place}: …{says}… in {found:#?}"
    );
}

/// Every mistake in the certificates of `[server.tls]` is refused with its place and
/// a fix: one of cert/key alone, both forms at once, no certificate, a duplicate name,
/// an unreadable file, a file that is not PEM, a key that is not the certificate's, an
/// entry without names that no client could reach, a malformed name.
#[test]
fn certificate_mistakes_are_refused_with_their_places() {
    let dir = scratch_dir("tls-mistakes");
    let ca = TestCa::new("mistakes CA");
    let (ac, ak) = ca.server(&["a.test"]).write(&dir, "a");
    let (bc, bk) = ca.server(&["b.test", "a.test"]).write(&dir, "b");
    let (_, other_key) = ca.server(&["c.test"]).write(&dir, "c");
    let no_names = ca.issue(&common::tls::CertRequest {
        common_name: "nameless",
        names: &[],
        not_before: SystemTime::now() - DAY,
        not_after: SystemTime::now() + 30 * DAY,
        client: false,
    });
    let (nc, nk) = no_names.write(&dir, "nameless");
    let text = dir.join("not-pem.crt");
    std::fs::write(&text, "hello, not a certificate\n").unwrap();
    let missing = dir.join("missing.crt");
    let (ac, ak, bc, bk) = (ac.display(), ak.display(), bc.display(), bk.display());

    assert_problem(
        &format!("[server.tls]\ncert = \"{ac}\"\n"),
        "server.tls.key",
        "is required with cert",
    );
    assert_problem(
        &format!("[server.tls]\nkey = \"{ak}\"\n"),
        "server.tls.cert",
        "is required with key",
    );
    assert_problem(
        "[server.tls]\nmin_version = \"1.3\"\n",
        "server.tls",
        "names no certificate; set cert and key",
    );
    assert_problem(
        "[server.tls]\ncerts = []\n",
        "server.tls",
        "names no certificate",
    );
    assert_problem(
        &format!(
            "[server.tls]\ncert = \"{ac}\"\nkey = \"{ak}\"\n[[server.tls.certs]]\ncert = \"{bc}\"\nkey = \"{bk}\"\n"
        ),
        "server.tls",
        "sets both cert/key and [[server.tls.certs]]; keep one",
    );
    assert_problem(
        &format!(
            "[[server.tls.certs]]\ncert = \"{ac}\"\nkey = \"{ak}\"\n[[server.tls.certs]]\ncert = \"{bc}\"\nkey = \"{bk}\"\n"
        ),
        "server.tls.certs[1].names",
        "\"a.test\" is also a name of server.tls.certs[0]",
    );
    assert_problem(
        &format!(
            "[[server.tls.certs]]\ncert = \"{ac}\"\nkey = \"{ak}\"\nnames = [\"x.test\"]\n[[server.tls.certs]]\ncert = \"{bc}\"\nkey = \"{bk}\"\nnames = [\"X.test\"]\n"
        ),
        "server.tls.certs[1].names",
        "\"x.test\" is also a name of server.tls.certs[0]",
    );
    assert_problem(
        &format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{ak}\"\n",
            missing.display()
        ),
        "server.tls.cert",
        "cannot read",
    );
    assert_problem(
        &format!(
            "[server.tls]\ncert = \"{}\"\nkey = \"{ak}\"\n",
            text.display()
        ),
        "server.tls.cert",
        "holds no certificate; give a PEM file",
    );
    assert_problem(
        &format!(
            "[server.tls]\ncert = \"{ac}\"\nkey = \"{}\"\n",
            text.display()
        ),
        "server.tls.key",
        "cannot read",
    );
    assert_problem(
        &format!(
            "[server.tls]\ncert = \"{ac}\"\nkey = \"{}\"\n",
            other_key.display()
        ),
        "server.tls.key",
        "is not the key of",
    );
    assert_problem(
        &format!(
            "[[server.tls.certs]]\ncert = \"{ac}\"\nkey = \"{ak}\"\n[[server.tls.certs]]\ncert = \"{}\"\nkey = \"{}\"\n",
            nc.display(),
            nk.display()
        ),
        "server.tls.certs[1].names",
        "holds no DNS name",
    );
    assert_problem(
        &format!("[[server.tls.certs]]\ncert = \"{ac}\"\nkey = \"{ak}\"\nnames = [\"a.*.test\"]\n"),
        "server.tls.certs[0].names",
        "is not a server name",
    );
    assert_problem(
        &format!("[[server.tls.certs]]\nkey = \"{ak}\"\n"),
        "server.tls.certs[0].cert",
        "is required",
    );
    // A nameless certificate is fine as the only (default) one.
    compile(
        &format!(
            "[[server.tls.certs]]\ncert = \"{}\"\nkey = \"{}\"\n",
            nc.display(),
            nk.display()
        ),
        &Env::default(),
    )
    .unwrap();
}

/// An expired and a not yet valid certificate are refused; one that expires within 14
/// days is served, with a warning that names its place.
#[test]
fn expiry_is_an_error_and_fourteen_days_a_warning() {
    let dir = scratch_dir("tls-expiry");
    let ca = TestCa::new("expiry CA");
    let now = SystemTime::now();
    let toml = |stem: &str, issued: &common::tls::Issued| {
        let (c, k) = issued.write(&dir, stem);
        format!("[server.tls]\n{}", pair_toml(&c, &k))
    };
    let expired = ca.server_valid(&["old.test"], now - 30 * DAY, now - DAY);
    assert_problem(&toml("expired", &expired), "server.tls.cert", "expired at");
    let early = ca.server_valid(&["new.test"], now + DAY, now + 30 * DAY);
    assert_problem(
        &toml("early", &early),
        "server.tls.cert",
        "is not valid before",
    );
    let soon = ca.server_valid(&["soon.test"], now - DAY, now + 10 * DAY);
    let compiled = compile(&toml("soon", &soon), &Env::default()).unwrap();
    let warnings: Vec<String> = compiled.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("server.tls.cert: ") && warnings[0].contains("renew it soon"),
        "{warnings:?}"
    );
    let later = ca.server_valid(&["later.test"], now - DAY, now + 20 * DAY);
    let compiled = compile(&toml("later", &later), &Env::default()).unwrap();
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
}

fn mtls_toml(dir: &Path, server: &common::tls::Issued, ca: &TestCa, mode: &str) -> String {
    let (c, k) = server.write(dir, "server");
    let ca_file = ca.write(dir, "clients");
    format!(
        "[server]\nhealth_path = \"/healthz\"\n[server.tls]\n{}client_ca = \"{}\"\n{mode}",
        pair_toml(&c, &k),
        ca_file.display()
    )
}

/// `client_auth = "required"` (the default with `client_ca`): a client certificate from
/// the CA is admitted; none, or one from another CA, ends the connection with no answer.
#[tokio::test]
async fn required_client_auth_refuses_no_certificate_and_a_foreign_one() {
    let dir = scratch_dir("tls-mtls-required");
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let stranger_ca = TestCa::new("stranger CA");
    let server = server_ca.server(&["localhost"]);
    let gw = start_gateway(&mtls_toml(&dir, &server, &client_ca, "")).await;
    let base = TlsClient::new().roots(&server_ca);

    let alice = client_ca.client("alice");
    let ok = base
        .clone()
        .identity(&alice)
        .get(gw.addr, "localhost", "/healthz")
        .await
        .unwrap();
    assert_eq!(ok.status, 200);

    let none = base.get(gw.addr, "localhost", "/healthz").await;
    assert!(none.is_err(), "answered without a certificate: {none:?}");
    let mallory = stranger_ca.client("mallory");
    let foreign = base
        .clone()
        .identity(&mallory)
        .get(gw.addr, "localhost", "/healthz")
        .await;
    assert!(
        foreign.is_err(),
        "answered a foreign certificate: {foreign:?}"
    );
}

/// `client_auth = "optional"`: a client without a certificate is admitted, one with a
/// certificate from another CA is refused, one from the CA admitted.
#[tokio::test]
async fn optional_client_auth_admits_none_but_refuses_a_bad_one() {
    let dir = scratch_dir("tls-mtls-optional");
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let stranger_ca = TestCa::new("stranger CA");
    let server = server_ca.server(&["localhost"]);
    let gw = start_gateway(&mtls_toml(
        &dir,
        &server,
        &client_ca,
        "client_auth = \"optional\"\n",
    ))
    .await;
    let base = TlsClient::new().roots(&server_ca);

    let none = base.get(gw.addr, "localhost", "/healthz").await.unwrap();
    assert_eq!(none.status, 200);
    let alice = client_ca.client("alice");
    let ok = base
        .clone()
        .identity(&alice)
        .get(gw.addr, "localhost", "/healthz")
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let mallory = stranger_ca.client("mallory");
    let foreign = base
        .clone()
        .identity(&mallory)
        .get(gw.addr, "localhost", "/healthz")
        .await;
    assert!(
        foreign.is_err(),
        "answered a foreign certificate: {foreign:?}"
    );
}

/// Mistakes in mutual TLS settings: an unreadable CA file, one with no certificate,
/// `client_auth` without `client_ca`, and a mode that does not exist.
#[test]
fn client_auth_mistakes_are_refused_with_their_places() {
    let dir = scratch_dir("tls-mtls-mistakes");
    let ca = TestCa::new("ca");
    let (c, k) = ca.server(&["a.test"]).write(&dir, "a");
    let pair = pair_toml(&c, &k);
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let ca_file = ca.write(&dir, "ca");

    assert_problem(
        &format!(
            "[server.tls]\n{pair}client_ca = \"{}\"\n",
            dir.join("nope.pem").display()
        ),
        "server.tls.client_ca",
        "cannot read",
    );
    assert_problem(
        &format!("[server.tls]\n{pair}client_ca = \"{}\"\n", empty.display()),
        "server.tls.client_ca",
        "holds no certificate",
    );
    assert_problem(
        &format!("[server.tls]\n{pair}client_auth = \"required\"\n"),
        "server.tls.client_auth",
        "needs client_ca",
    );
    assert_problem(
        &format!(
            "[server.tls]\n{pair}client_ca = \"{}\"\nclient_auth = \"sometimes\"\n",
            ca_file.display()
        ),
        "server.tls.client_auth",
        "write \"required\" or \"optional\"",
    );
}

/// `fanout_tls_cert_expiry_seconds{name}` is each served certificate's notAfter, named
/// by its first server name; a reload that drops a certificate drops its series.
#[tokio::test]
async fn expiry_gauge_follows_the_served_certificates() {
    let dir = scratch_dir("tls-gauge");
    let ca = TestCa::new("gauge CA");
    let now = SystemTime::now();
    let a = ca.server_valid(&["a.test"], now - DAY, now + 100 * DAY);
    let b = ca.server_valid(&["b.test"], now - DAY, now + 200 * DAY);
    let (ac, ak) = a.write(&dir, "a");
    let (bc, bk) = b.write(&dir, "b");
    let both = format!(
        "[access_log]\nenabled = false\n[[server.tls.certs]]\n{}[[server.tls.certs]]\n{}",
        pair_toml(&ac, &ak),
        pair_toml(&bc, &bk)
    );
    let gw = start_reloadable(&both).await;
    let not_after = |der| {
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        cert.validity().not_after.timestamp()
    };
    let metrics = async || {
        common::get_text(&format!("http://{}/metrics", gw.admin))
            .await
            .lines()
            .filter(|l| l.starts_with("fanout_tls_cert_expiry_seconds{"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut lines = metrics().await;
    lines.sort();
    assert_eq!(
        lines,
        [
            format!(
                "fanout_tls_cert_expiry_seconds{{name=\"a.test\"}} {}",
                not_after(&a.der)
            ),
            format!(
                "fanout_tls_cert_expiry_seconds{{name=\"b.test\"}} {}",
                not_after(&b.der)
            ),
        ]
    );

    gw.write(&format!(
        "[access_log]\nenabled = false\n[[server.tls.certs]]\n{}",
        pair_toml(&bc, &bk)
    ));
    gw.reloader.reload("test").unwrap();
    assert_eq!(
        metrics().await,
        [format!(
            "fanout_tls_cert_expiry_seconds{{name=\"b.test\"}} {}",
            not_after(&b.der)
        )]
    );
}

/// Turning TLS off (or on) needs a restart: the reload says so and the listener keeps
/// speaking TLS with the certificate it had.
#[tokio::test]
async fn turning_tls_off_waits_for_a_restart() {
    let dir = scratch_dir("tls-off");
    let ca = TestCa::new("off CA");
    let server = ca.server(&["localhost"]);
    let (c, k) = server.write(&dir, "server");
    let gw = start_reloadable(&format!(
        "[access_log]\nenabled = false\n[server]\nhealth_path = \"/healthz\"\n[server.tls]\n{}",
        pair_toml(&c, &k)
    ))
    .await;
    gw.write("[access_log]\nenabled = false\n[server]\nhealth_path = \"/healthz\"\n");
    let changes = gw.reloader.reload("test").unwrap();
    assert_eq!(changes.restart_needed, ["server.tls"]);
    let conn = TlsClient::new()
        .roots(&ca)
        .connect(gw.gateway.addr, "localhost")
        .await
        .unwrap();
    assert_eq!(conn.peer_certificate(), Some(server.der.clone()));
    assert_eq!(conn.get("/healthz").await.unwrap().status, 200);
}
