//! Unit tests of header value templates and the new sources (`{body}`, `{responses}`).

use super::*;
use http::HeaderValue;
use serde_json::json;

const BACKENDS: &[&str] = &["user", "order"];

fn scope(item: bool) -> Scope<'static> {
    Scope {
        params: &[],
        backends: BACKENDS,
        item,
    }
}

fn order() -> Answered {
    let mut headers = HeaderMap::new();
    headers.insert("location", HeaderValue::from_static("/orders/7"));
    Answered {
        body: json!({"id": 7, "total": 12.5, "tags": ["a"]}),
        status: StatusCode::CREATED,
        headers,
    }
}

/// Renders header template `t` with client body `body`, the client header
/// `x-in: <header>`, `user`'s answer `{"tenant": "acme"}` and `order`'s [`order`].
fn header(t: &str, body: Option<Value>, header: &[u8]) -> Result<HeaderValue, RenderError> {
    let tpl = TextTemplate::parse_header(t, &scope(false)).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-in", HeaderValue::from_bytes(header).unwrap());
    let params = matchit::Params::new();
    let answers = [
        Some(Answered::ok(json!({"tenant": "acme", "n": null}))),
        Some(order()),
    ];
    tpl.render(&RenderInput {
        method: &Method::POST,
        params: &params,
        query: Some("q=a%0Db"),
        headers: &headers,
        body: body.as_ref(),
        answers: &answers,
        item: None,
        auth: None,
        client_cert: None,
    })
}

#[test]
fn header_values_interpolate_every_source_as_text() {
    let body = Some(json!({"user": {"id": 42, "admin": true, "name": "é"}}));
    let got = |t: &str| header(t, body.clone(), b"in").unwrap();
    assert_eq!(got("t-{user.tenant}"), "t-acme");
    assert_eq!(got("{body.user.id}/{body.user.admin}"), "42/true");
    assert_eq!(got("{responses.order.status}"), "201");
    assert_eq!(got("<{responses.order.headers.location}>"), "</orders/7>");
    assert_eq!(got("{header.x-in} {order.total}"), "in 12.5");
    assert_eq!(got("plain"), "plain");
    assert_eq!(got(""), "");
    assert_eq!(got("{{literal}} {{{user.tenant}}}"), "{literal} {acme}");
    assert_eq!(got("{body.user.name}").as_bytes(), "é".as_bytes());
}

#[test]
fn header_values_cannot_carry_cr_lf_or_nul() {
    for bad in ["a\r\nx-evil: 1", "a\nb", "a\rb", "a\0b", "\u{7f}"] {
        let body = Some(json!({ "v": bad }));
        let e = header("x {body.v}", body, b"in").unwrap_err();
        assert_eq!(e.problem, Problem::NotHeaderValue, "{bad:?}");
        assert_eq!(e.code(), "invalid_value");
        assert_eq!(e.what, "body.v");
        assert!(e.from_request);
    }
    // The query value decodes to a CR.
    let e = header("{query.q}", None, b"in").unwrap_err();
    assert_eq!(
        (e.problem, e.what.as_str()),
        (Problem::NotHeaderValue, "query parameter q")
    );
    // A tab is header text.
    let body = Some(json!({ "v": "a\tb" }));
    assert_eq!(header("{body.v}", body, b"in").unwrap(), "a\tb");
    // Literals are checked at load.
    let e = TextTemplate::parse_header("a\r\nb: c", &scope(false)).unwrap_err();
    assert!(e.contains("control character"), "{e}");
}

#[test]
fn missing_values_name_their_source() {
    let e = header("{body.user.id}", None, b"in").unwrap_err();
    assert_eq!(
        (e.what.as_str(), e.problem, e.from_request),
        ("body.user.id", Problem::Missing, true)
    );
    assert_eq!(e.code(), "missing_value");
    let e = header("{body.nope}", Some(json!({})), b"in").unwrap_err();
    assert_eq!(e.problem, Problem::Missing);
    let e = header("{responses.order.headers.etag}", None, b"in").unwrap_err();
    assert_eq!(
        (e.what.as_str(), e.from_request),
        ("responses.order.headers.etag", false)
    );
    let e = header("{user.n}", None, b"in").unwrap_err();
    assert_eq!(e.problem, Problem::NotText("null"));
    let e = header("{order.tags}", None, b"in").unwrap_err();
    assert_eq!(e.problem, Problem::NotText("an array"));
    let e = header("{body}", Some(json!({})), b"in").unwrap_err();
    assert_eq!(e.problem, Problem::NotText("an object"));
}

#[test]
fn new_sources_parse_and_are_listed() {
    let tpl = TextTemplate::parse_header(
        "{responses.order.headers.ETag}{responses.user.status}{body.a}{order.id}",
        &scope(false),
    )
    .unwrap();
    let read: Vec<usize> = tpl.sources().filter_map(Source::answer_read).collect();
    assert_eq!(read, [1, 0, 1]);
    let headers: Vec<(usize, &str)> = tpl
        .sources()
        .filter_map(Source::header_read)
        .map(|(b, h)| (b, h.as_str()))
        .collect();
    assert_eq!(headers, [(1, "etag")]);
    // A path template reads them too.
    let path = Template::parse(
        "/o/{body.id}/{responses.order.status}",
        &scope(false),
        TemplateMode::Backend,
    )
    .unwrap();
    assert!(path.reads_body());
    assert_eq!(path.answers_read().collect::<Vec<_>>(), [1]);
}

#[test]
fn bad_placeholders_are_refused_with_a_fix() {
    let err = |t: &str| TextTemplate::parse_header(t, &scope(false)).unwrap_err();
    assert!(err("{responses.shop.status}").contains("no backend \"shop\""));
    assert!(err("{responses.order}").contains("{responses.BACKEND.status}"));
    assert!(err("{responses.order.body}").contains("{responses.BACKEND.headers.NAME}"));
    assert!(err("{responses.order.headers.a b}").contains("not a valid header name"));
    assert!(err("{body.}").contains("dotted path"));
    assert!(err("a } b").contains("\"}}\" for a literal"));
    assert!(err("a { b").contains("unclosed"));
    // On a proxy route (no backends) the body and responses are not sources.
    let proxy = Scope::params(&[]);
    assert!(TextTemplate::parse_header("{body.a}", &proxy).is_err());
    // A route parameter named body wins, as for the for_each item.
    let params = ["body".to_string()];
    let with_param = Scope {
        params: &params,
        backends: BACKENDS,
        item: false,
    };
    let tpl = TextTemplate::parse_header("{body}", &with_param).unwrap();
    assert_eq!(tpl.sources().next(), Some(&Source::Param("body".into())));
}

#[test]
fn route_parameters_are_decoded_in_text() {
    let mut router = matchit::Router::new();
    router.insert("/o/{id}", ()).unwrap();
    let m = router.at("/o/a%20b%0A").unwrap();
    let params = ["id".to_string()];
    let s = Scope {
        params: &params,
        backends: BACKENDS,
        item: false,
    };
    let headers = HeaderMap::new();
    let input = RenderInput::request(&Method::GET, &m.params, None, &headers);
    let ok = TextTemplate::parse_header("x{id}", &s).unwrap();
    let e = ok.render(&input).unwrap_err();
    assert_eq!(e.problem, Problem::NotHeaderValue);
    let m = router.at("/o/a%20b").unwrap();
    let input = RenderInput::request(&Method::GET, &m.params, None, &headers);
    assert_eq!(ok.render(&input).unwrap(), "xa b");
}
