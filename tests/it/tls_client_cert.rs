//! The client certificate as an identity, over real mutual-TLS connections:
//! `x-forwarded-client-cert` to upstreams (a client's own copy never passes, and no
//! certificate field can forge one), templates, the rate-limit key, and `fanout check`
//! refusing reads of it without `client_ca`.
//!
//! Mutual TLS: the gateways here ask for client certificates with a verifier these tests
//! build from the test CA (`ask_for_client_certs`), so the identity path is tested
//! apart from how `[server.tls] client_ca` builds it; `client_ca_from_the_config_...`
//! uses the config key alone.

use crate::common;
use crate::tls_edge::{
    Sender, ask_for_client_certs, h1, h2, routes, seen, sha256_hex, tls_toml, values,
};

use common::tls::{TestCa, TlsClient};
use common::{MockUpstream, Reply, scratch_dir};
use fanout::config::{Env, compile};

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
