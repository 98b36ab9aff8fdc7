//! A `for_each` backend: one call per element of an array in another backend's answer,
//! at most `concurrency` at once, the answers spliced into an array in element order.

use super::Backend;
use super::BackendError;
use super::call::{Answer, ElementFailures, call};
use super::execute::RequestScope;
use crate::config::ForEachSpec;
use crate::template::RenderError;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;

/// Calls `urls` (one per element; an element whose URL could not be rendered fails).
/// A failed element is `null` in its place, or fails the backend with `fail_all`.
pub(super) async fn run(
    scope: &RequestScope<'_>,
    backend: &Backend,
    each: &ForEachSpec,
    urls: Vec<Result<String, RenderError>>,
    keep: bool,
) -> Result<Answer, BackendError> {
    let total = urls.len();
    let mut bodies: Vec<Option<Bytes>> = vec![None; total];
    let mut raws: Vec<Value> = if keep {
        vec![Value::Null; total]
    } else {
        Vec::new()
    };
    let mut failures: Option<ElementFailures> = None;
    let mut hits = 0;
    let mut calls = stream::iter(urls.into_iter().enumerate())
        .map(|(k, url)| async move {
            let result = match url {
                Ok(url) => call(scope, backend, url, keep).await,
                Err(e) => Err(e.into()),
            };
            (k, result)
        })
        .buffer_unordered(each.concurrency);
    while let Some((k, result)) = calls.next().await {
        match result {
            Ok(answer) => {
                hits += usize::from(answer.desc == "hit");
                bodies[k] = Some(answer.body);
                if let Some(raw) = answer.raw {
                    raws[k] = raw;
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
    Ok(Answer {
        body: splice(&bodies),
        // `hit` only when every element came from the cache.
        desc: if total > 0 && hits == total {
            "hit"
        } else {
            "ok"
        },
        raw: keep.then(|| Value::Array(raws)),
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
