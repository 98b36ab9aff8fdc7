//! Aggregate routes: one request fans out concurrently to several backends and their JSON
//! answers are merged into one object.
//!
//! The code is a one-way pipeline. The route's plan (which backend waits for whose
//! answer) is built once by `config::validate` and carried by the compiled route. Per
//! request:
//!
//! ```text
//!   pipeline::serve   reads the body, makes the request's scope, then
//!     └▶ execute      starts each backend once the answers it reads are in ──▶ respond
//!          │ Launch   (wired by pipeline)                          merged body, headers
//!          ├▶ fetch      one URL: cache, upstream call, JSON check, shape
//!          └▶ for_each   one URL per element of an array, each call a fetch
//! ```
//!
//! Imports go one way, down this list (`grep -n "use super::" src/aggregate/*.rs`):
//!
//! ```text
//!   pipeline                          the orchestrator: the only file importing a stage
//!   fetch  for_each  execute  respond the stages: never each other
//!   shape  merge                      pure functions, no I/O: fetch shapes, respond merges
//!   scope ─▶ error                    the leaves: what the stages share
//! ```
//!
//! [`AggregateError`] is why a route has no answer (the gateway's `error` module maps it
//! to a response); [`BackendError`] is why one backend has none, carried in its outcome:
//! partial failure is data.

mod cache_form;
mod error;
mod execute;
mod fetch;
mod for_each;
pub mod merge;
mod pipeline;
#[doc(hidden)] // public for the fuzz target only
pub mod read;
mod respond;
mod scope;
pub mod shape;

pub use cache_form::cache_form;
pub use error::{AggregateError, BackendError};
pub use pipeline::serve;
pub use respond::BackendOutcomes;
pub use scope::{AggregateRoute, Backend, BodyUse};
