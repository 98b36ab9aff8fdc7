//! Cached proxy routes (`cache_ttl` on the route): a GET's whole answer, status and
//! headers, is stored and served again, with an RFC 9211 `Cache-Status` header.

use super::{ProxyRoute, strip_hop_by_hop};
use crate::aggregate::BackendError;
use crate::body::{Body, full};
use crate::cache::{
    CacheKey, CacheOutcome, CachePolicy, Entry, FetchError, Fetched, KeyedBy, ResponseCache,
    SecondLevel, Stored, cache_control, forbids_storing,
};
use crate::error::GatewayError;
use crate::trace::record::CallTrace;
use crate::upstream::{CallError, Upstream, describe, read_body, retry};
use http::header::{
    ACCEPT, ACCEPT_ENCODING, HOST, HeaderMap, HeaderName, HeaderValue, SET_COOKIE, VARY,
};
use http::{Method, Response};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Request headers besides credentials that change a proxied answer: content
/// negotiation. An answer that varies on anything else is not stored.
const NEGOTIATED: [HeaderName; 2] = [ACCEPT, ACCEPT_ENCODING];

/// What a key varies by besides credentials: content negotiation, and the host the
/// client asked for, which the upstream sees (`X-Forwarded-Host`, or `Host` with
/// `preserve_host`) and may build links from. Read from the headers as they go
/// upstream, every value of each.
static KEYED: [HeaderName; 4] = [
    ACCEPT,
    ACCEPT_ENCODING,
    HeaderName::from_static("x-forwarded-host"),
    HOST,
];

impl FetchError for GatewayError {
    fn carries_answer(&self) -> bool {
        matches!(
            self,
            GatewayError::Upstream {
                error: CallError::Status { .. },
                ..
            } | GatewayError::Backend {
                error: BackendError::Call(CallError::Status { .. }),
                ..
            }
        )
    }
}

/// Answers a GET (or HEAD) from the cache, fetching and storing it on a miss.
// The request's call, and the route and upstream it is made on.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    route: &ProxyRoute,
    upstream: &Arc<Upstream>,
    cache: &Arc<ResponseCache>,
    ttl: Duration,
    url: String,
    headers: HeaderMap,
    keyed: KeyedBy<'_>,
    call: CallTrace,
) -> Result<Response<Body>, GatewayError> {
    let key = CacheKey::keyed(Method::GET, &url, &headers, keyed, &KEYED);
    let policy = CachePolicy {
        ttl,
        ..CachePolicy::default()
    };
    let upstream = upstream.clone();
    let timeout = route.timeout;
    let shared = route.shared_cache.clone().map(|cluster| SecondLevel {
        cluster,
        upstream_timeout: timeout,
    });
    let fetch = move || async move {
        // Buffered to be stored, so the route timeout covers the whole answer here.
        let deadline = Instant::now() + timeout;
        let transport = &upstream.transport;
        let target = transport
            .target(&url)
            .map_err(|error| GatewayError::Upstream {
                upstream: upstream.spec.name.clone(),
                error,
            })?;
        let (target, headers, upstream) = (&target, &headers, &upstream);
        let attempt = |traceparent| async move {
            let answer = transport
                .send(
                    &Method::GET,
                    target,
                    headers,
                    Some(traceparent),
                    None,
                    false,
                )
                .await
                .map_err(describe)?;
            let (mut parts, body) = answer.into_parts();
            let body = read_body(body, &parts.headers, upstream.spec.max_response).await?;
            strip_hop_by_hop(&mut parts.headers);
            Ok(Stored {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        let tries = call.tries(&upstream.spec.name, &Method::GET, target.path());
        let stored = retry::run(upstream, true, deadline, tries, attempt)
            .await
            .map_err(|error| GatewayError::Upstream {
                upstream: upstream.spec.name.clone(),
                error,
            })?;
        let cacheable = storable(&stored.headers);
        Ok::<_, GatewayError>(Fetched { stored, cacheable })
    };
    let (entry, outcome) = cache.get_or_fetch(key, policy, shared, fetch).await?;
    Ok(respond(&entry, outcome))
}

/// Whether a shared cache may keep an answer with these headers: not `no-store` or
/// `private`, no `Set-Cookie` (a session must never be handed to another client), and
/// no `Vary` on anything but content negotiation.
fn storable(headers: &HeaderMap) -> bool {
    let vary_ok = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .all(|name| {
            NEGOTIATED
                .iter()
                .any(|n| name.trim().eq_ignore_ascii_case(n.as_str()))
        });
    !forbids_storing(cache_control(headers)) && !headers.contains_key(SET_COOKIE) && vary_ok
}

fn respond(entry: &Entry, outcome: CacheOutcome) -> Response<Body> {
    let mut response = Response::new(full(entry.stored.body.clone()));
    *response.status_mut() = entry.stored.status;
    *response.headers_mut() = entry.stored.headers.clone();
    let status = match outcome {
        CacheOutcome::Hit | CacheOutcome::Stale => {
            format!("fanout; hit; ttl={}", entry.ttl_left(Instant::now()))
        }
        // Stored by another instance: a hit, the second level named in `detail`.
        CacheOutcome::SharedHit => format!(
            "fanout; hit; ttl={}; detail=shared",
            entry.ttl_left(Instant::now())
        ),
        CacheOutcome::Miss { stored: true } => "fanout; fwd=uri-miss; stored".to_string(),
        CacheOutcome::Miss { stored: false } => "fanout; fwd=uri-miss".to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&status) {
        response.headers_mut().insert(CACHE_STATUS.clone(), v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn what_a_shared_cache_may_store() {
        assert!(storable(&headers(&[("content-type", "text/plain")])));
        assert!(storable(&headers(&[("vary", "Accept-Encoding, accept")])));
        assert!(!storable(&headers(&[("vary", "user-agent")])));
        assert!(!storable(&headers(&[("vary", "*")])));
        assert!(!storable(&headers(&[("set-cookie", "session=1")])));
        assert!(!storable(&headers(&[(
            "cache-control",
            "private, max-age=60"
        )])));
        assert!(!storable(&headers(&[("cache-control", "no-store")])));
    }
}
