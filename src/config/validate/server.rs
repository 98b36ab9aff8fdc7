//! Validation of `[server]` and `[server.cors]`.

use super::{Problems, method};
use crate::config::*;
use crate::limits::parse_trusted;
use http::{HeaderName, HeaderValue};
use std::net::SocketAddr;

pub(super) fn server(s: &ServerConfig, p: &mut Problems) -> ServerSpec {
    let listen = s.listen.parse().unwrap_or_else(|_| {
        p.add(
            "server.listen",
            format!(
                "\"{}\" is not an address; write IP:PORT, such as \"0.0.0.0:8080\"",
                s.listen
            ),
        );
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    if !s.health_path.starts_with('/') {
        p.add(
            "server.health_path",
            format!("\"{}\" must start with \"/\"", s.health_path),
        );
    }
    match s.max_connections {
        Some(0) => p.add(
            "server.max_connections",
            "must be at least 1; leave it out for no limit",
        ),
        Some(n) if n > MAX_AT_ONCE => p.add(
            "server.max_connections",
            format!("{n} is more than any process can hold open; the most is {MAX_AT_ONCE}, or leave it out for no limit"),
        ),
        _ => {}
    }
    match s.workers {
        Some(0) => p.add(
            "server.workers",
            "must be at least 1; leave it out to use every core",
        ),
        Some(n) if n > MAX_WORKERS => p.add(
            "server.workers",
            format!("{n} threads is more than {MAX_WORKERS}; use about one per core, or leave it out to use every core"),
        ),
        _ => {}
    }
    ServerSpec {
        listen,
        request_timeout: p.duration("server.request_timeout", &s.request_timeout),
        header_read_timeout: p.duration("server.header_read_timeout", &s.header_read_timeout),
        keepalive_timeout: p.duration("server.keepalive_timeout", &s.keepalive_timeout),
        send_timeout: p.duration("server.send_timeout", &s.send_timeout),
        shutdown_grace: p.duration("server.shutdown_grace", &s.shutdown_grace),
        max_body: p.size("server.max_body", &s.max_body),
        max_body_values: if s.max_body_values == 0 {
            p.add(
                "server.max_body_values",
                "must be at least 1; leave it out for the default of 100000",
            );
            1
        } else {
            s.max_body_values
        },
        health_path: s.health_path.clone(),
        trusted_proxies: s
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                parse_trusted(t)
                    .map_err(|e| p.add(format!("server.trusted_proxies[{i}]"), e))
                    .ok()
            })
            .collect(),
        workers: s.workers,
        compression: s.compression,
        compression_min_size: p.size("server.compression_min_size", &s.compression_min_size),
        cors: s.cors.as_ref().map(|c| cors(c, p)),
        max_connections: s.max_connections,
        admin_listen: admin_listen(s, p),
        admin_token: admin_token(s, p),
        tls: s.tls.as_ref().and_then(|t| super::tls::server_tls(t, p)),
        http2: super::http2::http2(&s.http2, p),
        redirect_http: redirect_http(s, listen, p),
    }
}

