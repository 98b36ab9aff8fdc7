//! Proxy routes' headers and methods over real sockets: header names with underscores
//! stay behind, redirects to the upstream's own URL are rewritten to the client's, and a
//! route without `methods` forwards every method.

use crate::common;

use common::{MockUpstream, Reply, client, start_gateway};

/// `/p/{*rest}` proxied to `up` at `/{rest}`, with `proxy_extra` inside `proxy = {}`
/// and `route_extra` on the route.
async fn proxied(up: &MockUpstream, proxy_extra: &str, route_extra: &str) -> common::TestGateway {
    start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/p/{{*rest}}\"\n{route_extra}\n\
         proxy = {{ upstream = \"up\", path = \"/{{rest}}\"{proxy_extra} }}\n\
         [[routes]]\npath = \"/agg\"\nforward_headers = [\"x-user\"]\n{route_extra}\n\
         [[routes.backends]]\nname = \"a\"\nupstream = \"up\"\npath = \"/a\"\n",
        up.url()
    ))
    .await
}

#[tokio::test]
async fn header_names_with_underscores_stay_behind() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = proxied(&up, "", "").await;
    let request = "GET /p/x HTTP/1.1\r\nHost: g\r\nX_Forwarded_For: 6.6.6.6\r\n\
                   Content_Length: 5\r\nX_User: admin\r\nX-User: u1\r\nConnection: close\r\n\r\n";
    let answer = common::raw_request(gw.addr, request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let agg = request.replace("/p/x", "/agg");
    let answer = common::raw_request(gw.addr, &agg).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for seen in up.requests() {
        let names: Vec<&str> = seen.headers.keys().map(|k| k.as_str()).collect();
        assert!(
            names.iter().all(|n| !n.contains('_')),
            "{}: {names:?}",
            seen.target
        );
        assert_eq!(seen.headers["x-user"], "u1", "{}", seen.target);
    }
    assert_eq!(up.requests()[0].headers["x-forwarded-for"], "127.0.0.1");

    // nginx's `underscores_in_headers on`, per route.
    let gw = proxied(&up, "", "underscores_in_headers = true").await;
    let answer = common::raw_request(gw.addr, request).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.requests().last().unwrap().clone();
    assert_eq!(seen.headers["x_user"], "admin");
}

#[tokio::test]
async fn redirects_to_the_upstreams_own_url_are_rewritten_to_the_clients() {
    let up = MockUpstream::builder().start().await;
    let own = up.url();
    let upper = own.replace("http://", "HTTP://");
    up.set_reply(
        "/moved",
        Reply::raw("")
            .status(302)
            .header("location", &format!("{own}/new/place?x=1#top"))
            .header("content-location", &format!("{upper}/c"))
            .header("refresh", &format!("3; url={own}/r")),
    );
    up.set_reply(
        "/elsewhere",
        Reply::raw("")
            .status(301)
            .header("location", "https://other.example/x"),
    );
    up.set_reply(
        "/relative",
        Reply::raw("").status(303).header("location", "/relative/2"),
    );
    up.set_reply(
        "/created",
        Reply::raw("")
            .status(201)
            .header("location", &format!("{own}/items/7")),
    );
    let gw = proxied(&up, "", "").await;
    let get = |path: &'static str| {
        let url = gw.url(path);
        async move { client().get(url).send().await.unwrap() }
    };

    let r = get("/p/moved").await;
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/p/new/place?x=1#top");
    assert_eq!(r.headers()["content-location"], "/p/c");
    assert_eq!(r.headers()["refresh"], "3; url=/p/r");
    let r = get("/p/created").await;
    assert_eq!(r.headers()["location"], "/p/items/7");
    let r = get("/p/elsewhere").await;
    assert_eq!(r.headers()["location"], "https://other.example/x");
    let r = get("/p/relative").await;
    assert_eq!(
        r.headers()["location"],
        "/relative/2",
        "a relative Location is the upstream's to mean, as with nginx"
    );

    let gw = proxied(&up, ", rewrite_location = false", "").await;
    let r = client().get(gw.url("/p/moved")).send().await.unwrap();
    assert_eq!(r.headers()["location"], format!("{own}/new/place?x=1#top"));
}

#[tokio::test]
async fn a_proxy_route_without_methods_forwards_every_method() {
    let up = MockUpstream::builder()
        .route("*", Reply::json("1"))
        .start()
        .await;
    let gw = proxied(&up, "", "").await;
    for method in [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND",
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = client().request(m, gw.url("/p/x")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{method}");
        assert_eq!(up.requests().last().unwrap().method.as_str(), method);
    }
    // An aggregate route without methods still answers GET (and HEAD) only.
    let r = client().post(gw.url("/agg")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}
