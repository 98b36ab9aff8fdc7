//! Sticky keys over real sockets: a user's pick across a reload that changes another
//! route and across one that changes the weights (moving users one way only), a weight
//! reload with a request in flight, `auth:sub` with JWTs, and `fanout check`'s places.

use super::{aggregate_route, expected, get_as, proxy_route, two_versions, upstreams};
use crate::common;
use common::{Gate, MockUpstream, Reply, client, eventually, start_gateway, start_reloadable};
use std::collections::HashMap;
use std::process::Command;

#[tokio::test]
async fn users_keep_their_pick_across_a_reload_and_a_weight_change_moves_them_one_way() {
    let (v1, v2) = two_versions().await;
    let sticky = "sticky = \"header:x-user-id\",";
    let config = |w1, w2, extra: &str| {
        format!(
            "{}{}{}{extra}",
            upstreams(&v1, &v2),
            proxy_route(w1, w2, sticky),
            aggregate_route(w1, w2)
        )
    };
    let gw = start_reloadable(&config(80, 20, "")).await;
    let users: Vec<String> = (0..60).map(|i| format!("reload-{i}")).collect();
    let picks = async |path: &str| {
        let mut out = Vec::new();
        for user in &users {
            let response = client()
                .get(gw.gateway.url(path))
                .header("x-user-id", user)
                .send()
                .await
                .unwrap();
            let body = common::json_of(response).await;
            let version = match path {
                "/a" => body["svc"]["version"].clone(),
                _ => body["version"].clone(),
            };
            out.push(version.as_str().unwrap().to_owned());
        }
        out
    };
    let before = picks("/p/x").await;
    assert_eq!(
        picks("/a").await,
        before,
        "the backend picks as the route does"
    );
    let pool = gw.live.load().upstreams["v2"].clone();

    // An unrelated change: a new route. Nobody moves; the upstreams are the same ones.
    let extra = "[[routes]]\npath = \"/extra\"\nproxy = { upstream = \"v1\", path = \"/\" }\n";
    gw.write(&config(80, 20, extra));
    let changes = gw.reloader.reload("test").unwrap();
    assert_eq!(changes.routes_added, ["* /extra"]);
    assert_eq!(picks("/p/x").await, before);
    assert_eq!(picks("/a").await, before);

    // Raising v2: only users of v1 move, and only to v2. The pools carry over.
    gw.write(&config(50, 50, extra));
    let changes = gw.reloader.reload("test").unwrap();
    assert!(changes.upstreams_changed.is_empty(), "{changes:?}");
    assert!(std::sync::Arc::ptr_eq(
        &pool,
        &gw.live.load().upstreams["v2"]
    ));
    let after = picks("/p/x").await;
    assert_eq!(picks("/a").await, after);
    let moved: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).collect();
    assert!(!moved.is_empty());
    assert!(
        moved.iter().all(|(b, a)| *b == "v1" && *a == "v2"),
        "{moved:?}"
    );
    for (user, version) in users.iter().zip(&after) {
        assert_eq!(version, expected(&[50, 50], user));
    }
}

#[tokio::test]
async fn a_reload_that_changes_weights_drops_no_request_in_flight() {
    let gate = Gate::default();
    let v1 = MockUpstream::builder()
        .route("*", Reply::json(r#"{"version":"v1"}"#))
        .start()
        .await;
    let v2 = MockUpstream::builder()
        .route("/slow", Reply::json(r#"{"version":"v2"}"#).gated(&gate))
        .route("*", Reply::json(r#"{"version":"v2"}"#))
        .start()
        .await;
    let gw = start_reloadable(&(upstreams(&v1, &v2) + &proxy_route(0, 1, ""))).await;
    let url = gw.gateway.url("/p/slow");
    let in_flight = tokio::spawn(async move { get_as(&url, None).await });
    eventually("the held call at v2", async || v2.hits("/slow") == 1).await;

    gw.write(&(upstreams(&v1, &v2) + &proxy_route(1, 0, "")));
    gw.reloader.reload("test").unwrap();
    assert_eq!(get_as(&gw.gateway.url("/p/x"), None).await.0, "v1");
    assert!(!in_flight.is_finished());
    gate.open();
    let (version, timing) = in_flight.await.unwrap();
    assert_eq!(
        (version.as_str(), timing.as_str()),
        ("v2", "upstream;desc=\"v2\"")
    );
}

/// An HS256 token for `sub`.
fn hs256(secret: &str, sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({ "sub": sub, "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

#[tokio::test]
async fn auth_sub_keeps_each_subject_on_its_pick() {
    let (v1, v2) = two_versions().await;
    let secret = "0123456789abcdef0123456789abcdef-canary";
    let toml = format!(
        "[auth.users]\nsecret = \"{secret}\"\n{}[[routes]]\npath = \"/me\"\nauth = \"users\"\n\
         proxy = {{ path = \"/me\", sticky = \"auth:sub\", upstreams = [{{ name = \"v1\", weight = 50 }}, \
         {{ name = \"v2\", weight = 50 }}] }}\n",
        upstreams(&v1, &v2)
    );
    let gw = start_gateway(&toml).await;
    let mut seen = HashMap::new();
    for i in 0..30 {
        let sub = format!("subject-{i}");
        for _ in 0..2 {
            // A fresh token each time: the subject, not the token, keeps the pick.
            let response = client()
                .get(gw.url("/me"))
                .bearer_auth(hs256(secret, &sub))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body = common::json_of(response).await;
            assert_eq!(body["version"], expected(&[50, 50], &sub), "{sub}");
            *seen.entry(expected(&[50, 50], &sub)).or_insert(0) += 1;
        }
    }
    assert_eq!(seen.len(), 2, "both upstreams have subjects: {seen:?}");
}

#[test]
fn fanout_check_names_the_place_of_each_canary_mistake() {
    let dir = common::scratch_dir("canary-check");
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        r#"
[upstreams.v1]
url = "http://127.0.0.1:9"
[upstreams.v2]
url = "http://127.0.0.1:10"

[[routes]]
path = "/p"
proxy = { path = "/", upstream = "v1", sticky = "ip", upstreams = [{ name = "v1", weight = -5 }, { name = "v3", weight = 1 }] }

[[routes]]
path = "/a"
  [[routes.backends]]
  name = "b"
  path = "/"
  sticky = "auth:sub"
  upstreams = [{ name = "v1", weight = 0 }, { name = "v1", weight = 0 }]
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["check", "-c"])
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    for problem in [
        "routes[0].proxy.upstreams: is set with upstream",
        "routes[0].proxy.upstreams[0].weight: -5 is not a weight",
        "routes[0].proxy.upstreams[1].name: no upstream \"v3\"; known: v1, v2",
        "routes[0].proxy.sticky: unknown key \"ip\"",
        "routes[1].backends[0].sticky: keeps a client by its identity, but the route has no auth",
        "routes[1].backends[0].upstreams[1].name: \"v1\" is listed twice",
        "routes[1].backends[0].upstreams: the weights add up to 0",
    ] {
        assert!(stderr.contains(problem), "{problem} in:\n{stderr}");
    }
}
