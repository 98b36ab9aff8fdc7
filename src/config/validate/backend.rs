//! Validation of an aggregate route's `[[routes.backends]]`: templates, the dependency
//! graph, `for_each`, shaping and cache settings.

use super::Problems;
use super::policy::{answer_from, keep_headers, on_error};
use super::write::{keep_read_headers, write_call};
use crate::cache::CachePolicy;
use crate::condition::Condition;
use crate::config::*;
use crate::json_path::Path;
use crate::template::{Scope, Source, Template, TemplateMode};
use bytes::Bytes;
use http::HeaderName;
use std::collections::HashSet;
use std::sync::Arc;

fn shape(place: &str, b: &BackendConfig, p: &mut Problems) -> Option<Arc<Shape>> {
    let mut path = |at: String, text: &str| Path::parse(text).map_err(|e| p.add(at, e)).ok();
    let extract = b
        .extract
        .as_ref()
        .and_then(|e| path(format!("{place}.extract"), e));
    let select = b
        .select
        .iter()
        .enumerate()
        .filter_map(|(i, s)| path(format!("{place}.select[{i}]"), s))
        .collect();
    let omit = b
        .omit
        .iter()
        .enumerate()
        .filter_map(|(i, s)| path(format!("{place}.omit[{i}]"), s))
        .collect();
    let mut rename = Vec::new();
    for (old, new) in &b.rename {
        if new.is_empty() {
            p.add(
                format!("{place}.rename.{old}"),
                "the new name is empty; write rename = { old = \"new\" }",
            );
        }
        rename.push((old.clone(), new.clone()));
    }
    let shape = Shape {
        extract,
        select,
        omit,
        rename,
    };
    (!shape.is_identity()).then(|| Arc::new(shape))
}

fn cache_policy(place: &str, b: &BackendConfig, p: &mut Problems) -> Option<CachePolicy> {
    let mut window = |key: &str, value: &Option<String>| {
        value
            .as_ref()
            .map(|v| p.duration(&format!("{place}.{key}"), v))
            .unwrap_or_default()
    };
    let stale_while_revalidate = window("stale_while_revalidate", &b.stale_while_revalidate);
    let stale_if_error = window("stale_if_error", &b.stale_if_error);
    let Some(ttl) = &b.cache_ttl else {
        if b.stale_while_revalidate.is_some() || b.stale_if_error.is_some() {
            p.add(
                format!("{place}.cache_ttl"),
                "is required by stale_while_revalidate and stale_if_error: they extend it",
            );
        }
        return None;
    };
    let ttl = p.duration(&format!("{place}.cache_ttl"), ttl);
    if b.forward_body {
        p.add(
            format!("{place}.cache_ttl"),
            "a backend with forward_body is not cached: its answer depends on the body",
        );
    }
    Some(CachePolicy {
        ttl,
        stale_while_revalidate,
        stale_if_error,
    })
}

