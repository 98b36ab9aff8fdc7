//! Proxy routes: a request streams through to one upstream and the answer streams back,
//! never buffered whole, with hop-by-hop headers dropped, `X-Forwarded-*` set, allowed
//! upgrades (WebSocket) joined and redirects to the upstream's own URL rewritten, as a
//! reverse proxy does.

mod cached;
mod headers;
mod redirect;
mod upgrade;

pub use headers::{HOP_BY_HOP, strip_hop_by_hop, upgrade_protocol};
pub use redirect::LocationRewrite;
pub use upgrade::Drain;

use crate::auth::Identity;
use crate::auth::claim_headers::set_upstream_headers;
use crate::body::{Body, BodyError, ClientBody, IdleTimeout, is_length_limit};
use crate::cache::{KeyedBy, ResponseCache};
use crate::canary::{Canary, Choice};
use crate::connection::ClientConnection;
use crate::error::GatewayError;
use crate::request_id::X_REQUEST_ID;
use crate::template::{RenderInput, Template};
use crate::tls::client_cert::X_FORWARDED_CLIENT_CERT;
use crate::trace::TraceContext;
use crate::trace::record::CallTrace;
use crate::upstream::{
    CallError, RequestBody, Upstream, UpstreamBody, describe, is_idempotent, retry,
};
use http::{HeaderValue, Method, Response, StatusCode, request};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A compiled proxy route.
#[derive(Debug)]
pub struct ProxyRoute {
    pub upstream: Arc<Upstream>,
    pub path: Template,
    /// Bounds the time until the upstream's response headers, not the body stream.
    pub timeout: Duration,
    /// A body stream, either way, that sends nothing for this long is ended.
    pub idle_timeout: Duration,
    pub preserve_host: bool,
    /// Largest upload; `None` streams any size.
    pub max_body: Option<u64>,
    /// With `cache_ttl`: the cache and how long answers to GET stay fresh.
    pub cache: Option<(Arc<ResponseCache>, Duration)>,
    /// With `cache_scope = "cluster"`: the store every instance shares, the cache's
    /// second level.
    pub shared_cache: Option<Arc<crate::cluster::Cluster>>,
    /// Protocols a client may upgrade to (lower case; never `h2c`).
    pub upgrade: Vec<String>,
    /// Pass client headers with `_` in their names.
    pub underscores_in_headers: bool,
    /// Rewrites redirects to the upstream's own URL; `None` when off or not mappable.
    pub redirects: Option<LocationRewrite>,
    /// The route has `auth`: cache keys hold the identity in place of credentials.
    pub authenticated: bool,
    /// `upstreams`: a weighted canary, each request sent to its pick; then `upstream`
    /// and `redirects` are its first upstream's, and unused.
    pub canary: Option<Canary<ProxyTarget>>,
    /// Shadow upstreams requests are copied to; empty: none.
    pub mirrors: Vec<Arc<crate::mirror::Mirror>>,
}

/// One upstream of a proxy route's canary: its transport, and how redirects to its own
/// URL are rewritten.
#[derive(Debug)]
pub struct ProxyTarget {
    pub upstream: Arc<Upstream>,
    pub redirects: Option<LocationRewrite>,
}

/// The upstream one request goes to: the route's one upstream, or its canary's pick.
#[derive(Debug, Clone, Copy)]
pub struct Picked<'r> {
    pub upstream: &'r Arc<Upstream>,
    pub redirects: Option<&'r LocationRewrite>,
    /// The canary's choice, for `Server-Timing` and the access log; `None` without one.
    pub canary: Option<&'r Choice<ProxyTarget>>,
}

impl ProxyRoute {
    /// Picks the upstream of one request (see `canary`), and counts it; without a
    /// canary, the route's one upstream, at the cost of a branch.
    pub fn pick(&self, headers: &http::HeaderMap, identity: Option<&Identity>) -> Picked<'_> {
        match &self.canary {
            None => Picked {
                upstream: &self.upstream,
                redirects: self.redirects.as_ref(),
                canary: None,
            },
            Some(canary) => {
                let i = canary.pick(headers, identity);
                canary.count(i);
                let choice = canary.choice(i);
                Picked {
                    upstream: &choice.target.upstream,
                    redirects: choice.target.redirects.as_ref(),
                    canary: Some(choice),
                }
            }
        }
    }
}

