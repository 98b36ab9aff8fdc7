//! The admin listener (`admin_listen`, loopback by default): `GET /health`, `/ready`,
//! `/metrics`, `/config`; `POST /reload` and `POST /cache/purge`; the dashboard (`GET /`,
//! its assets and `GET /dashboard/data`, in `dashboard`). With an `admin_token` set,
//! every endpoint but `/health`, `/ready` and the dashboard's page and assets (which
//! hold no data) needs `Authorization: Bearer <token>`.
//! It speaks HTTP/1.1 under the main listener's header and send timeouts, serves at most
//! [`MAX_ADMIN_CONNECTIONS`] connections at once, and backs off when accepting fails.

use crate::exposition::Exposition;
use crate::gateway::LiveGateway;
use crate::reload::Reloader;
use crate::server::{Acceptor, SendTimeout};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

mod dashboard;

/// Connections the admin listener serves at once; more wait in the listen backlog. Its
/// clients are probes, scrapers and operators: a few connections each.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;

/// Serves the admin endpoints on `listener` until `shutdown` resolves. The timeouts are
/// the main listener's, read at start: a head must be whole within
/// `header_read_timeout` (of the accept, or of the previous answer), and a client that
/// takes no bytes for `send_timeout` is disconnected.
pub async fn run(
    listener: TcpListener,
    live: LiveGateway,
    reloader: Arc<Reloader>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "admin listening");
    let settings = live.load().server.clone();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    let mut acceptor = Acceptor::new(listener, "admin");
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => return Ok(()),
        };
        let stream = tokio::select! {
            (stream, _) = acceptor.accept() => stream,
            () = &mut shutdown => return Ok(()),
        };
        let (live, reloader) = (live.clone(), reloader.clone());
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let (live, reloader) = (live.clone(), reloader.clone());
            async move { Ok::<_, std::convert::Infallible>(answer(&live, &reloader, &request).await) }
        });
        let io = TokioIo::new(SendTimeout::new(stream, settings.send_timeout));
        let connection = http.serve_connection(io, service);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(token: Option<&str>, request: &Request<Incoming>) -> bool {
    let Some(token) = token else { return true };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    given.is_some_and(|g| same(g.as_bytes(), token.as_bytes()))
}

/// Every endpoint but `/health` and `/ready` (and the dashboard's page and assets,
/// answered before this check: they hold no data) needs the token when one is set:
/// `/config`, `/metrics` and `/dashboard/data` describe the deployment, the POSTs change it.
fn open_to_all(path: &str) -> bool {
    matches!(path, "/health" | "/ready")
}

async fn answer(
    live: &LiveGateway,
    reloader: &Arc<Reloader>,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let gateway = live.load_full();
    let path = request.uri().path();
    if let Some(page) = dashboard::asset(request.method(), path) {
        return page;
    }
    if !open_to_all(path) && !authorized(gateway.server.admin_token.as_deref(), request) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <admin_token>",
        );
    }
    match (request.method(), path) {
        (&Method::GET, "/health") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (&Method::GET, "/ready") => {
            let upstreams: serde_json::Map<String, serde_json::Value> = gateway
                .upstreams
                .iter()
                .map(|(name, u)| {
                    let health = u.health();
                    (
                        name.clone(),
                        json!({"health": health, "circuit": u.guard.circuit()}),
                    )
                })
                .collect();
            let mut body =
                json!({"ready": true, "config_hash": gateway.config.hash, "upstreams": upstreams});
            // Reported, never failing readiness: with the store down, requests are still
            // served (limits apply `on_error`, the cache calls upstreams).
            if let Some(cluster) = &gateway.cluster {
                body["cluster"] =
                    json!({"state": cluster.state(), "address": cluster.spec().display});
            }
            json_response(StatusCode::OK, &body)
        }
        (&Method::GET, "/metrics") => {
            let format = Exposition::negotiate(request.headers().get(header::ACCEPT));
            let body = format.render(gateway.metrics.encode());
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, format.content_type());
            response
        }
        (&Method::GET, "/config") => json_response(
            StatusCode::OK,
            &json!({
                "hash": gateway.config.hash,
                "last_reload": reloader.status(),
                "config": *gateway.config.document,
                "pending_restart": gateway.config.pending_restart,
            }),
        ),
        (&Method::GET, dashboard::DATA_PATH) => dashboard::data(&gateway, reloader).await,
        (&Method::POST, "/reload") => match reloader.reload_async("admin").await {
            Ok(changes) => json_response(
                StatusCode::OK,
                &json!({"ok": true, "hash": reloader.status().hash, "changes": changes}),
            ),
            Err(problems) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"ok": false, "problems": problems}),
            ),
        },
        (&Method::POST, "/cache/purge") => {
            let url = request.uri().query().and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "url")
                    .map(|(_, v)| v.into_owned())
            });
            let purged = gateway.cache.purge(url.as_deref()).await;
            let mut answer = json!({"purged": purged});
            // With `[cluster]`, the shared cache too (`cache_scope = "cluster"` entries).
            let mut status = StatusCode::OK;
            // Then the other instances' memory: they follow the store's purge stream,
            // told even when the shared level could not be purged (their copies are as
            // stale either way).
            if let Some(cluster) = &gateway.cluster {
                let shared = crate::cache::purge_shared(cluster, url.as_deref()).await;
                let announced = crate::cache::announce_purge(cluster, url.as_deref()).await;
                match shared {
                    Ok(n) => answer["purged_shared"] = json!(n),
                    Err(e) => {
                        status = StatusCode::SERVICE_UNAVAILABLE;
                        answer["shared_error"] = json!(e.to_string());
                    }
                }
                answer["announced"] = json!(announced.is_ok());
                if let Err(e) = announced {
                    status = StatusCode::SERVICE_UNAVAILABLE;
                    answer["announce_error"] = json!(e.to_string());
                }
            }
            json_response(status, &answer)
        }
        (
            _,
            "/health"
            | "/ready"
            | "/metrics"
            | "/config"
            | "/reload"
            | "/cache/purge"
            | dashboard::DATA_PATH,
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "see the admin endpoints in the README",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "admin endpoints: / (dashboard) /health /ready /metrics /config /reload /cache/purge",
        ),
    }
}
