//! The dashboard on the admin listener: one page (`GET /`, with `/dashboard.js`,
//! `/dashboard.css` and its icon `/dashboard.svg`, embedded in the binary: no CDN, works offline) that polls
//! `GET /dashboard/data` every second. The page and its assets hold no data and need no
//! token; the data endpoint is behind the admin token like `/metrics`. The page is
//! read-only: it calls nothing but the data endpoint.
//!
//! The data is O(routes + backends + upstreams): each route's window is read through
//! the snapshot's own route (no lookup, no lock), its percentiles through one reused
//! `hdrhistogram` (`crate::stats`).

use super::json_response;
use crate::gateway::{Gateway, Handler};
use crate::reload::Reloader;
use crate::stats::{OUTCOMES, PercentileReader, Percentiles, RECENT_SECONDS, RouteReading};
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

/// The data endpoint's path.
pub const DATA_PATH: &str = "/dashboard/data";

const PAGE: &str = include_str!("dashboard.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");
/// The tab's icon: three lines fanning out.
const ICON: &str = include_str!("dashboard.svg");

/// Scripts and styles from the admin listener only, no inline script, no frames; the
/// only request the page makes is to the data endpoint (same origin).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Seconds between two points of a route's chart (60 points: five minutes).
const CHART_STEP: u64 = 5;