/// `redirect_http`: an address of its own, with `[server.tls]` (without TLS there is no
/// https URL to send clients to).
fn redirect_http(s: &ServerConfig, listen: SocketAddr, p: &mut Problems) -> Option<SocketAddr> {
    let text = s.redirect_http.as_ref()?;
    let Ok(addr) = text.parse::<SocketAddr>() else {
        p.add(
            "server.redirect_http",
            format!("\"{text}\" is not an address; write IP:PORT, such as \"0.0.0.0:80\""),
        );
        return None;
    };
    if s.tls.is_none() {
        p.add(
            "server.redirect_http",
            "redirects to https, but the main listener is plain HTTP; add [server.tls], or remove redirect_http",
        );
    }
    let admin = s.admin_listen.parse::<SocketAddr>().ok();
    for (other, key) in [
        (Some(listen), "server.listen"),
        (admin, "server.admin_listen"),
    ] {
        // Same port on the same address, or on every address of one of them: one bind
        // would fail.
        let clashes = |other: SocketAddr| {
            other.port() == addr.port()
                && addr.port() != 0
                && (other.ip() == addr.ip()
                    || other.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        };
        if other.is_some_and(clashes) {
            p.add(
                "server.redirect_http",
                format!(
                    "{addr} is also {key}; give the redirect listener its own port, such as 80"
                ),
            );
        }
    }
    Some(addr)
}

/// The most connections (or upstream calls) that can be counted at once: about the
/// most file descriptors Linux lets one process open (`fs.nr_open`'s ceiling). Beyond
/// the semaphore's own limit the gateway would panic at start.
pub(super) const MAX_AT_ONCE: usize = 1 << 30;

/// The most runtime worker threads.
const MAX_WORKERS: usize = 1024;

/// A token that no request could send (empty, blank, or with spaces or control
/// characters at its ends, which HTTP strips) is refused rather than ignored.
fn admin_token(s: &ServerConfig, p: &mut Problems) -> Option<String> {
    let token = s.admin_token.as_ref()?;
    // The token is never echoed: it is a secret.
    if token.trim().is_empty() {
        p.add(
            "server.admin_token",
            "is empty; set a long random token (such as the output of `openssl rand -hex 32`), or remove the key for no token",
        );
    } else if token.trim() != token || token.chars().any(|c| c.is_control()) {
        p.add(
            "server.admin_token",
            "has spaces at its ends or control characters, which no Authorization header can carry; remove them",
        );
    }
    Some(token.clone())
}

fn admin_listen(s: &ServerConfig, p: &mut Problems) -> Option<SocketAddr> {
    if s.admin_listen == "off" {
        return None;
    }
    let Ok(addr) = s.admin_listen.parse::<SocketAddr>() else {
        p.add(
            "server.admin_listen",
            format!(
                "\"{}\" is not an address; write IP:PORT, such as \"127.0.0.1:9901\", or \"off\"",
                s.admin_listen
            ),
        );
        return None;
    };
    if !addr.ip().is_loopback() && s.admin_token.is_none() {
        p.add(
            "server.admin_token",
            format!("is required when the admin listener is not on loopback ({addr}): anyone who reaches it could reload the config"),
        );
    }
    Some(addr)
}

fn cors(c: &CorsConfig, p: &mut Problems) -> CorsSpec {
    let any = c.allow_origins.iter().any(|o| o == "*");
    if c.allow_origins.is_empty() {
        p.add(
            "server.cors.allow_origins",
            "is empty; list the origins of your dashboards, such as [\"https://dash.example.com\"], or [\"*\"]",
        );
    }
    if any && c.allow_origins.len() > 1 {
        p.add(
            "server.cors.allow_origins",
            "\"*\" allows every origin; list it alone",
        );
    }
    if any && c.allow_credentials {
        p.add(
            "server.cors.allow_credentials",
            "browsers refuse credentials with origin \"*\"; list the allowed origins instead",
        );
    }
    let mut origins = Vec::new();
    for (i, o) in c
        .allow_origins
        .iter()
        .enumerate()
        .filter(|(_, o)| *o != "*")
    {
        let well_formed = (o.starts_with("http://") || o.starts_with("https://"))
            && !o.ends_with('/')
            && o.matches('/').count() == 2;
        match HeaderValue::from_str(o) {
            Ok(v) if well_formed => origins.push(v),
            _ => p.add(
                format!("server.cors.allow_origins[{i}]"),
                format!("\"{o}\" is not an origin; write scheme://host[:port] with no path, such as \"https://dash.example.com\""),
            ),
        }
    }
    let allow_methods = c.allow_methods.as_ref().map(|ms| {
        ms.iter()
            .enumerate()
            .filter_map(|(i, m)| method(&format!("server.cors.allow_methods[{i}]"), m, p))
            .collect()
    });
    let names = |list: &[String], key: &str, p: &mut Problems| -> Vec<HeaderName> {
        list.iter()
            .enumerate()
            .filter_map(|(i, h)| p.header_name(&format!("server.cors.{key}[{i}]"), h))
            .collect()
    };
    CorsSpec {
        allow_origins: origins,
        allow_methods,
        allow_headers: c
            .allow_headers
            .as_ref()
            .map(|h| names(h, "allow_headers", p)),
        expose_headers: names(&c.expose_headers, "expose_headers", p),
        max_age: p.duration("server.cors.max_age", &c.max_age),
        allow_credentials: c.allow_credentials,
    }
}
