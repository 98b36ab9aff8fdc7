//! Proxy routes: a request streams through to one upstream and the answer streams back,
//! with hop-by-hop headers dropped and `X-Forwarded-*` set, as a reverse proxy does.

use crate::body::Body;
use crate::error::GatewayError;
use crate::template::{RenderInput, Template};
use crate::upstream::{CallError, Upstream, describe};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, request};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A compiled proxy route.
#[derive(Debug)]
pub struct ProxyRoute {
    pub upstream: Arc<Upstream>,
    pub path: Template,
    /// Bounds the time until the upstream's response headers, not the body stream.
    pub timeout: Duration,
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
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

/// Removes hop-by-hop headers, including any that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The upstream URL of a request: the rendered path, then the client's query string.
pub fn target_url(
    route: &ProxyRoute,
    parts: &request::Parts,
    params: &matchit::Params<'_, '_>,
) -> Result<String, GatewayError> {
    let input = RenderInput {
        params,
        query: None,
        headers: &parts.headers,
    };
    let mut url = route
        .path
        .render(&route.upstream.spec.base, &input)
        .map_err(|e| GatewayError::BadRequest {
            backend: None,
            message: e.to_string(),
        })?;
    if let Some(query) = parts.uri.query() {
        url.push(if route.path.has_query() { '&' } else { '?' });
        url.push_str(query);
    }
    Ok(url)
}

/// Forwards one request to `url` and streams the answer back.
pub async fn forward(
    route: &ProxyRoute,
    url: String,
    parts: request::Parts,
    body: Incoming,
    peer: Option<SocketAddr>,
) -> Result<Response<Body>, GatewayError> {
    let upstream = &route.upstream;

    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let host = headers.remove(header::HOST).or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    set_forwarded(&mut headers, peer, host);
    for (k, v) in &upstream.spec.headers {
        headers.insert(k, v.clone());
    }

    let mut request = upstream.client.request(parts.method, url).headers(headers);
    if !body.is_end_stream() {
        request = request.body(reqwest::Body::wrap(body));
    }
    let deadline = tokio::time::Instant::now() + route.timeout;
    let upstream_error = |error| GatewayError::Upstream {
        upstream: upstream.spec.name.clone(),
        error,
    };
    let answer = match tokio::time::timeout_at(deadline, request.send()).await {
        Err(_) => return Err(upstream_error(CallError::Timeout(route.timeout))),
        Ok(Err(e)) => return Err(upstream_error(describe(e))),
        Ok(Ok(answer)) => answer,
    };

    let answer: Response<reqwest::Body> = answer.into();
    let (mut parts, body) = answer.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = body.map_err(std::io::Error::other).boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

fn set_forwarded(headers: &mut HeaderMap, peer: Option<SocketAddr>, host: Option<HeaderValue>) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    if let Some(peer) = peer {
        let ip = peer.ip().to_string();
        let value = match headers.get(&XFF).and_then(|v| v.to_str().ok()) {
            Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(XFF.clone(), v);
        }
    }
    // The gateway listens on plain HTTP; TLS is terminated in front of it, if anywhere.
    headers.insert(XFP.clone(), HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.insert(XFH.clone(), host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_listed_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("upgrade", "h2c".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("accept", "application/json".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn appends_forwarded_for() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        set_forwarded(
            &mut h,
            Some("10.0.0.2:5555".parse().unwrap()),
            Some("api.example.com".parse().unwrap()),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, Some("127.0.0.1:1".parse().unwrap()), None);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    }
}
