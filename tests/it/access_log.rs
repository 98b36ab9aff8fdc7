//! The access log over real sockets: the lines in a file in each format, hostile bytes,
//! every queued line written at SIGTERM, the file reopened on SIGUSR1, a reload moving
//! it (or refused, when the new file cannot be opened), and dropped lines in /metrics.

use crate::common;

use common::{
    GatewayProcess, MockUpstream, Reply, client, eventually, eventually_some, raw_request,
    start_gateway, start_reloadable,
};
use std::path::{Path, PathBuf};

/// A new empty directory for log files.
fn log_dir() -> PathBuf {
    common::scratch_dir("access")
}

/// The lines written to `path` so far.
fn lines(path: &Path) -> Vec<String> {
    common::file_lines(path)
}

/// The line of request `id` in `path`, once it is written.
async fn line_of(path: &Path, id: &str) -> String {
    eventually_some(
        &format!("the line of {id} in {}", path.display()),
        async || lines(path).into_iter().find(|l| l.contains(id)),
    )
    .await
}

/// An aggregate route `/a` over two backends and a proxy route `/p/{*rest}`, on `up`,
/// logging as `log` says.
fn config(up: &MockUpstream, log: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[access_log]
{log}

[upstreams.up]
url = "{url}"

[[routes]]
path = "/a"
  [[routes.backends]]
  name = "user"
  upstream = "up"
  path = "/user"
  [[routes.backends]]
  name = "orders"
  upstream = "up"
  path = "/orders"

[[routes]]
path = "/p/{{*rest}}"
proxy = {{ upstream = "up", path = "/{{rest}}" }}
"#,
        url = up.url()
    )
}

async fn upstream() -> MockUpstream {
    MockUpstream::builder()
        .route("*", Reply::json(r#"{"n":1}"#))
        .start()
        .await
}

/// The trace every test request continues: its id is the one each line logs.
const CLIENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn get(url: &str, id: &str) -> u16 {
    let response = client()
        .get(url)
        .header("x-request-id", id)
        .header("traceparent", CLIENT_TRACEPARENT)
        .header("user-agent", "test-agent/1.0")
        .header("referer", "https://dash.example.com/")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.bytes().await.unwrap();
    status
}

#[tokio::test]
async fn json_lines_in_a_file_carry_route_status_bytes_and_each_backend() {
    let up = upstream().await;
    let file = log_dir().join("access.log");
    let gw = start_gateway(&config(&up, &format!("path = {file:?}"))).await;
    assert_eq!(get(&gw.url("/a?x=1"), "json-agg").await, 200);
    assert_eq!(get(&gw.url("/p/items?y=2"), "json-proxy").await, 200);

    let entry: serde_json::Value = serde_json::from_str(&line_of(&file, "json-agg").await).unwrap();
    assert_eq!(entry["method"], "GET");
    assert_eq!(
        entry["path"], "/a?x=1",
        "the query is logged, as nginx's $request"
    );
    assert_eq!(entry["route"], "/a");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["client"], "127.0.0.1");
    let body = r#"{"user":{"n":1},"orders":{"n":1}}"#;
    assert_eq!(entry["bytes"], body.len(), "{entry}");
    let backends = entry["backends"].as_array().unwrap();
    let names: Vec<_> = backends
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["user", "orders"]);
    assert!(
        backends
            .iter()
            .all(|b| b["code"] == "ok" && b["duration_ms"].is_f64())
    );
    assert!(entry["time"].as_str().unwrap().ends_with('Z'), "{entry}");
    assert_eq!(
        entry["trace_id"], CLIENT_TRACE_ID,
        "the client's trace, continued"
    );

    let entry: serde_json::Value =
        serde_json::from_str(&line_of(&file, "json-proxy").await).unwrap();
    assert_eq!(entry["route"], "/p/{*rest}");
    assert_eq!(entry["path"], "/p/items?y=2");
    assert_eq!(
        entry["bytes"],
        r#"{"n":1}"#.len(),
        "the upstream's declared length"
    );
    assert!(entry.get("backends").is_none());
}

