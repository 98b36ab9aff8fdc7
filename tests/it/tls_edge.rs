//! The TLS connection over real sockets: HTTP/1.1 and h2 through proxy and aggregate
//! routes (`X-Forwarded-Proto: https`), keep-alive, a handshake that never completes,
//! plain HTTP sent to the TLS port; and the helpers `tls_client_cert` (the client
//! certificate as an identity) and `tls_redirect` (the `redirect_http` listener) share.

use crate::common;

use bytes::Bytes;
use common::tls::{TestCa, TlsClient};
use common::{MockUpstream, Recorded, Reply, TestGateway, scratch_dir};
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
pub(crate) fn routes(up: &MockUpstream, extra: &str) -> String {
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
pub(crate) fn tls_toml(ca: &TestCa, dir: &Path, client_auth: Option<&str>) -> String {
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
pub(crate) async fn ask_for_client_certs(toml: &str, ca: &TestCa, required: bool) -> TestGateway {
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
pub(crate) enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    pub(crate) async fn open(client: &TlsClient, gw: &TestGateway) -> Self {
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
    pub(crate) async fn get(
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

pub(crate) fn h1() -> TlsClient {
    TlsClient::new()
}

pub(crate) fn h2() -> TlsClient {
    TlsClient::new().alpn(&["h2", "http/1.1"])
}

pub(crate) fn seen(up: &MockUpstream, target: &str) -> Recorded {
    up.requests()
        .into_iter()
        .rev()
        .find(|r| r.target == target)
        .unwrap_or_else(|| panic!("the upstream saw no {target}"))
}

pub(crate) fn values<'h>(headers: &'h HeaderMap, name: &str) -> Vec<&'h str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

pub(crate) fn sha256_hex(der: &[u8]) -> String {
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
