//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) loads the
//! page from the admin listener of a gateway with a few routes and a mock upstream, and
//! the test reads what the page shows: every route, numbers that move after traffic, a
//! failing backend's row in red, the token prompt, 200 routes. No console errors.
//! Screenshots go to `target/dashboard.png` (and `-dark.png`) for people to look at.

mod browser;
mod scale;

use crate::common;
use browser::Browser;
use common::{MockUpstream, Reply, client, start_reloadable};
use serde_json::json;
use std::path::PathBuf;

fn screenshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name)
}

/// An aggregate route with a good and a failing backend, a proxy route, and a route
/// whose rate limit refuses most of a burst.
fn config(up: &MockUpstream, server: &str) -> String {
    format!(
        "[server]\n{server}\n\
         [upstreams.accounts]\nurl = \"{url}\"\ntimeout = \"2s\"\nmax_in_flight = 8\n\
         [upstreams.ledger]\nurl = \"{url}\"\ntimeout = \"2s\"\n\
         circuit_breaker = {{ failures = 1000, open_for = \"1m\" }}\n\
         [[routes]]\npath = \"/summary/{{id}}\"\n\
         [[routes.backends]]\nname = \"profile\"\nupstream = \"accounts\"\npath = \"/profile\"\ncache_ttl = \"1m\"\n\
         [[routes.backends]]\nname = \"balance\"\nupstream = \"ledger\"\npath = \"/broken\"\ndefault = {{}}\n\
         [[routes]]\npath = \"/files/{{*rest}}\"\nmethods = [\"GET\"]\n\
         proxy = {{ upstream = \"accounts\", path = \"/profile\" }}\n\
         [[routes]]\npath = \"/limited\"\nrate_limit = {{ rate = \"2/min\", burst = 2 }}\n\
         [[routes.backends]]\nname = \"profile\"\nupstream = \"accounts\"\npath = \"/profile\"\n",
        url = up.url()
    )
}

