//! `when` conditions reading the request's identity: `auth.sub`, `auth.provider`,
//! `auth.claims`, and `null` on an anonymous request; and the connection's client
//! certificate: `client_cert.subject`, `.fingerprint`, `.dns`, `.uri`, `null` without one.

use super::*;
use crate::auth::Identity;
use crate::tls::client_cert::ClientCert;
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

fn cert() -> ClientCert {
    ClientCert {
        subject: "CN=billing,O=Example".into(),
        dns: vec!["billing.internal".into()],
        uri: vec!["spiffe://example.org/ns/prod/sa/billing".into()],
        fingerprint: "ab".repeat(32),
        header: http::HeaderValue::from_static("Hash=ab"),
    }
}

fn eval_cert(expr: &str, cert: Option<&ClientCert>) -> Result<bool, ConditionError> {
    let condition = Condition::compile(expr, &["user"]).unwrap();
    assert!(condition.reads_client_cert(), "{expr}");
    assert!(!condition.reads_auth(), "{expr}");
    let (params, headers) = (matchit::Params::new(), HeaderMap::new());
    condition.evaluate(&RenderInput {
        client_cert: cert,
        ..RenderInput::request(&Method::GET, &params, None, &headers)
    })
}

#[test]
fn a_condition_reads_the_client_certificate() {
    let billing = cert();
    for expr in [
        "client_cert.subject == 'CN=billing,O=Example'",
        "client_cert.subject.startsWith('CN=billing,')",
        "'spiffe://example.org/ns/prod/sa/billing' in client_cert.uri",
        "client_cert.uri.exists(u, u.startsWith('spiffe://example.org/ns/prod/'))",
        "size(client_cert.dns) == 1 && client_cert.dns[0] == 'billing.internal'",
        "client_cert != null",
    ] {
        assert_eq!(eval_cert(expr, Some(&billing)), Ok(true), "{expr}");
    }
    let fingerprint = format!("client_cert.fingerprint == '{}'", "ab".repeat(32));
    assert_eq!(eval_cert(&fingerprint, Some(&billing)), Ok(true));
    assert_eq!(
        eval_cert(
            "'spiffe://example.org/ns/dev/sa/billing' in client_cert.uri",
            Some(&billing)
        ),
        Ok(false)
    );
}

#[test]
fn a_connection_without_a_certificate_has_a_null_one() {
    assert_eq!(eval_cert("client_cert == null", None), Ok(true));
    assert_eq!(
        eval_cert(
            "client_cert != null && client_cert.subject == 'CN=billing'",
            None
        ),
        Ok(false)
    );
    assert!(matches!(
        eval_cert("client_cert.subject == 'CN=billing'", None),
        Err(ConditionError::Evaluation(_))
    ));
}

#[test]
fn the_certificate_has_subject_fingerprint_dns_and_uri_only() {
    let err = Condition::compile("client_cert.cn == 'billing'", &[]).unwrap_err();
    assert!(err.contains("subject, fingerprint, dns and uri"), "{err}");
    let plain = Condition::compile("user.plan == 'pro'", &["user"]).unwrap();
    assert!(!plain.reads_client_cert());
    // A comprehension's own variable of that name is not the certificate.
    let bound =
        Condition::compile("user.items.all(client_cert, client_cert > 0)", &["user"]).unwrap();
    assert!(!bound.reads_client_cert());
}
