//! Validation of a backend's write-call keys: `method`, `body`, `idempotent` and
//! `headers`, and the backend names the template and condition sources reserve.

use super::Problems;
use crate::config::{BackendConfig, BackendSpec};
use crate::template::{BodyTemplate, Scope, Source, TextTemplate};
use http::{HeaderName, Method};

/// Names a backend may not have: `{auth...}`, `{body...}`, `{responses...}` and
/// conditions' `request` read these.
const RESERVED_NAMES: [&str; 5] = ["request", "responses", "body", "auth", "client_cert"];

/// Request headers a template may not set: the gateway frames each call itself.
const FRAMING: [&str; 3] = ["host", "content-length", "transfer-encoding"];

/// A backend's write-call keys, checked and compiled.
pub(super) struct WriteCall {
    pub method: Method,
    pub body: Option<BodyTemplate>,
    pub idempotent: bool,
    pub headers: Vec<(HeaderName, TextTemplate)>,
}

impl WriteCall {
    /// The placeholders of the body and header templates.
    pub fn sources(&self) -> impl Iterator<Item = &Source> + '_ {
        let body = self.body.iter().flat_map(BodyTemplate::sources);
        body.chain(self.headers.iter().flat_map(|(_, t)| t.sources()))
    }

    pub fn reads_item(&self) -> bool {
        self.sources().any(|s| matches!(s, Source::Item(_)))
    }
}

fn method(place: &str, text: &str, p: &mut Problems) -> Method {
    match text {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        other => {
            p.add(
                format!("{place}.method"),
                format!("\"{other}\" is not a backend method; write GET, POST, PUT, PATCH or DELETE, in capitals"),
            );
            Method::GET
        }
    }
}

/// Reads `method`, `body`, `idempotent` and `headers` of backend `index`.
pub(super) fn write_call(
    place: &str,
    index: usize,
    b: &BackendConfig,
    scope: &Scope<'_>,
    p: &mut Problems,
) -> WriteCall {
    if RESERVED_NAMES.contains(&b.name.as_str()) {
        p.add(
            format!("{place}.name"),
            format!(
                "\"{}\" is reserved: templates and conditions read the client's request as request and body, answers' status and headers as responses, the request's identity as auth, and the client certificate as client_cert; rename the backend",
                b.name
            ),
        );
    }
    let method = method(place, &b.method, p);
    let is_write = method != Method::GET;
    if b.forward_body && is_write {
        p.add(
            format!("{place}.method"),
            "forward_body sends the client's own method and body; remove method, or build the body with body = { ... } instead of forward_body",
        );
    }
    let body = b.body.as_ref().and_then(|value| {
        if b.forward_body {
            p.add(
                format!("{place}.body"),
                "forward_body already sends the client's body; use either forward_body or body",
            );
        } else if !is_write {
            p.add(
                format!("{place}.body"),
                "a GET carries no body; set method = \"POST\" (or PUT, PATCH, DELETE)",
            );
        }
        BodyTemplate::parse(value, scope)
            .map_err(|e| p.add(format!("{place}.body{}", e.at), e.message))
            .ok()
    });
    let mut headers = Vec::new();
    for (name, value) in &b.headers {
        let hplace = format!("{place}.headers.{name}");
        let Some(header) = p.header_name(&hplace, name) else {
            continue;
        };
        let framing = FRAMING.contains(&header.as_str());
        if framing || crate::proxy::HOP_BY_HOP.contains(&header.as_str()) {
            p.add(
                &hplace,
                format!(
                    "{} is set by the gateway for each call (framing or connection); remove it",
                    header.as_str()
                ),
            );
            continue;
        }
        match TextTemplate::parse_header(value, scope) {
            Ok(template) => headers.push((header, template)),
            Err(e) => p.add(hplace, e),
        }
    }
    if b.cache_ttl.is_some() && is_write && !b.idempotent {
        p.add(
            format!("{place}.cache_ttl"),
            format!(
                "a {method} is cached only with idempotent = true: set it if repeating the call is safe, or remove cache_ttl"
            ),
        );
    }
    let call = WriteCall {
        method,
        body,
        idempotent: b.idempotent,
        headers,
    };
    if call.sources().any(|s| s.answer_read() == Some(index)) {
        p.add(
            place,
            format!(
                "its body or headers read this backend's own answer ({{{}.…}}); read another backend's",
                b.name
            ),
        );
    }
    call
}

/// Adds to each backend the response headers that others' templates read
/// (`{responses.NAME.headers.X}`), so its call keeps them.
pub(super) fn keep_read_headers(backends: &mut [BackendSpec]) {
    let mut read: Vec<(usize, HeaderName)> = Vec::new();
    for b in backends.iter() {
        let body = b.body.iter().flat_map(|t| t.sources());
        let headers = b.headers.iter().flat_map(|(_, t)| t.sources());
        let sources = b.path.sources().chain(body).chain(headers);
        read.extend(sources.filter_map(|s| s.header_read().map(|(i, h)| (i, h.clone()))));
    }
    for (i, header) in read {
        // Lower case, sorted and unique, as `headers_from` keeps them.
        let keep = &mut backends[i].keep_headers;
        if let Err(at) = keep.binary_search_by(|h| h.as_str().cmp(header.as_str())) {
            keep.insert(at, header);
        }
    }
}

/// The first backend whose templates read `{body...}` on a route whose methods carry
/// no body.
pub(super) fn body_on_bodiless_route(place: &str, backends: &[BackendSpec], p: &mut Problems) {
    let reads = |s: &Source| matches!(s, Source::Body(_));
    let in_templates = |b: &BackendSpec| {
        b.path.sources().any(reads)
            || b.body.iter().flat_map(BodyTemplate::sources).any(reads)
            || b.headers.iter().flat_map(|(_, t)| t.sources()).any(reads)
    };
    if let Some(i) = backends.iter().position(in_templates) {
        p.add(
            format!("{place}.backends[{i}]"),
            "reads the client's body ({body...}), but the route answers only GET/HEAD, which carry no body; add POST, PUT or PATCH to methods",
        );
    }
}
