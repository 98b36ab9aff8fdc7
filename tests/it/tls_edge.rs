//! The TLS connection over real sockets: HTTP/1.1 and h2 through proxy and aggregate
//! routes (`X-Forwarded-Proto: https`), keep-alive, a handshake that never completes,
//! plain HTTP sent to the TLS port, the client certificate as an identity
//! (`x-forwarded-client-cert`, templates, rate-limit key, spoofing), and the
//! `redirect_http` listener.
//!
//! Mutual TLS: the gateways here ask for client certificates with a verifier these tests
//! build from the test CA (`ask_for_client_certs`), so the identity path is tested
//! apart from how `[server.tls] client_ca` builds it; `client_ca_from_the_config_...`
//! uses the config key alone.

use crate::common;

use bytes::Bytes;
use common::tls::{TestCa, TlsClient};
use common::{MockUpstream, Recorded, Reply, TestGateway, eventually, scratch_dir};
use fanout::config::{Env, compile};
use fanout::gateway::Gateway;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::WebPkiClientVerifier;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Routes over `up`: `/p/{*rest}` proxied, `/agg` an aggregate of one backend, and
/// `extra` (more TOML, after the routes).
fn routes(up: &MockUpstream, extra: &str) -> String {
    format!(
        "[upstreams.up]\nurl = \"{}\"\ntimeout = \"2s\"\n\
         [[routes]]\npath = \"/p/{{*rest}}\"\nproxy = {{ upstream = \"up\", path = \"/{{rest}}\" }}\n\
         [[routes]]\npath = \"/agg\"\n[[routes.backends]]\nname = \"a\"\nupstream = \"up\"\npath = \"/a\"\n\
         {extra}",
        up.url()
    )
}

/// `[server.tls]` with a certificate for `localhost` from `ca` (files in `dir`), and
/// `client_ca` when `client_auth` is given.
fn tls_toml(ca: &TestCa, dir: &Path, client_auth: Option<&str>) -> String {
    let (cert, key) = ca.server(&["localhost"]).write(dir, "server");
    let mut toml = format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    if let Some(mode) = client_auth {
        let ca_file = dir.join("client-ca.pem");
        std::fs::write(&ca_file, &ca.cert_pem).unwrap();
        toml.push_str(&format!(
            "client_ca = \"{}\"\nclient_auth = \"{mode}\"\n",
            ca_file.display()
        ));
    }
    toml
}

/// A gateway for `toml` whose TLS listener asks clients for a certificate issued by
/// `ca` (`required`: a handshake without one fails).
async fn ask_for_client_certs(toml: &str, ca: &TestCa, required: bool) -> TestGateway {
    let mut compiled = compile(toml, &Env::default()).unwrap_or_else(|e| panic!("{e}"));
    // The access log's default, stderr, is the test runner's output.
    compiled.access_log.enabled = false;
    let mut gateway = Gateway::build(compiled, None).unwrap();
    let served = gateway.tls.clone().expect("[server.tls] is set");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let verifier = if required {
        verifier.build()
    } else {
        verifier.allow_unauthenticated().build()
    }
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(served.cert_resolver.clone());
    config.alpn_protocols = served.alpn_protocols.clone();
    gateway.tls = Some(Arc::new(config));
    common::serve(Arc::new(arc_swap::ArcSwap::from_pointee(gateway))).await
}

