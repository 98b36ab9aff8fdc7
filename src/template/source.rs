//! Placeholder sources: what `{...}` may name, parsed once against the route's scope.
//!
//! | placeholder                          | value                                        |
//! |--------------------------------------|----------------------------------------------|
//! | `{id}`                               | a route path parameter                       |
//! | `{query.NAME}`, `{header.NAME}`      | the client's query parameter, header         |
//! | `{body}`, `{body.a.b}`               | the client's JSON body, or a field of it     |
//! | `{user.a.b}`                         | a field of backend `user`'s answer           |
//! | `{responses.user.status}`            | backend `user`'s answer status (a number)    |
//! | `{responses.user.headers.etag}`      | a header of backend `user`'s answer          |
//! | `{item}`, `{item.id}`                | the element a `for_each` backend calls for   |
//! | `{auth.sub}`, `{auth.provider}`      | the request's identity: subject, provider    |
//! | `{auth.claims.tenant}`               | a verified claim of the request's identity   |
//! | `{client_cert.subject}`              | the client certificate's subject (RFC 4514)  |
//! | `{client_cert.fingerprint}`          | its SHA-256 fingerprint, lowercase hex       |
//!
//! `{body...}` and `{responses...}` exist only in an aggregate backend's templates (a
//! backend may not be named `auth`, `body`, `request` or `responses`). `{auth...}` is
//! parsed anywhere; `validate` refuses it on a route without `auth`, and
//! `{client_cert...}` without `[server.tls] client_ca`. The last three rows and
//! `{user.a.b}` read another backend: the reader waits for that backend's answer.

use super::Scope;
use crate::json_path::Path;
use http::HeaderName;

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `{id}`: a parameter of the route path.
    Param(String),
    /// `{query.NAME}`: the first `NAME` in the client's query string.
    Query(String),
    /// `{header.NAME}`: a client request header.
    Header(HeaderName),
    /// `{body}` or `{body.a.b}`: the client's JSON request body, or a field of it.
    Body(Option<Path>),
    /// `{user.address.city}`: a field of the answer of the route's backend number
    /// `backend` (its answer before shaping).
    Answer {
        backend: usize,
        name: String,
        path: Path,
    },
    /// `{responses.NAME.status}`: the status of backend `NAME`'s answer.
    Status { backend: usize, name: String },
    /// `{responses.NAME.headers.HEADER}`: a response header of backend `NAME`'s answer.
    ResponseHeader {
        backend: usize,
        name: String,
        header: HeaderName,
    },
    /// `{item}` or `{item.id}`: the element a `for_each` backend is calling for.
    Item(Option<Path>),
    /// `{auth.sub}`, `{auth.provider}` or `{auth.claims.PATH}`: the identity the
    /// route's `auth` proved. Missing on an anonymous request (`auth_optional`).
    Auth(AuthField),
    /// `{client_cert.subject}` or `{client_cert.fingerprint}`: the connection's verified
    /// client certificate. Missing on a request without one, as `{auth...}` is on an
    /// anonymous request.
    ClientCert(ClientCertField),
}

/// What a `{client_cert...}` placeholder reads of the client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertField {
    /// `{client_cert.subject}`: the subject DN, RFC 4514.
    Subject,
    /// `{client_cert.fingerprint}`: the SHA-256 of its DER, lowercase hex.
    Fingerprint,
}

/// What a `{auth...}` placeholder reads of the request's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthField {
    /// `{auth.sub}`: the subject.
    Subject,
    /// `{auth.provider}`: the `[auth.NAME]` provider that accepted the request.
    Provider,
    /// `{auth.claims.tenant}`: a verified claim, with its JSON type.
    Claim(Path),
}

