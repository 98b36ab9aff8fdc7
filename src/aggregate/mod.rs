//! Aggregate routes: one request fans out concurrently to several backends and their JSON
//! answers are merged into one object.
//!
//! The code is a one-way pipeline. The route's plan (which backend waits for whose
//! answer) is built once by `config::validate` and carried by the compiled route; per
//! request, [`pipeline`] reads the body, then `execute` runs the plan, starting each
//! backend through `fetch` (one URL, through the cache) or `for_each` (one call per
//! element of an array), and `respond` merges the outcomes into the response:
//!
//! ```text
//!   config::Plan ─────────────┐ (built by validate)
//!                             ▼
//!   pipeline::serve ──▶ execute ──▶ respond          pipeline: the orchestrator, the
//!        │   Launch ▲                   │            only file that imports a stage
//!        ├─▶ fetch ─┤                   ▼
//!        └─▶ for_each (its element calls are fetch, passed in by pipeline)
//!
//!   stages:  fetch · for_each · execute · respond    import only the leaves below,
//!                                                    never each other
//!   pure:    shape (fetch uses it) · merge (respond uses it)
//!   leaves:  scope (route, request scope, outcomes, answers) ─▶ error
//! ```
//!
//! `grep -n "use super::" src/aggregate/*.rs` shows it: `pipeline` imports the stages,
//! a stage imports `scope`, `error`, `shape` or `merge`, and those import no sibling
//! but `scope`'s import of `error`. [`AggregateError`] is why a route has no answer
//! (the gateway's `error` module maps it to a response); [`BackendError`] is why one backend has none,
//! carried in its outcome, since partial failure is data.

mod error;
mod execute;
mod fetch;
mod for_each;
pub mod merge;
mod pipeline;
mod respond;
mod scope;
pub mod shape;

pub use error::{AggregateError, BackendError};
pub use pipeline::serve;
pub use respond::BackendOutcomes;
pub use scope::{AggregateRoute, Backend};
