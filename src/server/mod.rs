//! The listener: accepts connections, serves each through the tower stack (CORS) on
//! the gateway's own HTTP/1.1 connection (`conn`, reading and writing with `http1`,
//! over a plain socket or TLS after `tls`'s handshake), which hands anything beyond a
//! plain request to hyper-util (`handoff`: bodies, upgrades, h2c, and h2 over TLS), and
//! shuts down gracefully: stop accepting, let in-flight requests finish up to
//! `shutdown_grace`. `redirect` is the plain listener of
//! `redirect_http`, answering every request with a redirect to https.

mod accept;
mod conn;
mod handoff;
mod http2;
mod near_timer;
mod read_buffers;
mod redirect;
mod send_timeout;
mod send_watch;
mod settings;
mod stream_tasks;
mod tls;
mod tls_socket;

pub(crate) use accept::Acceptor;
pub use redirect::run_redirect;
pub(crate) use send_timeout::SendTimeout;

use crate::body::{Body, ClientBody};
use crate::config::CorsSpec;
use crate::connection::ClientConnection;
use crate::gateway::LiveGateway;
use futures_util::FutureExt;
use http::{Request, Response};
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use settings::ConnSettings;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use stream_tasks::StreamExecutor;
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, service_fn};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

/// What a connection serves its requests with (see `connection_service`), on its own
/// HTTP/1.1 path and on hyper's alike.
pub trait ConnService:
    Service<
        Request<ClientBody>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> ConnService for S where
    S: Service<
            Request<ClientBody>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Serves `listener` until `shutdown` resolves, then drains connections.
///
/// The listener settings (CORS, header and keep-alive timeouts) are read from the
/// snapshot current at start; routes, upstreams and compression per request (a reload
/// keeps compression's start values, see `reload`).
pub async fn run(
    listener: TcpListener,
    live: LiveGateway,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let settings = live.load().server.clone();
    let cors = settings.cors.as_ref().map(cors_layer);

    let mut hyper = auto::Builder::new(StreamExecutor);
    hyper
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    http2::configure(&mut hyper, &settings.http2);
    let conn_settings = Arc::new(ConnSettings {
        header_read_timeout: settings.header_read_timeout,
        keepalive_timeout: settings.keepalive_timeout,
        send_timeout: settings.send_timeout,
        shutdown_grace: settings.shutdown_grace,
        hyper,
    });
    // Every connection holds a receiver: a send asks them to finish, and `closed()`
    // resolves once the last one has.
    let (stop, stopped) = tokio::sync::watch::channel(());
    let pruning = tokio::spawn(prune_limits(live.clone()));
    // Where the purge stream ends is found before the first request: nothing is cached
    // here before this instance follows what the others purge.
    let mut follower = crate::cache::PurgeFollower::default();
    follow_purges_once(&live, &mut follower).await;
    let purges = tokio::spawn(follow_purges(live.clone(), follower));
    let near_timer = tokio::spawn(near_timer::hold());
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let mut acceptor = Acceptor::new(listener, "main");
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
            pair = acceptor.accept() => pair,
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (shared, stopping) = (conn_settings.clone(), stopped.clone());
        // The snapshot's handshake settings at accept: a reload's new certificate
        // serves the next connection, and this one keeps what it shook hands with.
        let tls = live.load().tls.clone();
        // The connection's future is made inside the task: made outside and awaited
        // inside, the task would hold it twice (as captured, and as awaited), and an
        // idle connection's memory is mostly its task.
        match tls {
            None => {
                let service =
                    connection_service(&live, cors.as_ref(), ClientConnection::plain(peer));
                tokio::spawn(async move {
                    conn::serve(stream, service, shared, stopping).await;
                    drop(slot);
                });
            }
            Some(config) => {
                // The service is made after the handshake: it carries what the
                // handshake established (the client certificate).
                let (live, cors) = (live.clone(), cors.clone());
                let service =
                    move |connection| connection_service(&live, cors.as_ref(), connection);
                tokio::spawn(async move {
                    // Boxed: a plain connection's task does not carry the TLS state.
                    Box::pin(tls::serve(stream, peer, config, service, shared, stopping)).await;
                    drop(slot);
                });
            }
        }
    }
    drop(acceptor);
    drop(stopped);
    pruning.abort();
    purges.abort();
    near_timer.abort();
    tracing::info!(grace = ?settings.shutdown_grace, "shutting down: finishing in-flight requests");
    stop.send_replace(());
    // Async routes' jobs get the same grace, at the same time (`gateway/jobs.rs`).
    let gateway = live.load_full();
    let connections = async {
        tokio::select! {
            () = stop.closed() => tracing::info!("all connections finished"),
            () = tokio::time::sleep(settings.shutdown_grace) => {
                tracing::warn!("shutdown grace elapsed; closing the remaining connections");
            }
        }
    };
    tokio::join!(connections, gateway.drain_jobs());
    Ok(())
}

