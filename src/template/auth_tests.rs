//! Unit tests of the identity sources: `{auth.sub}`, `{auth.provider}` and
//! `{auth.claims.PATH}` in path, header and JSON body templates.

use super::*;
use crate::json_path::Path;
use serde_json::json;
use std::sync::Arc;

fn identity() -> Identity {
    let claims = json!({
        "sub": "ada/1",
        "tenant": "acme",
        "org": {"id": 7, "admin": true, "teams": ["a", "b"]},
        "gone": null,
    });
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    let to_headers = [(
        http::HeaderName::from_static("x-user-id"),
        Path::parse("sub").unwrap(),
    )];
    Identity::new(Arc::from("users"), &to_headers, claims).unwrap()
}

fn scope() -> Scope<'static> {
    Scope {
        params: &[],
        backends: &["user"],
        item: false,
    }
}

/// Renders with `auth` as the request's identity (or none: an anonymous request).
fn input<'a>(
    params: &'a matchit::Params<'a, 'a>,
    headers: &'a HeaderMap,
    auth: Option<&'a Identity>,
) -> RenderInput<'a> {
    RenderInput {
        auth,
        ..RenderInput::request(&Method::GET, params, None, headers)
    }
}

#[test]
fn a_path_writes_each_identity_value_as_one_segment() {
    let tpl = Template::parse(
        "/t/{auth.claims.tenant}/u/{auth.sub}?org={auth.claims.org.id}&by={auth.provider}",
        &scope(),
        TemplateMode::Backend,
    )
    .unwrap();
    assert!(tpl.reads_auth());
    let (params, headers, who) = (matchit::Params::new(), HeaderMap::new(), identity());
    let url = tpl.render("http://u", &input(&params, &headers, Some(&who)));
    // The subject's `/` cannot add a path segment.
    assert_eq!(url.unwrap(), "http://u/t/acme/u/ada%2F1?org=7&by=users");
}

#[test]
fn a_proxy_path_encodes_the_identity_too() {
    let tpl = Template::parse(
        "/users/{auth.sub}",
        &Scope::params(&[]),
        TemplateMode::Proxy,
    )
    .unwrap();
    let (params, headers, who) = (matchit::Params::new(), HeaderMap::new(), identity());
    let url = tpl.render("", &input(&params, &headers, Some(&who)));
    assert_eq!(url.unwrap(), "/users/ada%2F1");
}

#[test]
fn an_anonymous_request_misses_the_identity_as_any_missing_value() {
    let tpl = Template::parse("/u/{auth.sub}", &scope(), TemplateMode::Backend).unwrap();
    let (params, headers) = (matchit::Params::new(), HeaderMap::new());
    let err = tpl
        .render("http://u", &input(&params, &headers, None))
        .unwrap_err();
    assert_eq!(err.what, "auth.sub");
    assert_eq!(err.problem, Problem::Missing);
    assert!(
        err.from_request,
        "the client's to fix: it sent no credentials"
    );
    assert_eq!(err.code(), "missing_value");
    // A claim the token does not carry, or that is null, is missing too.
    let who = identity();
    for t in ["/u/{auth.claims.nope}", "/u/{auth.claims.gone}"] {
        let tpl = Template::parse(t, &scope(), TemplateMode::Backend).unwrap();
        let err = tpl
            .render("http://u", &input(&params, &headers, Some(&who)))
            .unwrap_err();
        assert!(err.from_request, "{t}");
    }
}

#[test]
fn a_header_template_writes_the_identity_as_text() {
    let tpl = TextTemplate::parse_header("{auth.provider}:{auth.sub}", &scope()).unwrap();
    let (params, headers, who) = (matchit::Params::new(), HeaderMap::new(), identity());
    let value = tpl.render(&input(&params, &headers, Some(&who))).unwrap();
    assert_eq!(value, "users:ada/1");
    let tpl = TextTemplate::parse_header("{auth.claims.org.id}", &scope()).unwrap();
    let value = tpl.render(&input(&params, &headers, Some(&who))).unwrap();
    assert_eq!(value, "7");
}

#[test]
fn a_body_template_keeps_each_claims_json_type() {
    let body = json!({
        "sub": "{auth.sub}",
        "by": "{auth.provider}",
        "org": "{auth.claims.org}",
        "admin": "{auth.claims.org.admin}",
        "teams": "{auth.claims.org.teams}",
        "label": "{auth.sub} of {auth.claims.tenant}",
    });
    let tpl = BodyTemplate::parse(&body, &scope()).unwrap();
    let (params, headers, who) = (matchit::Params::new(), HeaderMap::new(), identity());
    let bytes = tpl.render(&input(&params, &headers, Some(&who))).unwrap();
    let got: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        got,
        json!({
            "sub": "ada/1",
            "by": "users",
            "org": {"id": 7, "admin": true, "teams": ["a", "b"]},
            "admin": true,
            "teams": ["a", "b"],
            "label": "ada/1 of acme",
        })
    );
}

#[test]
fn an_auth_placeholder_must_name_what_it_reads() {
    for bad in [
        "/u/{auth}",
        "/u/{auth.subject}",
        "/u/{auth.claims}",
        "/u/{auth.claims.}",
    ] {
        let err = Template::parse(bad, &scope(), TemplateMode::Backend).unwrap_err();
        assert!(err.contains("auth"), "{bad}: {err}");
    }
    let err = Template::parse("/u/{auth.who}", &scope(), TemplateMode::Backend).unwrap_err();
    assert!(err.contains("{auth.claims.NAME}"), "{err}");
    // A route parameter named `auth` is still that parameter.
    let params = ["auth".to_string()];
    let tpl = Template::parse("/u/{auth}", &Scope::params(&params), TemplateMode::Backend);
    assert!(!tpl.unwrap().reads_auth());
}