impl Source {
    /// The value as written in a template (without braces), for error messages.
    pub fn describe(&self) -> String {
        match self {
            Source::Param(n) => format!("route parameter {n}"),
            Source::Query(n) => format!("query parameter {n}"),
            Source::Header(n) => format!("header {n}"),
            Source::Body(None) => "body".into(),
            Source::Body(Some(path)) => format!("body.{path}"),
            Source::Answer { name, path, .. } => format!("{name}.{path}"),
            Source::Status { name, .. } => format!("responses.{name}.status"),
            Source::ResponseHeader { name, header, .. } => {
                format!("responses.{name}.headers.{header}")
            }
            Source::Item(None) => "item".into(),
            Source::Item(Some(path)) => format!("item.{path}"),
            Source::Auth(AuthField::Subject) => "auth.sub".into(),
            Source::Auth(AuthField::Provider) => "auth.provider".into(),
            Source::Auth(AuthField::Claim(path)) => format!("auth.claims.{path}"),
            Source::ClientCert(ClientCertField::Subject) => "client_cert.subject".into(),
            Source::ClientCert(ClientCertField::Fingerprint) => "client_cert.fingerprint".into(),
        }
    }

    /// Whether the value comes from the client's request (not from an answer). The
    /// identity does: an anonymous request that lacks it is the client's to fix.
    pub(super) fn is_from_request(&self) -> bool {
        matches!(
            self,
            Source::Param(_)
                | Source::Query(_)
                | Source::Header(_)
                | Source::Body(_)
                | Source::Auth(_)
                | Source::ClientCert(_)
        )
    }

    /// Whether the value is the request's identity (`{auth...}`).
    pub fn reads_auth(&self) -> bool {
        matches!(self, Source::Auth(_))
    }

    /// Whether the value is the client certificate's (`{client_cert...}`).
    pub fn reads_client_cert(&self) -> bool {
        matches!(self, Source::ClientCert(_))
    }

    /// The backend (by index) whose answer this reads, if any.
    pub fn answer_read(&self) -> Option<usize> {
        match self {
            Source::Answer { backend, .. }
            | Source::Status { backend, .. }
            | Source::ResponseHeader { backend, .. } => Some(*backend),
            _ => None,
        }
    }

    /// The backend and response header this reads, for `{responses.NAME.headers.X}`.
    pub fn header_read(&self) -> Option<(usize, &HeaderName)> {
        match self {
            Source::ResponseHeader {
                backend, header, ..
            } => Some((*backend, header)),
            _ => None,
        }
    }
}

fn backend_index(scope: &Scope<'_>, name: &str, written: &str) -> Result<usize, String> {
    scope
        .backends
        .iter()
        .position(|b| *b == name)
        .ok_or_else(|| {
            format!(
                "{{{written}}}: no backend \"{name}\" in this route; backends: {}",
                scope.backends.join(", ")
            )
        })
}

/// `responses.NAME.status` or `responses.NAME.headers.HEADER`.
fn parse_response(name: &str, rest: &str, scope: &Scope<'_>) -> Result<Source, String> {
    let usage = || {
        format!(
            "{{{name}}}: write {{responses.BACKEND.status}} or {{responses.BACKEND.headers.NAME}}"
        )
    };
    let (backend, what) = rest.split_once('.').ok_or_else(usage)?;
    let index = backend_index(scope, backend, name)?;
    if what == "status" {
        return Ok(Source::Status {
            backend: index,
            name: backend.to_string(),
        });
    }
    let header = what.strip_prefix("headers.").ok_or_else(usage)?;
    // Header names are case-insensitive: a mixed-case name reads the same header.
    let header = HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("{{{name}}}: \"{header}\" is not a valid header name"))?;
    Ok(Source::ResponseHeader {
        backend: index,
        name: backend.to_string(),
        header,
    })
}

/// `auth.sub`, `auth.provider` or `auth.claims.PATH`.
fn parse_auth(name: &str) -> Result<AuthField, String> {
    match name {
        "auth.sub" => return Ok(AuthField::Subject),
        "auth.provider" => return Ok(AuthField::Provider),
        _ => {}
    }
    if let Some(path) = name.strip_prefix("auth.claims.") {
        return Path::parse(path)
            .map(AuthField::Claim)
            .map_err(|e| format!("{{{name}}}: {e}"));
    }
    Err(format!(
        "{{{name}}}: write {{auth.sub}}, {{auth.provider}} or {{auth.claims.NAME}} (such as {{auth.claims.tenant}})"
    ))
}