/// Sends requests over one connection: HTTP/1.1 or h2, as ALPN chose.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn open(client: &TlsClient, gw: &TestGateway) -> Self {
        let conn = client.connect(gw.addr, "localhost").await.unwrap();
        let h2 = conn.alpn().as_deref() == Some("h2");
        let io = TokioIo::new(conn.stream);
        if h2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(connection);
            Sender::H2(sender)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(connection);
            Sender::H1(sender)
        }
    }

    /// `GET path` with `headers`; the status, the headers and the body.
    async fn get(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, String) {
        let uri = match self {
            Sender::H1(_) => path.to_string(),
            Sender::H2(_) => format!("https://localhost{path}"),
        };
        let mut request = Request::get(uri);
        if let Sender::H1(_) = self {
            request = request.header("host", "localhost");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).unwrap();
        let response = match self {
            Sender::H1(s) => {
                s.ready().await.unwrap();
                s.send_request(request).await.unwrap()
            }
            Sender::H2(s) => {
                s.ready().await.unwrap();
                s.send_request(request).await.unwrap()
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }
}

fn h1() -> TlsClient {
    TlsClient::new()
}

fn h2() -> TlsClient {
    TlsClient::new().alpn(&["h2", "http/1.1"])
}

fn seen(up: &MockUpstream, target: &str) -> Recorded {
    up.requests()
        .into_iter()
        .rev()
        .find(|r| r.target == target)
        .unwrap_or_else(|| panic!("the upstream saw no {target}"))
}

fn values<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn proxy_and_aggregate_routes_over_tls_send_https_as_the_proto() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let dir = scratch_dir("tls-edge-proto");
    let ca = TestCa::new("proto CA");
    let gw =
        common::start_gateway(&format!("{}{}", routes(&up, ""), tls_toml(&ca, &dir, None))).await;
    for (client, version) in [(h1(), "HTTP/1.1"), (h2(), "h2")] {
        let mut sender = Sender::open(&client, &gw).await;
        assert_eq!(matches!(sender, Sender::H2(_)), version == "h2");
        for path in ["/p/x", "/agg"] {
            let (status, _, body) = sender.get(path, &[("x-forwarded-proto", "http")]).await;
            assert_eq!(status, 200, "{version} {path}: {body}");
            let target = if path == "/agg" { "/a" } else { "/x" };
            let headers = seen(&up, target).headers;
            assert_eq!(
                values(&headers, "x-forwarded-proto"),
                ["https"],
                "{version} {path}"
            );
        }
    }
}

#[tokio::test]
async fn plain_connections_send_http_as_the_proto_on_both_kinds_of_route() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let gw = common::start_gateway(&routes(&up, "")).await;
    for (path, target) in [("/p/x", "/x"), ("/agg", "/a")] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: g\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
        );
        let answer = common::raw_request(gw.addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(
            values(&seen(&up, target).headers, "x-forwarded-proto"),
            ["http"],
            "{path}"
        );
    }
}

#[tokio::test]
async fn two_requests_share_one_tls_connection() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let dir = scratch_dir("tls-edge-keepalive");
    let ca = TestCa::new("keep-alive CA");
    let gw =
        common::start_gateway(&format!("{}{}", routes(&up, ""), tls_toml(&ca, &dir, None))).await;
    let mut sender = Sender::open(&h1(), &gw).await;
    let (first, _, _) = sender.get("/p/one", &[]).await;
    let (second, _, _) = sender.get("/p/two", &[]).await;
    assert_eq!((first, second), (StatusCode::OK, StatusCode::OK));
    let Sender::H1(s) = &sender else {
        unreachable!()
    };
    assert!(
        !s.is_closed(),
        "the connection is kept open after two requests"
    );
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/one", "/two"]);
}

