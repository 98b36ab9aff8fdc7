//! The fetch stage: one backend call (a URL, and for a write call its method, body and
//! headers), through the cache when the backend has a `cache_ttl` and may be repeated,
//! its mirrors' copies sent, then the answer read (`read.rs`: checked to be JSON no
//! deeper than the upstream's `max_depth`, and shaped). Keeps the answer before shaping
//! when another backend reads it.

use super::error::BackendError;
use super::read::{Reading, check_json, read};
use super::scope::{Backend, BackendAnswer, CallRequest, RequestScope};
use crate::cache::{
    CacheKey, CacheOutcome, Entry, FetchError, Fetched, KeyQuery, SecondLevel, Stored,
};
use crate::config::Scope;
use crate::template::Answered;
use crate::trace::record::CallTrace;
use crate::upstream::{CallError, Upstream, WholeAnswer, budget, is_idempotent};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;
use tokio::time::Instant;

/// What a backend's cache says before any call is set up.
pub(super) enum CacheLookup {
    /// A fresh stored answer; [`from_hit`] makes it the backend's answer.
    Hit(Arc<Entry>),
    /// The answer takes a call; with the cache key when the backend caches.
    Call(Option<CacheKey>),
}

/// Looks for a fresh cached answer to `call`. A hit, the common case on a cached
/// backend, needs none of what a call is set up with, so the caller can answer it in
/// place.
pub(super) async fn lookup(
    scope: &RequestScope<'_>,
    backend: &Backend,
    call: &CallRequest,
) -> CacheLookup {
    let spec = &backend.spec;
    // A backend that sends the request body, or a write call not declared idempotent,
    // is never cached (so never shared with another request's call either).
    let (Some(_), false, true, Some(varying)) = (
        spec.cache,
        spec.forward_body,
        spec.repeatable(),
        &scope.varying,
    ) else {
        return CacheLookup::Call(None);
    };
    let key_text = call.key_text();
    let query = KeyQuery::new(&spec.method, &key_text, varying).in_form(&backend.cache_form);
    match scope.route.cache.fresh(&query).await {
        Some(entry) => CacheLookup::Hit(entry),
        None => CacheLookup::Call(Some(query.to_key())),
    }
}

/// The answer of a fresh hit: as stored, or shaped now for a backend others read.
pub(super) fn from_hit(
    entry: Arc<Entry>,
    backend: &Backend,
    pick: usize,
    keep: bool,
) -> Result<BackendAnswer, BackendError> {
    let reading = Reading::of(backend, pick);
    let read = finish_hit(&entry, reading, keep, "hit")?;
    Ok(stored_answer(&entry, read))
}

/// One backend call, through the cache when the backend has a `cache_ttl`. `keep`: the
/// unshaped answer is returned too, for the backends that read it.
pub(super) async fn call(
    scope: &RequestScope<'_>,
    backend: &Backend,
    call: CallRequest,
    keep: bool,
) -> Result<BackendAnswer, BackendError> {
    match lookup(scope, backend, &call).await {
        CacheLookup::Hit(entry) => from_hit(entry, backend, call.pick, keep),
        CacheLookup::Call(key) => call_upstream(scope, backend, call, key, keep).await,
    }
}

/// A backend's answer: its shaped `body`, and (kept for readers) the one before shaping
/// with the upstream's status and kept headers.
fn answer(
    (body, raw, desc): (Bytes, Option<Value>, &'static str),
    status: StatusCode,
    headers: HeaderMap,
) -> BackendAnswer {
    let raw = raw.map(|body| Answered {
        body,
        status,
        headers: headers.clone(),
    });
    BackendAnswer {
        body,
        desc,
        raw,
        status,
        headers,
        failed_elements: None,
    }
}

/// The answer of a stored entry: its status and the headers stored with it.
fn stored_answer(entry: &Entry, read: (Bytes, Option<Value>, &'static str)) -> BackendAnswer {
    let stored = &entry.stored;
    answer(read, stored.status, stored.headers.clone())
}

/// The headers a call sends: the forwarded ones, then its own (a JSON body's type, the
/// backend's header templates). Borrowed when it has none of its own, the usual GET.
fn call_headers<'h>(
    scope: &'h RequestScope<'_>,
    call: &CallRequest,
    content_type: Option<&HeaderValue>,
) -> Cow<'h, HeaderMap> {
    let forwarded = scope.forwarded();
    if call.headers.is_empty() && content_type.is_none() {
        return Cow::Borrowed(forwarded);
    }
    let mut headers = forwarded.clone();
    if let Some(ct) = content_type {
        headers.insert(CONTENT_TYPE, ct.clone());
    }
    for (name, value) in &call.headers {
        headers.insert(name.clone(), value.clone());
    }
    Cow::Owned(headers)
}

