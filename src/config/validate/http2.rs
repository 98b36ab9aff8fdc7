//! Validation of `[server.http2]`.

use super::Problems;
use crate::config::{Http2Config, Http2Spec};

/// The largest `max_header_list_size`: hyper's own largest header block.
const MAX_HEADER_LIST: u64 = 16 << 20;
/// The smallest `max_header_list_size`: a browser's usual request headers fit.
const MIN_HEADER_LIST: u64 = 1024;

pub(super) fn http2(h: &Http2Config, p: &mut Problems) -> Http2Spec {
    if h.max_concurrent_streams == 0 {
        p.add(
            "server.http2.max_concurrent_streams",
            "must be at least 1: with 0 no request could be sent; 128 is the default",
        );
    }
    let place = "server.http2.max_header_list_size";
    let size = p.size(place, &h.max_header_list_size);
    if !(MIN_HEADER_LIST..=MAX_HEADER_LIST).contains(&size) {
        p.add(
            place,
            format!(
                "\"{}\" is out of range; write a size from 1KiB to 16MiB, such as \"32KiB\"",
                h.max_header_list_size
            ),
        );
    }
    for (key, value) in [
        (
            "max_pending_accept_reset_streams",
            h.max_pending_accept_reset_streams,
        ),
        (
            "max_local_error_reset_streams",
            h.max_local_error_reset_streams,
        ),
    ] {
        if value == 0 {
            p.add(
                format!("server.http2.{key}"),
                "must be at least 1: with 0 a single reset would end the connection",
            );
        }
    }
    Http2Spec {
        max_concurrent_streams: h.max_concurrent_streams,
        max_header_list_size: size.clamp(MIN_HEADER_LIST, MAX_HEADER_LIST) as u32,
        max_pending_accept_reset_streams: h.max_pending_accept_reset_streams,
        max_local_error_reset_streams: h.max_local_error_reset_streams,
    }
}