/// The service of one connection's requests: CORS, when configured, over the gateway.
/// Made per connection so that the gateway is told the connection (peer address, TLS
/// session) directly: carried as a request extension it would cost three allocations
/// per request.
///
/// With CORS configured, its policy alone decides what a browser may read: an
/// upstream's own `Access-Control-*` answer headers (an upstream that echoes any
/// `Origin` with credentials allowed) are dropped before the CORS layer adds fanout's.
fn connection_service(
    live: &LiveGateway,
    cors: Option<&CorsLayer>,
    connection: ClientConnection,
) -> impl ConnService + use<> {
    let live = live.clone();
    let cors_decides = cors.is_some();
    let handler =
        service_fn(move |request: Request<ClientBody>| {
            // An owned Arc: nothing borrowed from the swap lives across the await. Boxed
            // once here, every layer's future above stays small: they are moved.
            Box::pin(live.load_full().handle(request, connection.clone()).map(
                move |mut response| {
                    if cors_decides {
                        drop_access_control(response.headers_mut());
                    }
                    Ok::<_, Infallible>(response)
                },
            ))
        });
    // The request id and compression are the gateway's own (`gateway::serve`): fewer
    // layers to wrap and move per request, and the response body stays the small boxed
    // one (tower-http's compression body carries brotli's state inline).
    ServiceBuilder::new()
        .option_layer(cors.cloned())
        .service(handler)
}

/// Removes every `Access-Control-*` header (the gateway's own answers have none).
fn drop_access_control(headers: &mut http::HeaderMap) {
    let is_cors = |name: &http::HeaderName| name.as_str().starts_with("access-control-");
    if !headers.keys().any(is_cors) {
        return;
    }
    let names: Vec<http::HeaderName> = headers.keys().filter(|n| is_cors(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
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

/// Purges here what other instances purged, every [`crate::cache::FOLLOW_EVERY`].
async fn follow_purges(live: LiveGateway, mut follower: crate::cache::PurgeFollower) {
    let mut every = tokio::time::interval(crate::cache::FOLLOW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        follow_purges_once(&live, &mut follower).await;
    }
}

/// One reading of the purge stream, while the snapshot has a `[cluster]`
/// (`cache::PurgeFollower`). A store that cannot be read is tried again next time; the
/// first failure in a row is a warning, the rest are debug lines.
async fn follow_purges_once(live: &LiveGateway, follower: &mut crate::cache::PurgeFollower) {
    // Owned, not a guard: the reading awaits the store.
    let gateway = live.load_full();
    let Some(cluster) = &gateway.cluster else {
        return;
    };
    match follower.follow(cluster, &gateway.cache).await {
        Ok(0) => {}
        Ok(entries) => tracing::info!(entries, "cached answers purged as the purge stream asked"),
        Err(error) if follower.first_failure() => tracing::warn!(
            %error,
            "the purge stream could not be read; other instances' purges reach this one when it can"
        ),
        Err(error) => tracing::debug!(%error, "the purge stream could not be read"),
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