/// A client that connects and never finishes its handshake is cut when
/// `header_read_timeout` passes (paused clock: the gateway's own timer).
#[tokio::test(start_paused = true)]
async fn a_handshake_that_never_completes_is_cut_by_the_header_read_timeout() {
    let dir = scratch_dir("tls-edge-handshake");
    let ca = TestCa::new("handshake CA");
    let gw = common::start_gateway(&format!(
        "[server]\nheader_read_timeout = \"30s\"\n{}",
        tls_toml(&ca, &dir, None)
    ))
    .await;
    let mut silent = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // Half a record header: the handshake starts and never goes on.
    silent.write_all(&[0x16, 0x03]).await.unwrap();
    let mut buf = [0u8; 64];
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(300), silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection is closed: {read:?}"
    );
    // The listener serves the next client.
    let answer = h1().get(gw.addr, "localhost", "/__health").await.unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn plain_http_sent_to_the_tls_port_is_refused_and_the_listener_keeps_serving() {
    let dir = scratch_dir("tls-edge-plain");
    let ca = TestCa::new("plain CA");
    let gw = common::start_gateway(&tls_toml(&ca, &dir, None)).await;
    for _ in 0..3 {
        let answer = common::raw_request(
            gw.addr,
            "GET /__health HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(!answer.contains("HTTP/1.1 200"), "{answer:?}");
    }
    let answer = h1().get(gw.addr, "localhost", "/__health").await.unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
}

#[tokio::test]
async fn a_verified_client_certificate_reaches_upstreams_and_a_forged_header_does_not() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let dir = scratch_dir("tls-edge-xfcc");
    let ca = TestCa::new("client CA");
    let toml = format!(
        "{}{}",
        routes(&up, ""),
        tls_toml(&ca, &dir, Some("optional"))
    );
    let gw = ask_for_client_certs(&toml, &ca, false).await;
    let alice = ca.client("alice");
    let expected = format!("Hash={};Subject=\"CN=alice\"", sha256_hex(&alice.der));
    let forged = [("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\"")];
    for client in [h1().identity(&alice), h2().identity(&alice)] {
        let mut sender = Sender::open(&client, &gw).await;
        for (path, target) in [("/p/x", "/x"), ("/agg", "/a")] {
            let (status, _, body) = sender.get(path, &forged).await;
            assert_eq!(status, 200, "{body}");
            let headers = seen(&up, target).headers;
            assert_eq!(
                values(&headers, "x-forwarded-client-cert"),
                [expected.as_str()]
            );
        }
    }
    // Without a certificate, over TLS, the client's copy goes nowhere.
    for client in [h1(), h2()] {
        let mut sender = Sender::open(&client, &gw).await;
        for (path, target) in [("/p/y", "/y"), ("/agg", "/a")] {
            let (status, _, _) = sender.get(path, &forged).await;
            assert_eq!(status, 200);
            let headers = seen(&up, target).headers;
            assert!(
                headers.get("x-forwarded-client-cert").is_none(),
                "{path}: {headers:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_sent_x_forwarded_client_cert_never_reaches_upstreams_over_plain_http() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let gw = common::start_gateway(&routes(&up, "")).await;
    for (path, target) in [("/p/x", "/x"), ("/agg", "/a")] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: g\r\nX-Forwarded-Client-Cert: Hash=00;Subject=\"CN=admin\"\r\n\
             X_Forwarded_Client_Cert: Hash=00\r\nConnection: close\r\n\r\n"
        );
        let answer = common::raw_request(gw.addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let headers = seen(&up, target).headers;
        let spoofed: Vec<&str> = headers
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.replace('_', "-") == "x-forwarded-client-cert")
            .collect();
        assert!(spoofed.is_empty(), "{path}: {headers:?}");
    }
}

#[tokio::test]
async fn a_quote_or_semicolon_in_the_subject_cannot_inject_a_field() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let dir = scratch_dir("tls-edge-inject");
    let ca = TestCa::new("inject CA");
    let toml = format!(
        "{}{}",
        routes(&up, ""),
        tls_toml(&ca, &dir, Some("required"))
    );
    let gw = ask_for_client_certs(&toml, &ca, true).await;
    let evil = ca.client("x\";Hash=forged;Subject=\"CN=admin");
    let answer = h1()
        .identity(&evil)
        .get(gw.addr, "localhost", "/p/x")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let headers = seen(&up, "/x").headers;
    let value = values(&headers, "x-forwarded-client-cert")[0].to_string();
    // Split as Envoy does: `;` between fields, except inside a quoted string.
    let (mut keys, mut quoted, mut escaped, mut key, mut in_key) =
        (Vec::new(), false, false, String::new(), true);
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => in_key = true,
            '=' if in_key && !quoted => {
                keys.push(std::mem::take(&mut key));
                in_key = false;
            }
            c if in_key => key.push(c),
            _ => {}
        }
    }
    assert_eq!(keys, ["Hash", "Subject"], "{value}");
    assert!(
        value.starts_with(&format!("Hash={};", sha256_hex(&evil.der))),
        "{value}"
    );
}

#[tokio::test]
async fn templates_read_the_certificate_and_a_request_without_one_is_refused_as_for_auth() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let dir = scratch_dir("tls-edge-templates");
    let ca = TestCa::new("template CA");
    let extra = "[[routes]]\npath = \"/who\"\n\
                 proxy = { upstream = \"up\", path = \"/by/{client_cert.fingerprint}\" }\n\
                 [[routes]]\npath = \"/agg-who\"\n[[routes.backends]]\nname = \"w\"\nupstream = \"up\"\n\
                 path = \"/w\"\nheaders = { \"x-subject\" = \"{client_cert.subject}\" }\n";
    let toml = format!(
        "{}{}",
        routes(&up, extra),
        tls_toml(&ca, &dir, Some("optional"))
    );
    let gw = ask_for_client_certs(&toml, &ca, false).await;
    let alice = ca.client("alice");
    let fingerprint = sha256_hex(&alice.der);
    let mut sender = Sender::open(&h1().identity(&alice), &gw).await;
    let (status, _, body) = sender.get("/who", &[]).await;
    assert_eq!(status, 200, "{body}");
    seen(&up, &format!("/by/{fingerprint}"));
    let (status, _, body) = sender.get("/agg-who", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(values(&seen(&up, "/w").headers, "x-subject"), ["CN=alice"]);

    let mut anonymous = Sender::open(&h1(), &gw).await;
    let (status, _, body) = anonymous.get("/who", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("client_cert.fingerprint"), "{body}");
}

