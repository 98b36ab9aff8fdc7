//! The sample `gateway.toml` against the built-in sample upstreams: what `fanout demo`
//! serves, on free ports instead of the fixed ones.

use crate::common;

use common::{get_json, start_gateway};
use fanout::demo::{Sample, serve, serve_collector};
use serde_json::json;
use tokio::net::TcpListener;

/// Starts the samples on free ports; returns the sample config pointing at them.
async fn sample_config() -> String {
    let mut toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml"))
        .unwrap()
        .replace("127.0.0.1:8080", "127.0.0.1:0");
    // The collector first: its fixed port is a prefix of some free ports (43189), which a
    // later replacement would cut into; the samples' (91xx) are not.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve_collector(listener));
    assert!(
        toml.contains("127.0.0.1:4318"),
        "gateway.toml exports to the collector"
    );
    toml = toml.replace("127.0.0.1:4318", &addr);
    for (sample, fixed) in [
        (Sample::Users, "127.0.0.1:9101"),
        (Sample::Orders, "127.0.0.1:9102"),
        (Sample::Weather, "127.0.0.1:9103"),
        (Sample::Stock, "127.0.0.1:9104"),
        (Sample::Payments, "127.0.0.1:9105"),
        (Sample::Loyalty, "127.0.0.1:9106"),
        (Sample::RecsV1, "127.0.0.1:9107"),
        (Sample::RecsV2, "127.0.0.1:9108"),
        (Sample::Shadow, "127.0.0.1:9109"),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve(sample, listener));
        assert!(toml.contains(fixed), "gateway.toml names {fixed}");
        toml = toml.replace(fixed, &addr);
    }
    toml
}

#[tokio::test]
async fn the_sample_dashboard_shows_dependent_calls_and_for_each() {
    let gw = start_gateway(&sample_config().await).await;
    let (status, headers, body) = get_json(&gw.url("/api/users/1/dashboard")).await;
    assert_eq!(status, 200, "{body}");
    let user = &body["user"];
    assert_eq!(user["id"], 1);
    // The weather of the user's own city: a call that read the user's answer.
    assert_eq!(body["weather"]["city"], user["address"]["city"], "{body}");
    // One call per friend id, in order, shaped to id and name.
    let ids = user["friend_ids"].as_array().unwrap();
    let friends = body["friends"].as_array().unwrap();
    assert_eq!(friends.len(), ids.len(), "{body}");
    for (friend, id) in friends.iter().zip(ids) {
        assert_eq!(friend["id"], *id);
        assert_eq!(
            friend.as_object().unwrap().len(),
            2,
            "select kept id and name"
        );
    }
    assert_eq!(body["orders"].as_array().unwrap().len(), 3);
    assert_eq!(body["_errors"], json!({}));
    assert_eq!(headers["x-fanout-complete"], "true");
    let timing = headers["server-timing"].to_str().unwrap();
    for backend in ["user", "orders", "weather", "friends"] {
        assert!(timing.contains(&format!("{backend};dur=")), "{timing}");
    }
    // The proxy route streams the users service through.
    let (status, _, profile) = get_json(&gw.url("/users-api/users/1")).await;
    assert_eq!(status, 200);
    assert_eq!(profile["address"], user["address"]);
}

#[tokio::test]
async fn the_demo_prints_a_traceparent_line_whose_trace_the_answer_continues() {
    let toml = sample_config().await;
    let compiled = fanout::config::compile(&toml, &fanout::config::Env::default()).unwrap();
    let gw = start_gateway(&toml).await;
    let lines = fanout::demo::curl_lines(&compiled, gw.addr);
    let traced = lines.iter().find(|l| l.contains("traceparent")).unwrap();
    let (url, header) = traced
        .strip_prefix("curl -si ")
        .and_then(|rest| rest.split_once(" -H 'traceparent: "))
        .unwrap_or_else(|| panic!("{traced}"));
    let traceparent = header.trim_end_matches('\'');
    let response = common::client()
        .get(url)
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = response.headers()["traceparent"].to_str().unwrap();
    assert_eq!(
        answer.split('-').nth(1),
        traceparent.split('-').nth(1),
        "{answer}"
    );
    let server_span = answer.split('-').nth(2).unwrap().to_string();

    // The collector line shows that trace's spans: the gateway's server span, and one
    // client span per backend call under it.
    let collector = lines
        .iter()
        .find(|l| l.contains("/v1/traces?trace_id="))
        .unwrap();
    let url = collector.split('\'').nth(1).unwrap().to_string();
    let spans = common::eventually_some("the trace's spans at the sample collector", async || {
        let (_, _, spans) = get_json(&url).await;
        let spans = spans.as_array()?.clone();
        spans.iter().any(|s| s["kind"] == "server").then_some(spans)
    })
    .await;
    let server = spans.iter().find(|s| s["kind"] == "server").unwrap();
    assert_eq!(server["span_id"], server_span.as_str(), "{spans:#?}");
    let clients: Vec<_> = spans.iter().filter(|s| s["kind"] == "client").collect();
    assert!(
        clients.len() >= 4,
        "user, orders, weather, friends: {spans:#?}"
    );
    assert!(
        clients
            .iter()
            .all(|c| c["parent_span_id"] == server_span.as_str()),
        "{spans:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("/metrics | grep trace_id")));
}

/// Starts `sample` on a free port; returns its base URL.
async fn sample_at(sample: Sample) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(sample, listener));
    url
}

