//! The dashboard at scale, over a reload and moved by the demo: 200 routes render and
//! update within 100 ms, a reload keeps each route's window, and `fanout demo`'s
//! background traffic reaches every GET route.

use super::browser::Browser;
use super::{config, mock, route_cell};
use crate::common;
use common::{client, start_reloadable};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_routes_render_and_update_cheaply() {
    let up = mock().await;
    let mut toml = format!("[upstreams.up]\nurl = \"{}\"\n", up.url());
    for i in 0..200 {
        toml.push_str(&format!(
            "[[routes]]\npath = \"/r{i}\"\n[[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/profile\"\n"
        ));
    }
    let gw = start_reloadable(&toml).await;
    let mut browser = Browser::launch(1400, 900).await;
    browser.navigate(&format!("http://{}/", gw.admin)).await;
    browser
        .wait_for(
            "200 routes",
            "document.querySelectorAll('#routes tbody tr').length === 200",
        )
        .await;
    let http = client();
    for i in (0..200).step_by(20) {
        http.get(gw.gateway.url(&format!("/r{i}")))
            .send()
            .await
            .unwrap();
    }
    browser
        .wait_for("three more updates", "window.fanoutDashboard.updates >= 4")
        .await;
    browser
        .wait_for(
            "the traffic",
            &format!("{} === '0.1'", route_cell("/r100", 3)),
        )
        .await;
    let timing = browser.eval("window.fanoutDashboard").await;
    eprintln!("200 routes: {timing}");
    let last = timing["lastRenderMs"].as_f64().unwrap();
    assert!(last < 100.0, "an update of 200 routes took {last} ms");
    assert_eq!(
        browser
            .eval("document.querySelectorAll('#backends tbody tr').length")
            .await,
        200
    );
    let errors = browser.errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[tokio::test]
async fn the_demo_traffic_moves_every_get_route() {
    let up = mock().await;
    let gw = start_reloadable(&config(&up, "")).await;
    let targets = fanout::demo::traffic::targets(&gw.live.load().config);
    let patterns: Vec<_> = targets.iter().map(|t| t.pattern.as_str()).collect();
    assert_eq!(patterns, ["/summary/{id}", "/files/{*rest}", "/limited"]);
    let traffic = tokio::spawn(fanout::demo::traffic::run(gw.gateway.addr, targets));
    let data = format!("http://{}/dashboard/data", gw.admin);
    common::eventually("every route to have been called twice", async || {
        let (_, _, body) = common::get_json(&data).await;
        body["routes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["requests"].as_u64().unwrap() >= 2)
    })
    .await;
    traffic.abort();
    assert!(up.hits("/profile") >= 2);
}

#[tokio::test]
async fn a_reload_keeps_each_routes_window() {
    let up = mock().await;
    let toml = config(&up, "");
    let gw = start_reloadable(&toml).await;
    let http = client();
    for i in 0..3 {
        http.get(gw.gateway.url(&format!("/summary/{i}")))
            .send()
            .await
            .unwrap();
    }
    gw.write(&format!(
        "{toml}[[routes]]\npath = \"/new\"\n[[routes.backends]]\nname = \"b\"\nupstream = \"accounts\"\npath = \"/profile\"\n"
    ));
    gw.reloader.reload("test").unwrap();
    let (_, _, body) = common::get_json(&format!("http://{}/dashboard/data", gw.admin)).await;
    let routes = body["routes"].as_array().unwrap();
    let of = |path: &str| routes.iter().find(|r| r["path"] == path).unwrap().clone();
    assert_eq!(of("/summary/{id}")["requests"], 3, "kept over the reload");
    assert_eq!(of("/summary/{id}")["backends"][1]["outcomes"]["error"], 3);
    assert_eq!(of("/new")["requests"], 0);
    assert_eq!(of("/new")["status"], "idle");
    assert_eq!(body["config"]["last_reload"]["trigger"], "test");
    assert_eq!(body["config"]["hash"], gw.live.load().config.hash.as_str());
}
