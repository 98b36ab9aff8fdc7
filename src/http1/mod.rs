//! HTTP/1.1 in both directions, the gateway's own fast path: reading a client's request
//! head and writing the response (`request`, `server`), and the client of plain-http
//! upstreams (`client`). Both sides share one set of rules: the head parsers (`parse`),
//! one [`Framing`] with one `Content-Length` reader (`framing`), the chunked decoder
//! (`body`) and one head-size limit, [`MAX_HEAD`].
//!
//! The parsers are pure functions over a read buffer, public so that the fuzz targets
//! (`fuzz/`) drive them as they are: [`parse_request_head`], [`parse_answer_head`] and
//! [`ChunkedDecoder`].
//!
//! The connection loop that serves clients (timeouts, shutdown, the hand-off to hyper)
//! is the server's (`server::conn`); which client a call to an upstream takes is the
//! upstream's (`upstream::transport`).

mod body;
pub mod client;
mod framing;
mod parse;
mod request;
pub mod server;

pub use body::{ChunkedDecoder, Collected, Step};
pub use client::is_idempotent;
pub use framing::{Framing, content_length, declared_length, keeps_alive};
pub use parse::{AnswerHead, MAX_HEADERS, ParseError, parse_answer_head};
pub use request::{ParsedRequest, Refusal, SMALL_BODY, parse_request_head};

/// The largest head, request or answer, in bytes. A request head still incomplete at
/// this size is handed to hyper, which refuses it with 431; an answer head is an error.
pub const MAX_HEAD: usize = 64 * 1024;

#[cfg(test)]
mod tests;
