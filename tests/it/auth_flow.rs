//! The identity flowing on, over real sockets: a client's copies of a header that a
//! provider's `claims_to_headers` sets never reach an upstream, on any route (with or
//! without `auth`, aggregate, proxy, WebSocket upgrade, `forward_headers`, any spelling);
//! with an identity the upstream sees the claim's value once; templates read
//! `{auth...}`; and the cache never gives one user's answer to another.

use crate::common;

use common::{MockUpstream, Reply, start_gateway};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An API key provider whose identity's subject goes upstream as `x-user-id`.
const PROVIDER: &str = r#"
[auth.users]
api_keys = { keys = { ada = "ada-key-0123456789abcdef", bob = "bob-key-0123456789abcdef" } }
claims_to_headers = { "x-user-id" = "sub" }
"#;

/// `PROVIDER` (unless `provider` is false), upstream `up` at `url` and `ws` at
/// `ws_url`, and three routes with `route_auth` on each: `/agg` (an aggregate
/// forwarding `x-user-id` and `x-other`), `/p/{*rest}` (a proxy passing underscored
/// names) and `/ws/{*rest}` (a proxy allowing WebSocket upgrades).
fn config(url: &str, ws_url: &str, route_auth: &str, provider: bool) -> String {
    format!(
        r#"{provider}
[upstreams.up]
url = "{url}"
[upstreams.ws]
url = "{ws_url}"

[[routes]]
path = "/agg"
forward_headers = ["x-user-id", "x-other"]
{route_auth}
[[routes.backends]]
name = "a"
upstream = "up"
path = "/a"

[[routes]]
path = "/p/{{*rest}}"
underscores_in_headers = true
{route_auth}
proxy = {{ upstream = "up", path = "/{{rest}}" }}

[[routes]]
path = "/ws/{{*rest}}"
{route_auth}
proxy = {{ upstream = "ws", path = "/{{rest}}", upgrade = ["websocket"] }}
"#,
        provider = if provider { PROVIDER } else { "" },
    )
}

/// An upstream that answers 101 to an upgrade (then closes) and keeps each request's
/// head, in lower case.
async fn upgrading_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let mut chunk = [0u8; 4096];
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).to_ascii_lowercase());
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                          Upgrade: websocket\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (format!("http://{addr}"), heads)
}

/// Sends a WebSocket upgrade request with `extra` header lines and returns the
/// gateway's answer head.
async fn upgrade(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: g\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    String::from_utf8_lossy(&head).into_owned()
}

/// A client's spoofed copies: two of `x-user-id` (in two spellings) and one with
/// underscores, beside a header that passes.
const SPOOFED: &str = "X-User-Id: admin\r\nx-user-id: root\r\nX_User_Id: evil\r\nX-Other: kept\r\n";

/// The values of `name` in a recorded head (lower case), each line `name: value`.
fn head_values<'h>(head: &'h str, name: &str) -> Vec<&'h str> {
    head.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
        .collect()
}

#[tokio::test]
async fn a_clients_claim_headers_never_reach_an_upstream_on_a_route_without_auth() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let (ws_url, heads) = upgrading_upstream().await;
    let gw = start_gateway(&config(&up.url(), &ws_url, "", true)).await;
    for path in ["/agg", "/p/x"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: g\r\n{SPOOFED}Connection: close\r\n\r\n");
        let answer = common::raw_request(gw.addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        let names: Vec<&str> = request.headers.keys().map(|k| k.as_str()).collect();
        assert!(
            !names.contains(&"x-user-id") && !names.contains(&"x_user_id"),
            "{}: {names:?}",
            request.target
        );
        assert_eq!(request.headers["x-other"], "kept", "{}", request.target);
    }
    let answer = upgrade(gw.addr, "/ws/chat", SPOOFED).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let head = heads.lock().unwrap()[0].clone();
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head_values(&head, "x-user-id").is_empty() && head_values(&head, "x_user_id").is_empty(),
        "{head}"
    );
    assert_eq!(head_values(&head, "x-other"), ["kept"], "{head}");
}

#[tokio::test]
async fn without_claims_to_headers_a_clients_headers_pass_as_before() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let (ws_url, _) = upgrading_upstream().await;
    let gw = start_gateway(&config(&up.url(), &ws_url, "", false)).await;
    let request = format!("GET /agg HTTP/1.1\r\nHost: g\r\n{SPOOFED}Connection: close\r\n\r\n");
    let answer = common::raw_request(gw.addr, &request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = &up.requests()[0];
    let values: Vec<_> = seen.headers.get_all("x-user-id").iter().collect();
    assert_eq!(values, ["admin", "root"]);
}