async fn post(url: &str, body: serde_json::Value) -> reqwest::Response {
    common::client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_sample_write_services_answer_from_the_body_they_are_sent() {
    let orders = sample_at(Sample::Orders).await;
    let items = json!([{"sku": "tea-earl-grey", "qty": 2}, {"sku": "mug-blue", "qty": 1}]);
    let placed = post(
        &format!("{orders}/orders"),
        json!({"user": 7, "items": items}),
    )
    .await;
    assert_eq!(placed.status(), 201);
    let location = placed.headers()["location"].to_str().unwrap().to_string();
    let order = common::json_of(placed).await;
    assert_eq!(location, format!("/orders/{}", order["id"]));
    assert_eq!(order["user"], 7);
    assert!(order["total"].as_f64().unwrap() > 0.0, "{order}");
    // A user id as text, as a path parameter reaches a template, is read too.
    let placed = post(
        &format!("{orders}/orders"),
        json!({"user": "7", "items": items}),
    )
    .await;
    assert_eq!(placed.status(), 201);
    let refused = post(&format!("{orders}/orders"), json!({"items": items})).await;
    assert_eq!(refused.status(), 400);
    assert!(
        common::json_of(refused).await["error"]
            .as_str()
            .unwrap()
            .starts_with("user:")
    );
    let not_json = common::client()
        .post(format!("{orders}/orders"))
        .body("{user: 7")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    // Reads still answer as before.
    let (status, _, recent) = get_json(&format!("{orders}/orders?user=7")).await;
    assert_eq!(status, 200);
    assert_eq!(recent["count"], 3);

    let stock = sample_at(Sample::Stock).await;
    let reserved = post(
        &format!("{stock}/stock/reservations"),
        json!({"order": 5001, "items": items}),
    )
    .await;
    assert_eq!(reserved.status(), 201);
    assert_eq!(common::json_of(reserved).await["units"], 3);
    let too_many = json!({"order": 5001, "items": [{"sku": "tea-earl-grey", "qty": 11}]});
    let conflict = post(&format!("{stock}/stock/reservations"), too_many).await;
    assert_eq!(conflict.status(), 409);

    let payments = sample_at(Sample::Payments).await;
    let charge = json!({"order": 5001, "amount": 12.5, "card": "tok_visa"});
    let paid = post(&format!("{payments}/payments"), charge).await;
    assert_eq!(paid.status(), 201);
    let paid = common::json_of(paid).await;
    assert_eq!(
        (paid["amount"].clone(), paid["status"].clone()),
        (json!(12.5), json!("captured"))
    );
    let declined = json!({"order": 5001, "amount": 12.5, "card": fanout::demo::DECLINED_CARD});
    assert_eq!(
        post(&format!("{payments}/payments"), declined)
            .await
            .status(),
        402
    );

    let loyalty = sample_at(Sample::Loyalty).await;
    let credit = json!({"user": 7, "order": 5001, "amount": 12.5});
    let credited = post(&format!("{loyalty}/loyalty/points"), credit).await;
    assert_eq!(credited.status(), 201);
    assert_eq!(common::json_of(credited).await["points"], 12);
    let (status, _, _) = get_json(&format!("{loyalty}/loyalty/points")).await;
    assert_eq!(status, 405);

    // The users sample says who is on the pro plan: odd ids.
    let users = sample_at(Sample::Users).await;
    let (_, _, one) = get_json(&format!("{users}/users/1")).await;
    let (_, _, two) = get_json(&format!("{users}/users/2")).await;
    assert_eq!(
        (one["plan"].clone(), two["plan"].clone()),
        (json!("pro"), json!("free"))
    );
}

/// The banner's checkout lines: (url, body) of each JSON POST, in order (user 1, user 2).
fn checkout_lines(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let rest = line.strip_prefix("curl -si ")?;
            let (url, body) = rest.split_once(" -H 'content-type: application/json' -d '")?;
            Some((url.to_string(), body.strip_suffix('\'')?.to_string()))
        })
        .collect()
}

