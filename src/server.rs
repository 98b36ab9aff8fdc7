//! The listener: accepts connections, serves each with hyper-util (HTTP/1.1 and h2c)
//! through the tower stack (CORS, compression), and shuts down
//! gracefully: stop accepting, let in-flight requests finish up to `shutdown_grace`.

use crate::config::{CorsSpec, ServerSpec};
use crate::gateway::{ClientAddr, Gateway};
use crate::proxy::Passthrough;
use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

/// The live config: requests load the current snapshot; a reload swaps it whole.
pub type LiveGateway = Arc<ArcSwap<Gateway>>;

/// Serves `listener` until `shutdown` resolves, then drains connections.
///
/// The middleware settings (CORS, compression, header timeout) are read from the snapshot
/// current at start; routes and upstreams are read per request.
pub async fn run(
    listener: TcpListener,
    live: LiveGateway,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let settings = live.load().server.clone();
    let handler = {
        let live = live.clone();
        service_fn(move |request: Request<Incoming>| {
            // An owned Arc: nothing borrowed from the swap lives across the await.
            let gateway = live.load_full();
            // Boxed once here, every layer's future above stays small: hyper moves them.
            Box::pin(async move { Ok::<_, Infallible>(gateway.handle(request).await) })
        })
    };
    // The request id is the gateway's own (Gateway::handle): two layers fewer to wrap,
    // clone and move on every request.
    let stack = ServiceBuilder::new()
        .option_layer(settings.cors.as_ref().map(cors_layer))
        .layer(compression_layer(&settings))
        .service(handler);

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder.http2().timer(TokioTimer::new());

    let graceful = GracefulShutdown::new();
    let pruning = tokio::spawn(prune_limits(live.clone()));
    tracing::info!(addr = %listener.local_addr()?, "listening");
    tokio::pin!(shutdown);
    // Beyond max_connections the gateway stops accepting: new connections wait in the
    // kernel's listen backlog instead of costing memory here.
    let connections = settings
        .max_connections
        .map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    loop {
        let slot = match &connections {
            Some(limit) => tokio::select! {
                slot = limit.clone().acquire_owned() => Some(slot.expect("the semaphore is never closed")),
                () = &mut shutdown => break,
            },
            None => None,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = stack
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ClientAddr(peer));
                request
            });
        // Boxing erases the stack's future type; without it rustc cannot prove the
        // connection future Send for every lifetime (rust-lang/rust#102211).
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    pruning.abort();
    tracing::info!(grace = ?settings.shutdown_grace, "shutting down: finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections finished"),
        () = tokio::time::sleep(settings.shutdown_grace) => {
            tracing::warn!("shutdown grace elapsed; closing the remaining connections");
        }
    }
    Ok(())
}

/// How often rate-limit keys with full buckets are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Keeps keyed rate-limit state bounded: a flood of distinct keys is forgotten once
/// their buckets refill.
async fn prune_limits(live: LiveGateway) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.tick().await;
    loop {
        every.tick().await;
        live.load().prune_limits();
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `[server] compression = false` turns compression off without changing the stack's
/// type; proxied answers are never compressed (see [`Passthrough`]).
#[derive(Debug, Clone, Copy)]
struct Enabled(bool);

impl Predicate for Enabled {
    fn should_compress<B: http_body::Body>(&self, response: &Response<B>) -> bool {
        self.0 && response.extensions().get::<Passthrough>().is_none()
    }
}

fn compression_layer(settings: &ServerSpec) -> CompressionLayer<impl Predicate + use<>> {
    let predicate = DefaultPredicate::new()
        .and(SizeAbove::new(settings.compression_min_size))
        .and(Enabled(settings.compression));
    CompressionLayer::new()
        .gzip(true)
        .br(true)
        .compress_when(predicate)
}

fn cors_layer(spec: &CorsSpec) -> CorsLayer {
    let origins = if spec.allow_origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(spec.allow_origins.iter().cloned())
    };
    let methods = match &spec.allow_methods {
        Some(list) => AllowMethods::list(list.iter().cloned()),
        None => AllowMethods::mirror_request(),
    };
    let headers = match &spec.allow_headers {
        Some(list) => AllowHeaders::list(list.iter().cloned()),
        None => AllowHeaders::mirror_request(),
    };
    CorsLayer::new()
        .allow_origin(origins)
        .allow_methods(methods)
        .allow_headers(headers)
        .expose_headers(spec.expose_headers.clone())
        .max_age(spec.max_age)
        .allow_credentials(spec.allow_credentials)
}