async fn mock() -> MockUpstream {
    MockUpstream::builder()
        .route("/profile", Reply::json(r#"{"name":"Ada"}"#))
        .route("/broken", Reply::json(r#"{"error":"down"}"#).status(500))
        .start()
        .await
}

/// The text of a cell of the routes table's row for `path`.
fn route_cell(path: &str, cell: usize) -> String {
    format!(
        "(() => {{ const r = [...document.querySelectorAll('#routes tbody tr')].find(r => r.cells[0].textContent === '{path}'); return r ? r.cells[{cell}].textContent : null; }})()"
    )
}

fn backend_row(name: &str) -> String {
    format!(
        "[...document.querySelectorAll('#backends tbody tr')].find(r => r.cells[1].textContent === '{name}')"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_every_route_moves_with_traffic_and_marks_failures() {
    let up = mock().await;
    let gw = start_reloadable(&config(&up, "")).await;
    let admin = format!("http://{}", gw.admin);
    let mut browser = Browser::launch(1400, 900).await;
    browser.navigate(&format!("{admin}/")).await;
    browser
        .wait_for(
            "the routes table",
            "document.querySelectorAll('#routes tbody tr').length === 3",
        )
        .await;
    let paths = browser
        .eval("[...document.querySelectorAll('#routes tbody tr')].map(r => r.cells[0].textContent)")
        .await;
    assert_eq!(
        paths,
        json!(["/summary/{id}", "/files/{*rest}", "/limited"])
    );
    assert_eq!(browser.eval(&route_cell("/summary/{id}", 3)).await, "0.0");
    assert_eq!(browser.eval(&route_cell("/summary/{id}", 8)).await, "idle");
    assert_eq!(
        browser
            .eval("[...document.querySelectorAll('#upstreams tbody tr')].map(r => r.cells[0].textContent)")
            .await,
        json!(["accounts", "ledger"])
    );

    // Traffic: 20 aggregate answers (the balance backend fails every time: its default
    // stands in), 5 proxied, and a burst at the limited route (2 pass, the rest 429).
    let http = client();
    for i in 0..20 {
        let r = http
            .get(gw.gateway.url(&format!("/summary/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    for _ in 0..5 {
        http.get(gw.gateway.url("/files/a")).send().await.unwrap();
    }
    for _ in 0..6 {
        http.get(gw.gateway.url("/limited")).send().await.unwrap();
    }
    browser
        .wait_for(
            "the summary route's requests/s to move",
            &format!("{} === '2.0'", route_cell("/summary/{id}", 3)),
        )
        .await;
    browser
        .wait_for(
            "the proxy route's requests/s to move",
            &format!("{} === '0.5'", route_cell("/files/{*rest}", 3)),
        )
        .await;
    browser
        .wait_for(
            "the 429s",
            &format!("{} === '4'", route_cell("/limited", 7)),
        )
        .await;
    assert_ne!(
        browser.eval(&route_cell("/summary/{id}", 4)).await,
        "–",
        "p50 shown"
    );
    assert_eq!(browser.eval(&route_cell("/summary/{id}", 8)).await, "ok");

    // The failing backend's row: status "failing", in red; the good one green.
    let balance = backend_row("balance");
    browser
        .wait_for("the balance backend's row", &format!("!!{balance}"))
        .await;
    assert_eq!(
        browser.eval(&format!("{balance}.dataset.status")).await,
        "failing"
    );
    assert_eq!(
        browser
            .eval(&format!("{balance}.cells[7].textContent"))
            .await,
        "20",
        "20 errors"
    );
    let red = browser
        .eval(&format!("getComputedStyle({balance}.cells[12]).color"))
        .await;
    assert_eq!(red, "rgb(207, 34, 46)", "the failing status is red");
    let profile = backend_row("profile");
    assert_eq!(
        browser.eval(&format!("{profile}.dataset.status")).await,
        "ok"
    );
    // One path for every id, cached for a minute: one call, then 19 hits.
    assert_eq!(
        browser
            .eval(&format!("{profile}.cells[3].textContent"))
            .await,
        "1"
    );
    assert_eq!(
        browser
            .eval(&format!("{profile}.cells[4].textContent"))
            .await,
        "19"
    );
    assert_eq!(
        browser
            .eval(&format!("getComputedStyle({profile}.cells[12]).color"))
            .await,
        "rgb(26, 127, 55)"
    );
    // The cache: one entry (the profile), 19 hits of 20 lookups.
    browser
        .wait_for(
            "the cache's figures",
            "document.getElementById('cache-detail').textContent.startsWith('1 entry ')",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('cache-ratio').textContent")
            .await,
        "95% hits"
    );
    // The config card shows the hash serving.
    let hash = gw.live.load().config.hash.clone();
    assert_eq!(
        browser
            .eval("document.getElementById('config-hash').title")
            .await,
        json!(hash)
    );

    let errors = browser.errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    browser.screenshot(&screenshot_path("dashboard.png")).await;
    browser.color_scheme("dark").await;
    browser
        .screenshot(&screenshot_path("dashboard-dark.png"))
        .await;
    let dark = browser
        .eval("getComputedStyle(document.body).backgroundColor")
        .await;
    assert_eq!(
        dark, "rgb(13, 17, 23)",
        "dark mode follows prefers-color-scheme"
    );

    // A rejected reload: the card says so, with the problem; the hash stays.
    gw.write("[[routes]]\npath = \"/x\"\n");
    assert!(gw.reloader.reload("test").is_err());
    browser
        .wait_for(
            "the rejected reload",
            "document.getElementById('reload-result').textContent === 'rejected'",
        )
        .await;
    let problems = browser
        .eval("document.getElementById('reload-problems').textContent")
        .await;
    assert!(
        problems.as_str().unwrap().contains("routes[0]"),
        "{problems}"
    );
    assert_eq!(
        browser
            .eval("document.getElementById('config-hash').title")
            .await,
        json!(hash)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_page_asks_for_it_and_shows_nothing_before() {
    let up = mock().await;
    let gw = start_reloadable(&config(&up, "admin_token = \"s3cret-token\"")).await;
    let admin = format!("http://{}", gw.admin);
    let http = client();

    // The data endpoint: 401 without the token (or with a wrong one), data with it.
    let data = format!("{admin}/dashboard/data");
    assert_eq!(http.get(&data).send().await.unwrap().status(), 401);
    let wrong = http.get(&data).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http
        .get(&data)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["cache-control"], "no-store");
    assert_eq!(ok.headers()["x-content-type-options"], "nosniff");
    let body = common::json_of(ok).await;
    assert_eq!(body["routes"].as_array().unwrap().len(), 3);
    // The page itself holds no data: served without the token, with its guards.
    let page = http.get(format!("{admin}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(!page.text().await.unwrap().contains("s3cret"));

    let mut browser = Browser::launch(1200, 700).await;
    browser.navigate(&format!("{admin}/")).await;
    browser
        .wait_for(
            "the token prompt",
            "!document.getElementById('login').hidden",
        )
        .await;
    assert_eq!(
        browser.eval("document.getElementById('data').hidden").await,
        true
    );
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#routes tbody tr').length")
            .await,
        0
    );
    // A wrong token: asked again, saying it was refused.
    browser
        .eval("document.getElementById('token').focus()")
        .await;
    browser.type_text("wrong").await;
    browser
        .eval("document.getElementById('login-submit').click()")
        .await;
    browser
        .wait_for(
            "the refusal",
            "!document.getElementById('login-error').hidden && !document.getElementById('login').hidden",
        )
        .await;
    // The right one: the data appears.
    browser
        .eval("document.getElementById('token').focus()")
        .await;
    browser.type_text("s3cret-token").await;
    browser
        .eval("document.getElementById('login-submit').click()")
        .await;
    browser
        .wait_for(
            "the data",
            "document.querySelectorAll('#routes tbody tr').length === 3 && !document.getElementById('data').hidden",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('login').hidden")
            .await,
        true
    );
    let href = browser.eval("location.href").await;
    assert!(
        !href.to_string().contains("s3cret"),
        "never in the URL: {href}"
    );
    // Asked once: a reload of the tab shows the data without the prompt.
    browser.call("Page.reload", json!({})).await;
    browser
        .wait_for(
            "the data after a reload",
            "document.querySelectorAll('#routes tbody tr').length === 3",
        )
        .await;
    assert_eq!(
        browser
            .eval("document.getElementById('login').hidden")
            .await,
        true
    );
    // The only errors are the two refused data requests (the browser logs a 401).
    let errors = browser.errors().await;
    assert!(
        errors.iter().all(|e| e.contains("401")),
        "console errors: {errors:#?}"
    );
}

/// The page keeps polling whatever one update does: a body that is not JSON, or a
/// render that throws, shows "bad data" and the next update is live again; a token no
/// request header can carry asks for the token again, saying why, instead of showing
/// "unreachable" forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_update_or_an_unsendable_token_never_stops_the_page() {
    let up = mock().await;
    let gw = start_reloadable(&config(&up, "admin_token = \"s3cret-token\"")).await;
    let admin = format!("http://{}", gw.admin);
    let mut browser = Browser::launch(1200, 700).await;
    browser.navigate(&format!("{admin}/")).await;
    browser
        .wait_for(
            "the token prompt",
            "!document.getElementById('login').hidden",
        )
        .await;
    let submit = async |browser: &mut Browser, token: &str| {
        browser
            .eval("document.getElementById('token').focus()")
            .await;
        browser.type_text(token).await;
        browser
            .eval("document.getElementById('login-submit').click()")
            .await;
    };
    // A character beyond Latin-1: `fetch` would throw on the header.
    submit(&mut browser, "s3cret\u{20ac}token").await;
    browser
        .wait_for(
            "the prompt again, saying why",
            "!document.getElementById('login').hidden \
             && !document.getElementById('login-error').hidden \
             && document.getElementById('login-error').textContent.includes('cannot carry')",
        )
        .await;
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('fanout-admin-token')")
            .await,
        serde_json::Value::Null,
        "the unsendable token is forgotten"
    );
    submit(&mut browser, "s3cret-token").await;
    let live = "document.getElementById('state').textContent === 'live'";
    browser
        .wait_for(
            "the data",
            &format!("document.querySelectorAll('#routes tbody tr').length === 3 && {live}"),
        )
        .await;

    // A body that is not JSON (a proxy's error page, say): "bad data", and polling goes on.
    browser
        .eval(
            "window.realFetch = window.fetch; window.garbled = 0; \
             window.fetch = async () => { window.garbled += 1; return new Response('<html>oops', { status: 200 }); }; true",
        )
        .await;
    browser
        .wait_for(
            "two garbled updates",
            "window.garbled >= 2 && document.getElementById('state').textContent === 'bad data'",
        )
        .await;
    // A render that throws: the same.
    browser
        .eval(
            "window.fetch = window.realFetch; window.realRender = render; window.thrown = 0; \
             window.render = () => { window.thrown += 1; throw new Error('render failed'); }; true",
        )
        .await;
    browser
        .wait_for(
            "two failed renders",
            "window.thrown >= 2 && document.getElementById('state').textContent === 'bad data'",
        )
        .await;
    let updates = browser.eval("window.fanoutDashboard.updates").await;
    browser
        .eval("window.render = window.realRender; true")
        .await;
    browser
        .wait_for(
            "live again",
            &format!("window.fanoutDashboard.updates > {updates} && {live}"),
        )
        .await;
    let errors = browser.errors().await;
    assert!(
        errors.iter().all(|e| e.contains("401")),
        "console errors: {errors:#?}"
    );
}
