//! `[jobs] max_memory`: the in-memory job store (no `[cluster]`) holds finished answers
//! up to a byte budget, whatever `max_jobs` and `max_result` allow together; past it the
//! answers closest to expiry are dropped first, and a reload's budget applies at once.

use crate::common::{
    MockUpstream, Reply, client, eventually_some, json_of, start_gateway, start_reloadable,
};
use reqwest::StatusCode;
use std::time::Duration;

/// An upstream answering `/report` with a JSON body of about `size` bytes.
async fn reports(size: usize) -> (MockUpstream, String) {
    let body = format!(r#"{{"blob":"{}"}}"#, "x".repeat(size - 11));
    let up = MockUpstream::builder()
        .route("/report", Reply::json(body.clone()))
        .start()
        .await;
    (up, body)
}

fn config(up: &MockUpstream, max_memory: &str) -> String {
    format!(
        r#"
[jobs]
max_memory = "{max_memory}"

[upstreams.reports]
url = "{url}"

[[routes]]
path = "/report"
methods = ["POST"]
proxy = {{ upstream = "reports", path = "/report" }}
async = {{ status_path = "/jobs/{{job}}", result_ttl = "1h", max_result = "8KiB" }}
"#,
        url = up.url()
    )
}

/// Starts a job at `url` and waits for its answer, which must be `body`; returns the
/// status URL's path.
async fn finished_job(gateway: impl Fn(&str) -> String, body: &str) -> String {
    let response = client()
        .post(gateway("/report"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let done = eventually_some("the job to finish", async || {
        let r = client().get(gateway(&location)).send().await.unwrap();
        (r.status() != StatusCode::ACCEPTED).then_some(r)
    })
    .await;
    assert_eq!(done.status(), StatusCode::OK);
    assert_eq!(done.text().await.unwrap(), body);
    location
}

/// Whether the job at `location` still has its answer (else it is `job_not_found`).
async fn kept(gateway: impl Fn(&str) -> String, location: &str) -> bool {
    let response = client().get(gateway(location)).send().await.unwrap();
    if response.status() == StatusCode::NOT_FOUND {
        assert_eq!(json_of(response).await["error"]["code"], "job_not_found");
        return false;
    }
    assert_eq!(response.status(), StatusCode::OK);
    true
}

#[tokio::test(start_paused = true)]
async fn answers_past_max_memory_go_oldest_first_while_new_jobs_keep_theirs() {
    let (up, body) = reports(3000).await;
    // 9 KiB holds two answers of ~3 KiB with their headers and bookkeeping, not three
    // (three bodies and their entries alone weigh ~9.6 KiB).
    let gw = start_gateway(&config(&up, "9KiB")).await;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        jobs.push(finished_job(|p| gw.url(p), &body).await);
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let mut held = Vec::new();
    for job in &jobs {
        held.push(kept(|p| gw.url(p), job).await);
    }
    assert_eq!(held, [false, false, false, true, true]);
    assert_eq!(up.hits("/report"), 5);
}

#[tokio::test(start_paused = true)]
async fn a_reload_that_lowers_max_memory_drops_answers_at_the_next_job() {
    let (up, body) = reports(3000).await;
    let gw = start_reloadable(&config(&up, "1MiB")).await;
    let url = |p: &str| gw.gateway.url(p);
    let mut jobs = Vec::new();
    for _ in 0..4 {
        jobs.push(finished_job(url, &body).await);
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    for job in &jobs {
        assert!(kept(url, job).await, "1 MiB holds four");
    }
    gw.write(&config(&up, "9KiB"));
    gw.reloader.reload("test").expect("the reload is accepted");
    jobs.push(finished_job(url, &body).await);
    let mut held = Vec::new();
    for job in &jobs {
        held.push(kept(url, job).await);
    }
    assert_eq!(held, [false, false, false, true, true]);
}
