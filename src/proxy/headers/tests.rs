use super::*;

fn uri() -> http::Uri {
    "/x".parse().unwrap()
}

#[test]
fn strips_hop_by_hop_and_listed_headers() {
    let mut h = HeaderMap::new();
    h.insert("connection", "keep-alive, x-secret-hop".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    h.insert("x-secret-hop", "1".parse().unwrap());
    h.insert("te", "trailers".parse().unwrap());
    h.insert("trailer", "x".parse().unwrap());
    h.insert("transfer-encoding", "chunked".parse().unwrap());
    h.insert("upgrade", "h2c".parse().unwrap());
    h.insert("proxy-authorization", "Basic x".parse().unwrap());
    h.insert("proxy-connection", "keep-alive".parse().unwrap());
    h.insert("accept", "application/json".parse().unwrap());
    strip_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("accept"));
}

#[test]
fn the_match_and_the_list_agree() {
    for name in &HOP_BY_HOP_NAMES {
        assert!(is_hop_by_hop(name), "{name}");
    }
    assert_eq!(HOP_BY_HOP.len(), HOP_BY_HOP_NAMES.len());
    for name in ["accept", "tE", "upgrade-insecure-requests", "x-upgrade"] {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        assert_eq!(is_hop_by_hop(&name), name == "te", "{name}");
    }
}

#[test]
fn each_hop_by_hop_header_alone_is_stripped() {
    for name in HOP_BY_HOP {
        let mut h = HeaderMap::new();
        h.insert("accept", "*/*".parse().unwrap());
        h.insert(name, "x".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{name} is kept");
    }
}

#[test]
fn a_mapped_ipv4_peer_is_forwarded_as_ipv4() {
    let mut h = HeaderMap::new();
    upstream_request_headers(
        &mut h,
        &uri(),
        Some("[::ffff:10.0.0.2]:5555".parse().unwrap()),
        false,
        false,
        None,
        false,
    );
    assert_eq!(h["x-forwarded-for"], "10.0.0.2");
}

#[test]
fn addresses_are_written_as_display_writes_them() {
    for ip in [
        "0.0.0.0",
        "255.255.255.255",
        "10.0.12.1",
        "::1",
        "2001:db8::8:1",
    ] {
        let mut out = Vec::new();
        write_ip(&mut out, ip.parse().unwrap());
        assert_eq!(out, ip.as_bytes());
    }
}

#[test]
fn forwarded_headers_are_appended_and_set() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    h.insert("host", "api.example.com".parse().unwrap());
    upstream_request_headers(
        &mut h,
        &uri(),
        Some("10.0.0.2:5555".parse().unwrap()),
        false,
        false,
        None,
        false,
    );
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.2");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "api.example.com");
    assert!(
        h.get("host").is_none(),
        "the client library sets the upstream's host"
    );

    let mut h = HeaderMap::new();
    upstream_request_headers(
        &mut h,
        &uri(),
        Some("127.0.0.1:1".parse().unwrap()),
        false,
        false,
        None,
        false,
    );
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
}

#[test]
fn preserve_host_keeps_the_clients_host() {
    let mut h = HeaderMap::new();
    h.insert("host", "api.example.com".parse().unwrap());
    upstream_request_headers(&mut h, &uri(), None, false, true, None, false);
    assert_eq!(h["host"], "api.example.com");
    let mut h = HeaderMap::new();
    let h2: http::Uri = "http://h2.example.com/x".parse().unwrap();
    upstream_request_headers(&mut h, &h2, None, false, true, None, false);
    assert_eq!(
        h["host"], "h2.example.com",
        "HTTP/2 carries the host in :authority"
    );
}

fn allowed() -> Vec<String> {
    vec!["websocket".into()]
}

#[test]
fn allowed_upgrades_survive_the_strip() {
    let mut h = HeaderMap::new();
    h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("sec-websocket-key", "abc".parse().unwrap());
    let upgrade = allowed_upgrade(&h, &allowed());
    assert_eq!(upgrade.as_ref().unwrap(), "websocket");
    upstream_request_headers(&mut h, &uri(), None, false, false, upgrade, false);
    assert_eq!(h["connection"], "upgrade");
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["sec-websocket-key"], "abc");

    let mut h = HeaderMap::new();
    h.insert("upgrade", "websocket".parse().unwrap());
    assert!(
        allowed_upgrade(&h, &allowed()).is_none(),
        "Upgrade without Connection: upgrade is not a request to upgrade"
    );
}

