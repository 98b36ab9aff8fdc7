use super::*;
use crate::body::full;
use http::HeaderMap;
use std::io::Read;

fn accepting(values: &[&str]) -> Encoding {
    let mut headers = HeaderMap::new();
    for v in values {
        headers.append(ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
    }
    negotiate(&headers)
}

#[test]
fn negotiation_rules() {
    use Encoding::*;
    assert_eq!(accepting(&[]), Identity, "no header: no compression");
    assert_eq!(accepting(&["gzip"]), Gzip);
    assert_eq!(accepting(&["gzip, deflate, br"]), Brotli, "br wins a tie");
    assert_eq!(accepting(&["br;q=0.5, gzip"]), Gzip, "the higher q wins");
    assert_eq!(
        accepting(&["gzip;q=0.8", "br;q=0.9"]),
        Brotli,
        "across headers"
    );
    assert_eq!(accepting(&["X-GZIP"]), Gzip);
    assert_eq!(accepting(&["br;q=0, gzip;q=0"]), Identity, "q=0 refuses");
    assert_eq!(accepting(&["*"]), Brotli, "the wildcard stands for br");
    assert_eq!(
        accepting(&["*;q=0.5, br;q=0.1"]),
        Gzip,
        "but not for a listed coding"
    );
    assert_eq!(
        accepting(&["gzip;q=0.5, identity"]),
        Identity,
        "a preferred identity"
    );
    assert_eq!(
        accepting(&["gzip;q=2, br;q=0.x"]),
        Identity,
        "malformed q ignored"
    );
    assert_eq!(accepting(&["deflate, zstd"]), Identity, "nothing we speak");
    assert_eq!(accepting(&[" gzip ; q=1.000 "]), Gzip);
}

#[test]
fn q_values() {
    assert_eq!(parse_q("q=1"), Some(1000));
    assert_eq!(parse_q("q=0.5"), Some(500));
    assert_eq!(parse_q("Q=0.125"), Some(125));
    assert_eq!(parse_q("q=0"), Some(0));
    assert_eq!(parse_q("q=1.001"), None);
    assert_eq!(parse_q("q=0.1234"), None);
    assert_eq!(parse_q("level=1"), None);
}

fn answer(body: &'static str, headers: &[(&str, &str)]) -> Response<Body> {
    let mut r = Response::new(full(body));
    for (k, v) in headers {
        r.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    r
}

#[test]
fn what_is_compressed() {
    let json = [("content-type", "application/json")];
    assert!(compressible(&answer("", &json), 100, 64));
    assert!(
        !compressible(&answer("", &json), 63, 64),
        "below the setting"
    );
    assert!(!compressible(&answer("", &json), 31, 0), "below the floor");
    for kind in ["image/png", "application/grpc", "text/event-stream"] {
        assert!(
            !compressible(&answer("", &[("content-type", kind)]), 100, 0),
            "{kind}"
        );
    }
    for kind in ["image/svg+xml", "application/grpc-web", "text/html"] {
        assert!(
            compressible(&answer("", &[("content-type", kind)]), 100, 0),
            "{kind}"
        );
    }
    assert!(!compressible(
        &answer("", &[("content-encoding", "zstd")]),
        100,
        0
    ));
    assert!(!compressible(
        &answer("", &[("content-range", "bytes 0-9/10")]),
        100,
        0
    ));
}

const TEXT: &str = "{\"items\":[1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10]}";

#[tokio::test]
async fn gzip_and_br_round_trip_and_say_so() {
    for (encoding, name) in [(Encoding::Gzip, "gzip"), (Encoding::Brotli, "br")] {
        let r = apply(
            answer(
                TEXT,
                &[("content-length", "73"), ("accept-ranges", "bytes")],
            ),
            encoding,
            0,
        )
        .await;
        assert_eq!(r.headers()[CONTENT_ENCODING], name);
        assert_eq!(r.headers()[VARY], "accept-encoding");
        assert!(
            r.headers().get(CONTENT_LENGTH).is_none(),
            "the length changed"
        );
        assert!(r.headers().get(ACCEPT_RANGES).is_none());
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        let mut text = String::new();
        match encoding {
            Encoding::Gzip => flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text),
            _ => brotli::Decompressor::new(&bytes[..], 4096).read_to_string(&mut text),
        }
        .unwrap();
        assert_eq!(text, TEXT);
    }
}

#[tokio::test]
async fn vary_is_said_once_even_without_compression() {
    let r = apply(answer(TEXT, &[]), Encoding::Identity, 0).await;
    assert_eq!(r.headers()[VARY], "accept-encoding");
    assert!(r.headers().get(CONTENT_ENCODING).is_none());
    assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), TEXT);

    let r = apply(
        answer(TEXT, &[("vary", "Origin, Accept-Encoding")]),
        Encoding::Gzip,
        0,
    )
    .await;
    assert_eq!(r.headers().get_all(VARY).iter().count(), 1);

    let small = apply(answer("{}", &[]), Encoding::Gzip, 0).await;
    assert!(
        small.headers().get(VARY).is_none(),
        "not compressible: no Vary"
    );
}
