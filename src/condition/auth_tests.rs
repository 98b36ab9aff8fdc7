//! `when` conditions reading the request's identity: `auth.sub`, `auth.provider`,
//! `auth.claims`, and `null` on an anonymous request.

use super::*;
use crate::auth::Identity;
use http::{HeaderMap, Method};
use serde_json::{Value as Json, json};

fn identity() -> Identity {
    let Json::Object(claims) = json!({"sub": "ada", "plan": "pro", "org": {"seats": 12}}) else {
        unreachable!()
    };
    Identity::new("users".into(), &[], claims).unwrap()
}

fn eval(expr: &str, auth: Option<&Identity>) -> Result<bool, ConditionError> {
    let condition = Condition::compile(expr, &["user"]).unwrap();
    assert!(condition.reads_auth(), "{expr}");
    let (params, headers) = (matchit::Params::new(), HeaderMap::new());
    condition.evaluate(&RenderInput {
        auth,
        ..RenderInput::request(&Method::GET, &params, None, &headers)
    })
}

#[test]
fn a_condition_reads_the_identity() {
    let ada = identity();
    for expr in [
        "auth.sub == 'ada'",
        "auth.provider == 'users'",
        "auth.claims.plan == 'pro' && auth.claims.org.seats > 10",
        "has(auth.claims.org) && !has(auth.claims.trial)",
        "auth != null",
    ] {
        assert_eq!(eval(expr, Some(&ada)), Ok(true), "{expr}");
    }
    assert_eq!(eval("auth.sub == 'bob'", Some(&ada)), Ok(false));
}

#[test]
fn an_anonymous_request_has_a_null_identity() {
    assert_eq!(eval("auth == null", None), Ok(true));
    assert_eq!(eval("auth != null && auth.sub == 'ada'", None), Ok(false));
    // Reading through it is an error, as reading a missing field is.
    assert!(matches!(
        eval("auth.sub == 'ada'", None),
        Err(ConditionError::Evaluation(_))
    ));
}

#[test]
fn the_identity_has_sub_provider_and_claims_only() {
    let err = Condition::compile("auth.subject == 'ada'", &[]).unwrap_err();
    assert!(err.contains("sub, provider and claims"), "{err}");
    let plain = Condition::compile("user.plan == 'pro'", &["user"]).unwrap();
    assert!(!plain.reads_auth());
}
