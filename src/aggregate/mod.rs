//! Aggregate routes: one request fans out concurrently to several backends and their JSON
//! answers are merged into one object. `plan` orders the calls, `execute` runs them,
//! `call` makes one, `for_each` one per element of an array, `merge` builds the body.

mod call;
mod execute;
mod for_each;
pub mod merge;
pub mod plan;
mod respond;
pub mod shape;

pub use execute::serve;
pub use respond::BackendOutcomes;

use crate::cache::ResponseCache;
use crate::config::BackendSpec;
use crate::metrics::{BackendSeries, Label, Metrics};
use crate::template::RenderError;
use crate::upstream::{CallError, Upstream};
use http::HeaderName;
use std::sync::Arc;
use std::time::Duration;

/// A compiled aggregate route with its upstreams resolved.
#[derive(Debug)]
pub struct AggregateRoute {
    /// The route's path pattern, its label in metrics.
    pub label: Label,
    pub metrics: Arc<Metrics>,
    pub timeout: Duration,
    /// Largest request body read for `forward_body` backends.
    pub max_body: u64,
    pub forward_headers: Vec<HeaderName>,
    pub errors_field: Option<String>,
    pub backends: Vec<Backend>,
    /// Which backend waits for whose answer.
    pub plan: plan::Plan,
    /// The process-wide cache, for backends with `cache_ttl`.
    pub cache: Arc<ResponseCache>,
}

/// One backend of an aggregate route.
#[derive(Debug)]
pub struct Backend {
    /// The backend's name, its label in metrics.
    pub label: Label,
    pub series: BackendSeries,
    pub spec: BackendSpec,
    pub upstream: Arc<Upstream>,
}

/// Why one backend produced no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("answer is not JSON: {0}")]
    InvalidJson(String),
    #[error("answer is not a JSON object, so merge = \"root\" cannot spread it")]
    NotAnObject,
    #[error("cannot shape the answer: {0}")]
    Shape(String),
    #[error("{array} has {count} elements, more than max_items = {max}")]
    TooManyItems {
        array: String,
        count: usize,
        max: usize,
    },
}

impl BackendError {
    /// The stable code of this failure, as clients see it in `errors_field`.
    pub fn code(&self) -> &'static str {
        match self {
            BackendError::Call(c) => c.code(),
            BackendError::Render(e) => e.code(),
            BackendError::InvalidJson(_) => "invalid_json",
            BackendError::NotAnObject => "not_an_object",
            BackendError::Shape(_) => "missing_field",
            BackendError::TooManyItems { .. } => "too_many_items",
        }
    }

    /// The `Server-Timing` desc of this failure.
    fn timing_desc(&self) -> &'static str {
        match self {
            BackendError::Call(CallError::Timeout(_)) => "timeout",
            BackendError::Render(_) => "default",
            _ => "error",
        }
    }
}
