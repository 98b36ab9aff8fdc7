//! What goes wrong on an aggregate route. [`BackendError`]: one backend produced no
//! usable answer; partial failure is data, so it travels in the backend's outcome and
//! reaches the client as a stable code. [`AggregateError`]: the route as a whole has no
//! answer; the gateway's `error` module maps it to a status and JSON body. A leaf: it imports no
//! sibling.

use crate::body::BodyError;
use crate::condition::ConditionError;
use crate::template::RenderError;
use crate::upstream::CallError;

/// Why one backend produced no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The backend's `when` could not be decided.
    #[error(transparent)]
    Condition(#[from] ConditionError),
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
    /// An answer to be parsed holds more values than the upstream's `max_values`.
    #[error("answer holds {count} JSON values, more than max_values = {max}")]
    TooManyValues { count: usize, max: usize },
    /// A `for_each` backend's element answers together pass its upstream's
    /// `max_response`: the array is one answer, held to what one answer may be.
    #[error("the answers of its elements pass max_response = {max} bytes together")]
    ElementsTooLarge { max: u64 },
}

impl BackendError {
    /// The stable code of this failure, as clients see it in `errors_field`.
    pub fn code(&self) -> &'static str {
        match self {
            BackendError::Call(c) => c.code(),
            BackendError::Render(e) => e.code(),
            BackendError::Condition(_) => "condition_failed",
            BackendError::InvalidJson(_) => "invalid_json",
            BackendError::NotAnObject => "not_an_object",
            BackendError::Shape(_) => "missing_field",
            BackendError::TooManyItems { .. } => "too_many_items",
            BackendError::TooManyValues { .. } | BackendError::ElementsTooLarge { .. } => {
                "too_large"
            }
        }
    }

    /// The `Server-Timing` desc of this failure.
    pub fn timing_desc(&self) -> &'static str {
        match self {
            BackendError::Call(CallError::Timeout(_)) => "timeout",
            BackendError::Render(_) => "default",
            _ => "error",
        }
    }
}

/// Why an aggregate route has no merged answer for a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AggregateError {
    /// The request body is larger than the route's `max_body`, or could not be read.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// A backend's template or `when` reads the request body as JSON, and it is not
    /// JSON (or nests deeper than 128 levels): the client's mistake.
    #[error("the request body is not JSON: {0}")]
    BodyNotJson(String),
    /// The request body was still arriving at the route's deadline.
    #[error("the request body did not arrive before the route deadline")]
    BodyDeadline,
    /// A required backend's URL needs a value the request does not carry (a missing
    /// query parameter or header): the client's mistake.
    #[error("{error}")]
    Request {
        backend: String,
        #[source]
        error: RenderError,
    },
    /// A required backend failed.
    #[error("required backend failed: {error}")]
    RequiredBackend {
        backend: String,
        #[source]
        error: BackendError,
    },
    /// Every backend failed; `timed_out` when every one ran out of time.
    #[error("every backend failed")]
    AllBackendsFailed { timed_out: bool },
}

impl AggregateError {
    /// The error that ends the request when required backend `backend` failed with
    /// `error`: a value the client did not send is the client's mistake.
    pub fn required(backend: &str, error: &BackendError) -> Self {
        match error {
            BackendError::Render(e) if e.from_request => AggregateError::Request {
                backend: backend.to_string(),
                error: e.clone(),
            },
            _ => AggregateError::RequiredBackend {
                backend: backend.to_string(),
                error: error.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Problem;
    use std::time::Duration;

    fn render(from_request: bool) -> RenderError {
        RenderError {
            what: "query parameter limit".into(),
            problem: Problem::Missing,
            from_request,
        }
    }

    #[test]
    fn a_missing_request_value_is_the_clients_mistake() {
        let e = AggregateError::required("orders", &BackendError::Render(render(true)));
        assert!(
            matches!(&e, AggregateError::Request { backend, .. } if backend == "orders"),
            "{e:?}"
        );
        assert_eq!(e.to_string(), render(true).to_string());
    }

    #[test]
    fn other_required_failures_are_the_backends() {
        for error in [
            BackendError::Render(render(false)),
            BackendError::NotAnObject,
            BackendError::Call(CallError::Timeout(Duration::from_millis(5))),
        ] {
            let e = AggregateError::required("user", &error);
            match &e {
                AggregateError::RequiredBackend {
                    backend,
                    error: got,
                } => {
                    assert_eq!(backend, "user");
                    assert_eq!(got.code(), error.code());
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(e.to_string(), format!("required backend failed: {error}"));
        }
    }

    #[test]
    fn codes_and_timing_descs_are_stable() {
        let timeout = BackendError::Call(CallError::Timeout(Duration::from_millis(5)));
        assert_eq!(timeout.timing_desc(), "timeout");
        assert_eq!(BackendError::Render(render(false)).timing_desc(), "default");
        for (e, code) in [
            (BackendError::InvalidJson("x".into()), "invalid_json"),
            (BackendError::NotAnObject, "not_an_object"),
            (
                BackendError::Condition(ConditionError::NotBool("int".into())),
                "condition_failed",
            ),
            (BackendError::Shape("x".into()), "missing_field"),
            (
                BackendError::TooManyItems {
                    array: "a".into(),
                    count: 2,
                    max: 1,
                },
                "too_many_items",
            ),
            (
                BackendError::TooManyValues { count: 2, max: 1 },
                "too_large",
            ),
        ] {
            assert_eq!(e.code(), code);
            assert_eq!(e.timing_desc(), "error");
        }
    }
}
