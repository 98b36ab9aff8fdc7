//! Backend conditions: `when = "user.plan == 'pro'"`, an expression of the Common
//! Expression Language (CEL, as Envoy and Kubernetes use for policies) deciding whether an
//! aggregate backend is called at all.
//!
//! A condition is compiled once, when the config loads ([`Condition::compile`]): a syntax
//! error is reported with its line and column, and every name it reads must be one it can
//! read:
//!
//! - `request`: the client's request, `request.method` (`"POST"`), `request.params`,
//!   `request.query` (the first value of each name), `request.headers` (lower-case names;
//!   repeated headers joined with `, `) and `request.body` (the JSON body, absent when
//!   there is none);
//! - a backend of the route by name: its answer's JSON body (`size(cart.items) > 0`);
//! - `responses.NAME.status`, `responses.NAME.headers['etag']` and `responses.NAME.body`:
//!   a backend's answer with its status and the response headers conditions name;
//! - `auth.sub`, `auth.provider` and `auth.claims` (a map): the identity the route's
//!   `auth` proved; `auth` is `null` on an anonymous request (`auth_optional`);
//! - `client_cert.subject` (RFC 4514), `client_cert.fingerprint` (SHA-256, lowercase
//!   hex), `client_cert.dns` and `client_cert.uri` (lists: the subject alternative
//!   names, a SPIFFE id among the URIs): the certificate the client presented and the
//!   listener verified (`[server.tls] client_ca`); `null` without one
//!   (`client_auth = "optional"`).
//!
//! Compiling also records what the condition reads, so that the route waits for those
//! backends' answers before deciding, keeps the response headers it names, and reads the
//! request body only when the condition needs it.
//!
//! Per request, [`Condition::evaluate`] binds only the variables the expression reads,
//! converting those answers from JSON to CEL values, and runs the program. A result that
//! is not a boolean, a missing field, a type error or a backend with no answer (it
//! failed) is a [`ConditionError`]: the backend fails with `condition_failed` rather
//! than being silently skipped or called.

mod analyze;
mod claims;
mod convert;
mod json;

pub use claims::ClaimsCondition;

use crate::template::RenderInput;
use analyze::BackendRead;
use cel::{Context, Env, Program, Value};
use http::HeaderName;
use std::sync::{Arc, LazyLock};

/// The standard CEL library, shared by every evaluation: a context made from it costs a
/// reference count, not a new function table.
static STDLIB: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// A compiled `when` expression and what it reads.
#[derive(Debug, Clone)]
pub struct Condition {
    source: String,
    program: Arc<Program>,
    /// Bits of `analyze::field`: the request fields read.
    request: u8,
    /// The backends read, in the route's order.
    backends: Vec<BackendRead>,
    /// Whether it reads `auth`, the request's identity.
    auth: bool,
    /// Whether it reads `client_cert`, the connection's client certificate.
    client_cert: bool,
}

/// Conditions are equal when written alike: the rest is derived from the text.
impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// Why a condition could not be decided for one request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    /// A backend the condition reads has no answer: it failed.
    #[error("when reads {0}, which has no answer (it failed)")]
    NoAnswer(String),
    /// The expression gave a value that is not a boolean.
    #[error("when gave a {0}, not a boolean")]
    NotBool(String),
    /// Evaluating failed: a missing key, a type error, a function's error.
    #[error("when failed: {0}")]
    Evaluation(String),
}

impl Condition {
    /// Compiles `expr` for a backend of a route whose backends are `backends`, in order.
    pub fn compile(expr: &str, backends: &[&str]) -> Result<Self, String> {
        if expr.trim().is_empty() {
            return Err("is empty; write a CEL expression such as \"user.plan == 'pro'\"".into());
        }
        let program = Program::compile(expr).map_err(|errors| {
            let described: Vec<String> = errors
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "syntax error at line {}, column {}: {}",
                        e.pos.0, e.pos.1, e.msg
                    )
                })
                .collect();
            described.join("; ")
        })?;
        let reads = analyze::reads(program.expression(), backends)?;
        Ok(Self {
            source: expr.to_string(),
            program: Arc::new(program),
            request: reads.request,
            backends: reads.backends,
            auth: reads.auth,
            client_cert: reads.client_cert,
        })
    }

    /// The expression as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The backends (by index) whose answers the condition reads.
    pub fn answers_read(&self) -> impl Iterator<Item = usize> + '_ {
        self.backends.iter().map(|b| b.index)
    }

    /// Whether the condition reads the request's identity (`auth`).
    pub fn reads_auth(&self) -> bool {
        self.auth
    }

    /// Whether the condition reads the client certificate (`client_cert`).
    pub fn reads_client_cert(&self) -> bool {
        self.client_cert
    }

    /// Whether the condition reads `request.body` (or the whole `request`).
    pub fn reads_request_body(&self) -> bool {
        self.request & analyze::field::BODY != 0
    }

    /// The response headers of backend `index` that the condition reads.
    pub fn headers_read(&self, index: usize) -> &[HeaderName] {
        self.backends
            .iter()
            .find(|b| b.index == index)
            .map_or(&[], |b| b.headers.as_slice())
    }

    /// Decides the condition for one request.
    pub fn evaluate(&self, input: &RenderInput<'_>) -> Result<bool, ConditionError> {
        let mut context = Context::with_env(Arc::clone(&STDLIB));
        if self.request != 0 {
            context.add_variable_as_val(analyze::REQUEST, convert::request(input));
        }
        if self.auth {
            context.add_variable_as_val(analyze::AUTH, convert::identity(input.auth));
        }
        if self.client_cert {
            context.add_variable_as_val(
                analyze::CLIENT_CERT,
                convert::client_cert(input.client_cert),
            );
        }
        let mut responses = Vec::new();
        for read in &self.backends {
            let answer = input
                .answers
                .get(read.index)
                .and_then(Option::as_ref)
                .ok_or_else(|| ConditionError::NoAnswer(read.name.clone()))?;
            if read.bare {
                context.add_variable_as_val(read.name.as_str(), json::json(&answer.body));
            }
            if read.responses {
                responses.push((read.name.as_str(), convert::response(read, answer)));
            }
        }
        if !responses.is_empty() {
            context.add_variable_as_val(analyze::RESPONSES, convert::map(responses));
        }
        match self.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBool(other.type_of().to_string())),
            Err(e) => Err(ConditionError::Evaluation(e.to_string())),
        }
    }
}

#[cfg(test)]
mod auth_tests;
#[cfg(test)]
mod tests;
