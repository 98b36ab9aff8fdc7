//! Upstream protection over real sockets: rate limit, in-flight slots, circuit breaker,
//! retries, hedging, health checks, and the server's connection limit.
//!
//! Tests of timers (queue timeouts, `open_for`, deadlines, hedging, health intervals) run
//! on tokio's paused clock, with the gateway and the mock in the test's runtime: time
//! moves only when every task waits, so "answered within 500 ms" means 500 ms of the
//! gateway's own timers, whatever the machine's load.

use crate::common;

use common::{MockUpstream, Reply, client, eventually, get_json, start_gateway};
use std::time::Duration;
use tokio::time::Instant;

const MS: fn(u64) -> Duration = Duration::from_millis;

/// `/r` with one backend on `/data` of upstream `up` (with `upstream` keys), `required`
/// or optional with default 0, and `/r2`, the same backend on a second route.
async fn protected(up: &MockUpstream, upstream: &str, required: bool) -> common::TestGateway {
    let backend = |route: &str| {
        format!(
            "[[routes]]\npath = \"{route}\"\nerrors_field = \"_errors\"\n[[routes.backends]]\nname = \"b\"\nupstream = \"up\"\n\
             path = \"/data\"\nrequired = {required}\ndefault = 0\n"
        )
    };
    start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\ntimeout = \"2s\"\n{upstream}\n{}{}",
        up.url(),
        backend("/r"),
        backend("/r2")
    ))
    .await
}

#[tokio::test]
async fn the_upstream_rate_limit_fails_excess_calls_at_once() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gw = protected(&up, "rate_limit = { rate = \"2/min\" }", true).await;
    assert_eq!(get_json(&gw.url("/r")).await.0, 200);
    assert_eq!(
        get_json(&gw.url("/r2")).await.0,
        200,
        "one bucket for the upstream, across routes"
    );
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("upstream_overloaded"))
    );
    assert_eq!(up.hits("/data"), 2);

    let other = MockUpstream::builder()
        .route("/other", Reply::json("2"))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\nrate_limit = {{ rate = \"1/min\" }}\n[upstreams.other]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/r\"\nerrors_field = \"_errors\"\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\ndefault = 0\n\
         [[routes.backends]]\nname = \"o\"\nupstream = \"other\"\npath = \"/other\"\n",
        up.url(),
        other.url()
    ))
    .await;
    get_json(&gw.url("/r")).await;
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(status, 200, "an optional backend takes its default");
    assert_eq!((body["b"].as_i64(), body["o"].as_i64()), (Some(0), Some(2)));
    assert_eq!(body["_errors"]["b"]["code"], "overloaded");
}

#[tokio::test(start_paused = true)]
async fn max_in_flight_queues_then_fails_as_overloaded() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1").latency(MS(300)))
        .start()
        .await;
    let gw = protected(&up, "max_in_flight = 1\nqueue_timeout = \"50ms\"", true).await;
    let url = gw.url("/r");
    let (a, b) = tokio::join!(get_json(&url), async {
        // Once the first call holds the only slot.
        eventually("the first call at the upstream", async || {
            up.hits("/data") == 1
        })
        .await;
        let started = Instant::now();
        (get_json(&url).await, started.elapsed())
    });
    assert_eq!(a.0, 200);
    let ((status, _, body), waited) = b;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("upstream_overloaded"))
    );
    assert!(
        waited < MS(250),
        "it waited {waited:?}, not about queue_timeout"
    );

    // With a longer queue_timeout the second call waits for the slot and succeeds.
    let gw = protected(&up, "max_in_flight = 1\nqueue_timeout = \"2s\"", true).await;
    let url = gw.url("/r");
    let (a, b) = tokio::join!(get_json(&url), get_json(&url));
    assert_eq!((a.0.as_u16(), b.0.as_u16()), (200, 200));
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_then_lets_one_probe_through() {
    let up = MockUpstream::builder()
        .route("/data", Reply::json("{}").status(500))
        .start()
        .await;
    let gw = protected(
        &up,
        "circuit_breaker = { failures = 2, open_for = \"300ms\" }",
        true,
    )
    .await;
    for _ in 0..2 {
        assert_eq!(get_json(&gw.url("/r")).await.0, 502);
    }
    let started = Instant::now();
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("circuit_open"))
    );
    assert!(started.elapsed() < MS(500), "an open circuit fails at once");
    assert_eq!(up.hits("/data"), 2, "an open circuit calls nobody");

    // After open_for, one probe: it fails, so the circuit opens again.
    tokio::time::sleep(MS(350)).await;
    assert_eq!(get_json(&gw.url("/r")).await.0, 502);
    assert_eq!(get_json(&gw.url("/r")).await.0, 503);
    assert_eq!(up.hits("/data"), 3);

    // The upstream recovers: the next probe closes the circuit.
    up.set_reply("/data", Reply::json("1"));
    tokio::time::sleep(MS(350)).await;
    for _ in 0..3 {
        assert_eq!(get_json(&gw.url("/r")).await.0, 200);
    }
    assert_eq!(up.hits("/data"), 6);
}