#[tokio::test]
async fn combined_lines_are_nginx_combined_with_referer_and_user_agent() {
    let up = upstream().await;
    let file = log_dir().join("access.log");
    let gw = start_gateway(&config(
        &up,
        &format!("path = {file:?}\nformat = \"combined\""),
    ))
    .await;
    assert_eq!(get(&gw.url("/p/x?q=1"), "combined-1").await, 200);
    // The request id is not in the combined format: find the line by its path.
    let line = line_of(&file, "/p/x?q=1").await;
    let (head, rest) = line.split_once(" [").unwrap();
    assert_eq!(head, "127.0.0.1 - -");
    let (time, rest) = rest.split_once("] ").unwrap();
    // 01/Dec/2026:21:30:00 +0000
    assert_eq!(time.len(), 26, "{time}");
    assert!(time.ends_with(" +0000"), "{time}");
    assert_eq!(
        rest,
        "\"GET /p/x?q=1 HTTP/1.1\" 200 7 \"https://dash.example.com/\" \"test-agent/1.0\""
    );
}

#[tokio::test]
async fn text_lines_are_key_value_pairs() {
    let up = upstream().await;
    let file = log_dir().join("access.log");
    let gw = start_gateway(&config(&up, &format!("path = {file:?}\nformat = \"text\""))).await;
    assert_eq!(get(&gw.url("/a"), "text-1").await, 200);
    let line = line_of(&file, "text-1").await;
    assert!(line.starts_with("time="), "{line}");
    for field in [
        " request_id=\"text-1\" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 client=127.0.0.1 method=\"GET\" path=\"/a\" route=\"/a\" status=200 bytes=",
        " backends=\"user:ok:",
        " orders:ok:",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}

#[tokio::test]
async fn hostile_request_bytes_never_break_a_line() {
    let up = upstream().await;
    let dir = log_dir();
    let (json, combined) = (dir.join("json.log"), dir.join("combined.log"));
    let gw = start_gateway(&config(&up, &format!("path = {json:?}"))).await;
    let gw_combined = start_gateway(&config(
        &up,
        &format!("path = {combined:?}\nformat = \"combined\""),
    ))
    .await;
    let request = "GET /p/x?q={a}|^ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                   x-request-id: evil\"}\\,\"status\":1\r\n\
                   User-Agent: ua\" \"\\x\r\n\r\n";
    for addr in [gw.addr, gw_combined.addr] {
        let answer = raw_request(addr, request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let line = line_of(&json, "evil").await;
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["request_id"], "evil\"}\\,\"status\":1");
    assert!(entry["status"].is_u64(), "{entry}");
    assert_eq!(lines(&json).len(), 1);

    let line = line_of(&combined, "GET /p/x").await;
    assert!(
        line.ends_with(" \"-\" \"ua\\x22 \\x22\\x5Cx\""),
        "escaped as nginx does: {line}"
    );
    assert_eq!(lines(&combined).len(), 1);
}

#[tokio::test]
async fn sigterm_writes_every_queued_line_before_exit() {
    let up = upstream().await;
    let file = log_dir().join("access.log");
    // Nothing is written before shutdown: the buffer is large and flush far away.
    let mut gw = GatewayProcess::start(&config(
        &up,
        &format!("path = {file:?}\nbuffer = \"64MiB\"\nflush = \"1h\""),
    ));
    let count = 50;
    for i in 0..count {
        assert_eq!(get(&gw.url("/a"), &format!("term-{i}")).await, 200);
    }
    assert!(lines(&file).is_empty(), "batched until shutdown");
    let status = gw.terminate();
    assert!(status.success(), "{status}");
    let written = lines(&file);
    assert_eq!(written.len(), count);
    for i in 0..count {
        let id = format!("\"term-{i}\"");
        assert!(written.iter().any(|l| l.contains(&id)), "{id} missing");
    }
}

#[tokio::test]
async fn sigusr1_reopens_the_file_after_a_rotation() {
    let up = upstream().await;
    let dir = log_dir();
    let (file, rotated) = (dir.join("access.log"), dir.join("access.log.1"));
    let gw = GatewayProcess::start(&config(&up, &format!("path = {file:?}\nflush = \"1s\"")));
    assert_eq!(get(&gw.url("/a"), "before-rotation").await, 200);
    line_of(&file, "before-rotation").await;
    std::fs::rename(&file, &rotated).unwrap();
    gw.signal("USR1");
    // Until the writer has reopened, lines may still go to the rotated file.
    let mut n = 0;
    eventually("a line in the new file at the path", async || {
        n += 1;
        get(&gw.url("/a"), &format!("after-rotation-{n}")).await;
        !lines(&file).is_empty()
    })
    .await;
    assert!(
        lines(&file)[0].contains("after-rotation-"),
        "{:?}",
        lines(&file)
    );
    let old = lines(&rotated);
    assert!(old[0].contains("before-rotation"), "{old:?}");
    assert!(
        old.iter()
            .all(|l| !l.contains("before-rotation") || l == &old[0])
    );
}

#[tokio::test]
async fn a_reload_moves_the_log_and_one_it_cannot_open_is_refused() {
    let up = upstream().await;
    let dir = log_dir();
    let (first, second) = (dir.join("first.log"), dir.join("second.log"));
    let toml = |log: &str| config(&up, log).replace("listen = \"127.0.0.1:0\"\n", "");
    let gw = start_reloadable(&toml(&format!("path = {first:?}"))).await;
    assert_eq!(get(&gw.gateway.url("/a"), "on-first").await, 200);
    line_of(&first, "on-first").await;

    gw.write(&toml(&format!("path = {second:?}\nformat = \"text\"")));
    let changes = gw.reloader.reload("test").expect("the reload is accepted");
    assert!(
        changes.values.iter().any(|v| v.place == "access_log.path"),
        "{changes:?}"
    );
    assert_eq!(get(&gw.gateway.url("/a"), "on-second").await, 200);
    let line = line_of(&second, "on-second").await;
    assert!(line.starts_with("time="), "the new format too: {line}");

    let missing = dir.join("no-such-dir").join("third.log");
    gw.write(&toml(&format!("path = {missing:?}")));
    let problems = gw
        .reloader
        .reload("test")
        .expect_err("the reload is refused");
    assert!(
        problems[0].starts_with(&format!(
            "access_log.path: cannot open {} for appending",
            missing.display()
        )),
        "{problems:?}"
    );
    assert_eq!(get(&gw.gateway.url("/a"), "still-second").await, 200);
    line_of(&second, "still-second").await;
    assert!(lines(&first).iter().all(|l| !l.contains("second")));
}

#[test]
fn a_file_that_cannot_be_opened_is_a_startup_error() {
    let missing = log_dir().join("no-such-dir").join("access.log");
    let dir = log_dir();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"off\"\n[access_log]\npath = {missing:?}\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["run", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "fanout: access_log.path: cannot open {} for appending",
            missing.display()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn lines_the_writer_cannot_take_are_dropped_and_counted_never_waited_for() {
    let up = upstream().await;
    let dir = log_dir();
    // A pipe that nobody reads: the writer blocks on its first write once the pipe's
    // buffer is full, and the queue fills behind it.
    let fifo = dir.join("stuck.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let _reader = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(0o4000) // O_NONBLOCK: opening does not wait for a writer.
            .open(&fifo)
            .unwrap()
    };
    let toml = config(&up, &format!("path = {fifo:?}\nbuffer = \"1KiB\""))
        .replace("listen = \"127.0.0.1:0\"\n", "");
    let gw = start_reloadable(&toml).await;
    let http = client();
    let metrics = format!("http://{}/metrics", gw.admin);
    let dropped = |text: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with("fanout_access_log_dropped_total{reason=\"queue_full\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .expect("the series is shown")
    };
    let before = http
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(dropped(&before), 0);
    // Every request is answered while its line is dropped.
    let mut n = 0u64;
    loop {
        n += 1;
        let response = http.get(gw.gateway.url("/p/x")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.bytes().await;
        if n.is_multiple_of(500) {
            let text = http
                .get(&metrics)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if dropped(&text) > 0 {
                break;
            }
        }
        assert!(n < 50_000, "no line dropped after {n} requests");
    }
}

/// A token read from the query (`token_from = "query:NAME"`) is part of the request
/// target, which every format writes: its value is written as `REDACTED`, in every line
/// (accepted or refused), while the rest of the query is as the client sent it.
#[tokio::test]
async fn a_query_token_is_redacted_in_every_format() {
    const SECRET: &str = "access-log-test-secret-0123456789abcdef";
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = serde_json::json!({"sub": "ada", "exp": exp});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let up = MockUpstream::builder()
        .route("*", Reply::json(r#"{"ok":true}"#))
        .start()
        .await;
    for format in ["json", "text", "combined"] {
        let dir = log_dir();
        let path = dir.join("access.log");
        let toml = format!(
            r#"[server]
listen = "127.0.0.1:0"

[access_log]
enabled = true
path = "{path}"
format = "{format}"
flush = "10ms"

[auth.q]
secret = "{SECRET}"
token_from = "query:access_token"

[upstreams.up]
url = "{url}"

[[routes]]
path = "/p/{{*rest}}"
auth = "q"
proxy = {{ upstream = "up", path = "/{{rest}}" }}
"#,
            path = path.display(),
            url = up.url(),
        );
        let gw = start_gateway(&toml).await;
        let ok = format!("{format}-ok");
        let url = gw.url(&format!("/p/{ok}?page=2&access_token={token}&q=1"));
        assert_eq!(get(&url, &ok).await, 200);
        let refused = format!("{format}-refused");
        let url = gw.url(&format!("/p/{refused}?%61ccess_token={token}x"));
        assert_eq!(get(&url, &refused).await, 401);
        let line = line_of(&path, &ok).await;
        assert!(
            !line.contains(&token),
            "{format}: the token was logged: {line}"
        );
        assert!(
            line.contains(&format!("/p/{ok}?page=2&access_token=REDACTED&q=1")),
            "{format}: {line}"
        );
        let line = line_of(&path, &refused).await;
        assert!(
            !line.contains(&token),
            "{format}: the token was logged: {line}"
        );
        assert!(
            line.contains(&format!("/p/{refused}?%61ccess_token=REDACTED")),
            "{format}: {line}"
        );
    }
}

#[tokio::test]
async fn a_status_request_logs_no_job_id() {
    let up = MockUpstream::builder()
        .route("*", Reply::json(r#"{"ok":true}"#))
        .start()
        .await;
    let dir = log_dir();
    let path = dir.join("access.log");
    let toml = format!(
        "[access_log]\nenabled = true\npath = \"{path}\"\nformat = \"json\"\nflush = \"10ms\"\n\
         [upstreams.up]\nurl = \"{url}\"\n[[routes]]\npath = \"/r\"\n\
         proxy = {{ upstream = \"up\", path = \"/r\" }}\nasync = {{ status_path = \"/jobs/{{job}}\" }}\n",
        path = path.display(),
        url = up.url(),
    );
    let gw = start_gateway(&toml).await;
    let accepted = get(&gw.url("/r"), "job-start").await;
    assert_eq!(accepted, 202);
    let id = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        get(&gw.url(&format!("/jobs/{id}")), "job-status").await,
        404
    );
    let line = line_of(&path, "job-status").await;
    assert!(!line.contains(id), "the job id was logged: {line}");
    assert!(line.contains("/jobs/REDACTED"), "{line}");
}
