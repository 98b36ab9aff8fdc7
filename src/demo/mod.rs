//! Sample upstreams for `fanout demo` (and for anyone who wants a realistic target):
//! `users`, `orders` and `weather`, small JSON services with realistic latencies, one of
//! them slow on every third call so the demo shows a default taking over; the write
//! services a checkout calls (`checkout`: placing an order, `stock`, `payments`,
//! `loyalty`); and, when `[tracing]` exports OTLP/HTTP JSON to this machine, a sample
//! collector (`collector`) that shows each trace's spans. The `users` sample also
//! publishes the demo's signing key (`token`) at `/.well-known/jwks.json`, and answers
//! `GET /me` with the identity headers the gateway set. With `--tls`, [`tls`] makes the
//! self-signed certificates the demo serves.

mod canary;
mod checkout;
mod cluster;
mod collector;
mod mirror;
pub mod tls;
pub mod token;
pub mod traffic;

pub use checkout::DECLINED_CARD;
pub use cluster::{DEMO_SCOPE_VAR, cluster_lines, redis_env};
pub use collector::serve_collector;
pub use tls::DemoCertificates;

use crate::config::{Compiled, OtlpProtocol};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

/// One sample service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// `GET /users/{id}`: a profile, 20 ms; odd ids are on the `pro` plan.
    Users,
    /// `GET /orders?user=ID&limit=N`: recent orders, 60 ms; `POST /orders`: places one
    /// (`201`, `Location: /orders/ID`, its `id`, `user` and `total`), 40 ms.
    Orders,
    /// `GET /forecast/{city}`: 30 ms, but 1.5 s on every third call.
    Weather,
    /// `POST /stock/reservations`: reserves an order's items, 25 ms; `409` over 10 of one.
    Stock,
    /// `POST /payments`: charges an order's total to a card token, 35 ms; `402` for
    /// [`DECLINED_CARD`].
    Payments,
    /// `POST /loyalty/points`: credits a user a point per whole unit spent, 15 ms.
    Loyalty,
    /// `GET /recommendations?user=ID`: version 1 of the weighted canary's service, 25 ms.
    RecsV1,
    /// `GET /recommendations?user=ID`: version 2, another model's picks, 15 ms.
    RecsV2,
    /// The shadow a mirrored route copies to: `GET /users/{id}` (v2), `GET /copies`.
    Shadow,
}

impl Sample {
    /// The sample serving an upstream of this name, if any.
    pub fn for_upstream(name: &str) -> Option<Self> {
        match name {
            "users" => Some(Sample::Users),
            "orders" => Some(Sample::Orders),
            "weather" => Some(Sample::Weather),
            "stock" => Some(Sample::Stock),
            "payments" => Some(Sample::Payments),
            "loyalty" => Some(Sample::Loyalty),
            "recs-v1" => Some(Sample::RecsV1),
            "recs-v2" => Some(Sample::RecsV2),
            "shadow" => Some(Sample::Shadow),
            _ => None,
        }
    }
}

/// Why the samples could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "upstreams.{upstream}.url: cannot listen on {addr} for the sample service: {source}; change the port in the URL"
)]
pub struct DemoError {
    upstream: String,
    addr: String,
    source: std::io::Error,
}

/// Starts a sample service on the address of every upstream that has one. Returns the
/// names and addresses started.
pub async fn start(compiled: &Compiled) -> Result<Vec<(String, SocketAddr)>, DemoError> {
    let mut started = Vec::new();
    for (name, spec) in &compiled.upstreams {
        let Some(sample) = Sample::for_upstream(name) else {
            tracing::warn!(upstream = %name, "no sample service for this upstream; calls to it will fail");
            continue;
        };
        let addr = spec
            .base
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let addr = addr.split('/').next().unwrap_or(addr).to_string();
        let listener = TcpListener::bind(&addr).await.map_err(|source| DemoError {
            upstream: name.clone(),
            addr: addr.clone(),
            source,
        })?;
        let local = listener
            .local_addr()
            .expect("a bound listener has an address");
        tokio::spawn(serve(sample, listener));
        started.push((name.clone(), local));
    }
    if let Some(addr) = collector_addr(compiled) {
        let listener = TcpListener::bind(&addr).await.map_err(|source| DemoError {
            upstream: "tracing.otlp_endpoint".into(),
            addr: addr.clone(),
            source,
        })?;
        let local = listener
            .local_addr()
            .expect("a bound listener has an address");
        tokio::spawn(serve_collector(listener));
        started.push(("trace collector".into(), local));
    }
    Ok(started)
}

