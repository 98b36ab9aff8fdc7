use super::*;

fn normal(path: &str) -> String {
    normalize(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .into_owned()
}

#[test]
fn a_normal_path_is_borrowed() {
    for path in [
        "/",
        "/p/secret",
        "/p/dir/",
        "/a/b-c_d.e~f/g:h@i!$&'()*+,=",
        "/a%20b/%C3%A9/%25/%3F%23%5B%22",
        "/.well-known/x",
        "/a/.../b",
        "/a..b/..c/.d",
    ] {
        assert!(
            matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
            "{path}: {:?}",
            normalize(path)
        );
    }
}

#[test]
fn escapes_of_characters_that_stand_as_they_are_are_decoded() {
    assert_eq!(normal("/p/%73ecret"), "/p/secret");
    assert_eq!(normal("/p/%73%65%63%72%65%74"), "/p/secret");
    assert_eq!(normal("/%41%7a%30%2D%2e%5F%7E"), "/Az0-._~");
    assert_eq!(
        normal("/a%40b%3Ac%21%24%26%27%28%29%2A%2B%2C%3D"),
        "/a@b:c!$&'()*+,="
    );
}

#[test]
fn other_escapes_stay_encoded_in_upper_case() {
    assert_eq!(normal("/caf%c3%a9"), "/caf%C3%A9");
    assert_eq!(normal("/a%20b%3f%23%25"), "/a%20b%3F%23%25");
    assert_eq!(normal("/%5b%5D"), "/%5B%5D");
}

#[test]
fn bytes_that_cannot_stand_in_a_path_are_encoded() {
    assert_eq!(normal("/caf\u{e9}"), "/caf%C3%A9");
    assert_eq!(
        normal("/a\"b{c}|d^e`f<g>h[i]"),
        "/a%22b%7Bc%7D%7Cd%5Ee%60f%3Cg%3Eh%5Bi%5D"
    );
    assert_eq!(
        normal("/caf\u{e9}"),
        normal("/caf%C3%A9"),
        "two spellings of one path have one normal form"
    );
}

#[test]
fn doubled_slashes_merge_and_one_trailing_slash_stays() {
    assert_eq!(normal("//p///secret"), "/p/secret");
    assert_eq!(normal("/p/secret//"), "/p/secret/");
    assert_eq!(normal("/p/secret/"), "/p/secret/");
    assert_eq!(normal("//"), "/");
}

#[test]
fn tricks_are_refused() {
    use PathError::*;
    for (path, error) in [
        ("/p/a%2Fb", EncodedSlash),
        ("/p/a%2fb", EncodedSlash),
        ("/p/a%5Cb", EncodedSlash),
        ("/p/a%5cb", EncodedSlash),
        ("/p/a\\b", Backslash),
        ("/p/..;/secret", Semicolon),
        ("/p/secret;jsessionid=1", Semicolon),
        ("/p/a%3Bb", Semicolon),
        ("/p/a%00b", ControlByte),
        ("/p/a%0d%0ab", ControlByte),
        ("/p/a%7Fb", ControlByte),
        ("/p/a\u{7f}b", ControlByte),
        ("/p/..", DotSegment),
        ("/p/../x", DotSegment),
        ("/p/./x", DotSegment),
        ("/p/%2e%2e/x", DotSegment),
        ("/p/%2E/x", DotSegment),
        ("/p/.%2e/x", DotSegment),
        ("/p//../x", DotSegment),
        ("/.", DotSegment),
        ("/p/a%zz", BadEscape),
        ("/p/a%4", BadEscape),
        ("/p/a%", BadEscape),
        ("/p/%C0%AF", NotUtf8),
        ("/p/%FF", NotUtf8),
    ] {
        assert_eq!(normalize(path), Err(error), "{path}");
    }
}

#[test]
fn utf8_escapes_pass() {
    assert_eq!(normal("/%E2%82%AC/%f0%9f%98%80"), "/%E2%82%AC/%F0%9F%98%80");
}

#[test]
fn targets_that_are_not_paths_pass_as_they_are() {
    assert_eq!(normal("*"), "*");
    assert_eq!(normal(""), "");
}

#[test]
fn the_normal_form_is_a_fixed_point() {
    for path in ["//a/%73/%c3%a9/\u{e9}/x//", "/a%20b", "/%7e%2d", "/a\"b"] {
        let once = normal(path);
        assert_eq!(normal(&once), once, "{path}");
    }
}

#[test]
fn route_paths_must_be_normal() {
    assert_eq!(route_path_problem("/p/secret"), None);
    assert_eq!(route_path_problem("/u/{id}/files/{*rest}"), None);
    assert_eq!(route_path_problem("/a/b%20c/"), None);
    let p = route_path_problem("/p/%73ecret").unwrap();
    assert!(p.contains("write \"/p/secret\""), "{p}");
    assert!(route_path_problem("/p//x").unwrap().contains("/p/x"));
    assert!(
        route_path_problem("/u/{id}/%7e")
            .unwrap()
            .contains("can never match")
    );
    assert!(
        route_path_problem("/p/a;b").unwrap().contains("\";\""),
        "{:?}",
        route_path_problem("/p/a;b")
    );
    assert!(route_path_problem("/p/../x").is_some());
    assert!(route_path_problem("/lit/{{x}}").is_some());
}
