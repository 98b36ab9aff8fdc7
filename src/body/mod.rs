//! Bodies both ways: the one response body type of the gateway (a boxed body, so that
//! buffered JSON and streamed proxy bodies travel through the same tower stack), the
//! client's request body, reading it within a size limit, and [`BodyError`], why a
//! request body was refused (`error.rs` answers it).

mod gather;
mod idle;

pub use gather::{GatherError, Gathered, gather_within};
pub use idle::{IdleTimeout, IdleTimeoutError};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, LengthLimitError};

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

/// Why a client's request body was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BodyError {
    /// Declared (`Content-Length`) or found larger than the route's `max_body`.
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The client's stream failed before the body was whole.
    #[error("could not read the request body: {0}")]
    Read(String),
    /// A body read as JSON holds more values than `server.max_body_values`.
    #[error("the request body holds {count} JSON values, more than {max} (server.max_body_values)")]
    TooManyValues { count: usize, max: usize },
}

/// Refuses a request whose declared `Content-Length` is over `limit`, before reading it.
pub fn check_declared_length(headers: &HeaderMap, limit: u64) -> Result<(), BodyError> {
    match crate::http1::declared_length(headers) {
        Some(n) if n > limit => Err(BodyError::TooLarge { limit }),
        _ => Ok(()),
    }
}

/// Whether a body error (anywhere in its source chain) is `Limited`'s limit: a proxied
/// body streamed through `Limited`.
pub fn is_length_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<LengthLimitError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Reads a whole request body of at most `limit` bytes, into one buffer
/// ([`gather_within`]).
pub async fn read_limited<B>(body: B, headers: &HeaderMap, limit: u64) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    check_declared_length(headers, limit)?;
    gather_within(body, limit).await.map_err(|e| match e {
        GatherError::TooLarge => BodyError::TooLarge { limit },
        GatherError::Read(e) => BodyError::Read(e.into().to_string()),
    })
}

/// A client's request body. The gateway's own HTTP/1.1 connection reads a small body
/// (`http1::SMALL_BODY`) whole with its head; any other is served by hyper, whose
/// stream this carries.
#[derive(Debug, Default)]
pub enum ClientBody {
    #[default]
    Empty,
    /// Read whole by the own connection; empty once polled.
    Whole(Bytes),
    Streamed(hyper::body::Incoming),
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ClientBody::Empty => std::task::Poll::Ready(None),
            ClientBody::Whole(bytes) if bytes.is_empty() => std::task::Poll::Ready(None),
            ClientBody::Whole(bytes) => {
                std::task::Poll::Ready(Some(Ok(http_body::Frame::data(std::mem::take(bytes)))))
            }
            ClientBody::Streamed(body) => std::pin::Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Empty => true,
            ClientBody::Whole(bytes) => bytes.is_empty(),
            ClientBody::Streamed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            ClientBody::Empty => http_body::SizeHint::with_exact(0),
            ClientBody::Whole(bytes) => http_body::SizeHint::with_exact(bytes.len() as u64),
            ClientBody::Streamed(body) => body.size_hint(),
        }
    }
}
