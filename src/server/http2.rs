//! The HTTP/2 settings of the main listener's connections (h2 over TLS and h2c alike),
//! from `[server.http2]`: each bounds what one client connection can make the gateway
//! hold or do.
//!
//! - `max_concurrent_streams` is advertised in SETTINGS; h2 refuses a stream beyond it
//!   with `REFUSED_STREAM`, which a client may retry.
//! - `max_header_list_size` is advertised too; h2 answers a larger header list with 431
//!   and ends the connection when one is far larger (four times) than it.
//! - `max_pending_accept_reset_streams` counts streams a client opens and resets before
//!   they are taken up (the rapid-reset attack, CVE-2023-44487); past it h2 sends GOAWAY
//!   `ENHANCE_YOUR_CALM` and closes.
//! - `max_local_error_reset_streams` counts the streams h2 resets because of the
//!   client's protocol errors (the MadeYouReset attack, CVE-2025-8671); past it, GOAWAY.
//!
//! A client that opens no window on an answer is cut by `send_timeout` (`send_watch`).

use super::stream_tasks::StreamExecutor;
use crate::config::Http2Spec;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;

/// Puts `spec`'s limits on the HTTP/2 half of `builder`.
pub fn configure(builder: &mut auto::Builder<StreamExecutor>, spec: &Http2Spec) {
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(spec.max_concurrent_streams)
        .max_header_list_size(spec.max_header_list_size)
        .max_pending_accept_reset_streams(spec.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(spec.max_local_error_reset_streams);
}
