//! How aggregate backends read answers over real sockets: compressed answers (asked
//! for `identity`, decoded anyway when an upstream compresses, bounded by
//! `max_response`).

use crate::common;

use common::{MockUpstream, Reply, client, start_gateway};
use serde_json::{Value, json};
use std::io::Write;

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = client().get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("the gateway's answer is not JSON: {e}"));
    (status, body)
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
