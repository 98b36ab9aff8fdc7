//! The plain listener of `server.redirect_http`: every request is answered `308
//! Permanent Redirect` to the same path and query over https, on the host the client
//! named (its port dropped) and the TLS listener's port (left out when it is 443). A
//! request without a usable `Host` gets `400`: there is no URL to send it to. The
//! listener stops accepting when the main one does; its connections close after the
//! answer in flight.

use super::accept::Acceptor;
use crate::body::{Body, full};
use http::header::{CONTENT_TYPE, HOST, LOCATION};
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `listener` until `shutdown` resolves: each request is redirected to
/// `https_port`. `header_read_timeout` bounds a request head, as on the main listener.
pub async fn run_redirect(
    listener: TcpListener,
    https_port: u16,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    if let Ok(addr) = listener.local_addr() {
        // Not `addr`: that field names the main listener in the log.
        tracing::info!(listen = %addr, https_port, "redirect_http: redirecting plain HTTP to https");
    }
    let mut acceptor = Acceptor::new(listener, "redirect_http");
    let (stop, stopped) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            pair = acceptor.accept() => pair,
            () = &mut shutdown => break,
        };
        let connection = http1.serve_connection(
            TokioIo::new(stream),
            hyper::service::service_fn(move |request: Request<Incoming>| async move {
                Ok::<_, Infallible>(redirect(&request, https_port))
            }),
        );
        let mut stopping = stopped.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "redirect connection closed with an error");
            }
        });
    }
    // Idle connections close now; one reading a request answers it first.
    stop.send_replace(());
}

/// The answer to one request: 308 to its https URL, or 400 without a usable host.
pub fn redirect<B>(request: &Request<B>, https_port: u16) -> Response<Body> {
    let Some(host) = host_of(request) else {
        let mut answer = Response::new(full(
            &b"400 Bad Request: the request names no host to redirect to\n"[..],
        ));
        *answer.status_mut() = StatusCode::BAD_REQUEST;
        answer
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return answer;
    };
    let mut location = format!("https://{host}");
    if https_port != 443 {
        location.push(':');
        location.push_str(itoa::Buffer::new().format(https_port));
    }
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    // An asterisk-form target (`OPTIONS *`) has no path to keep.
    location.push_str(if target.starts_with('/') { target } else { "/" });
    let Ok(value) = HeaderValue::from_str(&location) else {
        return Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body(full(&b"400 Bad Request\n"[..]))
            .expect("a valid response");
    };
    let mut answer = Response::new(full(format!("Redirecting to {location}\n").into_bytes()));
    *answer.status_mut() = StatusCode::PERMANENT_REDIRECT;
    let headers = answer.headers_mut();
    headers.insert(LOCATION, value);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    answer
}

/// The host the client asked for, without its port: from `Host` (exactly one), or an
/// absolute-form target's authority. `None` when it is missing, repeated or malformed.
fn host_of<B>(request: &Request<B>) -> Option<String> {
    let mut hosts = request.headers().get_all(HOST).iter();
    let authority = match (hosts.next(), hosts.next()) {
        (Some(host), None) => Authority::try_from(host.as_bytes()).ok()?,
        (None, _) => request.uri().authority()?.clone(),
        (Some(_), Some(_)) => return None,
    };
    // `Authority` takes userinfo (`a@host`); a Host header never has one.
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    // A port that is there must be a number (an empty one is allowed, RFC 3986).
    let port = &authority.as_str()[host.len()..];
    if port.len() > 1 && authority.port_u16().is_none() {
        return None;
    }
    let valid = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')));
    valid.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(host: Option<&str>, target: &str, port: u16) -> Result<String, StatusCode> {
        let mut request = Request::builder().uri(target);
        if let Some(host) = host {
            request = request.header(HOST, host);
        }
        let answer = redirect(&request.body(()).unwrap(), port);
        match answer.status() {
            StatusCode::PERMANENT_REDIRECT => {
                Ok(answer.headers()[LOCATION].to_str().unwrap().into())
            }
            other => Err(other),
        }
    }

    #[test]
    fn the_path_and_query_are_kept_and_the_hosts_port_dropped() {
        assert_eq!(
            location(Some("Example.com:8080"), "/a/b?x=1&y=%20", 8443).unwrap(),
            "https://example.com:8443/a/b?x=1&y=%20"
        );
        assert_eq!(
            location(Some("example.com"), "/", 443).unwrap(),
            "https://example.com/"
        );
        assert_eq!(
            location(Some("[::1]:80"), "/x", 443).unwrap(),
            "https://[::1]/x"
        );
        assert_eq!(
            location(Some("10.0.0.1"), "*", 443).unwrap(),
            "https://10.0.0.1/"
        );
        assert_eq!(
            location(None, "http://api.example.com:80/p?q", 443).unwrap(),
            "https://api.example.com/p?q"
        );
    }

    #[test]
    fn a_missing_or_malformed_host_is_refused() {
        for host in [
            None,
            Some(""),
            Some("a b"),
            Some("user@evil.com"),
            Some("a/b"),
            Some("x:99999x"),
        ] {
            assert_eq!(
                location(host, "/", 443),
                Err(StatusCode::BAD_REQUEST),
                "{host:?}"
            );
        }
    }
}
