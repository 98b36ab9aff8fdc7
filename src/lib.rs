//! fanout: an API gateway that fans a request out to several upstreams concurrently and
//! merges their JSON answers, or proxies a request through to one upstream.
//!
//! - [`config`]: `gateway.toml` structs, loading (file, env, `${VAR}`), `validate()`.
//! - [`router`]: the compiled route table (matchit), 404 and 405.
//! - [`template`]: upstream path templates and their safe encoding.
//! - [`json_path`]: dotted paths into JSON (`data.items.0`), for templates and shaping.
//! - [`upstream`]: one transport per upstream (own HTTP/1.1 client or hyper's), its
//!   protection, one call with its deadline.
//! - [`aggregate`]: concurrent backend calls, merging, the aggregate response.
//! - [`proxy`]: streaming reverse proxy.
//! - [`gateway`]: the live snapshot: building it, and serving a request in phases.
//! - [`http1`]: the own HTTP/1.1 in both directions: request and answer heads, framing,
//!   response writing, the plain-http upstream client.
//! - [`request_id`]: the `x-request-id` a request carries to upstreams and back.
//! - [`server`]: listener, the own HTTP/1.1 client connection (hyper for the rest),
//!   tower stack, graceful shutdown.
//! - [`compress`]: gzip and br for answers whole in memory.
//! - [`error`]: every error the gateway makes, as status and JSON, in one place.
//! - [`demo`]: sample upstreams for `fanout demo`.

pub mod admin;
pub mod aggregate;
pub mod body;
pub mod cache;
pub mod compress;
pub mod config;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod http1;
pub mod json_path;
pub mod limits;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod router;
pub mod server;
pub mod template;
pub mod upstream;