/// A GET of `url` with `headers`: status and body.
async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = common::client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn with_an_identity_the_upstream_sees_the_claim_value_once() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let (ws_url, heads) = upgrading_upstream().await;
    let gw = start_gateway(&config(&up.url(), &ws_url, "auth = \"users\"", true)).await;
    // Spoofed copies, and `Connection` naming the header so that removing hop-by-hop
    // headers would take the gateway's own value away if it were set first.
    for path in ["/agg", "/p/x"] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: g\r\nX-Api-Key: ada-key-0123456789abcdef\r\n{SPOOFED}\
             Connection: close, x-user-id\r\n\r\n"
        );
        let answer = common::raw_request(gw.addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{path}: {answer}");
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        let values: Vec<_> = request.headers.get_all("x-user-id").iter().collect();
        assert_eq!(values, ["ada"], "{}", request.target);
        assert!(
            !request.headers.contains_key("x_user_id"),
            "{}",
            request.target
        );
        assert_eq!(request.headers["x-other"], "kept", "{}", request.target);
    }
    let extra = format!("X-Api-Key: bob-key-0123456789abcdef\r\n{SPOOFED}");
    let answer = upgrade(gw.addr, "/ws/chat", &extra).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let head = heads.lock().unwrap()[0].clone();
    assert_eq!(head_values(&head, "x-user-id"), ["bob"], "{head}");
    assert!(head_values(&head, "x_user_id").is_empty(), "{head}");
    // Without credentials nothing goes upstream.
    let (status, _) = get(&gw.url("/agg"), &[("x-user-id", "ada")]).await;
    assert_eq!(status, 401);
    assert_eq!(up.requests().len(), 2);
}

#[tokio::test]
async fn templates_read_the_identity_in_paths_headers_and_bodies() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{PROVIDER}
[upstreams.up]
url = "{url}"

[[routes]]
path = "/me"
methods = ["POST"]
auth = "users"
[[routes.backends]]
name = "me"
upstream = "up"
path = "/users/{{auth.sub}}?by={{auth.provider}}"
method = "POST"
headers = {{ x-caller = "{{auth.provider}}/{{auth.sub}}" }}
body = {{ user = "{{auth.claims.sub}}", note = "for {{auth.sub}}" }}

[[routes]]
path = "/files/{{*rest}}"
auth = "users"
proxy = {{ upstream = "up", path = "/home/{{auth.sub}}/{{rest}}" }}

[[routes]]
path = "/maybe"
auth = "users"
auth_optional = true
[[routes.backends]]
name = "mine"
upstream = "up"
path = "/users/{{auth.sub}}"
default = "anonymous"
[[routes.backends]]
name = "public"
upstream = "up"
path = "/public"
"#,
        url = up.url()
    ))
    .await;
    let response = common::client()
        .post(gw.url("/me"))
        .header("x-api-key", "ada-key-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (status, _) = get(
        &gw.url("/files/a/b.txt"),
        &[("x-api-key", "bob-key-0123456789abcdef")],
    )
    .await;
    assert_eq!(status, 200);
    let seen = up.requests();
    assert_eq!(seen[0].target, "/users/ada?by=users");
    assert_eq!(seen[0].headers["x-caller"], "users/ada");
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body, serde_json::json!({"user": "ada", "note": "for ada"}));
    assert_eq!(seen[1].target, "/home/bob/a/b.txt");
    // An anonymous request on an optional route has no identity to read: the backend
    // fails with missing_value and takes its default, as for any missing value.
    let (status, body) = get(&gw.url("/maybe"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["mine"], "anonymous");
    let targets = || -> Vec<String> { up.requests().iter().map(|r| r.target.clone()).collect() };
    assert_eq!(targets()[2..], ["/public"]);
    let ada = [("x-api-key", "ada-key-0123456789abcdef")];
    let (status, body) = get(&gw.url("/maybe"), &ada).await;
    assert_eq!(status, 200, "{body}");
    let mut called = targets()[3..].to_vec();
    called.sort();
    assert_eq!(called, ["/public", "/users/ada"]);
}

