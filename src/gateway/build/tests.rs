//! Tests of building a snapshot: what a reload carries over (rate-limit state, upstreams).
use super::*;
use crate::config::{Env, compile};

const CONFIG: &str = r#"
    [upstreams.users]
    url = "http://127.0.0.1:9"

    [[routes]]
    path = "/u/{*rest}"
    proxy = { upstream = "users", path = "/{rest}" }
"#;

#[tokio::test]
async fn a_compiled_route_naming_an_unknown_upstream_is_an_error_not_a_panic() {
    let mut compiled = compile(CONFIG, &Env::default()).expect("valid");
    match &mut compiled.routes[0].kind {
        RouteKind::Proxy(p) => p.upstream = "gone".into(),
        RouteKind::Aggregate(_) => unreachable!("the route is a proxy"),
    }
    let error = Gateway::build(compiled, None).expect_err("unknown upstream");
    assert_eq!(
        error.to_string(),
        "route /u/{*rest}: names upstream gone, which is not declared"
    );
}

#[tokio::test]
async fn a_reload_that_changes_only_canary_weights_keeps_every_upstream() {
    let with = |w1: u32, w2: u32| {
        format!(
            "[upstreams.v1]\nurl = \"http://127.0.0.1:9\"\n[upstreams.v2]\nurl = \"http://127.0.0.1:10\"\n\
             [[routes]]\npath = \"/p\"\nproxy = {{ path = \"/\", upstreams = [{{ name = \"v1\", weight = {w1} }}, {{ name = \"v2\", weight = {w2} }}] }}\n"
        )
    };
    let build = |toml: &str, previous: Option<&Gateway>| {
        Gateway::build(compile(toml, &Env::default()).expect("valid"), previous).unwrap()
    };
    let first = build(&with(90, 10), None);
    let second = build(&with(50, 50), Some(&first));
    for name in ["v1", "v2"] {
        assert!(Arc::ptr_eq(&first.upstreams[name], &second.upstreams[name]));
    }
    let route = second.routes.iter().find(|r| r.path == "/p").unwrap();
    let super::Handler::Proxy(proxy) = &route.handler else {
        panic!("a proxy route");
    };
    let canary = proxy.canary.as_ref().unwrap();
    for (choice, name) in canary.choices().iter().zip(["v1", "v2"]) {
        assert!(Arc::ptr_eq(
            &choice.target.upstream,
            &second.upstreams[name]
        ));
    }
}

#[tokio::test]
async fn two_compiled_routes_in_conflict_are_an_error_not_a_panic() {
    let mut compiled = compile(CONFIG, &Env::default()).expect("valid");
    let copy = compiled.routes[0].clone();
    compiled.routes.push(copy);
    let error = Gateway::build(compiled, None).expect_err("conflict");
    assert!(
        error.to_string().starts_with("route /u/{*rest}: "),
        "{error}"
    );
}

#[tokio::test]
async fn the_cluster_store_and_its_limits_carry_over_a_reload_that_keeps_cluster() {
    let with = |timeout: &str| {
        format!(
            "[cluster]\nredis = \"redis://127.0.0.1:9/0\"\ntimeout = \"{timeout}\"\n{CONFIG}\n\
             [[routes]]\npath = \"/c\"\nrate_limit = {{ rate = \"5/s\", key = \"ip\", scope = \"cluster\" }}\n\
             proxy = {{ upstream = \"users\", path = \"/\" }}\n"
        )
    };
    let build = |toml: &str, previous: Option<&Gateway>| {
        Gateway::build(compile(toml, &Env::default()).expect("valid"), previous).unwrap()
    };
    let limit_of = |g: &Gateway| {
        let route = g.routes.iter().find(|r| r.path == "/c").unwrap();
        assert!(route.limit.is_none(), "a cluster limit is not also local");
        route.cluster_limit.as_ref().unwrap().1.clone()
    };
    // Made without waiting for Redis (nothing listens on port 9).
    let first = build(&with("5ms"), None);
    let same = build(&with("5ms"), Some(&first));
    assert!(Arc::ptr_eq(
        first.cluster.as_ref().unwrap(),
        same.cluster.as_ref().unwrap()
    ));
    assert!(Arc::ptr_eq(&limit_of(&first), &limit_of(&same)));
    let changed = build(&with("10ms"), Some(&same));
    assert!(!Arc::ptr_eq(
        same.cluster.as_ref().unwrap(),
        changed.cluster.as_ref().unwrap()
    ));
    assert!(!Arc::ptr_eq(&limit_of(&same), &limit_of(&changed)));
    assert!(build(CONFIG, Some(&changed)).cluster.is_none());
}
