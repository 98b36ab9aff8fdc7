//! The for_each stage: a backend that calls once per element of an array in another
//! backend's answer. [`calls`] renders one call per element; [`run`] makes the calls, at
//! most `concurrency` at once, and splices the answers into an array in element order.
//! The array is the backend's one answer, so it is held to its upstream's
//! `max_response` like any answer: `max_items` answers of that size each would
//! otherwise all be held at once. The call for one element is passed in, so this stage
//! imports no other.

use super::error::BackendError;
use super::scope::{AggregateRoute, Backend, BackendAnswer, CallRequest, ElementFailures};
use crate::config::ForEachSpec;
use crate::template::{Answered, Problem, RenderError, RenderInput};
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use std::future::Future;

/// One call (URL, and a write call's body and headers) per element of the array `each`
/// names (an element whose call cannot be rendered is an error in its place). The array missing, not an array, or longer than
/// `max_items` fails the backend.
pub(super) fn calls(
    route: &AggregateRoute,
    backend: &Backend,
    each: &ForEachSpec,
    pick: usize,
    input: &RenderInput<'_>,
) -> Result<Vec<Result<CallRequest, RenderError>>, BackendError> {
    let answer = input.answers[each.backend].as_ref().map(|a| &a.body);
    let array = match &each.path {
        None => answer,
        Some(path) => answer.and_then(|a| path.get(a)),
    };
    let what = || {
        let name = &route.backends[each.backend].spec.name;
        match &each.path {
            None => name.clone(),
            Some(path) => format!("{name}.{path}"),
        }
    };
    let fail = |problem| RenderError {
        what: what(),
        problem,
        from_request: false,
    };
    let items = match array {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(fail(Problem::NotAnArray).into()),
        None => return Err(fail(Problem::Missing).into()),
    };
    if items.len() > each.max_items {
        return Err(BackendError::TooManyItems {
            array: what(),
            count: items.len(),
            max: each.max_items,
        });
    }
    Ok(items
        .iter()
        .map(|item| {
            let input = RenderInput {
                item: Some(item),
                ..*input
            };
            CallRequest::render(backend, pick, &input)
        })
        .collect())
}

/// Makes `calls` with `call`, one per element. A failed element is `null` in its place, or
/// fails the backend with `fail_all`. `keep`: the answers before shaping are kept too,
/// as an array, for the backends that read this one. The answers (as shaped) may come
/// to `max_bytes` together; the one that passes it fails the backend as `too_large`
/// and cancels the calls still running.
pub(super) async fn run<F, Fut>(
    backend: &Backend,
    each: &ForEachSpec,
    calls: Vec<Result<CallRequest, RenderError>>,
    keep: bool,
    max_bytes: u64,
    call: F,
) -> Result<BackendAnswer, BackendError>
where
    F: Fn(CallRequest) -> Fut,
    Fut: Future<Output = Result<BackendAnswer, BackendError>>,
{
    let total = calls.len();
    let mut bodies: Vec<Option<Bytes>> = vec![None; total];
    let mut raws: Vec<Value> = if keep {
        vec![Value::Null; total]
    } else {
        Vec::new()
    };
    let mut failures: Option<ElementFailures> = None;
    let mut hits = 0;
    let mut held: u64 = 0;
    let call = &call;
    let mut calls = stream::iter(calls.into_iter().enumerate())
        .map(|(k, request)| async move {
            let result = match request {
                Ok(request) => call(request).await,
                Err(e) => Err(e.into()),
            };
            (k, result)
        })
        .buffer_unordered(each.concurrency);
    while let Some((k, result)) = calls.next().await {
        match result {
            Ok(answer) => {
                held += answer.body.len() as u64;
                if held > max_bytes {
                    return Err(BackendError::ElementsTooLarge { max: max_bytes });
                }
                hits += usize::from(matches!(answer.desc, "hit" | "shared"));
                bodies[k] = Some(answer.body);
                if let Some(raw) = answer.raw {
                    raws[k] = raw.body;
                }
            }
            // Dropping `calls` cancels the element calls still running.
            Err(e) if each.fail_all => return Err(e),
            Err(e) => {
                tracing::debug!(backend = %backend.spec.name, element = k, code = e.code(), error = %e, "element call failed");
                match &mut failures {
                    Some(f) => f.failed += 1,
                    None => {
                        failures = Some(ElementFailures {
                            failed: 1,
                            total,
                            first: e,
                        })
                    }
                }
            }
        }
    }
    Ok(BackendAnswer {
        body: splice(&bodies),
        // `hit` only when every element came from the cache.
        desc: if total > 0 && hits == total {
            "hit"
        } else {
            "ok"
        },
        raw: keep.then(|| Answered::ok(Value::Array(raws))),
        status: http::StatusCode::OK,
        headers: http::HeaderMap::new(),
        failed_elements: failures,
    })
}

/// `[a,b,null]`: the answers as they are, `null` for a failed element.
fn splice(bodies: &[Option<Bytes>]) -> Bytes {
    let len: usize = bodies
        .iter()
        .map(|b| b.as_ref().map_or(4, Bytes::len) + 1)
        .sum();
    let mut out = Vec::with_capacity(len + 1);
    out.push(b'[');
    for (k, body) in bodies.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.extend_from_slice(body.as_deref().unwrap_or(b"null"));
    }
    out.push(b']');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_in_order_with_nulls() {
        let b = |s: &'static str| Some(Bytes::from_static(s.as_bytes()));
        assert_eq!(&splice(&[])[..], b"[]");
        assert_eq!(&splice(&[b("{\"a\":1}")])[..], b"[{\"a\":1}]");
        assert_eq!(
            &splice(&[b("1"), None, b(" \"x\" ")])[..],
            b"[1,null, \"x\" ]"
        );
    }
}