#[tokio::test]
async fn one_users_cached_answer_is_never_served_to_another() {
    let up = MockUpstream::builder()
        .route(
            "*",
            Reply::json(r#"{"for":"{header.x-user-id}"}"#).templated(),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{PROVIDER}
[upstreams.up]
url = "{url}"

[[routes]]
path = "/profile"
auth = "users"
auth_optional = true
[[routes.backends]]
name = "p"
upstream = "up"
path = "/profile"
cache_ttl = "1h"

[[routes]]
path = "/p/{{*rest}}"
auth = "users"
auth_optional = true
cache_ttl = "1h"
proxy = {{ upstream = "up", path = "/{{rest}}" }}
"#,
        url = up.url()
    ))
    .await;
    // The aggregate puts the answer under its backend's name; the proxy passes it.
    for (path, wrap) in [("/profile", true), ("/p/profile", false)] {
        let answer = |who: &str| {
            let body = format!(r#"{{"for":"{who}"}}"#);
            if wrap {
                format!(r#"{{"p":{body}}}"#)
            } else {
                body
            }
        };
        let url = gw.url(path);
        let calls = up.total_hits();
        // The same upstream URL for everyone: only the identity tells them apart.
        let ada = get(&url, &[("x-api-key", "ada-key-0123456789abcdef")]).await;
        assert_eq!(ada, (200, answer("ada")), "{path}");
        let bob = get(&url, &[("x-api-key", "bob-key-0123456789abcdef")]).await;
        assert_eq!(bob, (200, answer("bob")), "{path}");
        assert_eq!(up.total_hits(), calls + 2, "{path}: each user's own call");
        // Ada again, with other credentials headers beside her key: her entry.
        let again = [
            ("x-api-key", "ada-key-0123456789abcdef"),
            ("authorization", "Basic b3RoZXI="),
            ("cookie", "session=2"),
        ];
        assert_eq!(get(&url, &again).await, (200, answer("ada")), "{path}");
        assert_eq!(
            up.total_hits(),
            calls + 2,
            "{path}: ada's second request hits"
        );
        // Anonymous requests share one entry, never a user's.
        let anonymous = get(&url, &[("cookie", "a=1")]).await;
        assert_eq!(anonymous, (200, answer("")), "{path}");
        let anonymous = get(&url, &[("cookie", "a=2"), ("x-user-id", "ada")]).await;
        assert_eq!(anonymous, (200, answer("")), "{path}");
        assert_eq!(up.total_hits(), calls + 3, "{path}: one anonymous call");
    }
}

#[tokio::test]
async fn each_for_each_call_carries_the_identitys_headers() {
    let up = MockUpstream::builder()
        .route("/list", Reply::json(r#"{"ids":[1,2,3]}"#))
        .route("*", Reply::json("{}"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"{PROVIDER}
[upstreams.up]
url = "{url}"

[[routes]]
path = "/each"
auth = "users"
forward_headers = ["x-user-id"]
[[routes.backends]]
name = "list"
upstream = "up"
path = "/list"
[[routes.backends]]
name = "items"
upstream = "up"
path = "/items/{{item}}"
for_each = "list.ids"
"#,
        url = up.url()
    ))
    .await;
    let headers = [
        ("x-api-key", "bob-key-0123456789abcdef"),
        ("x-user-id", "admin"),
    ];
    let (status, body) = get(&gw.url("/each"), &headers).await;
    assert_eq!(status, 200, "{body}");
    let seen = up.requests();
    assert_eq!(seen.len(), 4);
    for request in &seen {
        let values: Vec<_> = request.headers.get_all("x-user-id").iter().collect();
        assert_eq!(values, ["bob"], "{}", request.target);
    }
}

/// An HS256 token for `sub`, told apart from others of the same subject by `jti`.
fn hs256(secret: &str, sub: &str, jti: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": sub, "jti": jti, "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

#[tokio::test]
async fn a_user_with_a_refreshed_token_hits_and_another_user_never_does() {
    let up = MockUpstream::builder()
        .route(
            "*",
            Reply::json(r#"{"for":"{header.x-user-id}"}"#).templated(),
        )
        .start()
        .await;
    let secret = "0123456789abcdef0123456789abcdef-flow";
    let gw = start_gateway(&format!(
        r#"[auth.svc]
secret = "{secret}"
claims_to_headers = {{ "x-user-id" = "sub" }}

[upstreams.up]
url = "{url}"

[[routes]]
path = "/profile"
auth = "svc"
[[routes.backends]]
name = "p"
upstream = "up"
path = "/profile"
cache_ttl = "1h"
"#,
        url = up.url()
    ))
    .await;
    let url = gw.url("/profile");
    let bearer = |token: String| format!("Bearer {token}");
    let ada = bearer(hs256(secret, "ada", "1"));
    let first = get(&url, &[("authorization", &ada)]).await;
    assert_eq!(first, (200, r#"{"p":{"for":"ada"}}"#.to_string()));
    let bob = bearer(hs256(secret, "bob", "1"));
    let other = get(&url, &[("authorization", &bob)]).await;
    assert_eq!(other, (200, r#"{"p":{"for":"bob"}}"#.to_string()));
    assert_eq!(up.total_hits(), 2);
    // Ada's next token (another `jti`, so other bytes): her entry, no call.
    let refreshed = bearer(hs256(secret, "ada", "2"));
    assert_ne!(refreshed, ada);
    let again = get(&url, &[("authorization", &refreshed)]).await;
    assert_eq!(again, first);
    assert_eq!(up.total_hits(), 2);
}