/// A call the cache takes no part in: asks the upstream and reads the answer as the
/// backend says.
async fn ask_uncached(
    scope: &RequestScope<'_>,
    backend: &Backend,
    url: String,
    headers: &HeaderMap,
    sends: Sends<'_>,
    deadline: Instant,
    keep: bool,
) -> Result<BackendAnswer, BackendError> {
    let trace = scope.call_trace(backend);
    let pick = sends.pick;
    let upstream = backend.upstream_at(pick);
    let whole = ask(upstream, url, headers, sends, deadline, &trace).await?;
    let (body, raw) = read(whole.body, Reading::of(backend, pick), keep)?;
    Ok(answer((body, raw, "ok"), whole.status, whole.headers))
}

/// The call after a [`lookup`] found nothing fresh: through the cache (stale answers,
/// coalesced misses) when there is a `key`, else straight to the upstream.
pub(super) async fn call_upstream(
    scope: &RequestScope<'_>,
    backend: &Backend,
    call: CallRequest,
    key: Option<CacheKey>,
    keep: bool,
) -> Result<BackendAnswer, BackendError> {
    let spec = &backend.spec;
    // The picked upstream's own settings: its timeout, its pool, its max_depth.
    let pick = call.pick;
    let own = spec
        .timeout
        .unwrap_or(backend.upstream_at(pick).spec.timeout);
    let deadline = scope.deadline.min(Instant::now() + own);
    let reading = Reading::of(backend, pick);
    let kept = spec.keep_headers.as_slice();
    if let (true, Some(bytes)) = (spec.forward_body, &scope.body) {
        // The client's own method and body, with its type; repeated only when that
        // method is idempotent.
        let headers = call_headers(scope, &call, scope.parts.headers.get(CONTENT_TYPE));
        let method = &scope.parts.method;
        mirror(scope, backend, &call, method, &headers, Some(bytes));
        let sends = Sends {
            body: Some((method, bytes.clone())),
            keep: kept,
            repeatable: is_idempotent(method),
            pick,
        };
        return ask_uncached(scope, backend, call.url, &headers, sends, deadline, keep).await;
    }
    let json = HeaderValue::from_static("application/json");
    let headers = call_headers(scope, &call, call.body.as_ref().map(|_| &json));
    mirror(
        scope,
        backend,
        &call,
        &spec.method,
        &headers,
        call.body.as_ref(),
    );
    // A write call without a body (a DELETE) still sends its method.
    let body =
        (spec.method != Method::GET).then(|| (spec.method.clone(), call.body.unwrap_or_default()));
    let repeatable = spec.repeatable();
    let (Some(policy), Some(key)) = (spec.cache, key) else {
        let sends = Sends {
            body: body.as_ref().map(|(m, b)| (m, b.clone())),
            keep: kept,
            repeatable,
            pick,
        };
        return ask_uncached(scope, backend, call.url, &headers, sends, deadline, keep).await;
    };
    let upstream = backend.upstream_at(pick).clone();
    let (merge, ignore_upstream) = (spec.merge, spec.cache_ignore_upstream);
    let (max_depth, max_values) = (reading.max_depth, reading.max_values);
    let shape = spec.shape.clone();
    // Owned: a stale-while-revalidate refresh runs on after this request is answered.
    let headers = headers.into_owned();
    let kept = spec.keep_headers.clone();
    let trace = scope.call_trace(backend);
    let url = call.url;
    let fetch = move || async move {
        let sends = Sends {
            body: body.as_ref().map(|(m, b)| (m, b.clone())),
            keep: &kept,
            repeatable,
            pick,
        };
        let whole = ask(&upstream, url, &headers, sends, deadline, &trace).await?;
        let (raw, storable) = (whole.body, whole.storable);
        // Stored shaped, so a hit serves the bytes as they are; but stored as it came
        // when another backend reads it, since they read it before shaping.
        let body = if keep {
            check_json(&raw, max_depth)?;
            raw
        } else {
            let reading = Reading {
                merge,
                shape: shape.as_deref(),
                max_depth,
                max_values,
            };
            read(raw, reading, false)?.0
        };
        Ok::<_, BackendError>(Fetched {
            // With the status and the kept headers, so a hit carries them too.
            stored: Stored {
                status: whole.status,
                headers: whole.headers,
                body,
            },
            cacheable: storable || ignore_upstream,
        })
    };
    // `cache_scope = "cluster"`: the store shared by every instance is the second level.
    let shared = match (&scope.route.cluster, spec.cache_scope) {
        (Some(cluster), Scope::Cluster) => Some(SecondLevel {
            cluster: cluster.clone(),
            upstream_timeout: deadline.saturating_duration_since(Instant::now()),
        }),
        _ => None,
    };
    let lookup = scope.route.cache.get_or_fetch(key, policy, shared, fetch);
    let (entry, outcome) = tokio::time::timeout_at(deadline, lookup)
        .await
        .map_err(|_| CallError::Timeout(budget(deadline)))??;
    let desc = match outcome {
        CacheOutcome::Hit => "hit",
        CacheOutcome::Stale => "stale",
        CacheOutcome::SharedHit => "shared",
        CacheOutcome::Miss { .. } => "ok",
    };
    let read = finish_hit(&entry, reading, keep, desc)?;
    Ok(stored_answer(&entry, read))
}

