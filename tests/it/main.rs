//! The integration suites, linked into one test binary: one link instead of one per
//! suite keeps a clean build's disk and time small. Each module is one suite.

mod common;

mod admin;
mod aggregate;
mod answers;
mod cache;
mod client_wire;
mod config_check;
mod demo;
mod dependent;
mod limits;
mod listeners;
mod memory;
mod protection;
mod proxy;
mod proxy_headers;
mod proxy_paths;
mod proxy_upgrade;
mod reload;
mod server;
mod upstream_framing;
mod upstream_wire;
