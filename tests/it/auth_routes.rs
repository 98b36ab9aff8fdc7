//! A route's auth phase over real sockets, with API key providers: 401 with an RFC 6750
//! challenge before any upstream is called, providers tried in order, `auth_optional`,
//! `require` (403), per-identity rate limits (and a 401 that does not count), the
//! subject in the access log (never the key), keys re-read from a `keys_file` on
//! reload, and the refusals counted in `/metrics`.

use crate::common;

use common::{MockUpstream, Reply, client, eventually_some, start_gateway, start_reloadable};
use reqwest::StatusCode;
use std::path::{Path, PathBuf};

const MOBILE: &str = "mobile-key-0123456789abcdef";
const WEB: &str = "web-key-0123456789abcdef";
const ADMIN: &str = "admin-key-0123456789abcdef";
const PARTNER: &str = "partner-key-0123456789abcdef";

/// A new empty directory for a test's files.
fn dir() -> PathBuf {
    common::scratch_dir("auth-routes")
}

async fn upstream() -> MockUpstream {
    MockUpstream::builder()
        .route("*", Reply::json(r#"{"n":1}"#))
        .start()
        .await
}

/// Two API key providers (`keys` on `x-api-key`, `partners` on `x-partner-key`), an
/// upstream, and `routes` (TOML of `[[routes]]`).
fn config(up: &MockUpstream, extra: &str, routes: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
{extra}

[upstreams.up]
url = "{url}"

[auth.keys]
api_keys = {{ keys = {{ mobile = "{MOBILE}", web = "{WEB}", admin = "{ADMIN}" }} }}

[auth.partners]
api_keys = {{ header = "x-partner-key", keys = {{ acme = "{PARTNER}" }} }}

{routes}
"#,
        url = up.url()
    )
}

/// A proxy route at `/p/{*rest}` and an aggregate route at `/a`, both with `route_keys`.
fn two_routes(route_keys: &str) -> String {
    format!(
        r#"[[routes]]
path = "/p/{{*rest}}"
proxy = {{ upstream = "up", path = "/{{rest}}" }}
{route_keys}

[[routes]]
path = "/a"
{route_keys}
  [[routes.backends]]
  name = "data"
  upstream = "up"
  path = "/data"
"#
    )
}

/// GETs `url` with `headers`: the status, the challenge, and the JSON body.
async fn get(
    url: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.bytes().await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, challenge, json)
}

fn lines(path: &Path) -> Vec<String> {
    common::file_lines(path)
}

/// The access log entry of request `id`, once it is written.
async fn entry_of(path: &Path, id: &str) -> serde_json::Value {
    let line = eventually_some(&format!("the line of {id}"), async || {
        lines(path).into_iter().find(|l| l.contains(id))
    })
    .await;
    serde_json::from_str(&line).unwrap()
}

#[tokio::test]
async fn missing_or_wrong_keys_are_401_with_a_challenge_and_never_reach_the_upstream() {
    let up = upstream().await;
    let gw = start_gateway(&config(&up, "", &two_routes("auth = \"keys\""))).await;
    for path in ["/p/x", "/a"] {
        let (status, challenge, body) = get(&gw.url(path), &[]).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer error=\"invalid_token\", error_description=\"no credentials\"")
        );
        assert_eq!(body["error"]["code"], "unauthorized");
        assert_eq!(body["error"]["message"], "no credentials");

        let (status, challenge, body) =
            get(&gw.url(path), &[("x-api-key", "nope-0123456789abcdef")]).await;
        assert_eq!(status, 401, "{path}");
        assert_eq!(
            challenge.as_deref(),
            Some("Bearer error=\"invalid_token\", error_description=\"the API key is not valid\"")
        );
        assert_eq!(body["error"]["code"], "unauthorized");
        // A key differing in its last byte only is as wrong as any other.
        let almost = &MOBILE[..MOBILE.len() - 1];
        let (status, _, _) = get(&gw.url(path), &[("x-api-key", &format!("{almost}X"))]).await;
        assert_eq!(status, 401);
    }
    assert_eq!(up.total_hits(), 0, "a refused request calls no upstream");

    let (status, challenge, body) = get(&gw.url("/a"), &[("x-api-key", MOBILE)]).await;
    assert_eq!(status, 200);
    assert_eq!(challenge, None);
    assert_eq!(body, serde_json::json!({"data": {"n": 1}}));
    let (status, _, _) = get(&gw.url("/p/x"), &[("x-api-key", WEB)]).await;
    assert_eq!(status, 200);
    assert_eq!(up.total_hits(), 2);
}

