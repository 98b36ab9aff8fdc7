//! How aggregate backends read answers over real sockets: nesting bounded by
//! `max_depth`, answers and request bodies that are parsed bounded in values
//! (`max_values`, `server.max_body_values`), and compressed answers (asked for `identity`, decoded anyway when an
//! upstream compresses, bounded by `max_response`).

use crate::common;

use common::{MockUpstream, Reply, client, start_gateway};
use serde_json::{Value, json};
use std::io::Write;

/// `depth` nested arrays around `1`.
fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = client().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    // Checked before parsing: a test parser handed 100,000 levels would overflow.
    assert!(
        !bytes.windows(1000).any(|w| w.iter().all(|&b| b == b'[')),
        "a deeply nested answer reached the client ({} bytes)",
        bytes.len()
    );
    // The merged body nests one level deeper than a backend's answer: 129 levels here,
    // past serde_json's default limit, so it is lifted (100,000 would overflow the stack).
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    de.disable_recursion_limit();
    let body = serde::Deserialize::deserialize(&mut de)
        .unwrap_or_else(|e| panic!("the gateway's answer is not JSON: {e}"));
    (status, body)
}

#[tokio::test]
async fn answers_nested_deeper_than_max_depth_fail_as_invalid_json() {
    let up = MockUpstream::builder()
        .route("/deep", Reply::json(nested(100_000)))
        .route("/129", Reply::json(nested(129)))
        .route("/128", Reply::json(nested(128)))
        .route("/obj", Reply::json(format!(r#"{{"a":{}}}"#, nested(127))))
        .route("/text", Reply::json(r#"{"s":"[[[[[[[[[[\"[[[[["}"#))
        .start()
        .await;
    let backend = |name: &str, path: &str, extra: &str| {
        format!(
            "[[routes.backends]]\nname = \"{name}\"\nupstream = \"up\"\npath = \"{path}\"\n{extra}\n"
        )
    };
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[upstreams.shallow]\nurl = \"{0}\"\nmax_depth = 3\n\
         [[routes]]\npath = \"/r\"\nerrors_field = \"_errors\"\n{}{}{}{}{}{}{}",
        up.url(),
        backend("deep", "/deep", ""),
        backend("over", "/129", ""),
        backend("at", "/128", ""),
        // Parsed (shaped) rather than spliced: the same rule, and serde_json's own
        // limit (127) does not cut it shorter.
        backend("shaped", "/obj", "extract = \"a\""),
        backend("cached", "/deep", "cache_ttl = \"1m\""),
        "[[routes.backends]]\nname = \"shallow\"\nupstream = \"shallow\"\npath = \"/128\"\n",
        // Brackets in strings are not nesting, escaped quotes do not end a string.
        "[[routes.backends]]\nname = \"strings\"\nupstream = \"shallow\"\npath = \"/text\"\n",
    ))
    .await;
    let (status, body) = get(&gw.url("/r"), &[]).await;
    assert_eq!(status, 200);
    let errors = &body["_errors"];
    for name in ["deep", "over", "cached"] {
        assert_eq!(errors[name]["code"], "invalid_json", "{name}: {errors}");
        assert_eq!(
            errors[name]["message"],
            "answer is not JSON: nested deeper than max_depth = 128"
        );
        assert_eq!(body[name], Value::Null);
    }
    assert_eq!(
        errors["shallow"]["message"],
        "answer is not JSON: nested deeper than max_depth = 3"
    );
    assert_eq!(
        body["at"].to_string(),
        nested(128),
        "128 levels are allowed"
    );
    assert_eq!(body["shaped"].to_string(), nested(127));
    assert_eq!(body["strings"], json!({"s": "[[[[[[[[[[\"[[[[["}));
    assert_eq!(errors.as_object().unwrap().len(), 4, "{errors}");
}

/// A JSON array of `n` zeros: `n + 1` values.
fn zeros(n: usize) -> String {
    format!("[{}]", vec!["0"; n].join(","))
}

#[tokio::test]
async fn answers_that_are_parsed_hold_at_most_max_values_and_spliced_ones_any() {
    let up = MockUpstream::builder()
        .route(
            "/many",
            Reply::json(format!(r#"{{"ids":{}}}"#, zeros(1000))),
        )
        .route("/few", Reply::json(format!(r#"{{"ids":{}}}"#, zeros(10))))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\nmax_values = 100\n\
         [[routes]]\npath = \"/r\"\nerrors_field = \"_errors\"\n\
         [[routes.backends]]\nname = \"spliced\"\nupstream = \"up\"\npath = \"/many\"\n\
         [[routes.backends]]\nname = \"shaped\"\nupstream = \"up\"\npath = \"/many\"\nselect = [\"ids\"]\n\
         [[routes.backends]]\nname = \"cached\"\nupstream = \"up\"\npath = \"/many\"\nextract = \"ids\"\ncache_ttl = \"1m\"\n\
         [[routes.backends]]\nname = \"small\"\nupstream = \"up\"\npath = \"/few\"\nextract = \"ids\"\n",
        up.url()
    ))
    .await;
    let (status, body) = get(&gw.url("/r"), &[]).await;
    assert_eq!(status, 200);
    let errors = &body["_errors"];
    for name in ["shaped", "cached"] {
        assert_eq!(errors[name]["code"], "too_large", "{name}: {errors}");
        assert_eq!(
            errors[name]["message"],
            "answer holds 1002 JSON values, more than max_values = 100"
        );
        assert_eq!(body[name], Value::Null);
    }
    // Spliced as it came, never built: no limit but max_response.
    assert_eq!(body["spliced"]["ids"].as_array().unwrap().len(), 1000);
    assert_eq!(body["small"].as_array().unwrap().len(), 10);
    assert_eq!(errors.as_object().unwrap().len(), 2, "{errors}");
}

#[tokio::test]
async fn a_request_body_a_template_reads_holds_at_most_max_body_values() {
    let up = MockUpstream::builder()
        .route("*", Reply::json(r#"{"ok":true}"#))
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[server]\nmax_body_values = 50\n[upstreams.up]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/r\"\nmethods = [\"POST\"]\n\
         [[routes.backends]]\nname = \"user\"\nupstream = \"up\"\npath = \"/users/{{body.id}}\"\n\
         [[routes]]\npath = \"/forward\"\nmethods = [\"POST\"]\n\
         [[routes.backends]]\nname = \"user\"\nupstream = \"up\"\npath = \"/bulk\"\nforward_body = true\n",
        up.url()
    ))
    .await;
    let post = |path: &str, body: String| {
        let url = gw.url(path);
        async move {
            let response = client().post(url).body(body).send().await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    let (status, body) = post("/r", format!(r#"{{"id":7,"pad":{}}}"#, zeros(40))).await;
    assert_eq!(
        (status, &body["user"]),
        (200, &json!({"ok": true})),
        "{body}"
    );
    assert_eq!(up.hits("/users/7"), 1);
    let (status, body) = post("/r", format!(r#"{{"id":7,"pad":{}}}"#, zeros(1000))).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large");
    assert_eq!(
        body["error"]["message"],
        "the request body holds 1003 JSON values, more than 50 (server.max_body_values)"
    );
    assert_eq!(up.hits("/users/7"), 1, "no backend called");
    // A body only forwarded is never parsed: no such limit.
    let (status, _) = post("/forward", zeros(1000)).await;
    assert_eq!(status, 200);
    assert_eq!(up.hits("/bulk"), 1);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::CompressorWriter::new(&mut out, 4096, 5, 22)
        .write_all(data)
        .unwrap();
    out
}

/// An upstream that compresses whatever it is asked, as some do.
fn compressed(coding: &str, body: Vec<u8>) -> Reply {
    Reply::raw(body)
        .header("content-type", "application/json")
        .header("content-encoding", coding)
}

#[tokio::test]
async fn compressed_answers_are_decoded_and_identity_is_asked_for() {
    let json = |name: &str| format!(r#"{{"v":"{name}"}}"#).into_bytes();
    let up = MockUpstream::builder()
        .route("/gzip", compressed("gzip", gzip(&json("gzip"))))
        .route("/deflate", compressed("deflate", deflate(&json("deflate"))))
        .route("/br", compressed("br", brotli(&json("br"))))
        .route(
            "/zstd",
            compressed("zstd", zstd::encode_all(&json("zstd")[..], 3).unwrap()),
        )
        .route(
            "/compress",
            compressed("compress", b"\x1f\x9d\x90{".to_vec()),
        )
        .route("/bomb", compressed("gzip", gzip(&vec![b' '; 8 << 20])))
        .route("/plain", Reply::json(r#"{"v":"plain"}"#))
        .start()
        .await;
    let backends: String = ["gzip", "deflate", "br", "zstd", "compress", "bomb", "plain"]
        .iter()
        .map(|n| {
            format!("[[routes.backends]]\nname = \"{n}\"\nupstream = \"up\"\npath = \"/{n}\"\n")
        })
        .collect();
    // The route forwards the client's Accept-Encoding: the upstream must still be asked
    // for what the gateway reads, not what the client does.
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\nmax_response = \"1MiB\"\n[[routes]]\npath = \"/r\"\n\
         errors_field = \"_errors\"\nforward_headers = [\"accept-encoding\"]\n{backends}",
        up.url()
    ))
    .await;
    let (status, body) = get(&gw.url("/r"), &[("accept-encoding", "compress, x-mine")]).await;
    assert_eq!(status, 200);
    for name in ["gzip", "deflate", "br", "zstd", "plain"] {
        assert_eq!(body[name], json!({"v": name}), "{body}");
    }
    let errors = &body["_errors"];
    assert_eq!(errors["compress"]["code"], "bad_encoding", "{errors}");
    assert_eq!(
        errors["compress"]["message"],
        "cannot decode the answer: Content-Encoding \"compress\" is not one the gateway decodes (gzip, deflate, br, zstd)"
    );
    assert_eq!(errors["bomb"]["code"], "too_large", "{errors}");
    assert_eq!(errors.as_object().unwrap().len(), 2, "{errors}");
    let asked: Vec<_> = up
        .requests()
        .iter()
        .map(|r| {
            r.headers
                .get_all("accept-encoding")
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(asked.len(), 7);
    assert!(asked.iter().all(|a| a == &["identity"]), "{asked:?}");
}

#[tokio::test]
async fn a_compressed_client_error_is_passed_on_decoded() {
    let up = MockUpstream::builder()
        .route(
            "/user",
            compressed("gzip", gzip(br#"{"error":"no such user"}"#)).status(404),
        )
        .start()
        .await;
    let gw = start_gateway(&format!(
        "[upstreams.up]\nurl = \"{}\"\n[[routes]]\npath = \"/r\"\n\
         [[routes.backends]]\nname = \"user\"\nupstream = \"up\"\npath = \"/user\"\nrequired = true\n",
        up.url()
    ))
    .await;
    let (status, body) = get(&gw.url("/r"), &[]).await;
    assert_eq!((status, body), (404, json!({"error": "no such user"})));
}
