//! What both halves of a client connection share: the listener's connection settings,
//! and the 400 that refuses a malformed request head, whichever half read it.

use super::stream_tasks::StreamExecutor;
use crate::http1::Refusal;
use hyper_util::server::conn::auto;
use std::time::Duration;

/// What every client connection of one listener shares.
pub struct ConnSettings {
    /// A request head must be whole within this time of its first byte (of the accept,
    /// for a connection's first request).
    pub header_read_timeout: Duration,
    /// A connection with no request for this long is closed.
    pub keepalive_timeout: Duration,
    /// A write that makes no progress for this long ends the connection.
    pub send_timeout: Duration,
    /// How long an upgraded connection (WebSocket) goes on once shutdown has begun.
    pub shutdown_grace: Duration,
    /// Serves the connections handed to hyper.
    pub hyper: auto::Builder<StreamExecutor>,
}

/// The 400 of a request refused before any route: JSON, as every error the gateway
/// makes, and the connection closes after it.
pub fn refusal(why: Refusal) -> http::Response<crate::body::Body> {
    let mut response = crate::error::GatewayError::from(why).into_response();
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}
