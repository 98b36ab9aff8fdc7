//! Unit tests of JSON body templates.

use super::*;
use http::HeaderValue;
use serde_json::json;

const BACKENDS: &[&str] = &["user", "order", "bulk"];

fn parse(body: Value) -> Result<BodyTemplate, BodyTemplateError> {
    let scope = Scope {
        params: &[],
        backends: BACKENDS,
        item: true,
    };
    BodyTemplate::parse(&body, &scope)
}

/// Renders `body` with client body `client`, `user` = `{"id": 42, ...}`, `order` with
/// status 201, and the for_each element `{"sku": "s-1", "qty": 2}`; the result parsed
/// back, so every test also checks the bytes are JSON.
fn render(body: Value, client: Option<Value>) -> Result<Value, RenderError> {
    let tpl = parse(body).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-user", HeaderValue::from_static("u-1"));
    let params = matchit::Params::new();
    let mut order = Answered::ok(json!({"id": "o-9", "lines": [1, 2]}));
    order.status = StatusCode::CREATED;
    order
        .headers
        .insert("location", HeaderValue::from_static("/o/9"));
    let user =
        json!({"id": 42, "name": "Ann", "pro": true, "address": {"city": "Oslo"}, "gone": null});
    let answers = [Some(Answered::ok(user)), Some(order), None];
    let item = json!({"sku": "s-1", "qty": 2});
    let bytes = tpl.render(&RenderInput {
        method: &Method::POST,
        params: &params,
        query: Some("coupon=SAVE%2210"),
        headers: &headers,
        body: client.as_ref(),
        answers: &answers,
        item: Some(&item),
        auth: None,
        client_cert: None,
    })?;
    Ok(serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&bytes))))
}

#[test]
fn a_lone_placeholder_keeps_its_json_type() {
    let got = render(
        json!({
            "id": "{user.id}",
            "pro": "{user.pro}",
            "address": "{user.address}",
            "lines": "{order.lines}",
            "gone": "{user.gone}",
            "status": "{responses.order.status}",
            "location": "{responses.order.headers.location}",
            "coupon": "{query.coupon}",
            "who": "{header.x-user}",
            "item": "{item}",
            "qty": "{item.qty}",
            "client": "{body}",
        }),
        Some(json!({"cart": [1, {"a": null}]})),
    )
    .unwrap();
    assert_eq!(
        got,
        json!({
            "id": 42,
            "pro": true,
            "address": {"city": "Oslo"},
            "lines": [1, 2],
            "gone": null,
            "status": 201,
            "location": "/o/9",
            "coupon": "SAVE\"10",
            "who": "u-1",
            "item": {"sku": "s-1", "qty": 2},
            "qty": 2,
            "client": {"cart": [1, {"a": null}]},
        })
    );
}

#[test]
fn text_around_placeholders_is_a_string() {
    let got = render(
        json!({"note": "order {order.id} for {user.name} ({user.id}, pro={user.pro})", "c": "{query.coupon}!"}),
        None,
    )
    .unwrap();
    assert_eq!(
        got,
        json!({"note": "order o-9 for Ann (42, pro=true)", "c": "SAVE\"10!"})
    );
    let e = render(json!({"n": "x{user.address}"}), None).unwrap_err();
    assert_eq!(e.problem, Problem::NotText("an object"));
}

#[test]
fn literals_are_sent_as_written() {
    let body = json!({"n": 1, "f": 2.5, "b": false, "z": null, "s": "plain \"q\" \\ \n", "a": [1, "x", {}], "{key}": "v", "k": "{{not}} a {{placeholder}}"});
    let mut expected = body.clone();
    expected["k"] = json!("{not} a {placeholder}");
    assert_eq!(render(body, None).unwrap(), expected);
    assert_eq!(
        render(json!("{body.a}"), Some(json!({"a": [3]}))).unwrap(),
        json!([3])
    );
    assert_eq!(render(json!(7), None).unwrap(), json!(7));
    assert_eq!(render(json!([]), None).unwrap(), json!([]));
}

#[test]
fn client_values_cannot_break_out_of_their_place() {
    let evil = [
        "\"}, \"admin\": true, \"x\": {\"",
        "}\r\n\r\nPOST /x HTTP/1.1",
        "\u{0}\u{1f}\\\"\\",
        "{user.id}",
        "é \u{2028} 😀",
    ];
    for value in evil {
        let client = Some(json!({"v": value}));
        let got = render(
            json!({"typed": "{body.v}", "text": "<{body.v}>", "admin": false}),
            client,
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"typed": value, "text": format!("<{value}>"), "admin": false})
        );
    }
    let big = "\"}".repeat(512 * 1024);
    let got = render(
        json!({"v": "{body.v}", "t": "a{body.v}"}),
        Some(json!({"v": big})),
    )
    .unwrap();
    assert_eq!(got["v"], json!(big));
    assert_eq!(got["t"].as_str().unwrap().len(), big.len() + 1);
}

#[test]
fn missing_values_fail_with_their_source() {
    let e = render(json!({"a": "{body.id}"}), None).unwrap_err();
    assert_eq!(
        (e.what.as_str(), e.problem, e.from_request),
        ("body.id", Problem::Missing, true)
    );
    assert_eq!(e.code(), "missing_value");
    let e = render(json!({"a": ["{bulk.id}"]}), None).unwrap_err();
    assert_eq!((e.what.as_str(), e.from_request), ("bulk.id", false));
    let e = render(json!("{responses.bulk.status}"), None).unwrap_err();
    assert_eq!(e.problem, Problem::Missing);
    let e = render(json!("{query.nope}"), None).unwrap_err();
    assert_eq!((e.problem, e.from_request), (Problem::Missing, true));
}

#[test]
fn parse_errors_name_their_place_in_the_body() {
    let e = parse(json!({"customer": {"ids": [1, "{usr.id}"]}})).unwrap_err();
    assert_eq!(e.at, ".customer.ids[1]");
    assert!(e.message.contains("no backend \"usr\""), "{}", e.message);
    let e = parse(json!("{nope}")).unwrap_err();
    assert_eq!(e.at, "");
    let e = parse(json!({"a": "x}"})).unwrap_err();
    assert!(e.message.contains("unmatched"), "{}", e.message);
}

#[test]
fn sources_are_listed_in_order() {
    let tpl = parse(json!({"a": "{order.id}", "b": ["x{responses.user.headers.etag}", "{body.k}"], "c": "{item.sku}"})).unwrap();
    let answers: Vec<usize> = tpl.sources().filter_map(Source::answer_read).collect();
    assert_eq!(answers, [1, 0]);
    assert!(tpl.sources().any(|s| matches!(s, Source::Body(_))));
    assert!(tpl.sources().any(|s| matches!(s, Source::Item(_))));
}

#[test]
fn escaping_matches_serde_json() {
    let all: String = (0u8..0x80).map(char::from).chain("é😀".chars()).collect();
    let mut out = vec![b'"'];
    json::escape_into(&mut out, &all);
    out.push(b'"');
    let back: String = serde_json::from_slice(&out).unwrap();
    assert_eq!(back, all);
}