#[tokio::test]
async fn the_subject_is_logged_as_the_user_and_the_key_never_is() {
    let up = upstream().await;
    let file = dir().join("access.log");
    let gw = start_gateway(&config(
        &up,
        &format!("[access_log]\npath = {file:?}"),
        &two_routes("auth = \"keys\""),
    ))
    .await;
    let ok = [("x-api-key", MOBILE), ("x-request-id", "with-key")];
    assert_eq!(get(&gw.url("/a"), &ok).await.0, 200);
    let bad = [
        ("x-api-key", "wrong-key-0123456789abcdef"),
        ("x-request-id", "bad-key"),
    ];
    assert_eq!(get(&gw.url("/p/x"), &bad).await.0, 401);

    let entry = entry_of(&file, "with-key").await;
    assert_eq!(entry["user"], "mobile");
    assert_eq!(entry["status"], 200);
    let entry = entry_of(&file, "bad-key").await;
    assert_eq!(entry["status"], 401);
    assert_eq!(entry["route"], "/p/{*rest}");
    assert!(entry.get("user").is_none(), "{entry}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains(MOBILE) && !text.contains("wrong-key"),
        "{text}"
    );
}

#[tokio::test]
async fn the_combined_log_carries_the_subject_as_remote_user() {
    let up = upstream().await;
    let file = dir().join("access.log");
    let gw = start_gateway(&config(
        &up,
        &format!("[access_log]\npath = {file:?}\nformat = \"combined\""),
        &two_routes("auth = \"keys\""),
    ))
    .await;
    assert_eq!(
        get(&gw.url("/p/combined"), &[("x-api-key", WEB)]).await.0,
        200
    );
    let line = eventually_some("the combined line", async || {
        lines(&file).into_iter().find(|l| l.contains("/p/combined"))
    })
    .await;
    assert!(line.starts_with("127.0.0.1 - web ["), "{line}");
}

#[tokio::test]
async fn providers_are_tried_in_order_and_the_first_that_accepts_wins() {
    let up = upstream().await;
    let file = dir().join("access.log");
    let gw = start_gateway(&config(
        &up,
        &format!("[access_log]\npath = {file:?}"),
        &two_routes("auth = [\"partners\", \"keys\"]"),
    ))
    .await;
    let both = [
        ("x-partner-key", PARTNER),
        ("x-api-key", MOBILE),
        ("x-request-id", "both"),
    ];
    assert_eq!(get(&gw.url("/a"), &both).await.0, 200);
    assert_eq!(entry_of(&file, "both").await["user"], "acme");

    let second = [("x-api-key", MOBILE), ("x-request-id", "second")];
    assert_eq!(get(&gw.url("/a"), &second).await.0, 200);
    assert_eq!(entry_of(&file, "second").await["user"], "mobile");

    // The first refuses its credential, the second accepts: the second wins.
    let bad_first = [
        ("x-partner-key", "stolen-key-0123456789abcdef"),
        ("x-api-key", WEB),
        ("x-request-id", "bad-first"),
    ];
    assert_eq!(get(&gw.url("/a"), &bad_first).await.0, 200);
    assert_eq!(entry_of(&file, "bad-first").await["user"], "web");

    // Neither accepts: the first refusal is answered.
    let (status, challenge, _) = get(
        &gw.url("/a"),
        &[("x-api-key", "stolen-key-0123456789abcdef")],
    )
    .await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("the API key is not valid"));
    let (status, challenge, _) = get(&gw.url("/a"), &[]).await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("\"no credentials\""));
}

#[tokio::test]
async fn auth_optional_lets_anonymous_requests_in_but_never_a_bad_key() {
    let up = upstream().await;
    let file = dir().join("access.log");
    let gw = start_gateway(&config(
        &up,
        &format!("[access_log]\npath = {file:?}"),
        &two_routes("auth = \"keys\"\nauth_optional = true"),
    ))
    .await;
    let anonymous = [("x-request-id", "anonymous")];
    assert_eq!(get(&gw.url("/p/x"), &anonymous).await.0, 200);
    assert!(entry_of(&file, "anonymous").await.get("user").is_none());
    let known = [("x-api-key", ADMIN), ("x-request-id", "known")];
    assert_eq!(get(&gw.url("/p/x"), &known).await.0, 200);
    assert_eq!(entry_of(&file, "known").await["user"], "admin");

    let hits = up.total_hits();
    let (status, challenge, _) =
        get(&gw.url("/a"), &[("x-api-key", "bad-key-0123456789abcdef")]).await;
    assert_eq!(status, 401, "a bad credential is never anonymous");
    assert!(challenge.is_some());
    assert_eq!(up.total_hits(), hits);
}

