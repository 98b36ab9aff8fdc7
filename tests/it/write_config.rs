//! `fanout check` on write-call keys (`method`, `body`, `idempotent`, `headers`): each
//! problem with its place and fix, and what templates in bodies and headers compile to.

/// The problems `fanout check` reports for a route with these backends.
fn problems(methods: &str, backends: &str) -> Vec<String> {
    let toml = format!(
        "[upstreams.m]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"/r\"\nmethods = {methods}\n{backends}"
    );
    match fanout::config::compile(&toml, &fanout::config::Env::default()) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn write_keys_are_checked_with_their_place_and_fix() {
    let b = |keys: &str| {
        format!("[[routes.backends]]\nname = \"w\"\nupstream = \"m\"\npath = \"/w\"\n{keys}\n")
    };
    let post = r#"["POST"]"#;
    let one = |methods: &str, keys: &str| {
        let got = problems(methods, &b(keys));
        assert_eq!(got.len(), 1, "{keys}: {got:?}");
        got[0].clone()
    };
    assert_eq!(
        problems(
            post,
            &b("method = \"POST\"\nbody = { a = \"{body.a}\" }\nheaders = { x-a = \"{body.a}\" }")
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        one(post, "method = \"post\""),
        "routes[0].backends[0].method: \"post\" is not a backend method; write GET, POST, PUT, PATCH or DELETE, in capitals"
    );
    assert_eq!(
        one(post, "body = { a = 1 }"),
        "routes[0].backends[0].body: a GET carries no body; set method = \"POST\" (or PUT, PATCH, DELETE)"
    );
    let both = problems(
        post,
        &b("method = \"POST\"\nforward_body = true\nbody = { a = 1 }"),
    );
    assert!(
        both.contains(&"routes[0].backends[0].body: forward_body already sends the client's body; use either forward_body or body".to_string()),
        "{both:?}"
    );
    assert!(
        one(post, "method = \"PUT\"\nforward_body = true").starts_with(
            "routes[0].backends[0].method: forward_body sends the client's own method"
        )
    );
    assert_eq!(
        one(
            post,
            "method = \"POST\"\nbody = { customer = { ids = [\"{usr.id}\"] } }"
        )
        .split_once(": ")
        .unwrap()
        .0,
        "routes[0].backends[0].body.customer.ids[0]"
    );
    for header in [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "te",
    ] {
        let e = one(post, &format!("headers = {{ {header} = \"x\" }}"));
        assert!(
            e.starts_with(&format!(
                "routes[0].backends[0].headers.{header}: {header} is set by the gateway"
            )),
            "{e}"
        );
    }
    assert!(one(post, "headers = { \"a b\" = \"x\" }").contains("not a valid header name"));
    assert!(one(post, "headers = { x-a = \"a\\r\\nb\" }").contains("control character"));
    assert!(
        one(post, "headers = { x-a = \"{nope}\" }")
            .starts_with("routes[0].backends[0].headers.x-a: {nope}")
    );
    assert_eq!(
        one(post, "method = \"POST\"\ncache_ttl = \"5s\""),
        "routes[0].backends[0].cache_ttl: a POST is cached only with idempotent = true: set it if repeating the call is safe, or remove cache_ttl"
    );
    assert_eq!(
        problems(
            post,
            &b("method = \"POST\"\ncache_ttl = \"5s\"\nidempotent = true")
        ),
        Vec::<String>::new()
    );
    // Reading the client's body on a route that takes none.
    assert!(
        one(r#"["GET"]"#, "headers = { x-a = \"{body.a}\" }")
            .contains("add POST, PUT or PATCH to methods")
    );
    // Reserved names.
    for name in ["body", "responses", "request"] {
        let got = problems(
            post,
            &format!("[[routes.backends]]\nname = \"{name}\"\nupstream = \"m\"\npath = \"/w\"\n"),
        );
        assert!(
            got.iter().any(|e| e.starts_with(&format!(
                "routes[0].backends[0].name: \"{name}\" is reserved"
            ))),
            "{got:?}"
        );
    }
    // Reading its own answer.
    let own = problems(
        post,
        &b("method = \"POST\"\nbody = { a = \"{responses.w.status}\" }"),
    );
    assert!(own.iter().any(|e| e.contains("own answer")), "{own:?}");
}

#[test]
fn templates_in_body_and_headers_make_a_backend_wait() {
    let toml = r#"[upstreams.m]
url = "http://127.0.0.1:9"
[[routes]]
path = "/r"
methods = ["POST"]
  [[routes.backends]]
  name = "a"
  upstream = "m"
  path = "/a"
  [[routes.backends]]
  name = "b"
  upstream = "m"
  path = "/b"
  method = "POST"
  body = { x = "{a.id}" }
  [[routes.backends]]
  name = "c"
  upstream = "m"
  path = "/c"
  headers = { etag = "{responses.b.headers.ETag}" }
"#;
    let compiled = fanout::config::compile(toml, &fanout::config::Env::default()).unwrap();
    let fanout::config::RouteKind::Aggregate(spec) = &compiled.routes[0].kind else {
        panic!("an aggregate")
    };
    let b = &spec.backends;
    assert_eq!(
        (b[1].waits_for.clone(), b[2].waits_for.clone()),
        (vec![0], vec![1])
    );
    assert_eq!(b[1].keep_headers, [http::HeaderName::from_static("etag")]);
    assert!(b[0].keep_headers.is_empty());
    assert!(!b[1].reads_request_body() && !b[1].repeatable());
}

#[test]
fn header_templates_with_literal_text_are_redacted_in_the_document() {
    let toml = r#"[upstreams.m]
url = "http://127.0.0.1:9"
[[routes]]
path = "/r"
methods = ["POST"]
  [[routes.backends]]
  name = "a"
  upstream = "m"
  path = "/a"
  method = "POST"
  headers = { authorization = "Bearer s3cret", x-user = "{body.user}" }
"#;
    let compiled = fanout::config::compile(toml, &fanout::config::Env::default()).unwrap();
    let headers = &compiled.document["routes"][0]["backends"][0]["headers"];
    assert_eq!(
        *headers,
        serde_json::json!({"authorization": "[redacted]", "x-user": "{body.user}"})
    );
    assert!(!compiled.document.to_string().contains("s3cret"));
}