#[test]
fn only_allowed_protocols_are_asked_for() {
    let ask = |value: &str, allowed: &[String]| {
        let mut h = HeaderMap::new();
        h.insert("connection", "upgrade".parse().unwrap());
        h.insert("upgrade", value.parse().unwrap());
        allowed_upgrade(&h, allowed).map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(ask("h2c", &allowed()), None);
    assert_eq!(ask("WebSocket", &allowed()).as_deref(), Some("WebSocket"));
    assert_eq!(
        ask("websocket/13", &allowed()).as_deref(),
        Some("websocket/13")
    );
    assert_eq!(
        ask("h2c, websocket", &allowed()).as_deref(),
        Some("websocket")
    );
    assert_eq!(ask("websocket", &[]), None);
    assert_eq!(ask("mqtt", &allowed()), None);
    assert_eq!(ask("foo/1", &["foo/2".into()]), None);
}

#[test]
fn h2c_and_its_settings_never_go_upstream() {
    let mut h = HeaderMap::new();
    h.insert("connection", "Upgrade, HTTP2-Settings".parse().unwrap());
    h.insert("upgrade", "h2c".parse().unwrap());
    h.insert("http2-settings", "AAMAAABkAAQAAP__".parse().unwrap());
    let upgrade = allowed_upgrade(&h, &allowed());
    upstream_request_headers(&mut h, &uri(), None, false, false, upgrade, false);
    for name in ["connection", "upgrade", "http2-settings"] {
        assert!(h.get(name).is_none(), "{name}");
    }
}

#[test]
fn a_101_must_switch_to_what_was_asked() {
    let mut answer = HeaderMap::new();
    let asked = HeaderValue::from_static("websocket");
    assert!(!switched_as_asked(&answer, &asked));
    answer.insert("upgrade", "h2c".parse().unwrap());
    assert!(!switched_as_asked(&answer, &asked));
    answer.insert("upgrade", "WebSocket".parse().unwrap());
    assert!(switched_as_asked(&answer, &asked));
}

#[test]
fn names_with_underscores_stay_behind_unless_allowed() {
    let make = || {
        let mut h = HeaderMap::new();
        h.insert("x_forwarded_for", "6.6.6.6".parse().unwrap());
        h.insert("content_length", "5".parse().unwrap());
        h.insert("x-user", "u1".parse().unwrap());
        h
    };
    let mut h = make();
    upstream_request_headers(
        &mut h,
        &uri(),
        Some("10.0.0.2:1".parse().unwrap()),
        false,
        false,
        None,
        false,
    );
    assert!(h.keys().all(|k| !k.as_str().contains('_')), "{h:?}");
    assert_eq!(h["x-user"], "u1");
    assert_eq!(h["x-forwarded-for"], "10.0.0.2");
    let mut h = make();
    upstream_request_headers(&mut h, &uri(), None, false, false, None, true);
    assert_eq!(h["x_forwarded_for"], "6.6.6.6");
}

#[test]
fn underscores_are_found_anywhere_in_a_name() {
    for name in [
        "",
        "a",
        "x-user",
        "accept-encoding",
        "abcdefgh",
        "abcdefghijklmnop",
    ] {
        assert!(!has_underscore(name.as_bytes()), "{name}");
    }
    for name in [
        "_",
        "x_user",
        "abcdefg_",
        "abcdefgh_",
        "_bcdefghijklmnop",
        "abcdefghijklmno_",
    ] {
        assert!(has_underscore(name.as_bytes()), "{name}");
    }
    for at in 0..20 {
        let mut name = vec![b'a'; 20];
        name[at] = b'_';
        assert!(has_underscore(&name), "{at}");
    }
}

#[test]
fn the_proto_is_https_on_a_tls_connection() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-proto", "http".parse().unwrap());
    upstream_request_headers(&mut h, &uri(), None, true, false, None, false);
    assert_eq!(h["x-forwarded-proto"], "https");
    upstream_request_headers(&mut h, &uri(), None, false, false, None, false);
    assert_eq!(h["x-forwarded-proto"], "http");
}
