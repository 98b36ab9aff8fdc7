//! Validation of what a backend's failure does (`on_error`, its short form `required`)
//! and of what the client's answer takes from a backend's (`status_from`,
//! `headers_from`), resolved to backend indexes.

use super::Problems;
use crate::config::{BackendConfig, BackendSpec, OnError, RouteConfig};
use http::HeaderName;

/// Response headers `headers_from` refuses, and why. The gateway writes these itself
/// (the merged body's framing, type and coding, its own diagnostics), or they describe
/// one connection, not the answer.
const REFUSED: &[(&str, &str)] = &[
    (
        "content-length",
        "the gateway frames the merged body itself",
    ),
    (
        "transfer-encoding",
        "the gateway frames the merged body itself",
    ),
    ("content-type", "the merged body is the gateway's JSON"),
    (
        "content-encoding",
        "the gateway compresses the merged body itself",
    ),
    (
        "content-range",
        "the merged body is not that backend's body",
    ),
    ("trailer", "the merged body has no trailers"),
    ("server-timing", "the gateway writes it for every backend"),
    ("x-fanout-complete", "the gateway writes it"),
    ("x-request-id", "the gateway writes it"),
    ("vary", "the gateway writes it when it compresses"),
    (
        "traceparent",
        "trace context belongs to the request, not the answer",
    ),
    (
        "tracestate",
        "trace context belongs to the request, not the answer",
    ),
];

/// A backend's `on_error`, with `required` as its short form: `required = true` is
/// `"fail"`, and the two set in disagreement are refused.
pub(super) fn on_error(place: &str, b: &BackendConfig, p: &mut Problems) -> OnError {
    match (b.required, b.on_error) {
        (Some(true), Some(policy)) if policy != OnError::Fail => {
            p.add(
                format!("{place}.on_error"),
                format!(
                    "\"{}\" disagrees with required = true (which means \"fail\"); remove required or on_error",
                    name(policy)
                ),
            );
            policy
        }
        (Some(false), Some(OnError::Fail)) => {
            p.add(
                format!("{place}.on_error"),
                "\"fail\" disagrees with required = false; remove required (on_error = \"fail\" makes the backend required)",
            );
            OnError::Fail
        }
        (_, Some(policy)) => policy,
        (Some(true), None) => OnError::Fail,
        (_, None) => OnError::Default,
    }
}

fn name(policy: OnError) -> &'static str {
    match policy {
        OnError::Fail => "fail",
        OnError::Default => "default",
        OnError::Omit => "omit",
    }
}

/// What the client's answer takes from the backends: `status_from` and `headers_from`,
/// resolved to backend indexes.
pub(super) struct AnswerFrom {
    pub status_from: Option<usize>,
    pub headers_from: Vec<(usize, Vec<HeaderName>)>,
}

/// Checks a route's `status_from` and `headers_from` against its backend `names` (in
/// declaration order).
pub(super) fn answer_from(
    route_place: &str,
    r: &RouteConfig,
    names: &[&str],
    p: &mut Problems,
) -> AnswerFrom {
    let backend = |place: String, name: &str, p: &mut Problems| {
        let Some(i) = names.iter().position(|n| *n == name) else {
            p.add(
                place,
                format!(
                    "no backend \"{name}\" in this route; name one of: {}",
                    names.join(", ")
                ),
            );
            return None;
        };
        if r.backends[i].for_each.is_some() {
            p.add(
                place,
                format!(
                    "\"{name}\" is a for_each backend: its answer is many calls', with no one status or set of headers; name another backend"
                ),
            );
            return None;
        }
        Some(i)
    };
    let status_from = r
        .status_from
        .as_deref()
        .and_then(|name| backend(format!("{route_place}.status_from"), name, p));
    let mut headers_from = Vec::new();
    for (name, headers) in &r.headers_from {
        let place = format!("{route_place}.headers_from.{name}");
        let index = backend(place.clone(), name, p);
        let mut kept: Vec<HeaderName> = headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| response_header(&format!("{place}[{i}]"), h, p))
            .collect();
        if headers.is_empty() {
            p.add(
                place,
                "is empty; list the headers to copy, such as [\"location\"]",
            );
        }
        kept.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        kept.dedup();
        if let Some(i) = index {
            headers_from.push((i, kept));
        }
    }
    headers_from.sort_unstable_by_key(|(i, _)| *i);
    AnswerFrom {
        status_from,
        headers_from,
    }
}

