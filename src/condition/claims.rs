//! A route's `require`: a CEL expression over the identity a request proved, such as
//! `claims.role == 'admin'` or `'dashboard:read' in claims.scope.split(' ')`.
//!
//! It reads two names: `claims` (the verified claims, a map: a JWT's payload, or
//! `{"sub": NAME}` for an API key) and `sub` (the subject, a string). Besides CEL's
//! standard functions it has the strings extension (`split`, `lowerAscii`, `trim`,
//! `replace`, `join`, ...), as cel-go's `ext.Strings()`. Compiled once when the config
//! loads; evaluated per request, the claims converted lazily (only the fields read).
//!
//! A result that is not a boolean, or an evaluation error (a missing claim, a type
//! error), is a [`ConditionError`]: the gateway refuses the request (403) rather than
//! let it through.

use super::ConditionError;
use super::json::json;
use crate::auth::Identity;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::{Context, Env, Program, Value, extensions};
use std::sync::{Arc, LazyLock};

/// The names a `require` expression reads.
const CLAIMS: &str = "claims";
const SUB: &str = "sub";

/// The standard library and the strings extension, shared by every evaluation.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    env.add_extension(extensions::strings)
        .expect("the strings extension declares nothing the standard library does");
    Arc::new(env)
});

/// A compiled `require` expression.
#[derive(Debug, Clone)]
pub struct ClaimsCondition {
    source: String,
    program: Arc<Program>,
    reads_claims: bool,
    reads_sub: bool,
}

/// Conditions are equal when written alike: the rest is derived from the text.
impl PartialEq for ClaimsCondition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl ClaimsCondition {
    /// Compiles `expr`: a syntax error with its line and column, or a name other than
    /// `claims` and `sub`, is an error.
    pub fn compile(expr: &str) -> Result<Self, String> {
        if expr.trim().is_empty() {
            return Err(
                "is empty; write a CEL expression over claims, such as \"claims.role == 'admin'\""
                    .into(),
            );
        }
        let program = ENV.compile(expr).map_err(|errors| {
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
        let mut free = Vec::new();
        free_names(program.expression(), &mut Vec::new(), &mut free);
        if let Some(name) = free.iter().find(|n| **n != CLAIMS && **n != SUB) {
            return Err(format!(
                "\"{name}\" is not a name require can read; use claims (the identity's claims, \
                 such as claims.role) or sub (its subject)"
            ));
        }
        let reads_claims = free.contains(&CLAIMS);
        let reads_sub = free.contains(&SUB);
        Ok(Self {
            source: expr.to_string(),
            program: Arc::new(program),
            reads_claims,
            reads_sub,
        })
    }

    /// The expression as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `identity` satisfies the expression.
    pub fn evaluate(&self, identity: &Identity) -> Result<bool, ConditionError> {
        let mut context = Context::with_env(Arc::clone(&ENV));
        if self.reads_claims {
            context.add_variable_as_val(CLAIMS, json(&identity.claims));
        }
        if self.reads_sub {
            context.add_variable_as_val(
                SUB,
                Box::new(cel::common::types::CelString::from(&*identity.subject)),
            );
        }
        match self.program.execute(&context) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::NotBool(other.type_of().to_string())),
            Err(e) => Err(ConditionError::Evaluation(e.to_string())),
        }
    }
}

/// The free names `expr` reads: identifiers not bound by a comprehension around them.
fn free_names<'a>(expr: &'a IdedExpr, bound: &mut Vec<&'a str>, out: &mut Vec<&'a str>) {
    match &expr.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) => {
            if !bound.contains(&name.as_str()) && !out.contains(&name.as_str()) {
                out.push(name);
            }
        }
        Expr::Select(s) => free_names(&s.operand, bound, out),
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                free_names(target, bound, out);
            }
            for a in &call.args {
                free_names(a, bound, out);
            }
        }
        Expr::List(list) => {
            for e in &list.elements {
                free_names(e, bound, out);
            }
        }
        Expr::Map(map) => map.entries.iter().for_each(|e| entry(&e.expr, bound, out)),
        Expr::Struct(s) => s.entries.iter().for_each(|e| entry(&e.expr, bound, out)),
        Expr::Comprehension(c) => {
            free_names(&c.iter_range, bound, out);
            free_names(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(&c.iter_var);
            bound.extend(c.iter_var2.as_deref());
            bound.push(&c.accu_var);
            for e in [&c.loop_cond, &c.loop_step, &c.result] {
                free_names(e, bound, out);
            }
            bound.truncate(depth);
        }
    }
}

fn entry<'a>(e: &'a EntryExpr, bound: &mut Vec<&'a str>, out: &mut Vec<&'a str>) {
    match e {
        EntryExpr::StructField(f) => free_names(&f.value, bound, out),
        EntryExpr::MapEntry(m) => {
            free_names(&m.key, bound, out);
            free_names(&m.value, bound, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(claims: serde_json::Value) -> Identity {
        let serde_json::Value::Object(claims) = claims else {
            panic!("an object")
        };
        Identity::new("users".into(), &[], claims).expect("a subject")
    }

    fn eval(expr: &str, claims: serde_json::Value) -> Result<bool, ConditionError> {
        ClaimsCondition::compile(expr)
            .expect("compiles")
            .evaluate(&identity(claims))
    }

    #[test]
    fn the_issues_examples_work() {
        let scoped = json!({"sub": "ann", "scope": "dashboard:read profile"});
        let expr = "'dashboard:read' in claims.scope.split(' ')";
        assert_eq!(eval(expr, scoped), Ok(true));
        let other = json!({"sub": "ann", "scope": "profile dashboard:reader"});
        assert_eq!(eval(expr, other), Ok(false));
        let admin = json!({"sub": "ann", "role": "admin"});
        assert_eq!(eval("claims.role == 'admin'", admin), Ok(true));
        let user = json!({"sub": "bob", "role": "user"});
        assert_eq!(eval("claims.role == 'admin'", user), Ok(false));
    }

    #[test]
    fn sub_nested_claims_and_comprehensions_are_read() {
        let c = json!({"sub": "ann", "org": {"id": 7}, "groups": ["a", "ops"]});
        assert_eq!(
            eval("sub == 'ann' && claims.org.id == 7", c.clone()),
            Ok(true)
        );
        assert_eq!(
            eval("claims.groups.exists(g, g == 'ops')", c.clone()),
            Ok(true)
        );
        assert_eq!(eval("has(claims.tenant)", c), Ok(false));
    }

    #[test]
    fn a_missing_claim_or_a_non_boolean_is_an_error_not_a_pass() {
        let c = json!({"sub": "ann"});
        assert!(matches!(
            eval("claims.role == 'admin'", c.clone()),
            Err(ConditionError::Evaluation(_))
        ));
        assert!(matches!(
            eval("claims.sub", c),
            Err(ConditionError::NotBool(_))
        ));
    }

    #[test]
    fn compile_errors_name_the_place_or_the_name() {
        let e = ClaimsCondition::compile("claims.role ==").unwrap_err();
        assert!(e.contains("syntax error at line 1, column"), "{e}");
        let e = ClaimsCondition::compile("request.method == 'GET'").unwrap_err();
        assert!(
            e.contains("\"request\" is not a name require can read"),
            "{e}"
        );
        assert!(
            ClaimsCondition::compile("  ")
                .unwrap_err()
                .contains("is empty")
        );
    }
}