pub(super) fn parse_source(name: &str, scope: &Scope<'_>) -> Result<Source, String> {
    let route_params = scope.params;
    let known = || {
        if route_params.is_empty() {
            "the route path has no parameters".to_string()
        } else {
            format!("route parameters: {}", route_params.join(", "))
        }
    };
    if let Some(q) = name.strip_prefix("query.") {
        if q.is_empty() {
            return Err("{query.} needs a name: {query.NAME}".into());
        }
        return Ok(Source::Query(q.to_string()));
    }
    if let Some(h) = name.strip_prefix("header.") {
        return HeaderName::from_bytes(h.as_bytes())
            .map(Source::Header)
            .map_err(|_| format!("{{header.{h}}}: \"{h}\" is not a valid header name"));
    }
    let is_param = route_params.iter().any(|p| p == name);
    if !is_param && (name == "auth" || name.starts_with("auth.")) {
        return parse_auth(name).map(Source::Auth);
    }
    if !is_param && (name == "client_cert" || name.starts_with("client_cert.")) {
        return match name {
            "client_cert.subject" => Ok(Source::ClientCert(ClientCertField::Subject)),
            "client_cert.fingerprint" => Ok(Source::ClientCert(ClientCertField::Fingerprint)),
            _ => Err(format!(
                "{{{name}}}: write {{client_cert.subject}} or {{client_cert.fingerprint}}"
            )),
        };
    }
    // A route parameter of that name wins over the for_each element.
    if scope.item && !is_param {
        if name == "item" {
            return Ok(Source::Item(None));
        }
        if let Some(path) = name.strip_prefix("item.") {
            return Ok(Source::Item(Some(
                Path::parse(path).map_err(|e| format!("{{{name}}}: {e}"))?,
            )));
        }
    }
    // The body and other answers' status and headers: aggregate backends only.
    let aggregate = !scope.backends.is_empty();
    if aggregate && !is_param {
        if name == "body" {
            return Ok(Source::Body(None));
        }
        if let Some(path) = name.strip_prefix("body.") {
            return Ok(Source::Body(Some(
                Path::parse(path).map_err(|e| format!("{{{name}}}: {e}"))?,
            )));
        }
        if let Some(rest) = name.strip_prefix("responses.") {
            return parse_response(name, rest, scope);
        }
    }
    if let Some((backend, path)) = name.split_once('.') {
        let Some(index) = scope.backends.iter().position(|b| *b == backend) else {
            let hint = if backend == "item" {
                "{item} is the element of a for_each; set for_each = \"BACKEND.path\" on this backend".to_string()
            } else if !aggregate {
                "only an aggregate backend's path can read another backend's answer".to_string()
            } else {
                format!(
                    "write {{BACKEND.path}} with a backend of this route ({}), or {{query.NAME}} or {{header.NAME}}",
                    scope.backends.join(", ")
                )
            };
            return Err(format!(
                "{{{name}}}: no backend \"{backend}\" in this route; {hint}"
            ));
        };
        let path = Path::parse(path).map_err(|e| format!("{{{name}}}: {e}"))?;
        return Ok(Source::Answer {
            backend: index,
            name: backend.to_string(),
            path,
        });
    }
    if is_param {
        Ok(Source::Param(name.to_string()))
    } else if scope.backends.contains(&name) {
        Err(format!(
            "{{{name}}} is a whole answer; name one of its fields, such as {{{name}.id}}"
        ))
    } else if name == "item" {
        Err(
            "{item} is the element of a for_each; set for_each = \"BACKEND.path\" on this backend"
                .into(),
        )
    } else {
        Err(format!(
            "{{{name}}} is not a parameter of the route path; {}",
            known()
        ))
    }
}
