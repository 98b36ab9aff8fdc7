//! The one response body type of the gateway: a boxed body, so that buffered JSON and
//! streamed proxy bodies travel through the same tower stack.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// Every response the gateway makes carries this body. Its error is a concrete type
/// rather than `Box<dyn Error>`: with the boxed one, rustc cannot prove the connection
/// future `Send` (a higher-ranked lifetime bug, rust-lang/rust#102211).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// A body that is already whole in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}