/// A header name `headers_from` may copy, or the problem with it.
fn response_header(place: &str, text: &str, p: &mut Problems) -> Option<HeaderName> {
    let name = p.header_name(place, text)?;
    if crate::proxy::HOP_BY_HOP.contains(&name.as_str()) {
        p.add(
            place,
            format!("\"{text}\" describes one connection, not the answer, and cannot be copied"),
        );
        return None;
    }
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name.as_str()) {
        p.add(place, format!("\"{text}\" cannot be copied: {why}"));
        return None;
    }
    Some(name)
}

/// Adds the headers `headers_from` copies to the `keep_headers` of their backends.
pub(super) fn keep_headers(
    backends: &mut [BackendSpec],
    headers_from: &[(usize, Vec<HeaderName>)],
) {
    for (i, names) in headers_from {
        let keep = &mut backends[*i].keep_headers;
        keep.extend(names.iter().cloned());
        keep.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        keep.dedup();
    }
}

/// Refuses `status_from` and `headers_from` on a proxy route, which passes the
/// upstream's status and headers through already.
pub(super) fn proxy_answer_keys(place: &str, r: &RouteConfig, p: &mut Problems) {
    if r.status_from.is_some() {
        p.add(
            format!("{place}.status_from"),
            "a proxy route answers with its upstream's status already; remove status_from",
        );
    }
    if !r.headers_from.is_empty() {
        p.add(
            format!("{place}.headers_from"),
            "a proxy route passes its upstream's headers already; remove headers_from",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AggregateSpec, Compiled, Env, OnError, RouteKind, compile};

    const UP: &str = "[upstreams.m]\nurl = \"http://127.0.0.1:9\"\n";

    fn route(route_keys: &str, backends: &[&str]) -> String {
        let mut toml = format!("{UP}[[routes]]\npath = \"/r\"\n{route_keys}\n");
        for (i, keys) in backends.iter().enumerate() {
            let path = if keys.contains("for_each") {
                "/x/{item}".to_string()
            } else {
                format!("/{i}")
            };
            toml.push_str(&format!(
                "[[routes.backends]]\nname = \"b{i}\"\nupstream = \"m\"\npath = \"{path}\"\n{keys}\n"
            ));
        }
        toml
    }

    fn aggregate(compiled: &Compiled) -> &AggregateSpec {
        match &compiled.routes[0].kind {
            RouteKind::Aggregate(a) => a,
            RouteKind::Proxy(_) => panic!("an aggregate route"),
        }
    }

    fn problems(toml: &str) -> Vec<String> {
        match compile(toml, &Env::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn required_is_the_short_form_of_on_error_fail() {
        let toml = route(
            "",
            &[
                "",
                "required = true",
                "required = false",
                "on_error = \"omit\"",
                "on_error = \"fail\"",
                "required = true\non_error = \"fail\"",
                "required = false\non_error = \"default\"",
            ],
        );
        let compiled = compile(&toml, &Env::default()).unwrap();
        let policies: Vec<OnError> = aggregate(&compiled)
            .backends
            .iter()
            .map(|b| b.on_error)
            .collect();
        use OnError::*;
        assert_eq!(
            policies,
            [Default, Fail, Default, Omit, Fail, Fail, Default]
        );
        assert!(aggregate(&compiled).backends[1].required());
        assert!(!aggregate(&compiled).backends[3].required());
    }

    #[test]
    fn required_and_on_error_in_disagreement_are_refused() {
        let toml = route(
            "",
            &[
                "required = true\non_error = \"default\"",
                "required = false\non_error = \"fail\"",
            ],
        );
        assert_eq!(
            problems(&toml),
            [
                "routes[0].backends[0].on_error: \"default\" disagrees with required = true (which means \"fail\"); remove required or on_error",
                "routes[0].backends[1].on_error: \"fail\" disagrees with required = false; remove required (on_error = \"fail\" makes the backend required)",
            ]
        );
        assert_eq!(
            problems(&route("", &["on_error = \"ignore\""])),
            [
                "routes[0].backends[0].on_error: \"ignore\" is not allowed here; write \"fail\", \"default\" or \"omit\""
            ]
        );
    }

    #[test]
    fn status_and_headers_from_resolve_to_backend_indexes() {
        let toml = route(
            "status_from = \"b1\"\nheaders_from = { b1 = [\"Location\", \"etag\", \"location\"], b0 = [\"x-total\"] }",
            &["", ""],
        );
        let compiled = compile(&toml, &Env::default()).unwrap();
        let spec = aggregate(&compiled);
        assert_eq!(spec.status_from, Some(1));
        let names = |list: &[http::HeaderName]| -> Vec<String> {
            list.iter().map(ToString::to_string).collect()
        };
        let from: Vec<(usize, Vec<String>)> = spec
            .headers_from
            .iter()
            .map(|(i, list)| (*i, names(list)))
            .collect();
        assert_eq!(
            from,
            [
                (0, vec!["x-total".to_string()]),
                (1, vec!["etag".to_string(), "location".to_string()])
            ]
        );
        assert_eq!(names(&spec.backends[0].keep_headers), ["x-total"]);
        assert_eq!(names(&spec.backends[1].keep_headers), ["etag", "location"]);
        // Without headers_from, a backend keeps none: its calls do no extra work.
        let plain = compile(&route("", &[""]), &Env::default()).unwrap();
        assert!(aggregate(&plain).backends[0].keep_headers.is_empty());
        assert_eq!(aggregate(&plain).status_from, None);
    }

    #[test]
    fn unsafe_or_unknown_names_are_refused_with_their_place() {
        let toml = route(
            "status_from = \"b9\"\nheaders_from = { b0 = [\"set-cookie\", \"transfer-encoding\", \"content-type\", \"x-fanout-complete\"], b1 = [] }",
            &["", "for_each = \"b0.ids\""],
        );
        assert_eq!(
            problems(&toml),
            [
                "routes[0].status_from: no backend \"b9\" in this route; name one of: b0, b1",
                "routes[0].headers_from.b0[1]: \"transfer-encoding\" describes one connection, not the answer, and cannot be copied",
                "routes[0].headers_from.b0[2]: \"content-type\" cannot be copied: the merged body is the gateway's JSON",
                "routes[0].headers_from.b0[3]: \"x-fanout-complete\" cannot be copied: the gateway writes it",
                "routes[0].headers_from.b1: \"b1\" is a for_each backend: its answer is many calls', with no one status or set of headers; name another backend",
                "routes[0].headers_from.b1: is empty; list the headers to copy, such as [\"location\"]",
            ]
        );
    }

    #[test]
    fn a_proxy_route_refuses_status_and_headers_from() {
        let toml = format!(
            "{UP}[[routes]]\npath = \"/p\"\nstatus_from = \"x\"\nheaders_from = {{ x = [\"etag\"] }}\nproxy = {{ upstream = \"m\", path = \"/\" }}\n"
        );
        assert_eq!(
            problems(&toml),
            [
                "routes[0].status_from: a proxy route answers with its upstream's status already; remove status_from",
                "routes[0].headers_from: a proxy route passes its upstream's headers already; remove headers_from",
            ]
        );
    }
}
