//! The `redirect_http` listener: `fanout check`'s refusals, the 308 to the https URL
//! (path, query and port rules), a bad or missing `Host`, stopping when told, and the
//! binary serving it beside the TLS listener.

use crate::common;
use crate::tls_edge::tls_toml;

use common::tls::TestCa;
use common::{eventually, scratch_dir};
use fanout::config::{Env, compile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[test]
fn check_refuses_a_redirect_listener_without_tls_or_on_a_taken_address() {
    let error = |toml: &str| compile(toml, &Env::default()).unwrap_err().to_string();
    let plain =
        error("[server]\nlisten = \"127.0.0.1:8443\"\nredirect_http = \"127.0.0.1:8080\"\n");
    assert!(
        plain.contains(
            "server.redirect_http: redirects to https, but the main listener is plain HTTP"
        ),
        "{plain}"
    );
    let bad = error("[server]\nredirect_http = \"port 80\"\n");
    assert!(
        bad.contains("server.redirect_http: \"port 80\" is not an address"),
        "{bad}"
    );
    let dir = scratch_dir("tls-edge-redirect-check");
    let ca = TestCa::new("check CA");
    let tls = tls_toml(&ca, &dir, None);
    let taken = error(&format!(
        "[server]\nlisten = \"0.0.0.0:8443\"\nredirect_http = \"127.0.0.1:8443\"\n{tls}"
    ));
    assert!(
        taken.contains("server.redirect_http: 127.0.0.1:8443 is also server.listen"),
        "{taken}"
    );
    let admin = error(&format!(
        "[server]\nlisten = \"0.0.0.0:8443\"\nredirect_http = \"127.0.0.1:9901\"\n{tls}"
    ));
    assert!(admin.contains("is also server.admin_listen"), "{admin}");
    let fine =
        format!("[server]\nlisten = \"0.0.0.0:8443\"\nredirect_http = \"0.0.0.0:8080\"\n{tls}");
    let compiled = compile(&fine, &Env::default()).unwrap();
    assert_eq!(
        compiled.server.redirect_http,
        Some("0.0.0.0:8080".parse().unwrap())
    );
}

/// A redirect listener on its own, redirecting to `https_port`; a sender that stops it.
async fn redirector(
    https_port: u16,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(fanout::server::run_redirect(
        listener,
        https_port,
        std::time::Duration::from_secs(10),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, task)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.split("\r\n\r\n").next()?.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[tokio::test]
async fn the_redirect_listener_keeps_path_and_query_and_applies_the_port_rules() {
    let (addr, _stop, _task) = redirector(8443).await;
    let answer = common::raw_request(
        addr,
        "GET /a/b?x=1&y=%20z HTTP/1.1\r\nHost: Example.com:8080\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert_eq!(
        header(&answer, "location"),
        Some("https://example.com:8443/a/b?x=1&y=%20z")
    );
    assert!(
        answer.contains("Redirecting to https://example.com:8443/a/b?x=1&y=%20z"),
        "{answer}"
    );

    let (addr, _stop, _task) = redirector(443).await;
    let answer = common::raw_request(
        addr,
        "POST /form HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert_eq!(
        header(&answer, "location"),
        Some("https://api.example.com/form")
    );
}

#[tokio::test]
async fn the_redirect_listener_answers_400_to_a_missing_or_bad_host_and_keeps_serving() {
    let (addr, _stop, _task) = redirector(443).await;
    for request in [
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: evil@example.com\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    ] {
        let answer = common::raw_request(addr, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.0 400"),
            "{request:?}: {answer}"
        );
        assert!(header(&answer, "location").is_none(), "{answer}");
    }
    let answer = common::raw_request(
        addr,
        "GET / HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
}

#[tokio::test]
async fn the_redirect_listener_stops_when_told() {
    let (addr, stop, task) = redirector(443).await;
    // An idle keep-alive connection does not hold the stop up.
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 308"));
    stop.send(()).unwrap();
    task.await.unwrap();
    eventually("the redirect port refuses connections", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    let closed =
        tokio::time::timeout(std::time::Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection is closed: {closed:?}"
    );
}

/// The binary with `redirect_http`: the listener comes up beside the TLS one, redirects
/// to the port the main listener was given, and goes away with the process on SIGTERM.
#[test]
fn the_binary_serves_redirect_http_beside_the_tls_listener() {
    let dir = scratch_dir("tls-edge-redirect-process");
    let ca = TestCa::new("process CA");
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nredirect_http = \"127.0.0.1:0\"\n{}",
        tls_toml(&ca, &dir, None)
    );
    let mut gateway = common::GatewayProcess::start(&toml);
    let logged = || {
        gateway.logs().iter().find_map(|line| {
            let at = line.find("listen=")?;
            line[at + 7..]
                .split_whitespace()
                .next()?
                .parse::<std::net::SocketAddr>()
                .ok()
        })
    };
    let started = std::time::Instant::now();
    let redirect = loop {
        if let Some(addr) = logged() {
            break addr;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "no redirect listener logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answer = runtime.block_on(common::raw_request(
        redirect,
        "GET /x?y=1 HTTP/1.1\r\nHost: localhost:80\r\nConnection: close\r\n\r\n",
    ));
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    let expected = format!("https://localhost:{}/x?y=1", gateway.addr.port());
    assert_eq!(header(&answer, "location"), Some(expected.as_str()));
    assert!(gateway.terminate().success());
    assert!(std::net::TcpStream::connect(redirect).is_err());
}
