//! The gateway's own certificates over real sockets: `[server.tls]` served, chosen by
//! SNI, client certificates (mutual TLS), expiry, and live rotation of the files.

use crate::common;

use common::tls::{TestCa, TlsClient};
use common::{scratch_dir, start_gateway};

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
