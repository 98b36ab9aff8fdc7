//! What a compiled expression reads, found by walking its syntax tree once at load: the
//! request fields, the backends (their body, or their status and headers through
//! `responses.NAME`), and which response headers must be kept for it. Names bound by a
//! comprehension (`items.exists(i, i.price > 10)`) are the expression's own, not reads.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use http::HeaderName;

/// The top-level names an expression may read besides the route's backends.
pub(super) const REQUEST: &str = "request";
pub(super) const RESPONSES: &str = "responses";
/// The request's identity: `auth.sub`, `auth.provider`, `auth.claims`.
pub(super) const AUTH: &str = "auth";
/// The connection's verified client certificate: `client_cert.subject`,
/// `client_cert.fingerprint`, `client_cert.dns`, `client_cert.uri`.
pub(super) const CLIENT_CERT: &str = "client_cert";

/// The fields of `request`, as bits: only those read are built per evaluation.
pub(super) mod field {
    pub const METHOD: u8 = 1;
    pub const PARAMS: u8 = 2;
    pub const QUERY: u8 = 4;
    pub const HEADERS: u8 = 8;
    pub const BODY: u8 = 16;
    pub const ALL: u8 = METHOD | PARAMS | QUERY | HEADERS | BODY;

    /// The bit of `request.NAME`.
    pub fn named(name: &str) -> Option<u8> {
        Some(match name {
            "method" => METHOD,
            "params" => PARAMS,
            "query" => QUERY,
            "headers" => HEADERS,
            "body" => BODY,
            _ => return None,
        })
    }
}

/// How an expression reads one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BackendRead {
    /// The backend's index in the route.
    pub index: usize,
    pub name: String,
    /// `NAME` itself: its answer's JSON body.
    pub bare: bool,
    /// `responses.NAME`: its status, kept headers, and body when `body` is read there.
    pub responses: bool,
    /// `responses.NAME.body`.
    pub responses_body: bool,
    /// The header names read as `responses.NAME.headers['NAME']`.
    pub headers: Vec<HeaderName>,
}

/// Everything an expression reads.
#[derive(Debug, Default)]
pub(super) struct Reads {
    /// Bits of [`field`].
    pub request: u8,
    /// In the order of the route's backends.
    pub backends: Vec<BackendRead>,
    /// `auth`: the request's identity.
    pub auth: bool,
    /// `client_cert`: the connection's client certificate.
    pub client_cert: bool,
}

struct Walk<'a> {
    backends: &'a [&'a str],
    /// Names bound by the comprehensions around the node being walked.
    bound: Vec<&'a str>,
    reads: Reads,
}

/// Walks `expr` and lists what it reads; every free name must be `request`, `responses`,
/// `auth`, `client_cert` or one of `backends`.
pub(super) fn reads(expr: &IdedExpr, backends: &[&str]) -> Result<Reads, String> {
    let mut walk = Walk {
        backends,
        bound: Vec::new(),
        reads: Reads::default(),
    };
    walk.expr(expr)?;
    walk.reads.backends.sort_by_key(|b| b.index);
    Ok(walk.reads)
}

/// `NAME` when `expr` is the free identifier `NAME`.
fn ident(expr: &IdedExpr) -> Option<&str> {
    match &expr.expr {
        Expr::Ident(name) => Some(name),
        _ => None,
    }
}

/// `(operand, field)` when `expr` is `operand.field` (or `has(operand.field)`).
fn select(expr: &IdedExpr) -> Option<(&IdedExpr, &str)> {
    match &expr.expr {
        Expr::Select(s) => Some((&s.operand, &s.field)),
        _ => None,
    }
}

impl<'a> Walk<'a> {
    fn is_free(&self, name: &str) -> bool {
        !self.bound.contains(&name)
    }

    fn backend(&mut self, name: &str) -> Result<&mut BackendRead, String> {
        let Some(index) = self.backends.iter().position(|b| *b == name) else {
            return Err(self.unknown(name));
        };
        let reads = &mut self.reads.backends;
        let at = match reads.iter().position(|r| r.index == index) {
            Some(at) => at,
            None => {
                reads.push(BackendRead {
                    index,
                    name: name.to_string(),
                    bare: false,
                    responses: false,
                    responses_body: false,
                    headers: Vec::new(),
                });
                reads.len() - 1
            }
        };
        Ok(&mut reads[at])
    }

    fn unknown(&self, name: &str) -> String {
        let mut known = vec![REQUEST, RESPONSES];
        known.extend(self.backends);
        format!(
            "\"{name}\" is not a name this condition can read; use one of: {}",
            known.join(", ")
        )
    }