#[tokio::test]
async fn idempotent_calls_are_retried_on_502_503_504() {
    let flaky = || {
        Reply::sequence(vec![
            Reply::json("{}").status(503),
            Reply::json("{}").status(502),
            Reply::json("1"),
        ])
    };
    let up = MockUpstream::builder()
        .route("/data", flaky())
        .start()
        .await;
    let gw = protected(&up, "retries = 2", true).await;
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!((status.as_u16(), body["b"].as_i64()), (200, Some(1)));
    assert_eq!(up.hits("/data"), 3);

    let up = MockUpstream::builder()
        .route("/data", flaky())
        .start()
        .await;
    let gw = protected(&up, "retries = 1", true).await;
    assert_eq!(get_json(&gw.url("/r")).await.0, 502, "retries spent");
    assert_eq!(up.hits("/data"), 2);

    let up = MockUpstream::builder()
        .route("/data", Reply::json("{}").status(500))
        .start()
        .await;
    let gw = protected(&up, "retries = 3", true).await;
    assert_eq!(get_json(&gw.url("/r")).await.0, 502);
    assert_eq!(up.hits("/data"), 1, "a 500 is not retried");
}

#[tokio::test]
async fn a_post_is_never_retried() {
    let up = MockUpstream::builder()
        .route(
            "/data",
            Reply::sequence(vec![Reply::json("{}").status(503), Reply::echo()]),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\nretries = 3\n[[routes]]\npath = \"/r\"\nmethods = [\"POST\"]\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\nforward_body = true\nrequired = true\n",
        up.url()
    ))
    .await;
    let response = client().post(gw.url("/r")).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(up.hits("/data"), 1, "a POST is never sent twice");
}

#[tokio::test(start_paused = true)]
async fn retries_never_run_past_the_deadline() {
    // The first try fails after 150 ms; the retry starts before the 200 ms deadline and
    // is cut by it.
    let up = MockUpstream::builder()
        .route("/data", Reply::json("{}").status(503).latency(MS(150)))
        .start()
        .await;
    let gw = start_gateway(&format!(
        r#"[upstreams.up]
url = "{}"
retries = 10
[[routes]]
path = "/r"
timeout = "200ms"
  [[routes.backends]]
  name = "b"
  upstream = "up"
  path = "/data"
  required = true
"#,
        up.url()
    ))
    .await;
    let started = Instant::now();
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (504, Some("upstream_timeout")),
        "the deadline cut the last try"
    );
    assert!(started.elapsed() < MS(600), "took {:?}", started.elapsed());
    assert!(
        up.hits("/data") <= 3,
        "{} tries in 200 ms",
        up.hits("/data")
    );
}

#[tokio::test(start_paused = true)]
async fn hedging_hides_an_upstream_that_is_slow_on_every_other_call() {
    let alternating =
        || Reply::sequence(vec![Reply::json("1").latency(MS(1000)), Reply::json("1")]);
    let up = MockUpstream::builder()
        .route("/data", alternating())
        .start()
        .await;
    let gw = protected(&up, "hedge_after = \"50ms\"", true).await;
    for _ in 0..4 {
        let started = Instant::now();
        assert_eq!(get_json(&gw.url("/r")).await.0, 200);
        assert!(
            started.elapsed() < MS(500),
            "a hedged call took {:?}",
            started.elapsed()
        );
    }

    let up = MockUpstream::builder()
        .route("/data", alternating())
        .start()
        .await;
    let gw = protected(&up, "", true).await;
    let started = Instant::now();
    for _ in 0..2 {
        get_json(&gw.url("/r")).await;
    }
    assert!(
        started.elapsed() >= MS(1000),
        "without hedging every other call is slow"
    );
}

#[tokio::test(start_paused = true)]
async fn unhealthy_upstreams_fail_fast_until_they_recover() {
    let up = MockUpstream::builder()
        .route("/health", Reply::json("{}"))
        .route("/data", Reply::json("1"))
        .start()
        .await;
    let gw = protected(
        &up,
        "health_check = { path = \"/health\", interval = \"100ms\" }",
        true,
    )
    .await;
    assert_eq!(get_json(&gw.url("/r")).await.0, 200);
    up.set_reply("/health", Reply::json("{}").status(500));
    // Until a probe has seen the failure.
    let url = gw.url("/r");
    eventually("a probe to see the failure", async || {
        get_json(&url).await.0 == 503
    })
    .await;
    let before = up.hits("/data");
    let (status, _, body) = get_json(&gw.url("/r")).await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("upstream_unhealthy"))
    );
    assert_eq!(
        up.hits("/data"),
        before,
        "no call reaches an unhealthy upstream"
    );
    up.set_reply("/health", Reply::json("{}"));
    eventually("healthy again after a passing probe", async || {
        get_json(&url).await.0 == 200
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn connections_beyond_max_connections_wait_their_turn() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = MockUpstream::builder()
        .route("/data", Reply::json("1").latency(MS(300)))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[server]\nmax_connections = 1\n[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\n\
         [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/data\"\n",
        up.url()
    ))
    .await;
    // The first connection holds the only slot until its slow answer is sent and it closes.
    let mut first = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    first
        .write_all(b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    eventually("the first connection's call at the upstream", async || {
        up.hits("/data") == 1
    })
    .await;
    let second = tokio::spawn({
        let url = gw.url("/__health");
        async move {
            client().get(url).send().await.unwrap().status();
            Instant::now()
        }
    });
    let mut answer = Vec::new();
    first.read_to_end(&mut answer).await.unwrap();
    let first_done = Instant::now();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    let second_done = second.await.unwrap();
    assert!(
        second_done >= first_done,
        "the second connection was served while the first held the only slot"
    );
}
