//! The upstream of `bench/run`: answers every request with one fixed JSON body, after an
//! optional fixed delay, over HTTP/1.1 keep-alive. A write (POST, PUT, PATCH) is read to
//! its end and answered `201` with a small JSON receipt naming how many bytes arrived, as
//! a service that creates something would. One thread, so it can be pinned to a core next
//! to the load generator and cost every system under test the same.
//!
//! `cargo run --release --example bench_upstream -- 127.0.0.1:9200 [DELAY_MS]`

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;

/// Small and fixed, like a profile lookup.
const BODY: &[u8] = br#"{"id":42,"name":"Ada Lovelace","email":"ada@example.com","roles":["admin","dev"],"active":true}"#;

async fn answer(
    request: Request<Incoming>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
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
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:9200".into());
    let delay_ms: u64 = args
        .next()
        .map_or(0, |d| d.parse().expect("DELAY_MS is a number"));
    let delay = Duration::from_millis(delay_ms);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&listen).await?;
        eprintln!("bench upstream on {listen}, delay {delay_ms} ms");
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(move |r| answer(r, delay));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
