//! Proxy header rules: hop-by-hop headers dropped (RFC 9110 §7.6.1), `X-Forwarded-*` set,
//! and connection upgrades (WebSocket) recognised so their two headers survive.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

/// Headers that describe one connection, not the message.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `HOP_BY_HOP` as header names, so removing them needs no parsing per request.
static HOP_BY_HOP_NAMES: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including any that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the few names present is cheaper than
    // nine hashed removals.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP_NAMES {
        headers.remove(name);
    }
}

/// Whether `name` is one of [`HOP_BY_HOP`]: a string match, which compiles to length
/// and byte compares, where comparing `HeaderName`s went through their representation.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The protocol a request asks to upgrade to (`Upgrade: websocket` with
/// `Connection: upgrade`), if it asks.
pub fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if asks {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

/// Turns the client's request headers into the upstream's: hop-by-hop headers dropped,
/// `X-Forwarded-For` appended, `-Proto` and `-Host` set, `Host` left to the client library
/// unless `preserve_host`, and an upgrade kept as one.
pub fn upstream_request_headers(
    headers: &mut HeaderMap,
    uri: &http::Uri,
    peer: Option<SocketAddr>,
    preserve_host: bool,
) {
    let upgrade = upgrade_protocol(headers);
    strip_hop_by_hop(headers);
    let host = headers.get(header::HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if !preserve_host {
        headers.remove(header::HOST);
    } else if let Some(host) = &host {
        headers.insert(header::HOST, host.clone());
    }
    if let Some(peer) = peer {
        let mut value = Vec::with_capacity(64);
        if let Some(prior) = headers.get(&X_FORWARDED_FOR)
            && !prior.as_bytes().trim_ascii().is_empty()
        {
            value.extend_from_slice(prior.as_bytes());
            value.extend_from_slice(b", ");
        }
        write_ip(&mut value, peer.ip());
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    // The gateway listens on plain HTTP; TLS, if any, ends in front of it.
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// An address as text, as `Display` writes it; IPv4, the common case, without the
/// formatting machinery (it was a tenth of a proxied request's instructions).
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri() -> http::Uri {
        "/x".parse().unwrap()
    }

    #[test]
    fn strips_hop_by_hop_and_listed_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("trailer", "x".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("accept", "application/json".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn the_match_and_the_list_agree() {
        for name in &HOP_BY_HOP_NAMES {
            assert!(is_hop_by_hop(name), "{name}");
        }
        assert_eq!(HOP_BY_HOP.len(), HOP_BY_HOP_NAMES.len());
        for name in ["accept", "tE", "upgrade-insecure-requests", "x-upgrade"] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(is_hop_by_hop(&name), name == "te", "{name}");
        }
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_stripped() {
        for name in HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.insert("accept", "*/*".parse().unwrap());
            h.insert(name, "x".parse().unwrap());
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name} is kept");
        }
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.12.1",
            "::1",
            "2001:db8::8:1",
        ] {
            let mut out = Vec::new();
            write_ip(&mut out, ip.parse().unwrap());
            assert_eq!(out, ip.as_bytes());
        }
    }

    #[test]
    fn forwarded_headers_are_appended_and_set() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.insert("host", "api.example.com".parse().unwrap());
        upstream_request_headers(
            &mut h,
            &uri(),
            Some("10.0.0.2:5555".parse().unwrap()),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert!(
            h.get("host").is_none(),
            "the client library sets the upstream's host"
        );

        let mut h = HeaderMap::new();
        upstream_request_headers(&mut h, &uri(), Some("127.0.0.1:1".parse().unwrap()), false);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    }

    #[test]
    fn preserve_host_keeps_the_clients_host() {
        let mut h = HeaderMap::new();
        h.insert("host", "api.example.com".parse().unwrap());
        upstream_request_headers(&mut h, &uri(), None, true);
        assert_eq!(h["host"], "api.example.com");
        let mut h = HeaderMap::new();
        let h2: http::Uri = "http://h2.example.com/x".parse().unwrap();
        upstream_request_headers(&mut h, &h2, None, true);
        assert_eq!(
            h["host"], "h2.example.com",
            "HTTP/2 carries the host in :authority"
        );
    }

    #[test]
    fn upgrades_survive_the_strip() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("sec-websocket-key", "abc".parse().unwrap());
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
        upstream_request_headers(&mut h, &uri(), None, false);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["sec-websocket-key"], "abc");

        let mut h = HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(
            upgrade_protocol(&h).is_none(),
            "Upgrade without Connection: upgrade is not a request to upgrade"
        );
    }
}