pub(super) fn backends(
    route_place: &str,
    r: &RouteConfig,
    params: &[String],
    known: &[&str],
    p: &mut Problems,
) -> Option<AggregateSpec> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let problems_before = p.0.len();
    let names: Vec<&str> = r.backends.iter().map(|b| b.name.as_str()).collect();
    let mirror_max_body = super::mirror::aggregate_max_body(route_place, r, p);
    for (i, b) in r.backends.iter().enumerate() {
        let place = format!("{route_place}.backends[{i}]");
        let scope = Scope {
            params,
            backends: &names,
            item: b.for_each.is_some(),
        };
        let mut spec = backend(&place, i, b, &scope, known, p);
        if let Some(spec) = &mut spec {
            spec.mirror = super::mirror::backend_mirrors(
                &place,
                b,
                &scope,
                &spec.waits_for,
                mirror_max_body,
                known,
                p,
            );
        }
        if !seen.insert(b.name.as_str()) {
            p.add(
                format!("{place}.name"),
                format!("duplicate backend name \"{}\" in this route; names are keys of the merged body and must be unique", b.name),
            );
        }
        out.extend(spec);
    }
    keep_condition_headers(&mut out);
    if let Some(field) = &r.errors_field {
        if field.is_empty() {
            p.add(
                format!("{route_place}.errors_field"),
                "is empty; name a key such as \"_errors\", or leave it out",
            );
        } else if seen.contains(field.as_str()) {
            p.add(
                format!("{route_place}.errors_field"),
                format!(
                    "\"{field}\" is also a backend name; pick another key, such as \"_errors\""
                ),
            );
        }
    }
    let answer = answer_from(route_place, r, &names, p);
    // A cycle is looked for whenever every backend compiled, even if the route has
    // other problems, so that all of them are reported at once. The plan is built here,
    // once: the compiled route carries it to the gateway.
    if out.len() != r.backends.len() {
        return None;
    }
    keep_read_headers(&mut out);
    let waits_for: Vec<Vec<usize>> = out.iter().map(|b| b.waits_for.clone()).collect();
    let plan = match Plan::new(&waits_for) {
        Ok(plan) => plan,
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| out[i].name.as_str()).collect();
            p.add(
                format!("{route_place}.backends"),
                format!(
                    "their answers form a cycle ({}): each waits for another's; remove one of these references",
                    names.join(" → ")
                ),
            );
            return None;
        }
    };
    keep_headers(&mut out, &answer.headers_from);
    (p.0.len() == problems_before).then_some(AggregateSpec {
        backends: out,
        plan,
        status_from: answer.status_from,
        headers_from: answer.headers_from,
    })
}

/// Reads `for_each = "user.friend_ids"` and checks what may go with it.
fn for_each(
    place: &str,
    index: usize,
    b: &BackendConfig,
    reads_item: bool,
    scope: &Scope<'_>,
    p: &mut Problems,
) -> Option<ForEachSpec> {
    let source = b.for_each.as_ref()?;
    let (name, rest) = match source.split_once('.') {
        Some((name, rest)) => (name, Some(rest)),
        None => (source.as_str(), None),
    };
    let fplace = format!("{place}.for_each");
    let backend = match scope.backends.iter().position(|n| *n == name) {
        Some(i) if i == index => {
            p.add(
                fplace,
                format!("\"{source}\" is this backend's own answer; name another backend's array"),
            );
            None
        }
        Some(i) => Some(i),
        None => {
            p.add(
                fplace,
                format!(
                    "no backend \"{name}\" in this route; write \"BACKEND.path\" with one of: {}",
                    scope.backends.join(", ")
                ),
            );
            None
        }
    };
    let array_path = match rest {
        Some(rest) => Path::parse(rest)
            .map_err(|e| p.add(format!("{place}.for_each"), e))
            .ok()
            .map(Some),
        None => Some(None),
    };
    if b.merge == MergeMode::Root {
        p.add(
            format!("{place}.merge"),
            "merge = \"root\" spreads an object's fields, but a for_each answer is an array; use merge = \"key\"",
        );
    }
    if b.forward_body {
        p.add(
            format!("{place}.forward_body"),
            "a for_each backend makes one GET per element and cannot send the request body",
        );
    }
    if !reads_item {
        p.add(
            format!("{place}.path"),
            "a for_each backend calls once per element; put {item} or {item.FIELD} in the path",
        );
    }
    let mut at_least_one = |key: &str, value: usize| {
        if value == 0 {
            p.add(format!("{place}.{key}"), "must be at least 1");
        }
    };
    at_least_one("concurrency", b.concurrency);
    at_least_one("max_items", b.max_items);
    Some(ForEachSpec {
        backend: backend?,
        path: array_path?,
        concurrency: b.concurrency.max(1),
        max_items: b.max_items.max(1),
        fail_all: b.for_each_fail == ForEachFail::All,
    })
}