async fn post_text(url: &str, body: &str) -> reqwest::Response {
    common::client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_demo_checkout_answers_the_orders_201_and_location_with_the_calls_it_made() {
    let toml = sample_config().await;
    let compiled = fanout::config::compile(&toml, &fanout::config::Env::default()).unwrap();
    let gw = start_gateway(&toml).await;
    let lines = fanout::demo::curl_lines(&compiled, gw.addr);
    let checkouts = checkout_lines(&lines);
    assert_eq!(checkouts.len(), 2, "{lines:#?}");
    let sent: serde_json::Value = serde_json::from_str(&checkouts[0].1).unwrap();

    for ((url, body), (user_id, pro)) in checkouts.iter().zip([(1, true), (2, false)]) {
        assert!(
            url.ends_with(&format!("/api/users/{user_id}/checkout")),
            "{url}"
        );
        let response = post_text(url, body).await;
        assert_eq!(response.status(), 201, "{url}");
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let timing = response.headers()["server-timing"]
            .to_str()
            .unwrap()
            .to_string();
        let merged = common::json_of(response).await;
        let order = &merged["order"];
        // The order carries the user's id (read from the user's answer, a number) and
        // the client's items; its Location is the client's.
        assert_eq!(order["user"], user_id, "{merged}");
        assert_eq!(
            order["items"],
            sent["items"].as_array().unwrap().len(),
            "{merged}"
        );
        assert_eq!(location, format!("/orders/{}", order["id"]), "{merged}");
        // Stock and payment read the order's answer: its id, and its total as a number.
        assert_eq!(merged["stock"]["order"], order["id"], "{merged}");
        assert_eq!(merged["stock"]["units"], 3, "{merged}");
        assert_eq!(merged["payment"]["order"], order["id"], "{merged}");
        assert_eq!(merged["payment"]["amount"], order["total"], "{merged}");
        assert_eq!(merged["payment"]["status"], "captured", "{merged}");
        assert_eq!(merged["user"]["plan"], if pro { "pro" } else { "free" });
        // Loyalty only for the pro user; for the other it is skipped and left out.
        if pro {
            let total = order["total"].as_f64().unwrap();
            assert_eq!(
                merged["loyalty"]["points"],
                total.floor() as u64,
                "{merged}"
            );
            assert_eq!(merged["loyalty"]["order"], order["id"], "{merged}");
        } else {
            assert!(merged.get("loyalty").is_none(), "{merged}");
            let loyalty = timing.split(", ").find(|t| t.starts_with("loyalty;"));
            assert!(
                loyalty.is_some_and(|t| t.ends_with(r#"desc="skipped""#)),
                "{timing}"
            );
        }
        assert_eq!(merged["_errors"], json!({}), "{merged}");
    }

    // A declined card: the payments service's 402 reaches the client, not a 201.
    let declined = checkouts[0]
        .1
        .replace("tok_visa", fanout::demo::DECLINED_CARD);
    assert_ne!(declined, checkouts[0].1);
    let response = post_text(&checkouts[0].0, &declined).await;
    assert_eq!(response.status(), 402);
    assert!(response.headers().get("location").is_none());
    // A body that is not JSON is the client's mistake, named.
    let response = post_text(&checkouts[0].0, "{items: [").await;
    assert_eq!(response.status(), 400);
}

/// The banner's lines for the protected route: (url, token) of the one with a token, and
/// the url of the one without.
fn protected_lines(lines: &[String]) -> ((String, String), String) {
    let with = lines
        .iter()
        .find_map(|line| {
            let rest = line.strip_prefix("curl -si ")?;
            let (url, token) = rest.split_once(" -H 'authorization: Bearer ")?;
            Some((url.to_string(), token.strip_suffix('\'')?.to_string()))
        })
        .unwrap_or_else(|| panic!("a line with a token: {lines:#?}"));
    let without = lines
        .iter()
        .find_map(|line| {
            let rest = line.strip_prefix("curl -si ")?;
            rest.strip_suffix("   # no token: 401").map(str::to_string)
        })
        .unwrap_or_else(|| panic!("a line without a token: {lines:#?}"));
    (with, without)
}

#[tokio::test]
async fn the_demo_token_opens_the_protected_route_and_its_absence_is_a_401() {
    use fanout::demo::token::{DEMO_SUBJECT, Signer, demo_claims};
    let toml = sample_config().await;
    let compiled = fanout::config::compile(&toml, &fanout::config::Env::default()).unwrap();
    let gw = start_gateway(&toml).await;
    let lines = fanout::demo::curl_lines(&compiled, gw.addr);
    let ((url, token), without) = protected_lines(&lines);
    assert!(url.ends_with("/api/me"), "{url}");
    assert_eq!(without, url);

    // The token of the banner: the users service sees the subject and scope in the
    // headers claims_to_headers set, never the token; a client's own x-user-id is
    // replaced.
    let response = common::client()
        .get(&url)
        .header("authorization", format!("Bearer {token}"))
        .header("x-user-id", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let me = common::json_of(response).await;
    assert_eq!(me["me"]["user_id"], DEMO_SUBJECT, "{me}");
    assert_eq!(me["me"]["scope"], "dashboard:read", "{me}");
    assert_eq!(me["me"]["token_forwarded"], false, "{me}");

    // No token: 401 with RFC 6750's challenge.
    let response = common::client().get(&without).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert_eq!(
        common::json_of(response).await["error"]["code"],
        "unauthorized"
    );

    // A token of the same key without the scope `require` asks for: 403.
    let mut claims = demo_claims(
        Some("https://demo.fanout.local"),
        Some("fanout-demo"),
        std::time::SystemTime::now(),
    );
    claims["scope"] = json!("orders:read");
    let response = common::client()
        .get(&url)
        .header(
            "authorization",
            format!("Bearer {}", Signer::demo().sign(&claims)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        common::json_of(response).await["error"]["code"],
        "forbidden"
    );
}

/// base64url without padding, decoded (the tests' own, to read what the demo signed).
fn base64url_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::new();
    let (mut bits, mut n) = (0u32, 0);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64url") as u32;
        bits = bits << 6 | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
fn the_banner_token_is_for_the_provider_of_the_demo_key_set_and_verifies() {
    use fanout::demo::token::{JWKS_PATH, Signer};
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[auth.demo]
jwks_url = "http://127.0.0.1:9101{JWKS_PATH}"
issuer = "https://issuer.test"
audiences = ["first", "second"]

[auth.elsewhere]
jwks_url = "https://id.example.com{JWKS_PATH}"

[upstreams.users]
url = "http://127.0.0.1:9101"

[[routes]]
path = "/mine"
auth = ["elsewhere", "demo"]
  [[routes.backends]]
  name = "me"
  upstream = "users"
  path = "/me"

[[routes]]
path = "/theirs"
auth = "elsewhere"
  [[routes.backends]]
  name = "me"
  upstream = "users"
  path = "/me"
"#
    );
    let compiled = fanout::config::compile(&toml, &fanout::config::Env::default()).unwrap();
    let tokens = fanout::demo::demo_tokens(&compiled, std::time::SystemTime::now());
    assert_eq!(
        tokens.keys().collect::<Vec<_>>(),
        ["demo"],
        "only the demo key set's provider"
    );
    let lines = fanout::demo::curl_lines(&compiled, "127.0.0.1:8080".parse().unwrap());
    let ((url, token), without) = protected_lines(&lines);
    assert_eq!(url, "http://127.0.0.1:8080/mine");
    assert_eq!(without, url);
    // The same key and claims (but the times: the two were made moments apart; and
    // ECDSA signatures differ from one signing to the next).
    let claims_of = |t: &str| {
        let mut claims: serde_json::Value =
            serde_json::from_slice(&base64url_decode(t.split('.').nth(1).unwrap())).unwrap();
        let object = claims.as_object_mut().unwrap();
        object.remove("iat");
        object.remove("exp");
        claims
    };
    assert_eq!(token.split('.').next(), tokens["demo"].split('.').next());
    assert_eq!(claims_of(&token), claims_of(&tokens["demo"]));
    // A route only another issuer's provider guards gets no token.
    assert!(
        lines.contains(&"curl -si http://127.0.0.1:8080/theirs".to_string()),
        "{lines:#?}"
    );

    let parts: Vec<&str> = token.split('.').collect();
    let claims: serde_json::Value = serde_json::from_slice(&base64url_decode(parts[1])).unwrap();
    assert_eq!(claims["iss"], "https://issuer.test");
    assert_eq!(claims["aud"], "first");
    assert_eq!(claims["sub"], "demo-user");
    assert_eq!(claims["scope"], "dashboard:read");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 24 * 3600);
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        Signer::demo().public_key(),
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    key.verify(signed.as_bytes(), &base64url_decode(parts[2]))
        .unwrap();
}

/// `fanout demo --tls` as its own process on `toml`; killed when dropped.
struct DemoProcess(std::process::Child);

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TLS client that trusts only the CA in `ca` and offers `alpn`.
fn tls_connector(ca: &std::path::Path, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

#[tokio::test]
async fn demo_with_tls_serves_its_routes_over_tls_verified_by_the_printed_ca() {
    use std::io::BufRead;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A free port for the users sample, which the demo itself starts.
    let users = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[upstreams.users]
url = "http://{users}"

[[routes]]
path = "/users-api/{{*rest}}"
proxy = {{ upstream = "users", path = "/{{rest}}" }}
"#
    );
    let dir = common::scratch_dir("demo-tls");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["demo", "--tls", "-c"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let demo = DemoProcess(child);
    // The banner: where the certificates are, then the curl lines.
    let mut printed = Vec::new();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let curl = loop {
        let line = lines
            .next()
            .expect("the demo exited before printing its curl lines")
            .unwrap();
        printed.push(line.clone());
        if line.trim_start().starts_with("curl ") {
            break line.trim().to_string();
        }
    };
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("demo certificates in ")),
        "{printed:#?}"
    );
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("fanout demo on https://127.0.0.1:")),
        "{printed:#?}"
    );
    let rest = curl
        .strip_prefix("curl -si --cacert ")
        .unwrap_or_else(|| panic!("{curl}"));
    let (ca, url) = rest.split_once(' ').unwrap();
    let ca = std::path::PathBuf::from(ca);
    let authority = url
        .strip_prefix("https://")
        .and_then(|u| u.split('/').next())
        .unwrap_or_else(|| panic!("{curl}"));
    assert_eq!(&url[8 + authority.len()..], "/users-api/users/1", "{curl}");
    let addr: std::net::SocketAddr = authority.parse().unwrap();
    let name = rustls::pki_types::ServerName::try_from(addr.ip().to_string()).unwrap();

    // HTTP/1.1 over TLS, the certificate checked against the printed CA only.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tls_connector(&ca, &[b"http/1.1"])
        .connect(name.clone(), tcp)
        .await
        .unwrap();
    tls.write_all(
        format!(
            "GET /users-api/users/1 HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["id"], 1, "{answer}");

    // HTTP/2 when the client offers it, over the same certificate.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tls_connector(&ca, &[b"h2", b"http/1.1"])
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(format!("https://{authority}/users-api/users/2"))
        .body(())
        .unwrap();
    let (response, _) = h2.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let profile: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(profile["id"], 2);

    // Stopped, the demo removes the certificates it made (and their private key).
    let certs = printed
        .iter()
        .find_map(|l| l.strip_prefix("demo certificates in "))
        .and_then(|l| l.split_once(": "))
        .map(|(dir, _)| std::path::PathBuf::from(dir))
        .unwrap();
    assert!(ca.starts_with(&certs) && ca.exists(), "{ca:?} in {certs:?}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &demo.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Waited for off the runtime, which must go on answering the server's GOAWAY ping on
    // the h2 connection still open, or shutdown would wait out its grace.
    let exited = tokio::task::spawn_blocking(move || {
        let mut demo = demo;
        demo.0.wait().unwrap()
    });
    assert!(exited.await.unwrap().success());
    assert!(!certs.exists(), "{certs:?} left behind");
}

#[test]
fn the_curl_lines_of_a_tls_listener_are_https_and_name_localhost_for_any_address() {
    let dir = common::scratch_dir("demo-tls-lines");
    let certs = fanout::demo::DemoCertificates::make(&dir).unwrap();
    let config = |tls: bool| {
        let tls = if tls {
            format!(
                "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                certs.cert.display(),
                certs.key.display()
            )
        } else {
            String::new()
        };
        let toml = format!(
            r#"
[server]
listen = "0.0.0.0:8443"
{tls}
[upstreams.users]
url = "http://127.0.0.1:9101"

[[routes]]
path = "/u/{{id}}"
  [[routes.backends]]
  name = "user"
  upstream = "users"
  path = "/users/{{id}}"
"#
        );
        fanout::config::compile(&toml, &fanout::config::Env::default()).unwrap()
    };
    let any: std::net::SocketAddr = "0.0.0.0:8443".parse().unwrap();
    let loopback: std::net::SocketAddr = "127.0.0.1:8443".parse().unwrap();
    let first = |lines: Vec<String>| lines.into_iter().next().unwrap();
    // The operator's certificate: https, the CA left to the reader.
    assert_eq!(
        first(fanout::demo::curl_lines(&config(true), any)),
        "curl -si https://localhost:8443/u/1"
    );
    // The demo's: its CA named.
    assert_eq!(
        first(fanout::demo::curl_lines_tls(
            &config(true),
            loopback,
            Some(&certs.ca)
        )),
        format!(
            "curl -si --cacert {} https://127.0.0.1:8443/u/1",
            certs.ca.display()
        )
    );
    // Without TLS nothing changes.
    assert_eq!(
        first(fanout::demo::curl_lines(&config(false), any)),
        "curl -si http://0.0.0.0:8443/u/1"
    );
}

/// Serves `compiled` (a config compiled against an environment of the test's own).
async fn serve_compiled(compiled: fanout::config::Compiled) -> common::TestGateway {
    let gateway = fanout::gateway::Gateway::build(compiled, None).unwrap();
    common::serve(std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(
        gateway,
    )))
    .await
}

/// The loop line `for i in $(seq N); do ...` among `lines`: its N, its URLs and the
/// number of 200s its comment promises.
fn limit_loop(lines: &[String]) -> (usize, Vec<String>, usize) {
    let line = lines
        .iter()
        .find(|l| l.starts_with("for i in $(seq "))
        .unwrap_or_else(|| panic!("no loop line: {lines:#?}"));
    let rounds = line["for i in $(seq ".len()..]
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let urls = line
        .split([' ', ';'])
        .filter(|w| w.starts_with("http://"))
        .map(str::to_string)
        .collect();
    let admitted = line
        .split("200 for the first ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    (rounds, urls, admitted)
}

#[tokio::test]
async fn with_redis_the_demo_limit_and_cache_are_shared_by_two_gateways() {
    let redis = common::redis::RedisServer::start();
    // 10 an hour rather than a minute: no token comes back while the test runs, however
    // slow the machine.
    let toml = sample_config()
        .await
        .replace(r#"rate = "10/min""#, r#"rate = "10/hour""#);
    // The store's 5 ms timeout would, on a loaded machine, let a slow call fall back to
    // the local limit (`on_error = "local"`, as designed) and admit one more: this test
    // counts what Redis decides, so its calls get the time they take.
    let env = fanout::config::Env::from_pairs(
        fanout::demo::redis_env(&redis.url())
            .into_iter()
            .chain([("FANOUT__CLUSTER__TIMEOUT", "5s".to_string())]),
    );
    let compiled = fanout::config::compile(&toml, &env).unwrap();
    let cluster = compiled
        .cluster
        .as_ref()
        .expect("the demo's [cluster] from its env");
    assert_eq!(cluster.timeout, std::time::Duration::from_secs(5));
    let first = serve_compiled(compiled.clone()).await;
    let second = serve_compiled(compiled.clone()).await;

    // What the demo prints: a loop past the limit on this gateway, and, for a second
    // gateway on the same Redis, its command line and a loop over both.
    let (rounds, urls, admitted) = limit_loop(&fanout::demo::curl_lines(&compiled, first.addr));
    assert_eq!((rounds, admitted), (12, 10));
    assert_eq!(urls, [first.url("/api/users/1/profile")]);
    let shared = fanout::demo::cluster_lines(
        &compiled,
        std::path::Path::new("gateway.toml"),
        &toml,
        Some(&redis.url()),
        first.addr,
    );
    let next_port = format!("127.0.0.1:{}", first.addr.port() + 1);
    assert!(
        shared[0].contains(&format!("FANOUT__CLUSTER__REDIS='{}'", redis.url()))
            && shared[0].contains("FANOUT_DEMO_SCOPE=cluster")
            && shared[0].contains(&format!("FANOUT__SERVER__LISTEN={next_port}"))
            && shared[0].contains("fanout run -c gateway.toml"),
        "{shared:#?}"
    );
    // A purge on the first gateway's admin, then the second gateway's answer again.
    assert_eq!(
        shared[2].split("   #").next().unwrap(),
        format!(
            "curl -s -X POST http://127.0.0.1:9901/cache/purge; sleep 1; curl -si http://{next_port}/api/users/1/profile"
        ),
        "{shared:#?}"
    );
    let (rounds, urls, admitted) = limit_loop(&shared);
    assert_eq!((rounds, admitted), (6, 10));
    assert_eq!(urls.len(), 2);
    assert!(urls[1].contains(&next_port), "{urls:?}");
    // The second gateway of this test listens on a free port, not the next one.
    let urls = [
        first.url("/api/users/1/profile"),
        second.url("/api/users/1/profile"),
    ];

    // The profile the first gateway fetched is a hit on the second (from Redis: the
    // second's own cache is empty).
    let response = common::client().get(&urls[0]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let response = common::client().get(&urls[1]).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let timing = response.headers()["server-timing"].to_str().unwrap();
    assert!(
        timing.contains(r#"user;dur="#) && timing.contains(r#"desc="shared""#),
        "{timing}"
    );

    // The loop over both: with the two calls above, 10 admitted in all, then 429s.
    let mut statuses = Vec::new();
    for _ in 0..rounds {
        for url in &urls {
            let response = common::client().get(url).send().await.unwrap();
            if response.status() == 429 {
                assert!(response.headers().contains_key("retry-after"));
            }
            statuses.push(response.status().as_u16());
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        8,
        "{statuses:?}"
    );
    assert!(statuses[8..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test]
async fn without_redis_the_demo_says_how_to_share_its_limit() {
    let toml = sample_config().await;
    let compiled = fanout::config::compile(&toml, &fanout::config::Env::default()).unwrap();
    let addr = "127.0.0.1:8080".parse().unwrap();
    let path = std::path::Path::new("gateway.toml");
    let lines = fanout::demo::cluster_lines(&compiled, path, &toml, None, addr);
    assert_eq!(
        lines,
        [
            "fanout demo --redis redis://127.0.0.1:6379/0 -c gateway.toml   # with a redis-server running: a rate limit and a cache shared by several gateways"
        ]
    );
    // The local limit prints no loop claiming Redis counts it.
    let curl = fanout::demo::curl_lines(&compiled, addr);
    assert!(!curl.iter().any(|l| l.contains("Redis")), "{curl:#?}");
    // A config that does not read the demo's scope variable gets no hint.
    let plain = toml.replace("${FANOUT_DEMO_SCOPE:-local}", "local");
    assert!(fanout::demo::cluster_lines(&compiled, path, &plain, None, addr).is_empty());
}

#[tokio::test]
async fn the_demo_canary_keeps_a_user_on_one_version_and_names_it_in_server_timing() {
    let gw = start_gateway(&sample_config().await).await;
    let client = common::client();
    let mut versions = std::collections::BTreeSet::new();
    for user in 0..60 {
        let mut seen = None;
        for _ in 0..2 {
            let response = client
                .get(gw.url(&format!("/api/recommendations?user={user}")))
                .header("x-client-id", user.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let timing = response.headers()["server-timing"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = common::json_of(response).await;
            let version = body["version"].as_str().unwrap().to_owned();
            assert_eq!(timing, format!("upstream;desc=\"recs-{version}\""));
            assert!(seen.is_none_or(|s| s == version), "user {user} moved");
            seen = Some(version.clone());
            versions.insert(version);
        }
        let response = client
            .get(gw.url(&format!("/api/users/{}/home", user % 10 + 1)))
            .header("x-client-id", user.to_string())
            .send()
            .await
            .unwrap();
        let timing = response.headers()["server-timing"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = common::json_of(response).await;
        let version = seen.unwrap();
        assert_eq!(body["recs"]["version"], version.as_str(), "{body}");
        assert!(
            timing.contains("recs;dur=") && timing.contains(&format!("desc=\"ok recs-{version}\"")),
            "{timing}"
        );
    }
    assert_eq!(
        versions.len(),
        2,
        "60 users reach both versions: {versions:?}"
    );
}