/// Where the sample collector listens: the address of `[tracing] otlp_endpoint` when it
/// exports OTLP/HTTP JSON to a loopback address.
fn collector_addr(compiled: &Compiled) -> Option<String> {
    let export = compiled.tracing.export.as_ref()?;
    if export.protocol != OtlpProtocol::HttpJson {
        return None;
    }
    let rest = export.endpoint.strip_prefix("http://")?;
    let addr = rest.split('/').next()?;
    (addr.starts_with("127.0.0.1:") || addr.starts_with("localhost:")).then(|| addr.to_string())
}

/// Serves one sample service on `listener` until the process ends.
pub async fn serve(sample: Sample, listener: TcpListener) {
    let calls = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let calls = calls.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let n = calls.fetch_add(1, Ordering::Relaxed) + 1;
            async move {
                let (parts, body) = request.into_parts();
                let reply = match Limited::new(body, MAX_BODY).collect().await {
                    Ok(body) => answer(sample, &parts, &body.to_bytes(), n),
                    Err(_) => Reply::from((
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Duration::ZERO,
                        r#"{"error":"the body is over 64 KiB"}"#.to_string(),
                    )),
                };
                tokio::time::sleep(reply.delay).await;
                let mut response = Response::new(Full::new(Bytes::from(reply.body)));
                *response.status_mut() = reply.status;
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                if let Some(location) = reply.location.and_then(|l| l.try_into().ok()) {
                    response
                        .headers_mut()
                        .insert(http::header::LOCATION, location);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Largest request body a sample reads.
const MAX_BODY: usize = 64 * 1024;

/// A sample's answer: status, body, and how long it takes.
struct Reply {
    status: StatusCode,
    delay: Duration,
    body: String,
    /// The `Location` of what a write created.
    location: Option<String>,
}

impl From<(StatusCode, Duration, String)> for Reply {
    fn from((status, delay, body): (StatusCode, Duration, String)) -> Self {
        Self {
            status,
            delay,
            body,
            location: None,
        }
    }
}

const NAMES: &[&str] = &[
    "Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis",
];
const CITIES: &[&str] = &["Lisbon", "Oslo", "Kyoto", "Austin", "Nairobi"];
const SKIES: &[&str] = &["sunny", "cloudy", "light rain", "windy"];

fn query_u64(request: &http::request::Parts, key: &str) -> Option<u64> {
    form_urlencoded::parse(request.uri.query()?.as_bytes())
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn answer(sample: Sample, request: &http::request::Parts, body: &[u8], n: u64) -> Reply {
    if sample == Sample::Shadow {
        return mirror::answer(request);
    }
    let path = request.uri.path();
    checkout::answer(sample, &request.method, path, body, n)
        .unwrap_or_else(|| read(sample, request, n).into())
}

/// The answer of a sample to a read (any method but the writes of [`checkout`]).
fn read(sample: Sample, request: &http::request::Parts, n: u64) -> (StatusCode, Duration, String) {
    let ms = Duration::from_millis;
    let path = request.uri.path();
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            ms(5),
            r#"{"error":"not found"}"#.to_string(),
        )
    };
    match sample {
        Sample::Users => {
            if path == token::JWKS_PATH {
                return (StatusCode::OK, Duration::ZERO, token::Signer::demo().jwks());
            }
            if path == "/me" {
                return (StatusCode::OK, ms(5), me(request));
            }
            let Some(id) = path
                .strip_prefix("/users/")
                .and_then(|s| s.parse::<u64>().ok())
            else {
                return not_found();
            };
            if !(1..=1000).contains(&id) {
                return (
                    StatusCode::NOT_FOUND,
                    ms(5),
                    r#"{"error":"no such user"}"#.to_string(),
                );
            }
            let i = id as usize;
            let body = serde_json::json!({
                "id": id,
                "name": NAMES[i % NAMES.len()],
                "email": format!("{}@example.com", NAMES[i % NAMES.len()].to_lowercase()),
                "address": {"city": CITIES[i % CITIES.len()]},
                "friend_ids": [id % 1000 + 1, (id + 6) % 1000 + 1],
                "plan": if id % 2 == 1 { "pro" } else { "free" },
            });
            (StatusCode::OK, ms(20), body.to_string())
        }
        Sample::Orders => {
            if path != "/orders" {
                return not_found();
            }
            let user = query_u64(request, "user").unwrap_or(0);
            let limit = query_u64(request, "limit").unwrap_or(3).min(20);
            let items: Vec<_> = (1..=limit)
                .map(|k| {
                    serde_json::json!({
                        "id": user * 100 + k,
                        "total": ((user * 37 + k * 13) % 200) as f64 + 0.99,
                        "status": if k == 1 { "shipped" } else { "delivered" },
                    })
                })
                .collect();
            let body = serde_json::json!({"data": {"items": items}, "count": limit});
            (StatusCode::OK, ms(60), body.to_string())
        }
        Sample::Weather => {
            let Some(city) = path
                .strip_prefix("/forecast/")
                .and_then(|c| percent_encoding::percent_decode_str(c).decode_utf8().ok())
                .filter(|c| !c.is_empty() && !c.contains('/'))
            else {
                return not_found();
            };
            // Made up, but the same for the same city.
            let seed = city.bytes().map(usize::from).sum::<usize>();
            let body = serde_json::json!({
                "city": city,
                "temp_c": 12 + (seed % 15),
                "summary": SKIES[seed % SKIES.len()],
            });
            let delay = if n.is_multiple_of(3) {
                ms(1500)
            } else {
                ms(30)
            };
            (StatusCode::OK, delay, body.to_string())
        }
        Sample::Stock | Sample::Payments | Sample::Loyalty | Sample::Shadow => not_found(),
        Sample::RecsV1 | Sample::RecsV2 => canary::read(
            sample == Sample::RecsV2,
            path,
            query_u64(request, "user").unwrap_or(0),
        ),
    }
}

/// The `users` sample's `GET /me`: who the gateway says the caller is, from the headers
/// its `claims_to_headers` set, and whether the client's token reached this service.
fn me(request: &http::request::Parts) -> String {
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    serde_json::json!({
        "user_id": header("x-user-id"),
        "scope": header("x-user-scope"),
        "token_forwarded": request.headers.contains_key(http::header::AUTHORIZATION),
    })
    .to_string()
}

/// `curl` lines for the routes of `compiled`, with every path parameter set to `1` (a
/// route whose `auth` names a provider of the demo's key set: once with a token of
/// [`demo_tokens`], once without, answered 401; a
/// route that takes POST and not GET: a JSON POST of [`DEMO_CHECKOUT_BODY`], for `1` and
/// again for `2`, the sample users on the pro plan and not); the first again with a
/// client's `traceparent`, which the answer's continues; with the sample collector,
/// that trace's spans and the latency exemplars that link to it; and after a route
/// whose limit is cluster-scoped, a loop of calls that shows where it refuses.
pub fn curl_lines(compiled: &Compiled, gateway: SocketAddr) -> Vec<String> {
    curl_lines_tls(compiled, gateway, None)
}

/// [`curl_lines`] for a gateway that may serve TLS: with `ca`, the CA file its
/// certificate chains to, the gateway's lines are `curl -si --cacert CA https://...`;
/// with `[server.tls]` and no `ca` (a certificate of the operator's), `https://` alone.
/// Over TLS an unspecified listen address is written `localhost`, a name a certificate
/// for this machine holds. The collector's and admin listener's lines stay plain HTTP.
pub fn curl_lines_tls(
    compiled: &Compiled,
    gateway: SocketAddr,
    ca: Option<&std::path::Path>,
) -> Vec<String> {
    let tls = ca.is_some() || compiled.server.tls.is_some();
    let authority = if tls && gateway.ip().is_unspecified() {
        format!("localhost:{}", gateway.port())
    } else {
        gateway.to_string()
    };
    let base = match (ca, tls) {
        (Some(ca), _) => format!("-si --cacert {} https://{authority}", ca.display()),
        (None, true) => format!("-si https://{authority}"),
        (None, false) => format!("-si http://{authority}"),
    };
    let mut lines = Vec::new();
    let tokens = demo_tokens(compiled, SystemTime::now());
    for route in compiled.routes.iter() {
        let posts = route.methods.contains(&http::Method::POST)
            && !route.methods.contains(&http::Method::GET);
        if !posts {
            let path = with_params(&route.path, "1");
            let token = route_providers(compiled, &route.path)
                .iter()
                .find_map(|name| tokens.get(name));
            match token {
                Some(token) => {
                    lines.push(format!(
                        "curl {base}{path} -H 'authorization: Bearer {token}'"
                    ));
                    lines.push(format!("curl {base}{path}   # no token: 401"));
                }
                None => lines.push(format!("curl {base}{path}")),
            }
            if let Some(burst) = cluster::cluster_burst(route) {
                let target = format!("{}{path}", base.trim_start_matches("-si "));
                lines.push(cluster::limit_loop(&[target], burst));
            }
            continue;
        }
        for value in ["1", "2"] {
            let path = with_params(&route.path, value);
            lines.push(format!(
                "curl {base}{path} -H 'content-type: application/json' -d '{DEMO_CHECKOUT_BODY}'"
            ));
        }
    }
    if let Some(first) = lines.first() {
        lines.push(format!("{first} -H 'traceparent: {DEMO_TRACEPARENT}'"));
    }
    if let Some(collector) = collector_addr(compiled) {
        let trace_id = &DEMO_TRACEPARENT[3..35];
        lines.push(format!(
            "curl -s 'http://{collector}/v1/traces?trace_id={trace_id}'   # its spans, a second later"
        ));
        if let Some(admin) = compiled.server.admin_listen {
            lines.push(format!(
                "curl -s http://{admin}/metrics | grep trace_id   # latencies link to traces"
            ));
        }
    }
    lines
}

/// A demo token for every JWT provider whose `jwks_url` is the key set the `users`
/// sample publishes ([`token::JWKS_PATH`]), signed with [`token::Signer::demo`]: subject
/// [`token::DEMO_SUBJECT`], the provider's `issuer` and first audience, valid 24 hours
/// from `now`.
pub fn demo_tokens(compiled: &Compiled, now: SystemTime) -> BTreeMap<String, String> {
    let Some(users) = compiled.upstreams.get("users") else {
        return BTreeMap::new();
    };
    let jwks_url = format!("{}{}", users.base, token::JWKS_PATH);
    let Some(providers) = compiled.document.get("auth").and_then(Value::as_object) else {
        return BTreeMap::new();
    };
    providers
        .iter()
        .filter(|(_, p)| p.get("jwks_url").and_then(Value::as_str) == Some(jwks_url.as_str()))
        .map(|(name, p)| {
            let issuer = p.get("issuer").and_then(Value::as_str);
            let audience = p
                .get("audiences")
                .and_then(|a| a.get(0))
                .and_then(Value::as_str);
            let claims = token::demo_claims(issuer, audience, now);
            (name.clone(), token::Signer::demo().sign(&claims))
        })
        .collect()
}

/// The providers a route's `auth` names, in order (none for a route without `auth`).
fn route_providers(compiled: &Compiled, path: &str) -> Vec<String> {
    let route = compiled
        .document
        .get("routes")
        .and_then(Value::as_array)
        .and_then(|routes| {
            routes
                .iter()
                .find(|r| r.get("path").and_then(Value::as_str) == Some(path))
        });
    match route.and_then(|r| r.get("auth")) {
        Some(Value::String(name)) => vec![name.clone()],
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// `pattern` with every `{param}` set to `value` (a `{*rest}` to `users/VALUE`).
fn with_params(pattern: &str, value: &str) -> String {
    let mut path = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        let name = &rest[open + 1..close.saturating_sub(1)];
        if name.starts_with('*') {
            path.push_str("users/");
        }
        path.push_str(value);
        rest = &rest[close..];
    }
    path.push_str(rest);
    path
}

/// What the demo's curl lines POST to a write route: a checkout's cart and card.
pub const DEMO_CHECKOUT_BODY: &str =
    r#"{"items":[{"sku":"tea-earl-grey","qty":2},{"sku":"mug-blue","qty":1}],"card":"tok_visa"}"#;

/// The client trace the demo's curl lines continue.
const DEMO_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
