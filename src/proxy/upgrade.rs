//! Connection upgrades through a proxy route (WebSocket): once the upstream answers 101,
//! the client's and the upstream's connections are joined and bytes flow both ways.

use crate::body::{Body, empty};
use http::{Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Answers the client with the upstream's 101 and joins the two connections in a task.
pub fn tunnel(
    mut answer: Response<Incoming>,
    client: OnUpgrade,
    upstream_name: String,
) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    // A 101 keeps its Connection and Upgrade headers: they are what it is about.
    *response.headers_mut() = answer.headers().clone();
    tokio::spawn(async move {
        let upstream = hyper::upgrade::on(&mut answer);
        let (upstream, client) = match tokio::join!(upstream, client) {
            (Ok(u), Ok(c)) => (u, c),
            (Err(e), _) => {
                tracing::warn!(upstream = %upstream_name, error = %e, "upgrade failed upstream");
                return;
            }
            (_, Err(e)) => {
                tracing::debug!(upstream = %upstream_name, error = %e, "client left before the upgrade");
                return;
            }
        };
        let mut upstream = TokioIo::new(upstream);
        let mut client = TokioIo::new(client);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((sent, received)) => {
                tracing::debug!(upstream = %upstream_name, sent, received, "upgraded connection closed");
            }
            Err(e) => {
                tracing::debug!(upstream = %upstream_name, error = %e, "upgraded connection ended")
            }
        }
    });
    response
}