/// Where a request goes: the primary URL, and the path of each mirror's copy (empty
/// without mirrors).
pub struct Target {
    pub url: String,
    pub mirror_paths: Vec<crate::mirror::ShadowPath>,
}

/// An upgrade the client asked for and the route allows.
struct Upgrade {
    client: hyper::upgrade::OnUpgrade,
    /// The protocols asked of the upstream.
    asked: HeaderValue,
    drain: Option<Drain>,
}

/// The upstream URL of a request on `picked`: the rendered path (which may read the
/// request's identity, `{auth.sub}`), then the client's query string; and the paths of
/// its mirrors' copies, rendered from the same input.
pub fn target_url(
    route: &ProxyRoute,
    picked: Picked<'_>,
    parts: &request::Parts,
    params: &matchit::Params<'_, '_>,
    identity: Option<&Identity>,
    connection: &ClientConnection,
) -> Result<Target, GatewayError> {
    let input = RenderInput {
        auth: identity,
        client_cert: connection.client_cert(),
        ..RenderInput::request(&parts.method, params, None, &parts.headers)
    };
    let mut url = route
        .path
        .render(&picked.upstream.spec.base, &input)
        .map_err(|e| GatewayError::BadRequest {
            backend: None,
            message: e.to_string(),
        })?;
    if let Some(query) = parts.uri.query() {
        url.push(if route.path.has_query() { '&' } else { '?' });
        url.push_str(query);
    }
    let mirror_paths = crate::mirror::render_paths(&route.mirrors, &input);
    Ok(Target { url, mirror_paths })
}