/// Sends the copies of a backend call its mirrors take, fire and forget: the same
/// method, headers and body, to each shadow.
fn mirror(
    scope: &RequestScope<'_>,
    backend: &Backend,
    call: &CallRequest,
    method: &Method,
    headers: &HeaderMap,
    body: Option<&Bytes>,
) {
    if backend.mirrors.is_empty() {
        return;
    }
    let primary = crate::mirror::Primary {
        method,
        url: &call.url,
        upstream: backend.upstream_at(call.pick),
        headers,
        own_headers: &call.headers,
        request_id: scope.request_id(),
        trace: scope.trace,
    };
    let copies = crate::mirror::copies(&backend.mirrors, &call.mirror_paths, &primary);
    if !copies.is_empty() {
        crate::mirror::send_all(copies, body.map(std::slice::from_ref).unwrap_or(&[]));
    }
}

/// A stored answer as the route uses it: as stored, or (for one that other backends
/// read, stored unshaped) parsed and shaped now.
fn finish_hit(
    entry: &Entry,
    reading: Reading<'_>,
    keep: bool,
    desc: &'static str,
) -> Result<(Bytes, Option<Value>, &'static str), BackendError> {
    let stored = entry.stored.body.clone();
    if keep {
        let (body, raw) = read(stored, reading, true)?;
        return Ok((body, raw, desc));
    }
    Ok((stored, None, desc))
}

impl FetchError for BackendError {
    fn carries_answer(&self) -> bool {
        matches!(self, BackendError::Call(CallError::Status { .. }))
    }
}

/// What a call sends besides its URL and headers, and what it keeps of the answer.
struct Sends<'a> {
    /// A body with its method; `None`: a GET.
    body: Option<(&'a Method, Bytes)>,
    /// The response headers kept.
    keep: &'a [HeaderName],
    /// Whether the call may be retried and hedged.
    repeatable: bool,
    /// The backend's canary pick (0 without one): whose upstream is called.
    pick: usize,
}

/// Calls the upstream, keeping the response headers named in `keep`, retried and hedged
/// only when `repeatable`. Returns the answer, whose body is `null` for a 204.
async fn ask(
    upstream: &Upstream,
    url: String,
    headers: &HeaderMap,
    sends: Sends<'_>,
    deadline: Instant,
    trace: &CallTrace,
) -> Result<WholeAnswer, BackendError> {
    let Sends {
        body,
        keep,
        repeatable,
        pick: _,
    } = sends;
    let mut answer = upstream
        .call(url, headers, body, keep, repeatable, deadline, trace)
        .await?;
    if answer.status == StatusCode::NO_CONTENT {
        answer.body = Bytes::from_static(b"null");
    }
    Ok(answer)
}