#[tokio::test]
async fn require_refuses_with_403_and_lets_the_right_identity_through() {
    let up = upstream().await;
    let routes = format!(
        "{}\n[[routes]]\npath = \"/role\"\nauth = \"keys\"\nrequire = \"claims.role == 'admin'\"\nproxy = {{ upstream = \"up\", path = \"/role\" }}\n",
        two_routes(
            "auth = [\"keys\", \"partners\"]\nrequire = \"sub == 'admin' || 'acme' in claims.sub.split(',')\""
        )
    );
    let gw = start_gateway(&config(&up, "", &routes)).await;
    for path in ["/p/x", "/a"] {
        let (status, challenge, body) = get(&gw.url(path), &[("x-api-key", MOBILE)]).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(challenge, None);
        assert_eq!(body["error"]["code"], "forbidden");
        assert_eq!(get(&gw.url(path), &[("x-api-key", ADMIN)]).await.0, 200);
        assert_eq!(
            get(&gw.url(path), &[("x-partner-key", PARTNER)]).await.0,
            200
        );
    }
    assert_eq!(up.total_hits(), 4, "a 403 calls no upstream");
    // An API key's claims have no role: the expression fails, which refuses, not 500.
    let (status, _, body) = get(&gw.url("/role"), &[("x-api-key", ADMIN)]).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    // Missing credentials are still 401, not 403.
    assert_eq!(get(&gw.url("/role"), &[]).await.0, 401);
}

#[tokio::test]
async fn rate_limits_keyed_by_subject_give_each_identity_its_own_bucket() {
    let up = upstream().await;
    let routes = two_routes(
        "auth = \"keys\"\nauth_optional = true\nrate_limit = { rate = \"1/hour\", burst = 2, key = \"auth:sub\" }",
    );
    let gw = start_gateway(&config(&up, "", &routes)).await;
    let mobile = [("x-api-key", MOBILE)];
    assert_eq!(get(&gw.url("/a"), &mobile).await.0, 200);
    assert_eq!(get(&gw.url("/a"), &mobile).await.0, 200);
    let (status, _, body) = get(&gw.url("/a"), &mobile).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another key, another bucket; the client's address is the same.
    let web = [("x-api-key", WEB)];
    assert_eq!(get(&gw.url("/a"), &web).await.0, 200);
    assert_eq!(get(&gw.url("/a"), &web).await.0, 200);
    assert_eq!(get(&gw.url("/a"), &web).await.0, 429);
    // Anonymous requests share one bucket of their own.
    assert_eq!(get(&gw.url("/a"), &[]).await.0, 200);
    assert_eq!(get(&gw.url("/a"), &[]).await.0, 200);
    assert_eq!(get(&gw.url("/a"), &[]).await.0, 429);
    assert_eq!(get(&gw.url("/a"), &[("x-api-key", ADMIN)]).await.0, 200);
}

#[tokio::test]
async fn a_refused_credential_does_not_consume_the_rate_limit() {
    let up = upstream().await;
    let routes = two_routes("auth = \"keys\"\nrate_limit = { rate = \"1/hour\", burst = 1 }");
    let gw = start_gateway(&config(&up, "", &routes)).await;
    for _ in 0..3 {
        let (status, _, _) = get(&gw.url("/a"), &[("x-api-key", "bad-key-0123456789abcdef")]).await;
        assert_eq!(status, 401, "auth runs before the limit");
    }
    assert_eq!(get(&gw.url("/a"), &[]).await.0, 401);
    assert_eq!(get(&gw.url("/a"), &[("x-api-key", MOBILE)]).await.0, 200);
    assert_eq!(get(&gw.url("/a"), &[("x-api-key", MOBILE)]).await.0, 429);
}

