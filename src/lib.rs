//! fanout: an API gateway that fans a request out to several upstreams concurrently and
//! merges their JSON answers, or proxies a request through to one upstream.
//!
//! Modules, one line each:
//! - [`access_log`]: the own access log: records queued, formatted and written by a thread.
//! - [`admin`]: the admin listener: health, readiness, metrics, config, reload, cache purge,
//!   the dashboard.
//! - [`aggregate`]: aggregate routes: planned concurrent backend calls, shaping, merging.
//! - [`allocator`]: the process's allocator (mimalloc), plain blocks for word alignments.
//! - [`auth`]: identity at the edge: JWT (JWKS, secret) and API key providers.
//! - [`body`]: the one response body type, buffered or streamed, and idle-stream limits.
//! - [`cache`]: the response cache (moka), with single-flight misses and stale serving.
//! - [`canary`]: weighted canaries: which of a route's or backend's upstreams a request goes to.
//! - [`cluster`]: the store instances share (`[cluster]`, Redis): limits and cache across them.
//! - [`compress`]: gzip and br for answers whole in memory.
//! - [`condition`]: backend conditions (`when`), CEL compiled at load, evaluated per request.
//! - [`config`]: `gateway.toml` structs, loading (file, env, `${VAR}`), `validate()`.
//! - [`demo`]: sample upstreams and a sample trace collector for `fanout demo`.
//! - [`error`]: every error the gateway makes, as status and JSON, in one place.
//! - [`exposition`]: the `/metrics` text formats (OpenMetrics, Prometheus) and negotiation.
//! - [`gateway`]: the live snapshot: building it, and serving a request in phases.
//! - [`http1`]: the own HTTP/1.1 both ways: heads, framing, responses, the upstream client.
//! - [`jobs`]: async routes' jobs: ids, owners, where each is (memory or `[cluster]`).
//! - [`json_path`]: dotted paths into JSON (`data.items.0`), for templates and shaping.
//! - [`limits`]: route rate limits, client identity behind trusted proxies.
//! - [`metrics`]: the Prometheus registry and the gateway's metrics.
//! - [`mirror`]: copies of requests sent to shadow upstreams, fire and forget.
//! - [`proxy`]: proxy routes: a request streamed through to one upstream.
//! - [`reload`]: live config: watch, validate, build, swap whole.
//! - [`request_id`]: the `x-request-id` a request carries to upstreams and back.
//! - [`router`]: the compiled route table (matchit), path normalization, 404 and 405.
//! - [`server`]: the listener, the own HTTP/1.1 connection (hyper for the rest), shutdown.
//! - [`stats`]: in-process sliding windows (counts, latency histograms) for the dashboard.
//! - [`template`]: upstream path templates and the encoding that keeps values in place.
//! - [`tls`]: TLS at the edge: the listener's rustls config from `[server.tls]`, per snapshot.
//! - [`trace`]: W3C Trace Context on every upstream call, spans, their OTLP export.
//! - [`upstream`]: one transport per upstream, its protection, one call with a deadline.

pub mod access_log;
pub mod admin;
pub mod aggregate;
pub mod allocator;
pub mod auth;
pub mod body;
pub mod cache;
pub mod canary;
pub mod cluster;
pub mod compress;
pub mod condition;
pub mod config;
pub mod connection;
pub mod demo;
pub mod error;
pub mod exposition;
pub mod gateway;
pub mod http1;
pub mod jobs;
pub mod json_path;
pub mod limits;
pub mod metrics;
pub mod mirror;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod router;
pub mod server;
pub mod stats;
pub mod template;
pub mod tls;
pub mod trace;
pub mod upstream;
