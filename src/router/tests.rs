use super::*;

fn only(methods: &[Method]) -> Methods {
    Methods::Only(methods.to_vec())
}

fn table() -> RouteTable<&'static str> {
    let mut t = RouteTable::default();
    t.insert("/users/{id}", &only(&[Method::GET]), "get-user")
        .unwrap();
    t.insert(
        "/users/{id}",
        &only(&[Method::POST, Method::PUT]),
        "write-user",
    )
    .unwrap();
    t.insert("/files/{*rest}", &only(&[Method::GET]), "files")
        .unwrap();
    t
}

fn found(
    t: &RouteTable<&'static str>,
    method: Method,
    path: &str,
) -> Option<(&'static str, Option<String>)> {
    match t.lookup(&method, path) {
        RouteMatch::Found(v, p) => Some((*v, p.iter().next().map(|(_, v)| v.to_string()))),
        _ => None,
    }
}

#[test]
fn finds_routes_by_path_and_method() {
    let t = table();
    match t.lookup(&Method::GET, "/users/7") {
        RouteMatch::Found(v, p) => {
            assert_eq!(*v, "get-user");
            assert_eq!(p.get("id"), Some("7"));
        }
        _ => panic!("expected a match"),
    }
    assert!(matches!(
        t.lookup(&Method::PUT, "/users/7"),
        RouteMatch::Found(&"write-user", _)
    ));
    assert!(matches!(
        t.lookup(&Method::HEAD, "/users/7"),
        RouteMatch::Found(&"get-user", _)
    ));
    match t.lookup(&Method::GET, "/files/a/b.txt") {
        RouteMatch::Found(_, p) => assert_eq!(p.get("rest"), Some("a/b.txt")),
        _ => panic!("expected a match"),
    }
}

#[test]
fn not_found_and_method_not_allowed() {
    let t = table();
    assert!(matches!(
        t.lookup(&Method::GET, "/nope"),
        RouteMatch::NotFound
    ));
    assert!(matches!(
        t.lookup(&Method::GET, "/users"),
        RouteMatch::NotFound
    ));
    match t.lookup(&Method::DELETE, "/users/7") {
        RouteMatch::MethodNotAllowed {
            allow,
            pattern,
            on_path,
        } => {
            assert_eq!(allow, "GET, HEAD, POST, PUT");
            assert_eq!(pattern, "/users/{id}");
            assert_eq!(*on_path, "get-user");
        }
        _ => panic!("expected 405"),
    }
}

#[test]
fn duplicates_and_conflicts_are_errors() {
    let mut t = table();
    assert_eq!(
        t.insert("/users/{id}", &only(&[Method::GET]), "again")
            .unwrap_err(),
        "duplicate route: GET /users/{id} is already declared; merge the two routes or change the path"
    );
    assert!(
        t.insert("/users/{uid}", &only(&[Method::DELETE]), "x")
            .unwrap_err()
            .contains("overlaps")
    );
    assert!(
        t.insert("/users/{id}", &Methods::Any, "any")
            .unwrap_err()
            .starts_with("duplicate route: GET /users/{id}")
    );
}

#[test]
fn a_route_for_every_method_answers_any() {
    let mut t = RouteTable::default();
    t.insert("/p/{*rest}", &Methods::Any, "proxy").unwrap();
    for m in ["GET", "HEAD", "POST", "DELETE", "PROPFIND"] {
        let m = Method::from_bytes(m.as_bytes()).unwrap();
        assert_eq!(found(&t, m, "/p/x").unwrap().0, "proxy");
    }
    assert_eq!(
        t.insert("/p/{*rest}", &only(&[Method::GET]), "x")
            .unwrap_err(),
        "duplicate route: GET /p/{*rest} is already declared; merge the two routes or change the path"
    );
    assert_eq!(Methods::Any.to_string(), "*");
    assert_eq!(only(&[Method::GET, Method::PUT]).to_string(), "GET,PUT");
}

#[test]
fn a_catch_all_matches_an_empty_rest() {
    let t = table();
    assert_eq!(found(&t, Method::GET, "/files/"), Some(("files", None)));
    assert_eq!(found(&t, Method::GET, "/files"), Some(("files", None)));
    assert_eq!(
        found(&t, Method::GET, "/files/a"),
        Some(("files", Some("a".into())))
    );
}

#[test]
fn a_declared_route_wins_over_a_bare_prefix_in_either_order() {
    for declared_first in [true, false] {
        let mut t = RouteTable::default();
        let any = &Methods::Any;
        if declared_first {
            t.insert("/api", &only(&[Method::GET]), "declared").unwrap();
        }
        t.insert("/api/{*rest}", any, "catch-all").unwrap();
        if !declared_first {
            t.insert("/api", &only(&[Method::GET]), "declared").unwrap();
        }
        assert_eq!(found(&t, Method::GET, "/api").unwrap().0, "declared");
        assert!(matches!(
            t.lookup(&Method::POST, "/api"),
            RouteMatch::MethodNotAllowed { .. }
        ));
        assert_eq!(
            found(&t, Method::GET, "/api/").unwrap().0,
            "declared",
            "a trailing slash cannot take a request past a route"
        );
        assert_eq!(found(&t, Method::GET, "/api/x").unwrap().0, "catch-all");
    }
    let mut t = RouteTable::default();
    t.insert("/{*rest}", &Methods::Any, "root").unwrap();
    assert_eq!(found(&t, Method::GET, "/"), Some(("root", None)));
    t.insert("/", &only(&[Method::GET]), "home").unwrap();
    assert_eq!(found(&t, Method::GET, "/").unwrap().0, "home");
    let mut t = RouteTable::default();
    t.insert("/u/{id}/{*rest}", &Methods::Any, "under").unwrap();
    assert_eq!(
        found(&t, Method::GET, "/u/7/"),
        Some(("under", Some("7".into())))
    );
    t.insert("/u/{uid}", &only(&[Method::GET]), "user").unwrap();
    assert_eq!(found(&t, Method::GET, "/u/7").unwrap().0, "user");
}

#[test]
fn a_trailing_slash_cannot_take_a_request_past_a_route() {
    let mut t = RouteTable::default();
    t.insert("/p/secret", &only(&[Method::GET]), "secret")
        .unwrap();
    t.insert("/p/{*rest}", &Methods::Any, "catch-all").unwrap();
    t.insert("/users/{id}", &only(&[Method::GET]), "user")
        .unwrap();
    assert_eq!(found(&t, Method::GET, "/p/secret/").unwrap().0, "secret");
    assert!(
        matches!(
            t.lookup(&Method::POST, "/p/secret/"),
            RouteMatch::MethodNotAllowed { .. }
        ),
        "POST /p/secret is 405: so is POST /p/secret/"
    );
    assert_eq!(
        found(&t, Method::GET, "/p/dir/"),
        Some(("catch-all", Some("dir/".into()))),
        "the slash is kept when no other route has the path without it"
    );
    assert_eq!(
        found(&t, Method::GET, "/users/7/"),
        Some(("user", Some("7".into())))
    );
    assert!(matches!(
        t.lookup(&Method::GET, "/users/"),
        RouteMatch::NotFound
    ));
}

#[test]
fn parameter_names() {
    assert_eq!(param_names("/u/{id}/d/{*rest}"), vec!["id", "rest"]);
    assert_eq!(param_names("/a/{{lit}}/{x}"), vec!["x"]);
    assert!(param_names("/static").is_empty());
}
