//! End-to-end security tests of identity at the edge, through the gateway binary: what an
//! attacker sends when a route takes a JWT. Smuggled or doubled `Authorization` headers,
//! a token in two places, huge tokens, a `crit` header, junk in `kid`, another issuer's
//! key, nested JSON in claims, and a JWKS server that answers garbage, too much, or
//! nothing. Every answer is a 4xx with the gateway's JSON error shape (never a 5xx, never
//! the upstream called), and the gateway keeps serving with the keys it had.
//!
//! The gateway runs as its own process (`GatewayProcess`), so a crash is a failed
//! request, not a panic the test harness catches. Its startup blocks the test's thread,
//! hence the multi-threaded runtime: the JWKS mock must answer meanwhile.

use crate::common::{GatewayProcess, MockUpstream, Reply, eventually, raw_request};
use fanout::demo::token::Signer;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "api";

/// A gateway with JWT providers `main` (the route's) and `other` (another issuer's key
/// set), a proxy route `/me` and `/q/me` (the token from `?access_token=`) to an
/// upstream that echoes the `x-user-id` it got, and `/admin` with a `require`.
struct Setup {
    gw: GatewayProcess,
    main: Signer,
    other: Signer,
    jwks: MockUpstream,
    app: MockUpstream,
}

async fn setup(refresh: &str) -> Setup {
    let main = Signer::generate();
    let other = Signer::generate();
    let jwks = MockUpstream::builder()
        .route("/main", Reply::json(main.jwks()))
        .route("/other", Reply::json(other.jwks()))
        .start()
        .await;
    let app = MockUpstream::builder()
        .route(
            "*",
            Reply::json(r#"{"user":"{header.x-user-id}"}"#).templated(),
        )
        .start()
        .await;
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[auth.main]
jwks_url = "{jwks}/main"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
refresh = "{refresh}"
claims_to_headers = {{ "x-user-id" = "sub" }}

[auth.q]
jwks_url = "{jwks}/main"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
token_from = "query:access_token"
claims_to_headers = {{ "x-user-id" = "sub" }}

[auth.other]
jwks_url = "{jwks}/other"
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]

[upstreams.app]
url = "{app}"

[[routes]]
path = "/me"
auth = "main"
proxy = {{ upstream = "app", path = "/me" }}

[[routes]]
path = "/q/me"
auth = "q"
proxy = {{ upstream = "app", path = "/me" }}

[[routes]]
path = "/admin"
auth = "main"
require = "claims.role == 'admin'"
proxy = {{ upstream = "app", path = "/admin" }}
"#,
        jwks = jwks.url(),
        app = app.url(),
    );
    let gw = tokio::task::block_in_place(|| GatewayProcess::start(&toml));
    let setup = Setup {
        gw,
        main,
        other,
        jwks,
        app,
    };
    // The first fetch may still be under way when the listener is up.
    let token = setup.token(&setup.main, json!({}));
    eventually("the gateway to have the key set", async || {
        setup
            .get("/me", &[("authorization", &bearer(&token))])
            .await
            .0
            == 200
    })
    .await;
    setup
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Claims the providers accept (subject `alice`, a fresh `jti` so the token is new to
/// the verified-claims cache), with `extra` merged over them.
fn claims(extra: Value) -> Value {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "jti": NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    claims
}

impl Setup {
    fn token(&self, signer: &Signer, extra: Value) -> String {
        signer.sign(&claims(extra))
    }

    /// GETs `path` with `headers`: status, `WWW-Authenticate`, body as JSON (or null).
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, Value) {
        let mut request = crate::common::client().get(self.gw.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
        (status, challenge, body)
    }

    /// Asserts `path` with `headers` is refused with a 401 in the gateway's shape, and
    /// that the upstream heard nothing of it.
    async fn assert_401(&self, what: &str, path: &str, headers: &[(&str, &str)]) -> String {
        let before = self.app.total_hits();
        let (status, challenge, body) = self.get(path, headers).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert_eq!(
            self.app.total_hits(),
            before,
            "{what}: the upstream was called"
        );
        challenge
    }

    /// Asserts the gateway still verifies a new token and passes alice on.
    async fn assert_serving(&self) {
        let token = self.token(&self.main, json!({}));
        let (status, _, body) = self.get("/me", &[("authorization", &bearer(&token))]).await;
        assert_eq!((status, &body["user"]), (200, &json!("alice")), "{body}");
    }
}

/// A raw request's status code.
fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_refused_whichever_holds_the_valid_token() {
    let s = setup("5m").await;
    let valid = s.token(&s.main, json!({}));
    let forged = s.token(&s.other, json!({"sub": "mallory"}));
    for (first, second) in [
        (valid.as_str(), "junk"),
        ("junk", valid.as_str()),
        (valid.as_str(), forged.as_str()),
        (forged.as_str(), valid.as_str()),
    ] {
        let before = s.app.total_hits();
        let answer = raw_request(
            s.gw.addr,
            &format!(
                "GET /me HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {first}\r\n\
                 Authorization: Bearer {second}\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        // Which of the two an upstream or a log would read is anyone's guess: refused.
        assert_eq!(status_of(&answer), 401, "{answer}");
        assert_eq!(s.app.total_hits(), before, "{answer}");
    }
    s.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_other_shapes_are_refused() {
    let s = setup("5m").await;
    let token = s.token(&s.main, json!({}));
    // RFC 7235 §2.1: the scheme is case-insensitive.
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let (status, _, body) = s
            .get("/me", &[("authorization", &format!("{scheme} {token}"))])
            .await;
        assert_eq!((status, &body["user"]), (200, &json!("alice")), "{scheme}");
    }
    // What is not `Bearer TOKEN` is refused, never passed on, never a 5xx.
    let cut = &token[..token.len() - 4];
    let refused = [
        format!("Bearer\t{token}"),
        format!("Bearer {token} {token}"),
        format!("Bearer {token}."),
        format!("Bearer {cut}"),
        format!("Bearer{token}"),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        "Basic YWxpY2U6c2VjcmV0".to_string(),
        format!("Token {token}"),
    ];
    for value in &refused {
        s.assert_401(value, "/me", &[("authorization", value)])
            .await;
    }
    // Extra spaces between scheme and token (RFC 7235 allows 1*SP): either read as the
    // token or refused; never another identity, never a 5xx.
    let (status, _, body) = s
        .get("/me", &[("authorization", &format!("Bearer   {token}"))])
        .await;
    assert!(
        (status == 200 && body["user"] == "alice") || status == 401,
        "{status} {body}"
    );
    s.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_read_only_where_its_provider_reads_it() {
    let s = setup("5m").await;
    let valid = s.token(&s.main, json!({}));
    let forged = s.token(&s.other, json!({"sub": "mallory"}));
    // `bearer`: a token in the query is not read, valid or not.
    s.assert_401(
        "a bad header beside a valid query token",
        &format!("/me?access_token={valid}"),
        &[("authorization", &bearer(&forged))],
    )
    .await;
    s.assert_401(
        "a valid query token alone",
        &format!("/me?access_token={valid}"),
        &[],
    )
    .await;
    let (status, _, body) = s
        .get(
            &format!("/me?access_token={forged}"),
            &[("authorization", &bearer(&valid))],
        )
        .await;
    assert_eq!((status, &body["user"]), (200, &json!("alice")), "{body}");
    // `query:access_token`: the header is not read.
    s.assert_401(
        "a valid header beside a bad query token",
        &format!("/q/me?access_token={forged}"),
        &[("authorization", &bearer(&valid))],
    )
    .await;
    let (status, _, body) = s
        .get(
            &format!("/q/me?access_token={valid}"),
            &[("authorization", &bearer(&forged))],
        )
        .await;
    assert_eq!((status, &body["user"]), (200, &json!("alice")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_query_tokens_are_refused_as_two_authorization_headers_are() {
    let s = setup("5m").await;
    let valid = s.token(&s.main, json!({}));
    let forged = s.token(&s.other, json!({"sub": "mallory"}));
    // Which of the two an upstream (a proxy route passes the query on) or a log would
    // read is anyone's guess: refused, whichever holds the valid token.
    for query in [
        format!("access_token={valid}&access_token={forged}"),
        format!("access_token={forged}&access_token={valid}"),
    ] {
        s.assert_401("two query tokens", &format!("/q/me?{query}"), &[])
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_token_is_refused_without_a_5xx_and_the_gateway_keeps_serving() {
    let s = setup("5m").await;
    // A signed token whose claims carry 20 KiB, and a 60 KiB string of token characters.
    let padded = s.token(&s.main, json!({"pad": "x".repeat(20 * 1024)}));
    s.assert_401(
        "a 27 KiB signed token",
        "/me",
        &[("authorization", &bearer(&padded))],
    )
    .await;
    let junk = format!(
        "{}.{}.{}",
        "a".repeat(20_000),
        "b".repeat(20_000),
        "c".repeat(20_000)
    );
    let before = s.app.total_hits();
    let answer = raw_request(
        s.gw.addr,
        &format!("GET /me HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {junk}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    let status = status_of(&answer);
    // The head's size limit (431) or the token's (401): either way a client error.
    assert!(status == 401 || status == 431, "{answer}");
    assert_eq!(s.app.total_hits(), before);
    s.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_crit_header_names_an_extension_is_refused() {
    let s = setup("5m").await;
    // RFC 7515 §4.1.11: a recipient that does not understand an extension `crit` lists
    // must refuse the token, however well it is signed.
    let header = json!({
        "alg": "ES256",
        "typ": "JWT",
        "kid": s.main.kid(),
        "crit": ["https://example.test/must-understand"],
        "https://example.test/must-understand": true,
    });
    let token = s.main.sign_with_header(&header, &claims(json!({})));
    s.assert_401("crit", "/me", &[("authorization", &bearer(&token))])
        .await;
    s.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_in_kid_is_refused_unechoed_and_refetches_the_key_set_at_most_once_per_10s() {
    let s = setup("5m").await;
    let fetches_before = s.jwks.hits("/main");
    let started = std::time::Instant::now();
    let kids = [
        "../../../../etc/passwd".to_string(),
        "' OR '1'='1' --".to_string(),
        "file:///etc/shadow".to_string(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "kid\u{0}nul".to_string(),
        "kid\r\nx-injected: 1".to_string(),
        "\"quoted\\\"".to_string(),
        "k".repeat(8 * 1024),
    ];
    for kid in &kids {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let token = s.main.sign_with_header(&header, &claims(json!({})));
        let challenge = s
            .assert_401(kid, "/me", &[("authorization", &bearer(&token))])
            .await;
        // The description names the problem, not the attacker's text.
        for echoed in ["passwd", "OR '1'", "shadow", "169.254", "injected", "kkkk"] {
            assert!(!challenge.contains(echoed), "{challenge}");
        }
    }
    // Unknown kids refetch the set, at most once per 10 s (and the scheduled refresh is
    // 5 minutes away): one fetch per started 10 s of this test, plus one.
    let allowed = 1 + started.elapsed().as_secs() / 10 + 1;
    let fetches = s.jwks.hits("/main") - fetches_before;
    assert!(
        fetches as u64 <= allowed,
        "{fetches} fetches for {} kids",
        kids.len()
    );
    s.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_by_another_providers_key_is_refused() {
    let s = setup("5m").await;
    // Its own kid: a key the route's provider does not have.
    let theirs = s.token(&s.other, json!({}));
    s.assert_401(
        "other's key and kid",
        "/me",
        &[("authorization", &bearer(&theirs))],
    )
    .await;
    // The route's kid on a token another key signed: the signature does not hold.
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": s.main.kid()});
    let forged = s.other.sign_with_header(&header, &claims(json!({})));
    s.assert_401(
        "main's kid, other's key",
        "/me",
        &[("authorization", &bearer(&forged))],
    )
    .await;
    // No kid at all: every key of the set is tried, and none is other's.
    let header = json!({"alg": "ES256", "typ": "JWT"});
    let forged = s.other.sign_with_header(&header, &claims(json!({})));
    s.assert_401(
        "no kid, other's key",
        "/me",
        &[("authorization", &bearer(&forged))],
    )
    .await;
    s.assert_serving().await;
}

/// `depth` nested arrays around `leaf`.
fn nested(depth: usize, leaf: &str) -> String {
    format!("{}{leaf}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_json_in_claims_or_header_is_refused_or_served_but_never_a_crash() {
    let s = setup("5m").await;
    // Deep nesting the JSON parser refuses, in the claims of a well-signed token: a 401,
    // and the process lives on.
    let mut payload = claims(json!({})).to_string();
    payload.insert_str(1, &format!(r#""bomb":{},"#, nested(5_000, "1")));
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": s.main.kid()}).to_string();
    let signed = s.main.sign_raw(&header, &payload);
    s.assert_401(
        "5,000 nested arrays in the claims",
        "/me",
        &[("authorization", &bearer(&signed))],
    )
    .await;
    let mut payload = claims(json!({})).to_string();
    let objects = format!("{}1{}", r#"{"a":"#.repeat(1_500), "}".repeat(1_500));
    payload.insert_str(1, &format!(r#""bomb":{objects},"#));
    let signed = s.main.sign_raw(&header, &payload);
    s.assert_401(
        "1,500 nested objects in the claims",
        "/me",
        &[("authorization", &bearer(&signed))],
    )
    .await;
    let header = format!(
        r#"{{"alg":"ES256","kid":"{}","x":{}}}"#,
        s.main.kid(),
        nested(5_000, "1")
    );
    // In the header, an unknown member of a well-signed token: it may be skipped
    // unread (and the token accepted) or refused, but the process must live on.
    let token = s.main.sign_raw(&header, &claims(json!({})).to_string());
    let (status, _, body) = s.get("/me", &[("authorization", &bearer(&token))]).await;
    assert!(
        (status == 200 && body["user"] == "alice") || status == 401,
        "5,000 nested arrays in the header: {status} {body}"
    );

    // Nesting a parser takes: served; on a `require` route the claim it reads being an
    // array is a refusal (403), not an error.
    let deep: Value = serde_json::from_str(&nested(100, "\"admin\"")).unwrap();
    let token = s.token(
        &s.main,
        json!({"role": deep, "wide": (0..2_000).collect::<Vec<_>>()}),
    );
    let (status, _, body) = s.get("/me", &[("authorization", &bearer(&token))]).await;
    assert_eq!((status, &body["user"]), (200, &json!("alice")), "{body}");
    let (status, _, body) = s.get("/admin", &[("authorization", &bearer(&token))]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    s.assert_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_server_answering_garbage_too_much_or_nothing_leaves_the_keys_in_use() {
    // Refreshed every second: each bad answer below is fetched within moments.
    let s = setup("1s").await;
    let bad_answers = [
        ("garbage", Reply::raw("<html>maintenance</html>")),
        ("not a key set", Reply::json(r#"{"keys": "none"}"#)),
        (
            "an error status",
            Reply::json(r#"{"error":"down"}"#).status(500),
        ),
        ("8 MiB", Reply::source(8 * 1024 * 1024)),
        ("nothing, ever", Reply::hang()),
    ];
    for (what, reply) in bad_answers {
        s.jwks.set_reply("/main", reply);
        let before = s.jwks.hits("/main");
        // Two fetches since the switch: at least one read the bad answer (or hangs on it).
        eventually(&format!("two key set fetches after {what}"), async || {
            s.jwks.hits("/main") >= before + 2
                || (what == "nothing, ever" && s.jwks.hits("/main") > before)
        })
        .await;
        // A token the gateway has never seen is verified with the keys it had.
        s.assert_serving().await;
    }
    // The issuer is back: a token of a new key is accepted once the set has it.
    let rotated = Signer::generate();
    s.jwks.set_reply("/main", Reply::json(rotated.jwks()));
    let token = s.token(&rotated, json!({}));
    eventually("the rotated key to be accepted", async || {
        s.get("/me", &[("authorization", &bearer(&token))]).await.0 == 200
    })
    .await;
}