#[tokio::test]
async fn a_client_cert_rate_limit_keys_by_subject_and_by_address_without_one() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let dir = scratch_dir("tls-edge-limit");
    let ca = TestCa::new("limit CA");
    let extra = "[[routes]]\npath = \"/limited\"\nrate_limit = { rate = \"1/hour\", key = \"client_cert\" }\n\
                 proxy = { upstream = \"up\", path = \"/l\" }\n";
    let toml = format!(
        "{}{}",
        routes(&up, extra),
        tls_toml(&ca, &dir, Some("optional"))
    );
    let gw = ask_for_client_certs(&toml, &ca, false).await;
    let status = async |client: TlsClient| {
        let mut sender = Sender::open(&client, &gw).await;
        sender.get("/limited", &[]).await.0
    };
    let (alice, alice_again, bob) = (ca.client("alice"), ca.client("alice"), ca.client("bob"));
    assert_eq!(status(h1().identity(&alice)).await, 200);
    // Another certificate with the same subject is the same client.
    assert_eq!(status(h2().identity(&alice_again)).await, 429);
    assert_eq!(status(h1().identity(&bob)).await, 200);
    // Without a certificate: by address, a bucket of its own.
    assert_eq!(status(h1()).await, 200);
    assert_eq!(status(h1()).await, 429);
}

/// `client_ca` as the config sets it, with no verifier built here: needs the listener's
/// mutual TLS (`[server.tls] client_ca`).
#[tokio::test]
async fn client_ca_from_the_config_gives_upstreams_the_certificate() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let dir = scratch_dir("tls-edge-client-ca");
    let ca = TestCa::new("config CA");
    let toml = format!(
        "{}{}",
        routes(&up, ""),
        tls_toml(&ca, &dir, Some("required"))
    );
    let gw = common::start_gateway(&toml).await;
    let carol = ca.client("carol");
    let answer = h1()
        .identity(&carol)
        .get(gw.addr, "localhost", "/p/x")
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    let expected = format!("Hash={};Subject=\"CN=carol\"", sha256_hex(&carol.der));
    assert_eq!(
        values(&seen(&up, "/x").headers, "x-forwarded-client-cert"),
        [expected.as_str()]
    );
    assert!(
        h1().get(gw.addr, "localhost", "/p/x").await.is_err(),
        "no certificate: refused"
    );
}

#[test]
fn check_refuses_client_cert_reads_without_client_ca() {
    let toml = "[upstreams.up]\nurl = \"http://127.0.0.1:1\"\n\
                [[routes]]\npath = \"/a\"\nrate_limit = { rate = \"1/s\", key = \"client_cert\" }\n\
                proxy = { upstream = \"up\", path = \"/{client_cert.subject}\" }\n\
                [[routes]]\npath = \"/b\"\n[[routes.backends]]\nname = \"x\"\nupstream = \"up\"\npath = \"/x\"\n\
                headers = { \"x-fp\" = \"{client_cert.fingerprint}\" }\n";
    let error = compile(toml, &Env::default()).unwrap_err().to_string();
    for place in [
        "routes[0].rate_limit.key: keys the limit by the client certificate",
        "routes[0].proxy.path: reads the client certificate ({client_cert.subject})",
        "routes[1].backends[0].headers.x-fp: reads the client certificate ({client_cert.fingerprint})",
    ] {
        assert!(error.contains(place), "{place}\n{error}");
    }
    assert!(error.contains("set [server.tls] client_ca"), "{error}");
}