#[tokio::test]
async fn keys_file_is_reread_on_reload_and_refusals_are_counted() {
    let up = upstream().await;
    let keys = dir().join("keys");
    std::fs::write(&keys, format!("# clients\nold-client {MOBILE}\n")).unwrap();
    let toml = format!(
        "[access_log]\nenabled = false\n[upstreams.up]\nurl = \"{}\"\n[auth.file]\napi_keys = {{ keys_file = {keys:?} }}\n\
         [[routes]]\npath = \"/f\"\nauth = \"file\"\nproxy = {{ upstream = \"up\", path = \"/f\" }}\n",
        up.url()
    );
    let gw = start_reloadable(&toml).await;
    let url = gw.gateway.url("/f");
    assert_eq!(get(&url, &[("x-api-key", MOBILE)]).await.0, 200);
    assert_eq!(get(&url, &[("x-api-key", WEB)]).await.0, 401);

    // Hashed: the file holds the digest, not the key.
    let digest: String = ring::digest::digest(&ring::digest::SHA256, WEB.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&keys, format!("new-client sha256:{digest}\n")).unwrap();
    gw.reloader.reload("test").unwrap();
    assert_eq!(get(&url, &[("x-api-key", WEB)]).await.0, 200);
    assert_eq!(get(&url, &[("x-api-key", MOBILE)]).await.0, 401);
    assert_eq!(get(&url, &[]).await.0, 401);

    let metrics = common::get_text(&format!("http://{}/metrics", gw.admin)).await;
    for line in [
        "fanout_auth_refused_total{route=\"/f\",reason=\"invalid\"} 2",
        "fanout_auth_refused_total{route=\"/f\",reason=\"missing\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(!metrics.contains(MOBILE) && !metrics.contains(&digest));

    // A file that cannot be read is refused with its place; the running keys stay.
    std::fs::write(&keys, "only-a-name\n").unwrap();
    let problems = gw.reloader.reload("test").unwrap_err().join("\n");
    assert!(
        problems.contains("auth.file.api_keys.keys_file"),
        "{problems}"
    );
    assert!(problems.contains("line 1"), "{problems}");
    assert_eq!(get(&url, &[("x-api-key", WEB)]).await.0, 200);
}

#[tokio::test]
async fn config_shows_no_key() {
    let up = upstream().await;
    let gw = start_reloadable(&config(&up, "", &two_routes("auth = \"keys\""))).await;
    let text = common::get_text(&format!("http://{}/config", gw.admin)).await;
    for key in [MOBILE, WEB, ADMIN, PARTNER] {
        assert!(!text.contains(key), "{key} in {text}");
    }
    assert!(text.contains("[redacted]"), "{text}");
}

/// A well-formed RS256 token (header `{"alg":"RS256","kid":"k1"}`, claims `{"sub":"ann"}`)
/// with a signature no key made: what a provider with no key set cannot check.
const UNCHECKABLE_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbm4iLCJleHAiOjQxMDI0NDQ4MDB9.eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA";

#[tokio::test]
async fn a_provider_without_keys_is_503_unless_another_accepts() {
    let up = upstream().await;
    let jwks = common::dead_url().await;
    let routes = format!(
        "[auth.users]\njwks_url = \"{jwks}/jwks.json\"\n\n{}",
        two_routes("auth = [\"users\", \"keys\"]")
    );
    let gw = start_gateway(&config(&up, "", &routes)).await;
    let bearer = format!("Bearer {UNCHECKABLE_TOKEN}");
    let (status, challenge, body) = get(&gw.url("/a"), &[("authorization", &bearer)]).await;
    assert_eq!(status, 503);
    assert_eq!(challenge, None);
    assert_eq!(body["error"]["code"], "auth_unavailable");
    // Unavailable outranks another provider's refusal: the token may be the valid one.
    let both = [
        ("authorization", bearer.as_str()),
        ("x-api-key", "bad-key-0123456789abcdef"),
    ];
    let response = client()
        .get(gw.url("/p/x"))
        .header(both[0].0, both[0].1)
        .header(both[1].0, both[1].1)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "10");
    // A provider later in the list that accepts wins.
    let ok = [("authorization", bearer.as_str()), ("x-api-key", MOBILE)];
    assert_eq!(get(&gw.url("/a"), &ok).await.0, 200);
    assert_eq!(up.total_hits(), 1);
}

#[tokio::test]
async fn the_server_span_carries_the_subject_as_enduser_id() {
    use common::otlp::{Kind, OtlpReceiver};
    let receiver = OtlpReceiver::start().await;
    let up = upstream().await;
    let tracing = format!("[tracing]\notlp_endpoint = \"{}\"", receiver.endpoint());
    let gw = start_gateway(&config(&up, &tracing, &two_routes("auth = \"keys\""))).await;
    let known = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let refused = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let ok = [("x-api-key", MOBILE), ("traceparent", known)];
    assert_eq!(get(&gw.url("/a"), &ok).await.0, 200);
    let bad = [
        ("x-api-key", "bad-key-0123456789abcdef"),
        ("traceparent", refused),
    ];
    assert_eq!(get(&gw.url("/a"), &bad).await.0, 401);

    // The known request's server and client spans, and the refused one's server span.
    let spans = receiver.wait_for(3).await;
    let server = |trace: &str| {
        spans
            .iter()
            .find(|s| s.kind == Kind::Server && s.trace_id.to_hex() == trace.as_bytes()[3..35])
            .unwrap_or_else(|| panic!("no server span of {trace} in {spans:#?}"))
    };
    assert_eq!(server(known).attribute("enduser.id"), Some("mobile"));
    assert_eq!(server(refused).attribute("enduser.id"), None);
    assert_eq!(
        server(refused).attribute("http.response.status_code"),
        Some("401")
    );
    let everything = format!("{spans:?}");
    assert!(!everything.contains(MOBILE) && !everything.contains("bad-key"));
}
