//! The upstream of `bench/run`: answers every request with one fixed JSON body, after an
//! optional fixed delay, over HTTP/1.1 keep-alive. A write (POST, PUT, PATCH) is read to
//! its end and answered `201` with a small JSON receipt naming how many bytes arrived, as
//! a service that creates something would. One thread, so it can be pinned to a core next
//! to the load generator and cost every system under test the same.
//!
//! For scenario (h) it is also the identity provider: at start it makes an ES256 key
//! (`fanout::demo::token`), publishes it at `/.well-known/jwks.json` and answers
//! `GET /token` with a token that key signed for the bench's `[auth.bench]` (issuer
//! [`ISSUER`], audience [`AUDIENCE`], subject `bench-user`, valid 24 hours).
//!
//! For scenario (t) it makes the TLS certificates both gateways serve, once per run:
//! `bench_upstream --tls-certs DIR` writes a CA and an ECDSA P-256 certificate for
//! `localhost` and `127.0.0.1` (`fanout::demo::tls`, as `fanout demo --tls` makes) to DIR
//! as `ca.pem`, `cert.pem` and `key.pem`, and exits.
//!
//! `cargo run --release --example bench_upstream -- 127.0.0.1:9200 [DELAY_MS]`

use bytes::Bytes;
use fanout::demo::token::{JWKS_PATH, Signer, demo_claims};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

/// Small and fixed, like a profile lookup.
const BODY: &[u8] = br#"{"id":42,"name":"Ada Lovelace","email":"ada@example.com","roles":["admin","dev"],"active":true}"#;

/// The `iss` of the bench's tokens, as bench/peers/fanout.toml's `[auth.bench]` expects.
const ISSUER: &str = "https://bench.fanout.local";
/// The `aud` of the bench's tokens.
const AUDIENCE: &str = "fanout-bench";

/// What the identity side answers: the key set and a token, made once at start.
struct Identity {
    jwks: Bytes,
    token: Bytes,
}

impl Identity {
    fn new() -> Self {
        let signer = Signer::generate();
        let mut claims = demo_claims(Some(ISSUER), Some(AUDIENCE), SystemTime::now());
        claims["sub"] = "bench-user".into();
        Self {
            jwks: Bytes::from(signer.jwks()),
            token: Bytes::from(signer.sign(&claims)),
        }
    }

    /// The key set or the token, for their paths.
    fn answer(&self, path: &str) -> Option<Bytes> {
        match path {
            JWKS_PATH => Some(self.jwks.clone()),
            "/token" => Some(self.token.clone()),
            _ => None,
        }
    }
}

async fn answer(
    request: Request<Incoming>,
    delay: Duration,
    identity: Arc<Identity>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(body) = identity.answer(request.uri().path()) {
        return Ok(Response::new(Full::new(body)));
    }
    let write = matches!(
        *request.method(),
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    );
    // Read to the end whatever the method, so the connection stays reusable.
    let received = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len(),
        Err(_) => 0,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = if write {
        let receipt = format!(r#"{{"id":42,"status":"accepted","received_bytes":{received}}}"#);
        let mut response = Response::new(Full::new(Bytes::from(receipt)));
        *response.status_mut() = http::StatusCode::CREATED;
        response
    } else {
        Response::new(Full::new(Bytes::from_static(BODY)))
    };
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--tls-certs") {
        let dir = args.nth(1).expect("--tls-certs DIR");
        let certs = fanout::demo::DemoCertificates::make(std::path::Path::new(&dir))
            .map_err(std::io::Error::other)?;
        println!("{}", certs.dir.display());
        return Ok(());
    }
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9200".into());
    let delay_ms: u64 = args
        .next()
        .map_or(0, |d| d.parse().expect("DELAY_MS is a number"));
    let delay = Duration::from_millis(delay_ms);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let identity = Arc::new(Identity::new());
    runtime.block_on(async move {
        let listener = TcpListener::bind(&listen).await?;
        eprintln!("bench upstream on {listen}, delay {delay_ms} ms");
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let identity = identity.clone();
            tokio::spawn(async move {
                let service = service_fn(move |r| answer(r, delay, identity.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
