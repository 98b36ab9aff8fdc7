//! Test support: mock upstreams built per test (routes, latency, status, misbehaviour,
//! streams, hit counts, recorded requests), a gateway started from TOML on
//! `127.0.0.1:0`, and the gateway binary as its own process for memory measurements.
//!
//! Times the mock records (arrivals, a gate's opening) are tokio instants: under a
//! paused clock (`#[tokio::test(start_paused = true)]`) they are the test's virtual time.
//!
//! `reply` and `mock`: the mock upstream; `raw_upstream`: one that writes scripted
//! bytes; `raw_h2`: an HTTP/2 client that writes frames by hand; `gateway`: the gateway in the test's process, scratch directories, clients;
//! `process`: the gateway binary as a process; `tls`, `redis`, `otlp`: certificates, a
//! real `redis-server`, an OTLP collector. Tests import it all from here.

mod eventually;
mod gateway;
mod mock;
pub mod otlp;
mod process;
pub mod raw_h2;
mod raw_upstream;
pub mod redis;
mod reply;
pub mod tls;

pub use eventually::{eventually, eventually_some};
pub use gateway::*;
pub use mock::*;
pub use process::*;
pub use raw_upstream::*;
pub use reply::*;

/// An `errors_field` entry without its `duration_ms`, which a test cannot pin (the
/// call's real time); checked to be there, a number.
pub fn without_duration(entry: &serde_json::Value) -> serde_json::Value {
    let mut entry = entry.clone();
    let took = entry.as_object_mut().and_then(|e| e.remove("duration_ms"));
    assert!(
        took.as_ref().is_some_and(serde_json::Value::is_number),
        "{entry}"
    );
    entry
}

/// `body` with every entry of its `field` (an `errors_field`) [`without_duration`].
pub fn without_durations(body: &serde_json::Value, field: &str) -> serde_json::Value {
    let mut body = body.clone();
    if let Some(errors) = body.get_mut(field).and_then(|e| e.as_object_mut()) {
        for entry in errors.values_mut() {
            *entry = without_duration(entry);
        }
    }
    body
}

/// Merged body text with each `,"duration_ms":N` taken out, for tests that pin the
/// text byte for byte.
pub fn strip_durations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(",\"duration_ms\":") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 15..];
        let end = after.find(['}', ',']).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}