#[test]
fn check_refuses_a_redirect_listener_without_tls_or_on_a_taken_address() {
    let error = |toml: &str| compile(toml, &Env::default()).unwrap_err().to_string();
    let plain =
        error("[server]\nlisten = \"127.0.0.1:8443\"\nredirect_http = \"127.0.0.1:8080\"\n");
    assert!(
        plain.contains(
            "server.redirect_http: redirects to https, but the main listener is plain HTTP"
        ),
        "{plain}"
    );
    let bad = error("[server]\nredirect_http = \"port 80\"\n");
    assert!(
        bad.contains("server.redirect_http: \"port 80\" is not an address"),
        "{bad}"
    );
    let dir = scratch_dir("tls-edge-redirect-check");
    let ca = TestCa::new("check CA");
    let tls = tls_toml(&ca, &dir, None);
    let taken = error(&format!(
        "[server]\nlisten = \"0.0.0.0:8443\"\nredirect_http = \"127.0.0.1:8443\"\n{tls}"
    ));
    assert!(
        taken.contains("server.redirect_http: 127.0.0.1:8443 is also server.listen"),
        "{taken}"
    );
    let admin = error(&format!(
        "[server]\nlisten = \"0.0.0.0:8443\"\nredirect_http = \"127.0.0.1:9901\"\n{tls}"
    ));
    assert!(admin.contains("is also server.admin_listen"), "{admin}");
    let fine =
        format!("[server]\nlisten = \"0.0.0.0:8443\"\nredirect_http = \"0.0.0.0:8080\"\n{tls}");
    let compiled = compile(&fine, &Env::default()).unwrap();
    assert_eq!(
        compiled.server.redirect_http,
        Some("0.0.0.0:8080".parse().unwrap())
    );
}

/// A redirect listener on its own, redirecting to `https_port`; a sender that stops it.
async fn redirector(
    https_port: u16,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(fanout::server::run_redirect(
        listener,
        https_port,
        std::time::Duration::from_secs(10),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, task)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.split("\r\n\r\n").next()?.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[tokio::test]
async fn the_redirect_listener_keeps_path_and_query_and_applies_the_port_rules() {
    let (addr, _stop, _task) = redirector(8443).await;
    let answer = common::raw_request(
        addr,
        "GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert_eq!(
        header(&answer, "location"),
        Some("https://example.com:8443/a/b?x=1&y=%20z")
    );
    assert!(
        answer.contains("Redirecting to https://example.com:8443/a/b?x=1&y=%20z"),
        "{answer}"
    );

    let (addr, _stop, _task) = redirector(443).await;
    let answer = common::raw_request(
        addr,
        "POST /form HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert_eq!(
        header(&answer, "location"),
        Some("https://api.example.com/form")
    );
}

#[tokio::test]
async fn the_redirect_listener_answers_400_to_a_missing_or_bad_host_and_keeps_serving() {
    let (addr, _stop, _task) = redirector(443).await;
    for request in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: evil@example.com\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    ] {
        let answer = common::raw_request(addr, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.0 400"),
            "{request:?}: {answer}"
        );
        assert!(header(&answer, "location").is_none(), "{answer}");
    }
    let answer = common::raw_request(
        addr,
        "GET / HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
}

#[tokio::test]
async fn the_redirect_listener_stops_when_told() {
    let (addr, stop, task) = redirector(443).await;
    // An idle keep-alive connection does not hold the stop up.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 308"));
    stop.send(()).unwrap();
    task.await.unwrap();
    eventually("the redirect port refuses connections", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection is closed: {closed:?}"
    );
}

/// The binary with `redirect_http`: the listener comes up beside the TLS one, redirects
/// to the port the main listener was given, and goes away with the process on SIGTERM.
#[test]
fn the_binary_serves_redirect_http_beside_the_tls_listener() {
    let dir = scratch_dir("tls-edge-redirect-process");
    let ca = TestCa::new("process CA");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nredirect_http = \"127.0.0.1:0\"\n{}",
        tls_toml(&ca, &dir, None)
    );
    let mut gateway = common::GatewayProcess::start(&toml);
    let logged = || {
        gateway.logs().iter().find_map(|line| {
            let at = line.find("listen=")?;
            line[at + 7..]
                .split_whitespace()
                .next()?
                .parse::<std::net::SocketAddr>()
                .ok()
        })
    };
    let started = std::time::Instant::now();
    let redirect = loop {
        if let Some(addr) = logged() {
            break addr;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no redirect listener logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(common::raw_request(
        redirect,
        "GET /x?y=1 HTTP/1.1\r\nHost: localhost:80\r\nConnection: close\r\n\r\n",
    ));
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let expected = format!("https://localhost:{}/x?y=1", gateway.addr.port());
    assert_eq!(header(&answer, "location"), Some(expected.as_str()));
    assert!(gateway.terminate().success());
    assert!(std::net::TcpStream::connect(redirect).is_err());
}