    /// `responses.NAME` (the backend's name) when `expr` is that.
    fn responses_entry(&self, expr: &'a IdedExpr) -> Option<&'a str> {
        let (operand, name) = select(expr)?;
        (ident(operand) == Some(RESPONSES) && self.is_free(RESPONSES)).then_some(name)
    }

    fn header(&mut self, backend: &str, header: &str) -> Result<(), String> {
        let bad = || {
            format!(
                "responses.{backend}.headers['{header}']: a response header is named in lower case, such as 'etag'"
            )
        };
        if header.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad());
        }
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| bad())?;
        let read = self.backend(backend)?;
        read.responses = true;
        if !read.headers.contains(&name) {
            read.headers.push(name);
        }
        Ok(())
    }

    /// The forms `responses.NAME.…` may take; `Ok(false)` when `expr` is none of them.
    fn responses(&mut self, expr: &'a IdedExpr) -> Result<bool, String> {
        // responses.NAME.headers['etag']
        if let Expr::Call(call) = &expr.expr
            && call.func_name == "_[_]"
            && let [target, key] = call.args.as_slice()
            && let Some((entry, "headers")) = select(target)
            && let Some(backend) = self.responses_entry(entry)
        {
            return match &key.expr {
                Expr::Literal(LiteralValue::String(h)) => {
                    self.header(backend, h.inner()).map(|()| true)
                }
                _ => Err(format!(
                    "responses.{backend}.headers[…] must name its header as a string, such as responses.{backend}.headers['etag']"
                )),
            };
        }
        let Some((operand, field)) = select(expr) else {
            return Ok(false);
        };
        if let Some((entry, "headers")) = select(operand)
            && let Some(backend) = self.responses_entry(entry)
        {
            // responses.NAME.headers.etag
            return self.header(backend, field).map(|()| true);
        }
        if let Some(backend) = self.responses_entry(operand) {
            let read = self.backend(backend)?;
            read.responses = true;
            return match field {
                "status" => Ok(true),
                "body" => {
                    read.responses_body = true;
                    Ok(true)
                }
                "headers" => Err(format!(
                    "responses.{backend}.headers is read one header at a time, such as responses.{backend}.headers['etag']"
                )),
                _ => Err(format!(
                    "responses.{backend}.{field}: an answer has status, headers and body"
                )),
            };
        }
        if ident(operand) == Some(RESPONSES) && self.is_free(RESPONSES) {
            self.backend(field)?;
            return Err(format!(
                "responses.{field} is read by its status, headers['NAME'] or body, such as responses.{field}.status"
            ));
        }
        Ok(false)
    }

    fn expr(&mut self, expr: &'a IdedExpr) -> Result<(), String> {
        if self.responses(expr)? {
            return Ok(());
        }
        match &expr.expr {
            Expr::Unspecified | Expr::Literal(_) => Ok(()),
            Expr::Ident(name) if !self.is_free(name) => Ok(()),
            Expr::Ident(name) if name == REQUEST => {
                self.reads.request = field::ALL;
                Ok(())
            }
            Expr::Ident(name) if name == AUTH => {
                self.reads.auth = true;
                Ok(())
            }
            Expr::Select(s) if ident(&s.operand) == Some(AUTH) && self.is_free(AUTH) => {
                if !matches!(s.field.as_str(), "sub" | "provider" | "claims") {
                    return Err(format!(
                        "auth.{}: the identity has sub, provider and claims",
                        s.field
                    ));
                }
                self.reads.auth = true;
                Ok(())
            }
            Expr::Ident(name) if name == CLIENT_CERT => {
                self.reads.client_cert = true;
                Ok(())
            }
            Expr::Select(s)
                if ident(&s.operand) == Some(CLIENT_CERT) && self.is_free(CLIENT_CERT) =>
            {
                if !matches!(s.field.as_str(), "subject" | "fingerprint" | "dns" | "uri") {
                    return Err(format!(
                        "client_cert.{}: the client certificate has subject, fingerprint, dns and uri",
                        s.field
                    ));
                }
                self.reads.client_cert = true;
                Ok(())
            }
            Expr::Ident(name) if name == RESPONSES => {
                Err("responses is read by backend, such as responses.NAME.status".to_string())
            }
            Expr::Ident(name) => {
                self.backend(name)?.bare = true;
                Ok(())
            }
            Expr::Select(s) if ident(&s.operand) == Some(REQUEST) && self.is_free(REQUEST) => {
                let bit = field::named(&s.field).ok_or_else(|| {
                    format!(
                        "request.{}: the request has method, params, query, headers and body",
                        s.field
                    )
                })?;
                self.reads.request |= bit;
                Ok(())
            }
            Expr::Select(s) => self.expr(&s.operand),
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    self.expr(target)?;
                }
                call.args.iter().try_for_each(|a| self.expr(a))
            }
            Expr::List(list) => list.elements.iter().try_for_each(|e| self.expr(e)),
            Expr::Map(map) => map.entries.iter().try_for_each(|e| self.entry(&e.expr)),
            Expr::Struct(s) => s.entries.iter().try_for_each(|e| self.entry(&e.expr)),
            Expr::Comprehension(c) => {
                self.expr(&c.iter_range)?;
                self.expr(&c.accu_init)?;
                let depth = self.bound.len();
                self.bound.push(&c.iter_var);
                self.bound.extend(c.iter_var2.as_deref());
                self.bound.push(&c.accu_var);
                let inner = [&c.loop_cond, &c.loop_step, &c.result]
                    .into_iter()
                    .try_for_each(|e| self.expr(e));
                self.bound.truncate(depth);
                inner
            }
        }
    }

    fn entry(&mut self, entry: &'a EntryExpr) -> Result<(), String> {
        match entry {
            EntryExpr::StructField(f) => self.expr(&f.value),
            EntryExpr::MapEntry(e) => {
                self.expr(&e.key)?;
                self.expr(&e.value)
            }
        }
    }
}