/// The page or one of its assets for `GET path`; `None` for any other request.
pub fn asset(method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
    if method != Method::GET {
        return None;
    }
    let (body, content_type) = match path {
        "/" | "/dashboard" => (PAGE, "text/html; charset=utf-8"),
        "/dashboard.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/dashboard.css" => (STYLE, "text/css; charset=utf-8"),
        "/dashboard.svg" | "/favicon.ico" => (ICON, "image/svg+xml"),
        _ => return None,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    guard_headers(headers);
    Some(response)
}

/// What every dashboard answer carries: no sniffing, no framing, no referrer, no cache.
fn guard_headers(headers: &mut http::HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `GET /dashboard/data`: everything the page shows, now.
pub async fn data(gateway: &Gateway, reloader: &Reloader) -> Response<Full<Bytes>> {
    let cache = gateway.cache.usage().await;
    let mut response = json_response(StatusCode::OK, &snapshot(gateway, reloader, cache));
    guard_headers(response.headers_mut());
    response
}

fn percentiles(p: Option<Percentiles>) -> (Value, Value) {
    match p {
        Some(p) => (json!(round(p.p50_ms)), json!(round(p.p99_ms))),
        None => (Value::Null, Value::Null),
    }
}

fn round(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

/// `failing` when at least half of the minute's calls failed, `degraded` when some
/// did, `idle` without calls, else `ok`.
fn status(calls: u64, failures: u64) -> &'static str {
    match (calls, failures) {
        (0, _) => "idle",
        (_, 0) => "ok",
        (c, f) if f * 2 >= c => "failing",
        _ => "degraded",
    }
}

/// The whole dashboard document at this moment; `cache`: the cache's entries and bytes.
pub fn snapshot(gateway: &Gateway, reloader: &Reloader, cache: (u64, u64)) -> Value {
    let now = crate::stats::now();
    let mut reader = PercentileReader::default();
    let routes: Vec<Value> = gateway
        .routes
        .iter()
        .map(|route| {
            let RouteReading {
                rate,
                requests,
                errors,
                limited,
                series,
            } = route.series.window.read(now, CHART_STEP);
            let (p50, p99) = percentiles(reader.route(&route.series.window, now));
            let (kind, upstream, backends) = match &route.handler {
                Handler::Aggregate(agg) => {
                    let backends: Vec<Value> = agg
                        .backends
                        .iter()
                        .map(|b| {
                            let counts = b.series.window.outcomes(now);
                            let calls: u64 = counts.iter().sum();
                            // timeout, error, default
                            let failures = counts[3] + counts[4] + counts[5];
                            let outcomes: serde_json::Map<String, Value> = OUTCOMES
                                .iter()
                                .zip(counts)
                                .map(|(name, n)| ((*name).to_string(), json!(n)))
                                .collect();
                            let (p50, p99) = percentiles(reader.backend(&b.series.window, now));
                            json!({
                                "name": b.spec.name,
                                "upstream": match &b.canary {
                                    None => b.spec.upstream.clone(),
                                    Some(canary) => canary_names(canary),
                                },
                                "calls": calls,
                                "outcomes": outcomes,
                                "p50_ms": p50,
                                "p99_ms": p99,
                                "status": status(calls, failures),
                            })
                        })
                        .collect();
                    ("aggregate", Value::Null, backends)
                }
                Handler::Proxy(p) => {
                    let upstream = match &p.canary {
                        None => p.upstream.spec.name.clone(),
                        Some(canary) => canary_names(canary),
                    };
                    ("proxy", json!(upstream), Vec::new())
                }
            };
            json!({
                "path": route.path,
                "methods": route.methods.to_string(),
                "kind": kind,
                "upstream": upstream,
                "rps": round(rate),
                "requests": requests,
                "errors": errors,
                "error_rate": if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
                "limited": limited,
                "p50_ms": p50,
                "p99_ms": p99,
                "series": series,
                "status": status(requests, errors),
                "backends": backends,
            })
        })
        .collect();
    let upstreams: Vec<Value> = gateway
        .upstreams
        .iter()
        .map(|(name, u)| {
            let health = u.health();
            let in_flight = u
                .spec
                .max_in_flight
                .zip(u.guard.slots_free())
                .map(|(max, free)| max.saturating_sub(free));
            let pool = u.transport.idle_connections();
            json!({
                "name": name,
                "url": u.spec.base,
                "health": health,
                "circuit": u.guard.circuit(),
                "in_flight": in_flight,
                "max_in_flight": u.spec.max_in_flight,
                "pool_idle": pool.map(|p| p.0),
                "pool_max": pool.map(|p| p.1),
            })
        })
        .collect();
    let stats = gateway.cache.stats();
    let (hits, misses, stale) = (stats.hits.get(), stats.misses.get(), stats.stale.get());
    let lookups = hits + misses + stale;
    let (entries, bytes) = cache;
    let reload = reloader.status();
    json!({
        "window_seconds": RECENT_SECONDS,
        "chart_step_seconds": CHART_STEP,
        "config": {
            "hash": gateway.config.hash,
            "loaded_at": reload.loaded_at,
            "last_reload": {
                "ok": reload.ok,
                "trigger": reload.trigger,
                "at": reload.at,
                "problems": reload.problems,
            },
            "pending_restart": gateway.config.pending_restart.keys().collect::<Vec<_>>(),
        },
        "in_flight": gateway.metrics.requests_in_flight(),
        "cache": {
            "entries": entries,
            "bytes": bytes,
            "max_bytes": gateway.config.cache_max_size,
            "hits": hits,
            "misses": misses,
            "stale": stale,
            "hit_ratio": if lookups == 0 { Value::Null } else { json!((hits + stale) as f64 / lookups as f64) },
        },
        "routes": routes,
        "upstreams": upstreams,
    })
}

/// A weighted canary's upstreams as the page shows them: `v1 / v2`, in the written order.
fn canary_names<T>(canary: &crate::canary::Canary<T>) -> String {
    let names: Vec<&str> = canary.choices().iter().map(|c| c.name.as_str()).collect();
    names.join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_marks_failures() {
        assert_eq!(status(0, 0), "idle");
        assert_eq!(status(10, 0), "ok");
        assert_eq!(status(10, 1), "degraded");
        assert_eq!(status(10, 5), "failing");
    }

    #[test]
    fn assets_are_served_with_their_guards() {
        let page = asset(&Method::GET, "/").unwrap();
        assert_eq!(page.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(page.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(asset(&Method::GET, "/dashboard.js").is_some());
        assert!(asset(&Method::POST, "/").is_none());
        assert!(asset(&Method::GET, DATA_PATH).is_none());
        // No external request: nothing in the page names another origin.
        for text in [PAGE, SCRIPT, STYLE, ICON] {
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn") && !text.contains("@import"));
        }
    }
}
