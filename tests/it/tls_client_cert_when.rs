//! `when` conditions reading the client certificate (`client_cert.subject`, `.uri`),
//! over real TLS connections with certificates made here: a backend is called for the
//! certificate its condition names, skipped for another, for none, and for a client
//! that claims the identity in a header instead of proving it in the handshake.

use crate::common;

use common::tls::{TestCa, TlsClient};
use common::{MockUpstream, Reply, scratch_dir};
use fanout::config::{Env, compile};

const BILLING_ID: &str = "spiffe://example.org/ns/prod/sa/billing";

/// `/dash`: `public` always, `billing` for the SPIFFE id above, `ops` for `CN=ops`;
/// the listener asks for client certificates from `ca` without requiring one.
fn toml(up: &MockUpstream, ca: &TestCa, dir: &std::path::Path) -> String {
    let (cert, key) = ca.server(&["localhost"]).write(dir, "server");
    let client_ca = ca.write(dir, "client-ca");
    format!(
        "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nclient_auth = \"optional\"\n\
         [upstreams.up]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/dash\"\n\
         [[routes.backends]]\nname = \"public\"\nupstream = \"up\"\npath = \"/public\"\n\
         [[routes.backends]]\nname = \"billing\"\nupstream = \"up\"\npath = \"/billing\"\n\
         when = \"client_cert != null && '{BILLING_ID}' in client_cert.uri\"\n\
         [[routes.backends]]\nname = \"ops\"\nupstream = \"up\"\npath = \"/ops\"\n\
         when = \"client_cert != null && client_cert.subject == 'CN=ops'\"\n",
        cert.display(),
        key.display(),
        client_ca.display(),
        up.url()
    )
}

#[tokio::test]
async fn a_backend_is_called_only_for_the_certificate_its_condition_names() {
    let up = MockUpstream::builder()
        .route("/public", Reply::json("{\"p\":1}"))
        .route("/billing", Reply::json("{\"b\":1}"))
        .route("/ops", Reply::json("{\"o\":1}"))
        .start()
        .await;
    let dir = scratch_dir("tls-client-cert-when");
    let ca = TestCa::new("when CA");
    let gw = common::start_gateway(&toml(&up, &ca, &dir)).await;
    let dash = async |client: TlsClient| {
        let answer = client.get(gw.addr, "localhost", "/dash").await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        (up.hits("/billing"), up.hits("/ops"))
    };

    let billing = ca.client_with_uris("billing-7f3c", &[BILLING_ID]);
    assert_eq!(dash(TlsClient::new().identity(&billing)).await, (1, 0));
    assert_eq!(
        dash(TlsClient::new().identity(&ca.client("ops"))).await,
        (1, 1)
    );
    // Another URI, or a subject that only starts like the one named: not the identity.
    let staging = ca.client_with_uris(
        "billing-7f3c",
        &["spiffe://example.org/ns/staging/sa/billing"],
    );
    assert_eq!(dash(TlsClient::new().identity(&staging)).await, (1, 1));
    assert_eq!(
        dash(TlsClient::new().identity(&ca.client("ops2"))).await,
        (1, 1)
    );
    // No certificate: client_cert is null, and both are skipped.
    assert_eq!(dash(TlsClient::new()).await, (1, 1));
    assert_eq!(up.hits("/public"), 5);
}

#[tokio::test]
async fn an_identity_claimed_in_a_header_is_not_the_certificate() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{\"n\":1}"))
        .start()
        .await;
    let dir = scratch_dir("tls-client-cert-when-spoof");
    let ca = TestCa::new("when spoof CA");
    let gw = common::start_gateway(&toml(&up, &ca, &dir)).await;
    let forged = format!("Hash=00;Subject=\"CN=ops\";URI={BILLING_ID}");
    let conn = TlsClient::new()
        .connect(gw.addr, "localhost")
        .await
        .unwrap();
    let answer = conn
        .get_with(
            "/dash",
            &[
                ("x-forwarded-client-cert", forged.as_str()),
                ("x-client-cert", "CN=ops"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(up.hits("/public"), 1);
    assert_eq!((up.hits("/billing"), up.hits("/ops")), (0, 0));
}

#[test]
fn check_refuses_a_condition_on_the_certificate_without_client_ca() {
    let toml = "[upstreams.up]\nurl = \"http://127.0.0.1:1\"\n\
                [[routes]]\npath = \"/a\"\n[[routes.backends]]\nname = \"x\"\nupstream = \"up\"\npath = \"/x\"\n\
                when = \"client_cert != null\"\n";
    let error = compile(toml, &Env::default()).unwrap_err().to_string();
    assert!(
        error.contains(
            "routes[0].backends[0].when: reads the client certificate (client_cert != null)"
        ),
        "{error}"
    );
    assert!(error.contains("set [server.tls] client_ca"), "{error}");
    let named = "[upstreams.up]\nurl = \"http://127.0.0.1:1\"\n\
                 [[routes]]\npath = \"/a\"\n[[routes.backends]]\nname = \"client_cert\"\nupstream = \"up\"\npath = \"/x\"\n";
    let error = compile(named, &Env::default()).unwrap_err().to_string();
    assert!(
        error.contains("routes[0].backends[0].name: \"client_cert\" is reserved"),
        "{error}"
    );
}
