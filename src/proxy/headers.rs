//! Proxy header rules: hop-by-hop headers dropped (RFC 9110 §7.6.1), names with an
//! underscore dropped on the way upstream, `X-Forwarded-*` set, connection upgrades kept
//! only for the protocols a route allows, and redirects rewritten on the way back.

use super::redirect::LocationRewrite;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::{IpAddr, SocketAddr};

/// Headers that describe one connection, not the message. `HTTP2-Settings` belongs to
/// an h2c upgrade (RFC 7540 §3.2.1), which is never passed.
pub const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// `HOP_BY_HOP` as header names, so removing them needs no parsing per request.
static HOP_BY_HOP_NAMES: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including any that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the few names present is cheaper than
    // nine hashed removals.
    if headers.keys().any(is_hop_by_hop) {
        remove_hop_by_hop(headers);
    }
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
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
    is_hop_by_hop_name(name.as_str())
}

fn is_hop_by_hop_name(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "http2-settings"
    )
}

/// Whether `name` may carry a URL of the upstream's own (see [`LocationRewrite`]).
fn carries_location(name: &str) -> bool {
    matches!(name, "location" | "content-location" | "refresh")
}

/// Whether `name` has a `_`, eight bytes at a time: header names are short, and a
/// `memchr` call per name costs more than the scan itself.
fn has_underscore(name: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const UNDERSCORES: u64 = u64::from_ne_bytes([b'_'; 8]);
    let mut words = name.chunks_exact(8);
    for word in &mut words {
        // A zero byte in `x` is an underscore in the word.
        let x = u64::from_ne_bytes(word.try_into().expect("eight bytes")) ^ UNDERSCORES;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return true;
        }
    }
    words.remainder().contains(&b'_')
}

/// An upstream's answer headers as the client's: hop-by-hop headers dropped, and with
/// `redirects`, the upstream's own URLs rewritten to the client's. One pass over the
/// names finds what there is to do; most answers have nothing.
pub fn answer_headers(headers: &mut HeaderMap, redirects: Option<&LocationRewrite>) {
    let (mut hop, mut location) = (false, false);
    for name in headers.keys() {
        let name = name.as_str();
        hop |= is_hop_by_hop_name(name);
        location |= carries_location(name);
    }
    if hop {
        strip_hop_by_hop(headers);
    }
    if location && let Some(redirects) = redirects {
        redirects.rewrite(headers);
    }
}

/// The upgrade a request asks for (see [`upgrade_protocol`]), kept to the protocols in
/// `allowed` (lower case; compared without a `/version`). `None` when none is allowed:
/// the request then goes upstream as a plain one, as if it had asked for nothing.
pub fn allowed_upgrade(headers: &HeaderMap, allowed: &[String]) -> Option<HeaderValue> {
    if allowed.is_empty() {
        return None;
    }
    let asked = upgrade_protocol(headers)?;
    let text = asked.to_str().ok()?;
    // `websocket` allows `websocket/13` too; `foo/2` allows just that.
    let is_allowed = |token: &str| {
        let name = token.split('/').next().unwrap_or(token);
        allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(token) || a.eq_ignore_ascii_case(name))
    };
    let tokens = || text.split(',').map(str::trim).filter(|t| !t.is_empty());
    if tokens().all(is_allowed) {
        return (tokens().count() > 0).then_some(asked);
    }
    let kept: Vec<&str> = tokens().filter(|t| is_allowed(t)).collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join(", ")).ok()
}

/// Whether the protocol an upstream's 101 switched to is one of those `asked` for.
pub fn switched_as_asked(answer: &HeaderMap, asked: &HeaderValue) -> bool {
    let Some(chosen) = answer.get(header::UPGRADE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let chosen = chosen.trim();
    asked.to_str().is_ok_and(|asked| {
        asked
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(chosen))
    })
}

/// Drops the headers whose names have an underscore (nginx's `underscores_in_headers
/// off`): CGI-style upstreams turn `-` into `_`, so `X_Forwarded_For` would pass for
/// the `X-Forwarded-For` the gateway sets.
fn drop_underscored(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| has_underscore(name.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in names {
        tracing::debug!(header = %name, "header with an underscore not forwarded");
        headers.remove(name);
    }
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
/// and names with an underscore unless `underscores`; `X-Forwarded-For` appended,
/// `-Proto` (`https` when the client's connection is TLS) and `-Host` set; `Host` left to the client library unless `preserve_host`;
/// and `upgrade` (an allowed one, see [`allowed_upgrade`]) asked for again.
pub fn upstream_request_headers(
    headers: &mut HeaderMap,
    uri: &http::Uri,
    peer: Option<SocketAddr>,
    https: bool,
    preserve_host: bool,
    upgrade: Option<HeaderValue>,
    underscores: bool,
) {
    // One pass over the names finds both kinds of header to drop; most requests have
    // neither.
    let (mut hop, mut underscored) = (false, false);
    for name in headers.keys() {
        let name = name.as_str();
        hop |= is_hop_by_hop_name(name);
        underscored |= !underscores && has_underscore(name.as_bytes());
    }
    if hop {
        remove_hop_by_hop(headers);
    }
    if underscored {
        drop_underscored(headers);
    }
    // Without `preserve_host` the client library writes the upstream's own `Host`: the
    // client's is taken out here, for `X-Forwarded-Host`. With it, the client's stays.
    let client_host = if preserve_host {
        headers.get(header::HOST).cloned()
    } else {
        headers.remove(header::HOST)
    };
    let from_client = client_host.is_some();
    let host = client_host.or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if preserve_host
        && !from_client
        && let Some(host) = &host
    {
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
        // A dual-stack listener sees an IPv4 client as `::ffff:a.b.c.d`: the upstream
        // gets the address the client has, as the rate limiter keys it.
        write_ip(&mut value, peer.ip().to_canonical());
        if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        crate::connection::forwarded_proto(https),
    );
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
}

/// An address as text, as `Display` writes it; IPv4, the common case, without the
/// formatting machinery, which would be a large share of a proxied request's work.
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
mod tests;
