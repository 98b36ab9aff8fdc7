//! Weighted canaries over real sockets: two mock upstreams (v1, v2) behind a proxy route
//! and an aggregate backend with `upstreams`. Splits are read from what each mock
//! recorded: with sticky keys from a fixed list the counts are exact (the test computes
//! each key's pick with the gateway's own rule); a random split is checked against a
//! bound five standard deviations wide. Also: the pick in `Server-Timing`, the access
//! log and the metrics, answers cached apart; `keys` has stickiness across reloads, a
//! weight change with a request in flight, `auth:sub`, and `fanout check`.

mod keys;

use crate::common;

use common::{MockUpstream, Reply, client, eventually_some, start_gateway, start_reloadable};
use fanout::canary::pick::{PickTable, sticky_draw};
use std::collections::HashMap;

/// Two mocks that answer every path with their own name.
pub(super) async fn two_versions() -> (MockUpstream, MockUpstream) {
    let v1 = MockUpstream::builder()
        .route("*", Reply::json(r#"{"version":"v1"}"#))
        .start()
        .await;
    let v2 = MockUpstream::builder()
        .route("*", Reply::json(r#"{"version":"v2"}"#))
        .start()
        .await;
    (v1, v2)
}

pub(super) fn upstreams(v1: &MockUpstream, v2: &MockUpstream) -> String {
    common::upstream_toml("v1", &v1.url()) + &common::upstream_toml("v2", &v2.url())
}

/// A proxy route `/p/{*rest}` over v1 and v2 with these weights and `sticky` (a TOML
/// fragment, or "").
pub(super) fn proxy_route(w1: u32, w2: u32, sticky: &str) -> String {
    format!(
        "[[routes]]\npath = \"/p/{{*rest}}\"\nproxy = {{ path = \"/{{rest}}\", {sticky} upstreams = [\
         {{ name = \"v1\", weight = {w1} }}, {{ name = \"v2\", weight = {w2} }}] }}\n"
    )
}

/// The upstream the gateway's rule picks for a sticky key's value.
pub(super) fn expected(weights: &[u32], key: &str) -> &'static str {
    ["v1", "v2"][PickTable::new(weights)
        .unwrap()
        .pick(sticky_draw(key.as_bytes()))]
}

/// `GET url` with `x-user-id: user`: the answer's version and its Server-Timing.
pub(super) async fn get_as(url: &str, user: Option<&str>) -> (String, String) {
    let mut request = client().get(url);
    if let Some(user) = user {
        request = request.header("x-user-id", user);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let timing = response
        .headers()
        .get_all("server-timing")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(", ");
    let body = common::json_of(response).await;
    (body["version"].as_str().unwrap().to_owned(), timing)
}

#[tokio::test]
async fn sticky_users_from_a_fixed_list_split_exactly_as_the_rule_says_and_stay() {
    let (v1, v2) = two_versions().await;
    let sticky = "sticky = \"header:x-user-id\",";
    let gw = start_gateway(&(upstreams(&v1, &v2) + &proxy_route(90, 10, sticky))).await;
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let mut want = HashMap::from([("v1", 0), ("v2", 0)]);
    for round in 0..2 {
        for user in &users {
            let (version, timing) = get_as(&gw.url("/p/x"), Some(user)).await;
            let pick = expected(&[90, 10], user);
            assert_eq!(
                version, pick,
                "{user}, round {round}: always its own upstream"
            );
            assert_eq!(timing, format!("upstream;desc=\"{pick}\""));
            *want.get_mut(pick).unwrap() += 1;
        }
    }
    assert_eq!(v1.total_hits(), want["v1"]);
    assert_eq!(v2.total_hits(), want["v2"]);
    // The fixed list itself splits about 90/10.
    assert!(
        (20..=60).contains(&v2.total_hits()),
        "v2 got {} of 400",
        v2.total_hits()
    );
}

#[tokio::test]
async fn without_sticky_a_ninety_ten_split_holds_and_keyless_requests_are_random() {
    let (v1, v2) = two_versions().await;
    let gw = start_gateway(&(upstreams(&v1, &v2) + &proxy_route(90, 10, ""))).await;
    for _ in 0..400 {
        let (version, timing) = get_as(&gw.url("/p/x"), None).await;
        assert_eq!(timing, format!("upstream;desc=\"{version}\""));
    }
    // Binomial(400, 0.1): mean 40, sd 6; five sd either side never flakes.
    let got = v2.total_hits();
    assert!((10..=70).contains(&got), "v2 got {got} of 400");
    assert_eq!(v1.total_hits() + got, 400);
}

#[tokio::test]
async fn a_weight_of_zero_drains_an_upstream() {
    let (v1, v2) = two_versions().await;
    let gw = start_gateway(&(upstreams(&v1, &v2) + &proxy_route(0, 1, ""))).await;
    for _ in 0..50 {
        assert_eq!(get_as(&gw.url("/p/x"), None).await.0, "v2");
    }
    assert_eq!(v1.total_hits(), 0);
}

/// An aggregate route `/a` whose backend `svc` is a canary, beside a plain backend.
pub(super) fn aggregate_route(w1: u32, w2: u32) -> String {
    format!(
        r#"[[routes]]
path = "/a"
  [[routes.backends]]
  name = "svc"
  path = "/svc"
  sticky = "header:x-user-id"
  upstreams = [{{ name = "v1", weight = {w1} }}, {{ name = "v2", weight = {w2} }}]
  [[routes.backends]]
  name = "plain"
  upstream = "v1"
  path = "/plain"
"#
    )
}

#[tokio::test]
async fn the_pick_is_in_server_timing_the_access_log_and_the_metrics() {
    let (v1, v2) = two_versions().await;
    let dir = common::scratch_dir("canary-log");
    let log = dir.join("access.log");
    let toml = format!(
        "[access_log]\npath = {log:?}\nformat = \"json\"\nflush = \"10ms\"\n{}{}{}",
        upstreams(&v1, &v2),
        aggregate_route(50, 50),
        proxy_route(50, 50, "sticky = \"header:x-user-id\",")
    );
    let gw = start_reloadable(&toml).await;
    // A user of each upstream, found with the gateway's rule.
    let on = |want: &str| {
        (0..)
            .map(|i| format!("u{i}"))
            .find(|u| expected(&[50, 50], u) == want)
            .unwrap()
    };
    for version in ["v1", "v2"] {
        let user = on(version);
        let response = client()
            .get(gw.gateway.url("/a"))
            .header("x-user-id", &user)
            .header("x-request-id", format!("agg-{user}"))
            .send()
            .await
            .unwrap();
        let timing = response.headers()["server-timing"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = common::json_of(response).await;
        assert_eq!(body["svc"]["version"], version, "{body}");
        assert_eq!(body["plain"]["version"], "v1");
        // The canary backend's desc names its upstream; the plain one's is as ever.
        assert!(
            timing.contains(&format!(";desc=\"ok {version}\"")) && timing.contains("plain;dur="),
            "{timing}"
        );
        assert!(timing.ends_with(";desc=\"ok\""), "{timing}");
        let line = eventually_some("the aggregate's access line", async || {
            common::file_lines(&log)
                .into_iter()
                .find(|l| l.contains(&format!("agg-{user}")))
        })
        .await;
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(line["backends"][0]["upstream"], version, "{line}");
        assert!(line["backends"][1].get("upstream").is_none(), "{line}");
        assert!(line.get("upstream").is_none(), "{line}");

        let response = client()
            .get(gw.gateway.url("/p/x"))
            .header("x-user-id", &user)
            .header("x-request-id", format!("proxy-{user}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["server-timing"],
            format!("upstream;desc=\"{version}\"").as_str()
        );
        let line = eventually_some("the proxy's access line", async || {
            common::file_lines(&log)
                .into_iter()
                .find(|l| l.contains(&format!("proxy-{user}")))
        })
        .await;
        let line: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(line["upstream"], version, "{line}");
    }
    // The svc calls went where the picks said: one each.
    assert_eq!((v1.hits("/svc"), v2.hits("/svc")), (1, 1));
    let metrics = gw.live.load().metrics.encode();
    for series in [
        "fanout_canary_requests_total{route=\"/a\",backend=\"svc\",upstream=\"v1\"} 1",
        "fanout_canary_requests_total{route=\"/a\",backend=\"svc\",upstream=\"v2\"} 1",
        "fanout_canary_requests_total{route=\"/p/{*rest}\",backend=\"\",upstream=\"v1\"} 1",
        "fanout_canary_requests_total{route=\"/p/{*rest}\",backend=\"\",upstream=\"v2\"} 1",
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
}

#[tokio::test]
async fn cached_answers_of_the_two_upstreams_never_mix() {
    let (v1, v2) = two_versions().await;
    let route = aggregate_route(50, 50).replace(
        "sticky = \"header:x-user-id\"\n",
        "sticky = \"header:x-user-id\"\n  cache_ttl = \"1m\"\n",
    );
    let gw = start_gateway(&(upstreams(&v1, &v2) + &route)).await;
    let on = |want: &str| {
        (0..)
            .map(|i| format!("c{i}"))
            .find(|u| expected(&[50, 50], u) == want)
            .unwrap()
    };
    for round in 0..2 {
        for version in ["v1", "v2"] {
            let response = client()
                .get(gw.url("/a"))
                .header("x-user-id", on(version))
                .send()
                .await
                .unwrap();
            let timing = response.headers()["server-timing"]
                .to_str()
                .unwrap()
                .to_owned();
            let body = common::json_of(response).await;
            assert_eq!(body["svc"]["version"], version, "round {round}: {body}");
            let desc = if round == 0 { "ok" } else { "hit" };
            assert!(
                timing.contains(&format!("desc=\"{desc} {version}\"")),
                "{timing}"
            );
        }
    }
    // One call each: the second round was answered from each one's own entry.
    assert_eq!((v1.hits("/svc"), v2.hits("/svc")), (1, 1));
}
