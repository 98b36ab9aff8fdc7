//! JWT providers over real sockets: a JWKS server run by the test (its key set, its
//! `Cache-Control` and its availability changed by the test, its fetches counted),
//! tokens minted here with jsonwebtoken's `encode` (RS256 from the fixed key in
//! `tests/fixtures/jwt/`, ES256 and EdDSA from keys ring makes, HS256 from a secret).
//! Providers are built from `[auth.NAME]` as `fanout check` compiles it and asked
//! directly, as the route's auth phase asks them.

use crate::common::eventually;
use bytes::Bytes;
use fanout::auth::{AuthError, Provider};
use fanout::config::{Env, compile};
use http::{HeaderMap, HeaderValue, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use ring::rand::SystemRandom;
use ring::signature::{self, ECDSA_P256_SHA256_FIXED_SIGNING, KeyPair};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---- keys and tokens ----------------------------------------------------------------

fn b64u(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A signing key and its public JWK.
struct TestKey {
    alg: Algorithm,
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        let public = pair.public_key().as_ref();
        Self {
            alg: Algorithm::ES256,
            kid: kid.into(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                        "x": b64u(&public[1..33]), "y": b64u(&public[33..65])}),
        }
    }

    fn eddsa(kid: &str) -> Self {
        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self {
            alg: Algorithm::EdDSA,
            kid: kid.into(),
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA",
                        "x": b64u(pair.public_key().as_ref())}),
        }
    }

    /// The fixed 2048-bit RSA key of `tests/fixtures/jwt/` (keygen is slow in debug).
    fn rs256(kid: &str) -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
        let der = std::fs::read(format!("{dir}/rsa-2048-private.der")).unwrap();
        let n = std::fs::read_to_string(format!("{dir}/rsa-2048-n.b64u")).unwrap();
        Self {
            alg: Algorithm::RS256,
            kid: kid.into(),
            encoding: EncodingKey::from_rsa_der(&der),
            jwk: json!({"kty": "RSA", "kid": kid, "n": n.trim(), "e": "AQAB"}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &self.encoding).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims valid for an hour, with a subject and a marker that makes each token new.
fn claims(sub: &str) -> Value {
    static N: AtomicUsize = AtomicUsize::new(0);
    json!({"sub": sub, "exp": now() + 3600, "n": N.fetch_add(1, Ordering::Relaxed)})
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

// ---- the JWKS server ----------------------------------------------------------------

#[derive(Default)]
struct JwksState {
    body: Mutex<String>,
    cache_control: Mutex<Option<String>>,
    down: AtomicBool,
    fetches: AtomicUsize,
}

/// A JWKS endpoint over a real socket. Stops when dropped.
struct JwksServer {
    url: String,
    state: Arc<JwksState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(body: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let state = Arc::new(JwksState::default());
        *state.body.lock().unwrap() = body;
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |_req: http::Request<Incoming>| {
                            let state = state.clone();
                            async move {
                                state.fetches.fetch_add(1, Ordering::SeqCst);
                                let mut answer = http::Response::builder();
                                if state.down.load(Ordering::SeqCst) {
                                    answer = answer.status(503);
                                    return answer.body(Full::new(Bytes::from("down")));
                                }
                                if let Some(cc) = state.cache_control.lock().unwrap().clone() {
                                    answer = answer.header("cache-control", cc);
                                }
                                let body = state.body.lock().unwrap().clone();
                                answer
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, state, task }
    }

    fn serve(&self, body: String) {
        *self.state.body.lock().unwrap() = body;
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

// ---- providers ----------------------------------------------------------------------

fn provider(toml: &str) -> Provider {
    let compiled = compile(toml, &Env::default()).unwrap_or_else(|e| panic!("{e}"));
    let (name, spec) = compiled.auth.into_iter().next().expect("one provider");
    Provider::build(&name, spec)
}

async fn url_provider(url: &str, extra: &str) -> Provider {
    let p = provider(&format!("[auth.idp]\njwks_url = \"{url}\"\n{extra}"));
    p.ready().await;
    p
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

async fn check(p: &Provider, token: &str) -> Result<String, AuthError> {
    let uri = Uri::from_static("/dashboard");
    p.authenticate(&bearer(token), &uri)
        .await
        .map(|id| id.subject.to_string())
}

fn refused(outcome: Result<String, AuthError>, why: &str) {
    match outcome {
        Err(AuthError::Invalid(text)) => assert!(text.contains(why), "{text:?} lacks {why:?}"),
        other => panic!("expected Invalid({why}), got {other:?}"),
    }
}

// ---- tests --------------------------------------------------------------------------

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_against_the_fetched_key_set() {
    let (rsa, ec, ed) = (
        TestKey::rs256("r1"),
        TestKey::es256("e1"),
        TestKey::eddsa("d1"),
    );
    let server = JwksServer::start(jwks(&[&rsa, &ec, &ed])).await;
    let p = url_provider(&server.url, "").await;
    assert_eq!(check(&p, &rsa.sign(&claims("ann"))).await.unwrap(), "ann");
    assert_eq!(check(&p, &ec.sign(&claims("bob"))).await.unwrap(), "bob");
    assert_eq!(check(&p, &ed.sign(&claims("cy"))).await.unwrap(), "cy");
    assert_eq!(server.fetches(), 1, "one fetch at start serves every key");
    // No credential where the provider reads: Missing, not Invalid.
    let none = p
        .authenticate(&HeaderMap::new(), &Uri::from_static("/"))
        .await;
    assert_eq!(none.unwrap_err(), AuthError::Missing);
}

#[tokio::test]
async fn claims_become_the_identity_and_its_upstream_headers() {
    let ec = TestKey::es256("e1");
    let server = JwksServer::start(jwks(&[&ec])).await;
    let p = provider(&format!(
        "[auth.idp]\njwks_url = \"{}\"\nclaims_to_headers = {{ \"x-user-id\" = \"sub\", \"x-tenant\" = \"org.id\" }}",
        server.url
    ));
    p.ready().await;
    let token = ec.sign(&json!({"sub": "ann", "exp": now() + 60, "org": {"id": "t7"}}));
    let identity = p
        .authenticate(&bearer(&token), &Uri::from_static("/"))
        .await
        .unwrap();
    assert_eq!(&*identity.provider, "idp");
    assert_eq!(identity.claims["org"]["id"], "t7");
    let headers: Vec<(String, String)> = identity
        .upstream_headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    assert!(headers.contains(&("x-user-id".into(), "ann".into())));
    assert!(headers.contains(&("x-tenant".into(), "t7".into())));
    // The cached answer is the same identity.
    let again = p
        .authenticate(&bearer(&token), &Uri::from_static("/"))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&identity, &again));
    // No subject: refused.
    refused(
        check(&p, &ec.sign(&json!({"exp": now() + 60}))).await,
        "subject",
    );
}

#[tokio::test]
async fn expiry_nbf_and_leeway() {
    let ec = TestKey::es256("e1");
    let server = JwksServer::start(jwks(&[&ec])).await;
    let p = url_provider(&server.url, "leeway = \"30s\"").await;
    let t = now();
    let ok = ec.sign(&json!({"sub": "a", "exp": t - 10}));
    assert_eq!(
        check(&p, &ok).await.unwrap(),
        "a",
        "expired 10 s ago, within the leeway"
    );
    refused(
        check(&p, &ec.sign(&json!({"sub": "a", "exp": t - 120}))).await,
        "expired",
    );
    refused(check(&p, &ec.sign(&json!({"sub": "a"}))).await, "no expiry");
    let soon = ec.sign(&json!({"sub": "a", "exp": t + 600, "nbf": t + 10}));
    assert_eq!(
        check(&p, &soon).await.unwrap(),
        "a",
        "nbf within the leeway"
    );
    refused(
        check(
            &p,
            &ec.sign(&json!({"sub": "a", "exp": t + 600, "nbf": t + 300})),
        )
        .await,
        "not valid yet",
    );
}

#[tokio::test]
async fn issuer_and_audience_are_checked() {
    let ec = TestKey::es256("e1");
    let server = JwksServer::start(jwks(&[&ec])).await;
    let p = url_provider(
        &server.url,
        "issuer = \"https://id.example.com/\"\naudiences = [\"dashboard\", \"api\"]",
    )
    .await;
    let good = json!({"sub": "a", "exp": now() + 60, "iss": "https://id.example.com/", "aud": ["x", "api"]});
    assert_eq!(check(&p, &ec.sign(&good)).await.unwrap(), "a");
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example.com/");
    refused(check(&p, &ec.sign(&wrong_iss)).await, "issuer");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("other");
    refused(check(&p, &ec.sign(&wrong_aud)).await, "audience");
    let mut no_iss = good.clone();
    no_iss.as_object_mut().unwrap().remove("iss");
    refused(check(&p, &ec.sign(&no_iss)).await, "issuer");
    let mut no_aud = good;
    no_aud.as_object_mut().unwrap().remove("aud");
    refused(check(&p, &ec.sign(&no_aud)).await, "audience");
}

#[tokio::test]
async fn forgeries_are_refused() {
    let rsa = TestKey::rs256("r1");
    let ec = TestKey::es256("e1");
    let server = JwksServer::start(jwks(&[&rsa, &ec])).await;
    let p = url_provider(&server.url, "").await;
    let payload = b64u(
        json!({"sub": "mallory", "exp": now() + 60})
            .to_string()
            .as_bytes(),
    );

    // alg none, with and without a signature part.
    let none = b64u(br#"{"alg":"none","kid":"e1"}"#);
    refused(check(&p, &format!("{none}.{payload}.")).await, "malformed");
    refused(check(&p, &format!("{none}.{payload}")).await, "malformed");

    // The RSA public key (as the JWKS publishes it, and as its modulus) as an HMAC secret.
    for secret in [jwks(&[&rsa]), rsa.jwk["n"].as_str().unwrap().to_string()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("r1".into());
        let forged = encode(
            &header,
            &claims("mallory"),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        refused(check(&p, &forged).await, "algorithm is not accepted");
    }

    // Signed by another key under a known kid.
    let impostor = TestKey::es256("e1");
    refused(
        check(&p, &impostor.sign(&claims("mallory"))).await,
        "signature",
    );

    // A known kid with an algorithm of another family.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("r1".into());
    let cross = encode(&header, &claims("mallory"), &ec.encoding).unwrap();
    refused(check(&p, &cross).await, "no key");

    // A valid token with its payload swapped.
    let real = ec.sign(&claims("ann"));
    let parts: Vec<&str> = real.split('.').collect();
    refused(
        check(&p, &format!("{}.{payload}.{}", parts[0], parts[2])).await,
        "signature",
    );

    // Garbage.
    for junk in ["", "a", "a.b", "a.b.c", "...", "e30.e30.e30"] {
        let outcome = check(&p, junk).await;
        assert!(
            matches!(outcome, Err(AuthError::Invalid(_))),
            "{junk:?}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn hs256_with_a_secret() {
    let secret = "0123456789abcdef0123456789abcdef-test";
    let p = provider(&format!("[auth.svc]\nsecret = \"{secret}\""));
    let key = EncodingKey::from_secret(secret.as_bytes());
    for alg in [Algorithm::HS256, Algorithm::HS512] {
        let token = encode(&Header::new(alg), &claims("svc-a"), &key).unwrap();
        assert_eq!(check(&p, &token).await.unwrap(), "svc-a");
    }
    let other = EncodingKey::from_secret(b"another-secret-of-32-bytes-or-more!!");
    let token = encode(&Header::new(Algorithm::HS256), &claims("m"), &other).unwrap();
    refused(check(&p, &token).await, "signature");
    let ec = TestKey::es256("e1");
    refused(
        check(&p, &ec.sign(&claims("m"))).await,
        "algorithm is not accepted",
    );
}

#[tokio::test]
async fn jwks_file_and_token_from_cookie_and_query() {
    let ed = TestKey::eddsa("d1");
    let dir = crate::common::scratch_dir("jwks");
    let file = dir.join("jwks.json");
    std::fs::write(&file, jwks(&[&ed])).unwrap();
    let token = ed.sign(&claims("ann"));

    let p = provider(&format!(
        "[auth.f]\njwks_file = \"{}\"\ntoken_from = \"cookie:session\"",
        file.display()
    ));
    let mut headers = HeaderMap::new();
    headers.insert(
        "cookie",
        HeaderValue::from_str(&format!("a=1; session={token}")).unwrap(),
    );
    let id = p
        .authenticate(&headers, &Uri::from_static("/"))
        .await
        .unwrap();
    assert_eq!(&*id.subject, "ann");
    // The bearer header is not where this provider reads.
    assert_eq!(check(&p, &token).await.unwrap_err(), AuthError::Missing);

    let q = provider(&format!(
        "[auth.q]\njwks_file = \"{}\"\ntoken_from = \"query:access_token\"",
        file.display()
    ));
    let uri: Uri = format!("/x?y=1&access_token={}", token.replace('.', "%2E"))
        .parse()
        .unwrap();
    let id = q.authenticate(&HeaderMap::new(), &uri).await.unwrap();
    assert_eq!(&*id.subject, "ann");

    // A changed file is a changed spec: a reload builds the provider anew.
    let spec = |path: &std::path::Path| {
        compile(
            &format!("[auth.f]\njwks_file = \"{}\"", path.display()),
            &Env::default(),
        )
        .unwrap()
        .auth
        .remove("f")
        .unwrap()
    };
    let before = spec(&file);
    assert_eq!(before, spec(&file));
    std::fs::write(&file, jwks(&[&ed, &TestKey::eddsa("d2")])).unwrap();
    assert_ne!(before, spec(&file));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let (a, b, c) = (
        TestKey::es256("a"),
        TestKey::es256("b"),
        TestKey::es256("c"),
    );
    let server = JwksServer::start(jwks(&[&a])).await;
    let p = url_provider(&server.url, "").await;
    let token_a = a.sign(&claims("ann"));
    assert_eq!(check(&p, &token_a).await.unwrap(), "ann");
    assert_eq!(server.fetches(), 1);

    // The issuer rotates to b: a token with kid b refetches, once, for every request
    // that arrives with it at the same time.
    server.serve(jwks(&[&b]));
    let token_b = b.sign(&claims("bob"));
    let concurrent = futures_util::future::join_all((0..8).map(|_| check(&p, &token_b))).await;
    for outcome in concurrent {
        assert_eq!(outcome.unwrap(), "bob");
    }
    assert_eq!(server.fetches(), 2, "one refetch for the unknown kid");

    // a left the set: its cached verification is gone with it.
    refused(check(&p, &token_a).await, "no key");
    // Another unknown kid within the interval: no fetch.
    server.serve(jwks(&[&b, &c]));
    refused(check(&p, &c.sign(&claims("cy"))).await, "no key");
    assert_eq!(server.fetches(), 2, "at most one refetch per 10 s");
}

#[tokio::test]
async fn an_outage_keeps_the_last_good_set_and_refreshes_pick_up_rotation() {
    let (a, b) = (TestKey::es256("a"), TestKey::es256("b"));
    let server = JwksServer::start(jwks(&[&a])).await;
    let p = url_provider(&server.url, "refresh = \"1s\"").await;
    assert_eq!(check(&p, &a.sign(&claims("ann"))).await.unwrap(), "ann");

    server.state.down.store(true, Ordering::SeqCst);
    let failed = server.fetches() + 2;
    eventually("two failed refreshes", async || server.fetches() >= failed).await;
    assert_eq!(
        check(&p, &a.sign(&claims("ann"))).await.unwrap(),
        "ann",
        "keys kept"
    );

    // Not a key set: also kept.
    server.state.down.store(false, Ordering::SeqCst);
    server.serve("<html>maintenance</html>".into());
    let invalid = server.fetches() + 2;
    eventually("two invalid answers", async || server.fetches() >= invalid).await;
    assert_eq!(
        check(&p, &a.sign(&claims("ann"))).await.unwrap(),
        "ann",
        "keys kept"
    );

    // The scheduled refresh brings a changed set under the same kid, without a reload.
    let rotated = TestKey::es256("a");
    server.serve(jwks(&[&rotated, &b]));
    eventually("the rotated key to be used", async || {
        check(&p, &rotated.sign(&claims("new"))).await.is_ok()
    })
    .await;
    refused(check(&p, &a.sign(&claims("old"))).await, "signature");
}

#[tokio::test]
async fn max_age_sets_the_next_refresh_within_bounds() {
    let ec = TestKey::es256("e1");
    let server = JwksServer::start(jwks(&[&ec])).await;
    for (cache_control, expected) in [
        (None, 300),
        (Some("public, max-age=900"), 900),
        (Some("max-age=5"), 60),
        (Some("no-store"), 60),
        (Some("max-age=9999999"), 86_400),
    ] {
        *server.state.cache_control.lock().unwrap() = cache_control.map(String::from);
        let p = url_provider(&server.url, "").await;
        let jwt = p.jwt().unwrap();
        eventually("the first fetch's schedule", async || {
            jwt.next_refresh() != Some(Duration::ZERO)
        })
        .await;
        assert_eq!(
            jwt.next_refresh(),
            Some(Duration::from_secs(expected)),
            "{cache_control:?}"
        );
    }
}

#[tokio::test]
async fn with_the_jwks_down_at_start_it_is_unavailable_until_keys_arrive() {
    let ec = TestKey::es256("e1");
    let server = JwksServer::start(jwks(&[&ec])).await;
    server.state.down.store(true, Ordering::SeqCst);
    let p = url_provider(&server.url, "").await;
    let token = ec.sign(&claims("ann"));
    assert_eq!(check(&p, &token).await.unwrap_err(), AuthError::Unavailable);
    // Without a credential it is still "missing", not "unavailable".
    let none = p
        .authenticate(&HeaderMap::new(), &Uri::from_static("/"))
        .await;
    assert_eq!(none.unwrap_err(), AuthError::Missing);
    server.state.down.store(false, Ordering::SeqCst);
    eventually("the keys to arrive", async || {
        check(&p, &token).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn the_fetch_task_ends_with_the_provider() {
    let ec = TestKey::es256("e1");
    let server = JwksServer::start(jwks(&[&ec])).await;
    let runtime = tokio::runtime::Handle::current().metrics();
    let baseline = runtime.num_alive_tasks();
    let p = url_provider(&server.url, "refresh = \"1s\"").await;
    assert!(runtime.num_alive_tasks() > baseline);
    drop(p);
    // The refresh task (and the client's pooled connection) end; a leaked task would
    // stay alive, sleeping until its next refresh.
    eventually("the provider's tasks to end", async || {
        runtime.num_alive_tasks() <= baseline
    })
    .await;
}

fn problems(toml: &str) -> String {
    match compile(toml, &Env::default()) {
        Ok(_) => String::new(),
        Err(e) => e.0.iter().map(|p| format!("{p}\n")).collect(),
    }
}

#[test]
fn check_reports_bad_providers_with_their_place_and_fix() {
    let cases = [
        ("jwks_url = \"ftp://x\"", "auth.p.jwks_url"),
        ("jwks_url = \"not a url\"", "auth.p.jwks_url"),
        ("jwks_file = \"/nonexistent/jwks.json\"", "auth.p.jwks_file"),
        ("jwks_file = \"Cargo.toml\"", "not JSON"),
        ("secret = \"\"", "auth.p.secret"),
        ("secret = \"short\"", "32 bytes"),
        (
            "jwks_url = \"https://id.example.com/jwks\"\nalgorithms = [\"HS256\"]",
            "HMAC secret",
        ),
        (
            "secret = \"0123456789abcdef0123456789abcdef\"\nalgorithms = [\"RS256\"]",
            "key set",
        ),
        (
            "jwks_url = \"https://id.example.com/jwks\"\nalgorithms = [\"none\"]",
            "never accepted",
        ),
        (
            "jwks_url = \"https://id.example.com/jwks\"\nalgorithms = [\"XX512\"]",
            "not a JWT algorithm",
        ),
        (
            "jwks_url = \"https://id.example.com/jwks\"\nalgorithms = []",
            "auth.p.algorithms",
        ),
        (
            "jwks_url = \"https://id.example.com/jwks\"\nleeway = \"soon\"",
            "auth.p.leeway",
        ),
        (
            "jwks_url = \"https://id.example.com/jwks\"\nleeway = \"1h\"",
            "10m",
        ),
        (
            "jwks_url = \"https://id.example.com/jwks\"\nrefresh = \"0s\"",
            "auth.p.refresh",
        ),
        (
            "jwks_url = \"https://id.example.com/jwks\"\ntoken_from = \"header:x\"",
            "cookie:NAME",
        ),
        (
            "jwks_url = \"https://id.example.com/jwks\"\nissuer = \"\"",
            "auth.p.issuer",
        ),
    ];
    for (body, expected) in cases {
        let text = problems(&format!("[auth.p]\n{body}\n"));
        assert!(
            text.contains(expected),
            "{body}: {text:?} lacks {expected:?}"
        );
    }
    assert_eq!(
        problems("[auth.p]\njwks_url = \"https://id.example.com/jwks\"\n"),
        ""
    );
}

#[tokio::test]
async fn the_gateway_counts_fetches_and_carries_an_unchanged_provider_over_a_reload() {
    use fanout::gateway::Gateway;
    let ec = TestKey::es256("e1");
    let server = JwksServer::start(jwks(&[&ec])).await;
    let toml = |refresh: &str| {
        format!(
            "[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n[auth.idp]\njwks_url = \"{}\"\nrefresh = \"{refresh}\"\n",
            server.url
        )
    };
    let gateway = Gateway::build(compile(&toml("5m"), &Env::default()).unwrap(), None).unwrap();
    let idp = gateway.auth["idp"].clone();
    idp.ready().await;
    let text = gateway.metrics.encode();
    assert!(
        text.contains("fanout_auth_jwks_refresh_total{provider=\"idp\",result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("fanout_auth_jwks_keys{provider=\"idp\"} 1"),
        "{text}"
    );

    // The same [auth.idp]: the running provider, its set and cache, carry over.
    let same = Gateway::build(
        compile(&toml("5m"), &Env::default()).unwrap(),
        Some(&gateway),
    )
    .unwrap();
    assert!(Arc::ptr_eq(&same.auth["idp"], &idp));
    assert_eq!(server.fetches(), 1);

    // A changed one is built anew (and fetches); the old one's task ends with it.
    server.state.down.store(true, Ordering::SeqCst);
    let changed =
        Gateway::build(compile(&toml("1m"), &Env::default()).unwrap(), Some(&same)).unwrap();
    assert!(!Arc::ptr_eq(&changed.auth["idp"], &idp));
    changed.auth["idp"].ready().await;
    let text = changed.metrics.encode();
    assert!(
        text.contains("fanout_auth_jwks_refresh_total{provider=\"idp\",result=\"error\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn start_attempts_the_first_jwks_fetch_before_it_serves() {
    // The issuer answers 503: the attempt fails fast, and is logged before the listener
    // serves (a fetch left to race the listener would be logged after it).
    let ec = TestKey::es256("e1");
    let server = JwksServer::start(jwks(&[&ec])).await;
    server.state.down.store(true, Ordering::SeqCst);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n\
         [auth.idp]\njwks_url = \"{}\"\n",
        server.url
    );
    // Started off the runtime: the JWKS server answers meanwhile.
    let gateway = tokio::task::spawn_blocking(move || crate::common::GatewayProcess::start(&toml))
        .await
        .unwrap();
    let logs = gateway.logs();
    let failed = logs.iter().position(|l| l.contains("JWKS fetch failed"));
    let listening = logs
        .iter()
        .position(|l| l.contains("listening") && !l.contains("admin"));
    assert!(
        matches!((failed, listening), (Some(f), Some(l)) if f < l),
        "{logs:#?}"
    );
    assert_eq!(server.fetches(), 1, "the failure was the issuer's answer");
    assert!(
        !logs.iter().any(|l| l.contains("eyJ")),
        "no token or key in the log"
    );
}

// ---- through the gateway ------------------------------------------------------------

/// A gateway with `[auth.idp]` on `jwks_url` and an aggregate route `/a` that needs it.
async fn jwt_gateway(jwks_url: &str) -> (crate::common::MockUpstream, crate::common::TestGateway) {
    use crate::common::{MockUpstream, Reply, start_gateway};
    let up = MockUpstream::builder()
        .route("*", Reply::json(r#"{"n":1}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"[server]
listen = "127.0.0.1:0"
[upstreams.up]
url = "{}"
[auth.idp]
jwks_url = "{jwks_url}"
issuer = "https://id.example.com/"
[[routes]]
path = "/a"
auth = "idp"
  [[routes.backends]]
  name = "data"
  upstream = "up"
  path = "/data"
"#,
        up.url()
    ))
    .await;
    (up, gw)
}

async fn get_with(url: &str, token: &str) -> (u16, Option<String>, Value) {
    let response = crate::common::client()
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
    (status, challenge, body)
}

fn issued(sub: &str) -> Value {
    let mut c = claims(sub);
    c["iss"] = json!("https://id.example.com/");
    c
}

#[tokio::test]
async fn a_route_with_auth_takes_valid_tokens_and_refuses_the_rest_before_any_upstream() {
    let (ec, rsa) = (TestKey::es256("e1"), TestKey::rs256("r1"));
    let server = JwksServer::start(jwks(&[&ec, &rsa])).await;
    let (up, gw) = jwt_gateway(&server.url).await;
    let url = gw.url("/a");

    let (status, _, body) = get_with(&url, &ec.sign(&issued("ann"))).await;
    assert_eq!((status, body), (200, json!({"data": {"n": 1}})));
    assert_eq!(get_with(&url, &rsa.sign(&issued("bob"))).await.0, 200);
    assert_eq!(up.total_hits(), 2);

    let mut expired = issued("ann");
    expired["exp"] = json!(now() - 3600);
    let (status, challenge, body) = get_with(&url, &ec.sign(&expired)).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer error=\"invalid_token\", error_description=\"the token has expired\"")
    );
    assert_eq!(body["error"]["code"], "unauthorized");
    let mut other_issuer = issued("ann");
    other_issuer["iss"] = json!("https://evil.example.com/");
    assert_eq!(get_with(&url, &ec.sign(&other_issuer)).await.0, 401);
    assert_eq!(
        get_with(&url, &TestKey::es256("e1").sign(&issued("m")))
            .await
            .0,
        401
    );
    let forged = encode(
        &Header::new(Algorithm::HS256),
        &issued("m"),
        &EncodingKey::from_secret(jwks(&[&rsa]).as_bytes()),
    )
    .unwrap();
    assert_eq!(get_with(&url, &forged).await.0, 401);
    assert_eq!(up.total_hits(), 2, "refused requests call no upstream");
}

#[tokio::test]
async fn a_route_answers_503_until_its_issuer_comes_up_and_follows_rotation() {
    let (a, b) = (TestKey::es256("a"), TestKey::es256("b"));
    let server = JwksServer::start(jwks(&[&a])).await;
    server.state.down.store(true, Ordering::SeqCst);
    let (up, gw) = jwt_gateway(&server.url).await;
    let url = gw.url("/a");
    let token = a.sign(&issued("ann"));
    eventually("the first fetch to fail", async || server.fetches() >= 1).await;
    let (status, _, body) = get_with(&url, &token).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "auth_unavailable");
    assert_eq!(up.total_hits(), 0);

    server.state.down.store(false, Ordering::SeqCst);
    eventually("the keys to arrive", async || {
        get_with(&url, &token).await.0 == 200
    })
    .await;

    // Rotation: a token with a new kid is accepted once the set has it, fetched once.
    server.serve(jwks(&[&a, &b]));
    let before = server.fetches();
    assert_eq!(get_with(&url, &b.sign(&issued("bob"))).await.0, 200);
    assert_eq!(server.fetches(), before + 1);
}
