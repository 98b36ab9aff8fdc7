//! `[server.http2]`: the limits the main listener's HTTP/2 connections (h2 over TLS and
//! cleartext h2c alike) are served with, as written and as checked. The listener
//! applies them in `server::http2`.

use serde::{Deserialize, Serialize};

/// `[server.http2]`. Each limit bounds what one client connection can make the gateway
/// hold or do; the README explains the attacks each one answers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http2Config {
    /// Streams (requests) a client may have open at once on one connection; a stream
    /// beyond it is refused with `REFUSED_STREAM` and may be retried.
    pub max_concurrent_streams: u32,
    /// The largest request header list (names, values and 32 bytes a field, as RFC 9113
    /// counts it) a client may send; a larger one is answered `431`.
    pub max_header_list_size: String,
    /// Streams a client may open and reset before the gateway has taken them up (the
    /// "rapid reset" attack, CVE-2023-44487); one more ends the connection with GOAWAY
    /// `ENHANCE_YOUR_CALM`.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the gateway may reset because of the client's errors over a connection's
    /// life (the "MadeYouReset" attack, CVE-2025-8671); one more ends the connection
    /// with GOAWAY `ENHANCE_YOUR_CALM`.
    pub max_local_error_reset_streams: usize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Self {
            // nginx's http2_max_concurrent_streams.
            max_concurrent_streams: 128,
            // nginx's large_client_header_buffers (4 × 8k).
            max_header_list_size: "32KiB".into(),
            // h2's own defaults, from its fixes for the two CVEs.
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
        }
    }
}

/// `[server.http2]` checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Spec {
    pub max_concurrent_streams: u32,
    /// In bytes.
    pub max_header_list_size: u32,
    pub max_pending_accept_reset_streams: usize,
    pub max_local_error_reset_streams: usize,
}
