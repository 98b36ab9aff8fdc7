//! Upstreams over TLS and cleartext HTTP/2 (h2c), over real sockets: the upstream is a
//! TLS server run by the test (tokio-rustls and hyper), its certificates issued by an
//! rcgen CA made in the test (`common::tls`); the h2c upstream is hyper's HTTP/2-only server, which
//! refuses HTTP/1.1.

use crate::common::tls::{Issued, TestCa};
use crate::common::{self, MockUpstream, Reply, client, eventually, get_json, start_gateway};
use bytes::Bytes;
use http_body_util::{Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Writes `pem` to `name` in `dir` and returns the path as the config writes it.
fn write(dir: &Path, name: &str, pem: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path.display().to_string()
}

/// What the TLS upstream saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    sni: Option<String>,
    client_cert: bool,
    version: http::Version,
}

/// A TLS upstream: answers every request with `{"path": PATH}`, and records what it saw.
struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    failed_handshakes: Arc<AtomicUsize>,
}

impl TlsUpstream {
    /// Serves with the certificate `cert`/`key` (PEM); with `client_ca`, a client must
    /// present a certificate issued by it.
    async fn start(cert: &str, key: &str, client_ca: Option<&str>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let builder = rustls::ServerConfig::builder();
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
                    .unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failed_handshakes = Arc::new(AtomicUsize::new(0));
        let (record, failed) = (seen.clone(), failed_handshakes.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, record, failed) = (acceptor.clone(), record.clone(), failed.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    let session = tls.get_ref().1;
                    let sni = session.server_name().map(str::to_owned);
                    let client_cert = session.peer_certificates().is_some_and(|c| !c.is_empty());
                    let service = hyper::service::service_fn(move |r: http::Request<Incoming>| {
                        record.lock().unwrap().push(Seen {
                            path: r.uri().path().to_owned(),
                            sni: sni.clone(),
                            client_cert,
                            version: r.version(),
                        });
                        let body = format!(r#"{{"path":"{}"}}"#, r.uri().path());
                        let answer = http::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        async move { Ok::<_, std::convert::Infallible>(answer) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        Self {
            addr,
            seen,
            failed_handshakes,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A gateway with `/p/{*rest}` proxied to upstream `up` (`url`, with `extra` upstream
/// keys), and `/agg` merging `up`'s `/one` with a plain mock's `/two`.
async fn gateway(url: &str, extra: &str, plain: &MockUpstream) -> common::TestGateway {
    start_gateway(&format!(
        r#"[upstreams.up]
url = "{url}"
timeout = "5s"
{extra}
[upstreams.plain]
url = "{}"
[[routes]]
path = "/p/{{*rest}}"
proxy = {{ upstream = "up", path = "/{{rest}}" }}
[[routes]]
path = "/agg"
errors_field = "_errors"
  [[routes.backends]]
  name = "one"
  upstream = "up"
  path = "/one"
  [[routes.backends]]
  name = "two"
  upstream = "plain"
  path = "/two"
"#,
        plain.url()
    ))
    .await
}

async fn plain_mock() -> MockUpstream {
    MockUpstream::builder()
        .route("/two", Reply::json(r#"{"two":true}"#))
        .start()
        .await
}

#[tokio::test]
async fn a_tls_upstream_checked_against_its_ca_serves_proxy_aggregate_and_health_calls() {
    let dir = common::scratch_dir("tls-upstream-ca");
    let ca = TestCa::new("test upstream CA");
    let Issued {
        cert_pem: cert,
        key_pem: key,
        ..
    } = ca.server(&["localhost"]);
    let up = TlsUpstream::start(&cert, &key, None).await;
    let ca_file = write(&dir, "ca.pem", &ca.cert_pem);
    let plain = plain_mock().await;
    let url = format!("https://localhost:{}", up.addr.port());
    let extra = format!(
        "tls = {{ ca = \"{ca_file}\" }}\nhealth_check = {{ path = \"/health\", interval = \"200ms\" }}"
    );
    let gw = gateway(&url, &extra, &plain).await;

    let (status, _, body) = get_json(&gw.url("/p/items")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/items");
    let (status, _, body) = get_json(&gw.url("/agg")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["one"]["path"], "/one",
        "the TLS backend's answer is merged: {body}"
    );
    assert_eq!(body["two"]["two"], true);
    assert_eq!(body["_errors"], serde_json::json!({}), "{body}");
    eventually("a health probe over TLS", async || {
        up.seen().iter().any(|s| s.path == "/health")
    })
    .await;
    let seen = up.seen();
    assert!(seen.iter().all(|s| s.sni.as_deref() == Some("localhost")));
    assert!(
        seen.iter().all(|s| s.version == http::Version::HTTP_2),
        "ALPN picked h2: {seen:?}"
    );
}

#[tokio::test]
async fn without_its_ca_a_tls_upstream_fails_as_a_connect_failure_and_the_gateway_keeps_serving() {
    let ca = TestCa::new("unknown CA");
    let Issued {
        cert_pem: cert,
        key_pem: key,
        ..
    } = ca.server(&["localhost"]);
    let up = TlsUpstream::start(&cert, &key, None).await;
    let plain = plain_mock().await;
    let gw = gateway(&format!("https://localhost:{}", up.addr.port()), "", &plain).await;

    let (status, _, body) = get_json(&gw.url("/p/items")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "bad_gateway", "{body}");
    let (status, _, body) = get_json(&gw.url("/agg")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["_errors"]["one"]["code"], "connect_failed", "{body}");
    assert_eq!(
        body["two"]["two"], true,
        "the other backend still answers: {body}"
    );
    assert!(up.seen().is_empty(), "no request reached the upstream");
    assert!(up.failed_handshakes.load(Ordering::SeqCst) >= 2);
    let (status, _, _) = get_json(&gw.url("/__health")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn server_name_is_sent_as_sni_and_checked_when_the_url_is_an_ip() {
    let dir = common::scratch_dir("tls-upstream-sni");
    let ca = TestCa::new("sni CA");
    let Issued {
        cert_pem: cert,
        key_pem: key,
        ..
    } = ca.server(&["api.internal"]);
    let up = TlsUpstream::start(&cert, &key, None).await;
    let ca_file = write(&dir, "ca.pem", &ca.cert_pem);
    let plain = plain_mock().await;
    let url = format!("https://{}", up.addr);

    let gw = gateway(
        &url,
        &format!("tls = {{ ca = \"{ca_file}\", server_name = \"api.internal\" }}"),
        &plain,
    )
    .await;
    let (status, _, body) = get_json(&gw.url("/p/x")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.seen()[0].sni.as_deref(), Some("api.internal"));

    // Without it the IP is checked, and the certificate does not hold it.
    let gw = gateway(&url, &format!("tls = {{ ca = \"{ca_file}\" }}"), &plain).await;
    let (status, _, body) = get_json(&gw.url("/p/x")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn mutual_tls_to_an_upstream_works_with_cert_and_key_and_fails_without() {
    let dir = common::scratch_dir("tls-upstream-mtls");
    let ca = TestCa::new("server CA");
    let Issued {
        cert_pem: cert,
        key_pem: key,
        ..
    } = ca.server(&["localhost"]);
    let client_ca = TestCa::new("client CA");
    let Issued {
        cert_pem: client_cert,
        key_pem: client_key,
        ..
    } = client_ca.client("gateway");
    let up = TlsUpstream::start(&cert, &key, Some(&client_ca.cert_pem)).await;
    let ca_file = write(&dir, "ca.pem", &ca.cert_pem);
    let cert_file = write(&dir, "client.pem", &client_cert);
    let key_file = write(&dir, "client.key", &client_key);
    let plain = plain_mock().await;
    let url = format!("https://localhost:{}", up.addr.port());

    let with =
        format!("tls = {{ ca = \"{ca_file}\", cert = \"{cert_file}\", key = \"{key_file}\" }}");
    let gw = gateway(&url, &with, &plain).await;
    let (status, _, body) = get_json(&gw.url("/p/x")).await;
    assert_eq!(status, 200, "{body}");
    assert!(up.seen()[0].client_cert);

    let gw = gateway(&url, &format!("tls = {{ ca = \"{ca_file}\" }}"), &plain).await;
    let (status, _, body) = get_json(&gw.url("/p/x")).await;
    assert_eq!(status, 502, "{body}");
    // TLS 1.3: the client's half of the handshake is done before the upstream checks
    // the client certificate, so its refusal (an alert) comes with the first read.
    let (_, _, body) = get_json(&gw.url("/agg")).await;
    assert_eq!(body["_errors"]["one"]["code"], "request_failed", "{body}");
    let message = body["_errors"]["one"]["message"].as_str().unwrap();
    assert!(message.contains("CertificateRequired"), "{message}");
    assert_eq!(
        up.seen().len(),
        1,
        "the upstream served no request without a client cert"
    );
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_certificate_no_root_vouches_for() {
    let ca = TestCa::new("nobody's CA");
    let Issued {
        cert_pem: cert,
        key_pem: key,
        ..
    } = ca.server(&["elsewhere.example"]);
    let up = TlsUpstream::start(&cert, &key, None).await;
    let plain = plain_mock().await;
    let gw = gateway(
        &format!("https://{}", up.addr),
        "tls = { insecure_skip_verify = true }",
        &plain,
    )
    .await;
    let (status, _, body) = get_json(&gw.url("/p/x")).await;
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = get_json(&gw.url("/agg")).await;
    assert_eq!(body["one"]["path"], "/one", "{body}");
}

/// What the h2c upstream saw.
#[derive(Default)]
struct H2State {
    connections: AtomicUsize,
    requests: Mutex<Vec<(String, http::Version)>>,
}

/// An HTTP/2-only cleartext upstream (hyper's `http2::Builder`: an HTTP/1.1 request is
/// a protocol error to it). `/held` answers once `held` requests are in at once; `/stream`
/// answers in three chunks and a trailer; anything else `{"h2":true}`.
async fn h2c_upstream(held: usize) -> (SocketAddr, Arc<H2State>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(H2State::default());
    let barrier = Arc::new(tokio::sync::Barrier::new(held.max(1)));
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let (state, barrier) = (shared.clone(), barrier.clone());
            let service = hyper::service::service_fn(move |r: http::Request<Incoming>| {
                let (state, barrier) = (state.clone(), barrier.clone());
                async move {
                    let path = r.uri().path().to_owned();
                    state
                        .requests
                        .lock()
                        .unwrap()
                        .push((path.clone(), r.version()));
                    type Chunk = Result<Frame<Bytes>, std::convert::Infallible>;
                    let frames: Vec<Chunk> = match path.as_str() {
                        "/held" => {
                            barrier.wait().await;
                            vec![Ok(Frame::data(Bytes::from_static(b"{\"held\":true}")))]
                        }
                        "/stream" => {
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            vec![
                                Ok(Frame::data(Bytes::from_static(b"one,"))),
                                Ok(Frame::data(Bytes::from_static(b"two,"))),
                                Ok(Frame::data(Bytes::from_static(b"three"))),
                                Ok(Frame::trailers(trailers)),
                            ]
                        }
                        _ => vec![Ok(Frame::data(Bytes::from_static(b"{\"h2\":true}")))],
                    };
                    let body = StreamBody::new(futures_util::stream::iter(frames));
                    let answer = http::Response::builder()
                        .header("content-type", "application/json")
                        .body(body)
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, state)
}

#[tokio::test]
async fn h2c_upstreams_get_http2_with_prior_knowledge_on_one_shared_connection() {
    const AT_ONCE: usize = 8;
    let (addr, state) = h2c_upstream(AT_ONCE).await;
    let plain = plain_mock().await;
    let gw = gateway(&format!("http://{addr}"), "h2c = true", &plain).await;

    let (status, _, body) = get_json(&gw.url("/agg")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["one"]["h2"], true, "{body}");
    // Every call waits at the upstream until all are in: they run at once.
    let url = gw.url("/p/held");
    let calls = (0..AT_ONCE).map(|_| get_json(&url));
    for (status, _, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["held"], true);
    }
    assert_eq!(
        state.connections.load(Ordering::SeqCst),
        1,
        "concurrent calls share one HTTP/2 connection"
    );
    let requests = state.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), AT_ONCE + 1);
    assert!(requests.iter().all(|(_, v)| *v == http::Version::HTTP_2));
}

#[tokio::test]
async fn an_h2c_proxy_route_streams_the_answer_and_keeps_its_trailers_on_http2() {
    let (addr, _) = h2c_upstream(1).await;
    let plain = plain_mock().await;
    let gw = gateway(&format!("http://{addr}"), "h2c = true", &plain).await;
    let r = client().get(gw.url("/p/stream")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "one,two,three");

    // Over HTTP/2 (h2c to the gateway) the upstream's trailers reach the client.
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (send, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut send = send.ready().await.unwrap();
    let request = http::Request::get(format!("http://{}/p/stream", gw.addr))
        .body(())
        .unwrap();
    let (answer, _) = send.send_request(request, true).unwrap();
    let mut body = answer.await.unwrap().into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        body.flow_control().release_capacity(chunk.len()).unwrap();
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got, b"one,two,three");
    let trailers = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
}

#[tokio::test]
async fn an_h2c_upstream_refuses_http1_so_the_gateway_must_speak_http2() {
    // Guards the test server itself: without h2c the gateway's HTTP/1.1 call fails.
    let (addr, state) = h2c_upstream(1).await;
    let plain = plain_mock().await;
    let gw = gateway(&format!("http://{addr}"), "", &plain).await;
    let (status, _, body) = get_json(&gw.url("/p/x")).await;
    assert_eq!(status, 502, "{body}");
    assert!(state.requests.lock().unwrap().is_empty());
}
