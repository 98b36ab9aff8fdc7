//! Unit tests of template parsing and rendering.

use super::*;
use serde_json::json;

fn params(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn render(t: &str, route: &str, path: &str, query: Option<&str>) -> Result<String, RenderError> {
    render_mode(t, route, path, query, TemplateMode::Backend)
}

fn render_mode(
    t: &str,
    route: &str,
    path: &str,
    query: Option<&str>,
    mode: TemplateMode,
) -> Result<String, RenderError> {
    let mut router = matchit::Router::new();
    router.insert(route, ()).unwrap();
    let m = router.at(path).unwrap();
    let names: Vec<String> = m.params.iter().map(|(k, _)| k.to_string()).collect();
    let tpl = Template::parse(t, &Scope::params(&names), mode).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-user", "a b/c".parse().unwrap());
    tpl.render(
        "http://up",
        &RenderInput::request(&http::Method::GET, &m.params, query, &headers),
    )
}

const BACKENDS: &[&str] = &["user", "list"];

/// Renders `t` of a backend with `{item}` in scope, with `user`'s answer `answer`.
fn render_answer(
    t: &str,
    answer: Option<Value>,
    item: Option<Value>,
) -> Result<String, RenderError> {
    let scope = Scope {
        params: &[],
        backends: BACKENDS,
        item: true,
    };
    let tpl = Template::parse(t, &scope, TemplateMode::Backend).unwrap();
    let headers = HeaderMap::new();
    let params = matchit::Params::new();
    let answers = [answer.map(Answered::ok), None];
    tpl.render(
        "http://up",
        &RenderInput {
            method: &http::Method::GET,
            params: &params,
            query: None,
            headers: &headers,
            body: None,
            answers: &answers,
            item: item.as_ref(),
            auth: None,
            client_cert: None,
        },
    )
}

fn missing(what: &str, problem: Problem, from_request: bool) -> Result<String, RenderError> {
    Err(RenderError {
        what: what.into(),
        problem,
        from_request,
    })
}

#[test]
fn renders_params_query_and_headers() {
    assert_eq!(
        render("/users/{id}", "/u/{id}", "/u/42", None).unwrap(),
        "http://up/users/42"
    );
    assert_eq!(
        render(
            "/o?user={id}&limit={query.limit}",
            "/u/{id}",
            "/u/7",
            Some("limit=5&x=1")
        )
        .unwrap(),
        "http://up/o?user=7&limit=5"
    );
    assert_eq!(
        render("/h/{header.x-user}", "/u/{id}", "/u/7", None).unwrap(),
        "http://up/h/a%20b%2Fc"
    );
}

#[test]
fn values_cannot_change_the_path() {
    assert_eq!(
        render("/users/{id}", "/a/{id}", "/a/..%2Fadmin", None).unwrap(),
        "http://up/users/..%2Fadmin"
    );
    assert_eq!(
        render("/users/{id}", "/a/{id}", "/a/..", None),
        missing("route parameter id", Problem::Unusable, true)
    );
    assert_eq!(
        render("/users/{id}", "/a/{id}", "/a/%2e%2e", None),
        missing("route parameter id", Problem::Unusable, true)
    );
    assert_eq!(
        render("/x?q={query.q}", "/a", "/a", Some("q=1%262%23x%3Dy")).unwrap(),
        "http://up/x?q=1%262%23x%3Dy"
    );
    assert_eq!(
        render("/f/{rest}", "/a/{*rest}", "/a/b/c", None).unwrap(),
        "http://up/f/b%2Fc"
    );
}

#[test]
fn missing_values() {
    assert_eq!(
        render("/x?l={query.limit}", "/a", "/a", Some("other=1")),
        missing("query parameter limit", Problem::Missing, true)
    );
    assert_eq!(
        render("/x?l={query.limit}", "/a", "/a", None),
        missing("query parameter limit", Problem::Missing, true)
    );
    assert_eq!(
        render("/x/{query.q}", "/a", "/a", Some("q=")),
        missing("query parameter q", Problem::Unusable, true)
    );
}

#[test]
fn proxy_mode_keeps_rest_but_refuses_dot_segments() {
    let p = TemplateMode::Proxy;
    assert_eq!(
        render_mode("/{rest}", "/f/{*rest}", "/f/a%20b/c.txt", None, p).unwrap(),
        "http://up/a%20b/c.txt"
    );
    assert!(render_mode("/{rest}", "/f/{*rest}", "/f/a/../../admin", None, p).is_err());
    assert!(render_mode("/{rest}", "/f/{*rest}", "/f/a/%2E%2E/admin", None, p).is_err());
}

#[test]
fn proxy_mode_encodes_a_header_value_as_one_segment() {
    // Found by fuzz/fuzz_targets/template.rs: a header's value was copied as it came, so
    // its `/` added segments and its spaces or control bytes made the URL invalid.
    let p = TemplateMode::Proxy;
    assert_eq!(
        render_mode("/t/{header.x-user}/{rest}", "/f/{*rest}", "/f/x", None, p).unwrap(),
        "http://up/t/a%20b%2Fc/x"
    );
}

#[test]
fn parse_errors() {
    let names = params(&["id"]);
    let ps = &Scope::params(&names);
    let b = TemplateMode::Backend;
    assert_eq!(
        Template::parse("/u/{uid}", ps, b).unwrap_err(),
        "{uid} is not a parameter of the route path; route parameters: id"
    );
    assert_eq!(
        Template::parse("/u/{x}", &Scope::params(&[]), b).unwrap_err(),
        "{x} is not a parameter of the route path; the route path has no parameters"
    );
    assert_eq!(
        Template::parse("u/{id}", ps, b).unwrap_err(),
        "\"u/{id}\" must start with \"/\""
    );
    assert_eq!(
        Template::parse("/u/{id", ps, b).unwrap_err(),
        "unclosed \"{\" in \"/u/{id\""
    );
    assert!(Template::parse("/u/}", ps, b).is_err());
    assert!(Template::parse("/u/{header.bad name}", ps, b).is_err());
    assert_eq!(
        Template::parse("/u/{user.city}", ps, b).unwrap_err(),
        "{user.city}: no backend \"user\" in this route; only an aggregate backend's path can read another backend's answer"
    );
    assert!(Template::parse("/u#frag", ps, b).is_err());
    // Found by fuzz/fuzz_targets/template.rs: a fragment before a placeholder passed.
    assert_eq!(
        Template::parse("/u#frag/{id}", ps, b).unwrap_err(),
        "\"/u#frag/{id}\" must not contain a fragment (#)"
    );
    assert!(Template::parse("/u/{id}#/{id}", ps, TemplateMode::Proxy).is_err());
}

#[test]
fn query_values_are_decoded_once() {
    assert_eq!(
        render("/x/{query.q}", "/a", "/a", Some("q=%252F")).unwrap(),
        "http://up/x/%252F"
    );
    assert_eq!(
        render("/o?user={id}", "/u/{id}", "/u/a%20b", None).unwrap(),
        "http://up/o?user=a%20b"
    );
}

#[test]
fn answers_substitute_scalars_as_text() {
    let user = json!({"address": {"city": "São Paulo/SP"}, "id": 7, "vip": true, "tags": ["a"], "none": null, "ratio": 1.5});
    let r = |t: &str| render_answer(t, Some(user.clone()), None);
    assert_eq!(
        r("/w/{user.address.city}").unwrap(),
        "http://up/w/S%C3%A3o%20Paulo%2FSP"
    );
    assert_eq!(
        r("/w?c={user.address.city}").unwrap(),
        "http://up/w?c=S%C3%A3o%20Paulo%2FSP"
    );
    assert_eq!(
        r("/u/{user.id}/{user.vip}/{user.ratio}").unwrap(),
        "http://up/u/7/true/1.5"
    );
    assert_eq!(r("/t/{user.tags.0}").unwrap(), "http://up/t/a");
    // JSON text is never percent-decoded: `%2F` is a literal percent sign.
    let odd = json!({"name": "a%2F..", "dot": ".."});
    assert_eq!(
        render_answer("/n/{user.name}", Some(odd.clone()), None).unwrap(),
        "http://up/n/a%252F.."
    );
    assert_eq!(
        render_answer("/n/{user.dot}", Some(odd), None),
        missing("user.dot", Problem::Unusable, false)
    );
}

#[test]
fn answers_without_text_are_missing() {
    let user = json!({"address": {"city": "Oslo"}, "tags": ["a"], "none": null});
    let r = |t: &str| render_answer(t, Some(user.clone()), None);
    assert_eq!(
        r("/w/{user.address}"),
        missing("user.address", Problem::NotText("an object"), false)
    );
    assert_eq!(
        r("/w/{user.tags}"),
        missing("user.tags", Problem::NotText("an array"), false)
    );
    assert_eq!(
        r("/w/{user.none}"),
        missing("user.none", Problem::NotText("null"), false)
    );
    assert_eq!(
        r("/w/{user.zip}"),
        missing("user.zip", Problem::Missing, false)
    );
    assert_eq!(
        r("/w/{user.tags.5}"),
        missing("user.tags.5", Problem::Missing, false)
    );
    // The backend failed: it has no answer.
    assert_eq!(
        render_answer("/w/{user.address.city}", None, None),
        missing("user.address.city", Problem::Missing, false)
    );
    assert_eq!(
        missing("user.address", Problem::NotText("an object"), false)
            .unwrap_err()
            .to_string(),
        "user.address is an object, not a string, number or boolean"
    );
}

#[test]
fn items_substitute_like_answers() {
    assert_eq!(
        render_answer("/u/{item}", None, Some(json!(42))).unwrap(),
        "http://up/u/42"
    );
    assert_eq!(
        render_answer("/u/{item.id}", None, Some(json!({"id": "x y"}))).unwrap(),
        "http://up/u/x%20y"
    );
    assert_eq!(
        render_answer("/u/{item.id}", None, Some(json!(3))),
        missing("item.id", Problem::Missing, false)
    );
    assert_eq!(
        render_answer("/u/{item}", None, Some(json!({"id": 1}))),
        missing("item", Problem::NotText("an object"), false)
    );
}

#[test]
fn references_are_listed() {
    let scope = Scope {
        params: &[],
        backends: BACKENDS,
        item: false,
    };
    let t = Template::parse(
        "/a/{list.x}/{user.y}?q={query.q}",
        &scope,
        TemplateMode::Backend,
    )
    .unwrap();
    assert_eq!(t.answers_read().collect::<Vec<_>>(), vec![1, 0]);
    assert!(!t.reads_item());
}

#[test]
fn reference_parse_errors() {
    let names = params(&["id", "item"]);
    let scope = Scope {
        params: &names,
        backends: BACKENDS,
        item: false,
    };
    let parse = |t: &str| Template::parse(t, &scope, TemplateMode::Backend).unwrap_err();
    assert_eq!(
        parse("/w/{usr.city}"),
        "{usr.city}: no backend \"usr\" in this route; write {BACKEND.path} with a backend of this route (user, list), or {query.NAME} or {header.NAME}"
    );
    assert_eq!(
        parse("/w/{user}"),
        "{user} is a whole answer; name one of its fields, such as {user.id}"
    );
    assert_eq!(
        parse("/w/{user.a..b}"),
        "{user.a..b}: \"a..b\" is not a dotted path; write one such as \"data.items\" or \"items.0\""
    );
    assert_eq!(
        parse("/w/{item.id}"),
        "{item.id}: no backend \"item\" in this route; {item} is the element of a for_each; set for_each = \"BACKEND.path\" on this backend"
    );
    // Without for_each, a route parameter named item is just that.
    assert!(Template::parse("/w/{item}", &scope, TemplateMode::Backend).is_ok());
    let no_item = Scope {
        params: &[],
        backends: BACKENDS,
        item: false,
    };
    assert_eq!(
        Template::parse("/w/{item}", &no_item, TemplateMode::Backend).unwrap_err(),
        "{item} is the element of a for_each; set for_each = \"BACKEND.path\" on this backend"
    );
}
