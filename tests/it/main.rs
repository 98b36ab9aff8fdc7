//! The integration suites, linked into one test binary: one link instead of one per
//! suite keeps a clean build's disk and time small. Each module is one suite, named for
//! what it tests (`downstream_http1` is the client side of the wire, `upstream_http1`
//! the upstream side).
//!
//! No test depends on how fast the machine is: the suite passes with every core busy.
//! - A test of a timer (TTL, `open_for`, health interval, timeout, hedge, keep-alive)
//!   runs on tokio's paused clock (`#[tokio::test(start_paused = true)]`) with the
//!   gateway and the mocks in its own runtime: time moves only when every task waits, so
//!   "answered within 500 ms" counts the gateway's timers, not the scheduler's mood.
//! - A test that waits for something to happen (a call reached the upstream, a reload
//!   was picked up, a line was logged) polls for it with `common::eventually`, never a
//!   fixed sleep. Order and concurrency are read from what the mock recorded (arrival
//!   times, peak in-flight), or held with a `common::Gate`.
//! - A test of the binary as its own process (`GatewayProcess`) cannot pause its clock:
//!   it only waits on observable conditions.

mod common;

mod access_log;
mod admin;
mod aggregate;
mod async_jobs;
mod auth_e2e;
mod auth_flow;
mod auth_jwt;
mod auth_routes;
mod backend_answers;
mod cache;
mod canary;
mod cluster_cache;
mod cluster_limits;
mod cluster_purge;
mod cluster_store;
mod conditions;
mod config_check;
mod dashboard;
mod demo;
mod dependent;
mod deploy;
mod downstream_http1;
mod error_policy;
mod http2_limits;
mod http2_streams;
mod job_memory;
mod limits;
mod listeners;
mod memory;
mod mirror;
mod order_guarantees;
mod otlp_export;
mod otlp_receiver;
mod protection;
mod proxy;
mod proxy_headers;
mod proxy_paths;
mod proxy_upgrade;
mod reload;
mod server;
mod tls_certs;
mod tls_client_cert;
mod tls_client_cert_when;
mod tls_edge;
mod tls_http1;
mod tls_redirect;
mod tls_rotation;
mod tls_upstream;
mod trace_context;
mod upstream_framing;
mod upstream_http1;
mod write_calls;
mod write_config;