/// Forwards one request to `url` and streams the answer back. The upstream is sent the
/// request id (the client's own, or the one the gateway made). The gateway checked the
/// declared body size against `max_body` already. Each try carries a `traceparent` of
/// its own, a child of `trace`'s server span, in place of the client's: the gateway is a
/// hop of the trace; the client's valid `tracestate` and `baggage` go on.
// The request's parts and what the gateway derived for it, each borrowed as it is held.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    route: &ProxyRoute,
    picked: Picked<'_>,
    target: Target,
    mut parts: request::Parts,
    body: ClientBody,
    connection: &ClientConnection,
    request_id: &HeaderValue,
    trace: &TraceContext,
    identity: Option<&Identity>,
) -> Result<Response<Body>, GatewayError> {
    let Target { url, mirror_paths } = target;
    let upstream = picked.upstream;
    // An upgrade passes only for a protocol the route allows, and only over a
    // connection that can be taken over (HTTP/1.1, with hyper's upgrade handle); any
    // other request asking for one goes upstream as a plain request.
    let upgrade = headers::allowed_upgrade(&parts.headers, &route.upgrade).and_then(|asked| {
        Some(Upgrade {
            client: parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?,
            drain: parts.extensions.remove::<Drain>(),
            asked,
        })
    });
    let mut headers = std::mem::take(&mut parts.headers);
    headers
        .entry(X_REQUEST_ID.clone())
        .or_insert_with(|| request_id.clone());
    trace.pass_on(&mut headers);
    let call = CallTrace::new(trace.server, trace.log.as_ref(), None);
    headers::upstream_request_headers(
        &mut headers,
        &parts.uri,
        Some(connection.peer),
        connection.is_tls(),
        route.preserve_host,
        upgrade.as_ref().map(|u| u.asked.clone()),
        route.underscores_in_headers,
    );
    for (k, v) in &upstream.spec.headers {
        headers.insert(k, v.clone());
    }
    set_upstream_headers(&mut headers, identity);
    if let Some(cert) = connection.client_cert() {
        headers.insert(X_FORWARDED_CLIENT_CERT, cert.header.clone());
    }
    // Copies for the mirrors, sent once the body has ended (an upgrade is not copied:
    // a shadow cannot take part in a tunnel).
    let copies = match upgrade {
        Some(_) => Vec::new(),
        None => crate::mirror::copies(
            &route.mirrors,
            &mirror_paths,
            &crate::mirror::Primary {
                method: &parts.method,
                url: &url,
                upstream,
                headers: &headers,
                own_headers: &[],
                request_id,
                trace,
            },
        ),
    };
    let body = crate::mirror::Tee::new(body, copies);
    if let Some((cache, ttl)) = &route.cache
        && (parts.method == Method::GET || parts.method == Method::HEAD)
        && upgrade.is_none()
    {
        // Boxed, as the general path below: few requests take it.
        let keyed = if route.authenticated {
            KeyedBy::Identity(identity)
        } else {
            KeyedBy::Credentials
        };
        let serve = cached::serve(route, upstream, cache, *ttl, url, headers, keyed, call);
        let mut answer = Box::pin(serve).await?;
        if let Some(redirects) = picked.redirects {
            redirects.rewrite(answer.headers_mut());
        }
        return Ok(answer);
    }

    let unusable = |error| GatewayError::Upstream {
        upstream: upstream.spec.name.clone(),
        error,
    };
    let deadline = tokio::time::Instant::now() + route.timeout;
    let transport = &upstream.transport;
    let target = transport.target(&url).map_err(unusable)?;
    // A streamed body can be sent once: only a bodiless idempotent request is retried
    // or hedged.
    let body = (!body.is_end_stream()).then(|| -> RequestBody {
        let body = IdleTimeout::new(route.idle_timeout, body);
        match route.max_body {
            Some(limit) => {
                Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).boxed_unsync()
            }
            None => body.boxed_unsync(),
        }
    });
    let repeatable = body.is_none() && is_idempotent(&parts.method);
    let body = Mutex::new(body);
    let over_limit = AtomicBool::new(false);
    let attempt = |traceparent| {
        let body = body.lock().expect("never poisoned").take();
        let asks_upgrade = upgrade.is_some();
        let trace = Some(traceparent);
        let send = transport.send(&parts.method, &target, &headers, trace, body, asks_upgrade);
        let over_limit = &over_limit;
        async move {
            send.await.map_err(|e| {
                over_limit.fetch_or(is_length_limit(&e), Ordering::Relaxed);
                describe(e)
            })
        }
    };
    let tries = call.tries(&upstream.spec.name, &parts.method, target.path());
    let answer = match retry::run(upstream, repeatable, deadline, tries, attempt).await {
        Ok(answer) => answer,
        Err(_) if over_limit.load(Ordering::Relaxed) => {
            // The upload was cut off upstream; the client has had no answer yet.
            return Err(GatewayError::Body(BodyError::TooLarge {
                limit: route.max_body.unwrap_or_default(),
            }));
        }
        Err(error) => {
            return Err(GatewayError::Upstream {
                upstream: upstream.spec.name.clone(),
                error,
            });
        }
    };

    if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        // An upstream that switches to a protocol nobody asked for (h2c, say) would
        // turn the connection into a tunnel past the route.
        let Some(upgrade) = upgrade else {
            return Err(unusable(CallError::Failed(
                "answered 101 to a request that asked for no upgrade".into(),
            )));
        };
        if !headers::switched_as_asked(answer.headers(), &upgrade.asked) {
            return Err(unusable(CallError::Failed(
                "switched to a protocol the client did not ask for".into(),
            )));
        }
        return Ok(upgrade::tunnel(
            answer,
            upgrade.client,
            upstream.spec.name.clone(),
            route.idle_timeout,
            upgrade.drain,
        ));
    }
    Ok(passthrough(answer, route, picked.redirects))
}

/// An upstream's answer as the client's: hop-by-hop headers dropped, redirects to the
/// upstream rewritten, the body ended when it sends nothing for the route's
/// `idle_timeout`. A body read whole with its head (the usual small answer) goes out
/// as the bytes it is, its connection back in the pool before the client is written to.
fn passthrough(
    answer: Response<UpstreamBody>,
    route: &ProxyRoute,
    redirects: Option<&LocationRewrite>,
) -> Response<Body> {
    let (mut parts, mut body) = answer.into_parts();
    headers::answer_headers(&mut parts.headers, redirects);
    let body = match body.take_whole() {
        Some(whole) => crate::body::full(whole),
        None => IdleTimeout::new(route.idle_timeout, body)
            .map_err(std::io::Error::other)
            .boxed_unsync(),
    };
    Response::from_parts(parts, body)
}