fn backend(
    place: &str,
    index: usize,
    b: &BackendConfig,
    scope: &Scope<'_>,
    known: &[&str],
    p: &mut Problems,
) -> Option<BackendSpec> {
    let valid_name = b
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && b.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        p.add(
            format!("{place}.name"),
            format!("\"{}\" is not a backend name; use letters, digits, _ and -, starting with a letter", b.name),
        );
    }
    let (upstream, canary) = super::canary::upstreams(
        place,
        &b.upstream,
        b.upstreams.as_deref(),
        b.sticky.as_deref(),
        known,
        p,
    );
    let path = Template::parse(&b.path, scope, TemplateMode::Backend)
        .map_err(|e| p.add(format!("{place}.path"), e))
        .ok();
    if path
        .as_ref()
        .is_some_and(|t| t.answers_read().any(|i| i == index))
    {
        p.add(
            format!("{place}.path"),
            format!(
                "reads this backend's own answer ({{{}.…}}); read another backend's",
                b.name
            ),
        );
    }
    let write = write_call(place, index, b, scope, p);
    let reads_item = path.as_ref().is_none_or(Template::reads_item) || write.reads_item();
    let for_each = for_each(place, index, b, reads_item, scope, p);
    let when = condition(place, index, b, scope, p);
    let mut waits_for: Vec<usize> = path.iter().flat_map(Template::answers_read).collect();
    waits_for.extend(write.sources().filter_map(Source::answer_read));
    waits_for.extend(for_each.as_ref().map(|f| f.backend));
    waits_for.extend(when.iter().flat_map(Condition::answers_read));
    waits_for.sort_unstable();
    waits_for.dedup();
    let timeout = b
        .timeout
        .as_ref()
        .map(|t| p.duration(&format!("{place}.timeout"), t));
    let default = match &b.default {
        None => Bytes::from_static(b"null"),
        Some(v) => {
            if b.merge == MergeMode::Root && !v.is_object() {
                p.add(
                    format!("{place}.default"),
                    "a backend with merge = \"root\" spreads an object's fields: its default must be a table, such as {}",
                );
            }
            Bytes::from(serde_json::to_vec(v).expect("a JSON value serializes"))
        }
    };
    let cache = cache_policy(place, b, p);
    let cache_scope = super::cluster::scope(&format!("{place}.cache_scope"), &b.cache_scope, p);
    if cache_scope == crate::config::Scope::Cluster && cache.is_none() {
        p.add(
            format!("{place}.cache_scope"),
            "shares cached answers, but the backend caches none: set cache_ttl, or remove cache_scope",
        );
    }
    Some(BackendSpec {
        name: b.name.clone(),
        upstream,
        path: path?,
        on_error: on_error(place, b, p),
        timeout,
        default,
        merge: b.merge,
        forward_body: b.forward_body,
        cache,
        cache_scope,
        shape: shape(place, b, p),
        cache_ignore_upstream: b.cache_ignore_upstream,
        waits_for,
        for_each,
        method: write.method,
        body: write.body,
        idempotent: write.idempotent,
        headers: write.headers,
        when,
        keep_headers: Vec::new(),
        canary,
        mirror: Vec::new(),
    })
}

/// Compiles `when`: a syntax error, a name it cannot read or this backend's own answer
/// is refused with its place.
fn condition(
    place: &str,
    index: usize,
    b: &BackendConfig,
    scope: &Scope<'_>,
    p: &mut Problems,
) -> Option<Condition> {
    let expr = b.when.as_ref()?;
    let place = format!("{place}.when");
    let condition = Condition::compile(expr, scope.backends)
        .map_err(|e| p.add(place.clone(), e))
        .ok()?;
    if condition.answers_read().any(|i| i == index) {
        p.add(
            place,
            format!(
                "reads this backend's own answer ({}); a condition decides before the call, so read another backend's",
                b.name
            ),
        );
        return None;
    }
    Some(condition)
}

/// Adds to each backend's `keep_headers` the response headers other backends' `when`
/// read (`responses.NAME.headers['etag']`).
fn keep_condition_headers(specs: &mut [BackendSpec]) {
    let mut wanted: Vec<(usize, HeaderName)> = Vec::new();
    for spec in specs.iter() {
        if let Some(when) = &spec.when {
            for read in when.answers_read() {
                wanted.extend(when.headers_read(read).iter().map(|h| (read, h.clone())));
            }
        }
    }
    for (read, header) in wanted {
        let keep = &mut specs[read].keep_headers;
        keep.push(header);
        keep.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        keep.dedup();
    }
}
