//! `[server]`, `[cache]`, `[access_log]`, `[tracing]` and `[server.cors]` as written:
//! the process-wide sections' raw structs and their defaults.

use super::{Http2Config, ServerTlsConfig};
use serde::{Deserialize, Serialize};

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the gateway listens on, `IP:PORT`.
    pub listen: String,
    /// Default deadline of a whole route, when the route sets no `timeout`.
    pub request_timeout: String,
    /// A client that has not sent its request headers within this time is disconnected.
    pub header_read_timeout: String,
    /// An idle keep-alive client connection is closed after this long without a request.
    pub keepalive_timeout: String,
    /// A client that takes no byte of an answer for this long is disconnected, and the
    /// upstream call feeding the answer cancelled (nginx's `send_timeout`).
    pub send_timeout: String,
    /// On SIGTERM/SIGINT: stop accepting, then give in-flight requests this long to finish.
    pub shutdown_grace: String,
    /// Largest request body buffered for an aggregate route (413 beyond it).
    pub max_body: String,
    /// Most JSON values (elements, members, containers) in a request body that an
    /// aggregate route's template or `when` reads, counted before it is parsed (413
    /// beyond it). At least 1.
    pub max_body_values: usize,
    /// Liveness endpoint answered on the main listener (`200 {"status":"ok"}`).
    pub health_path: String,
    /// Proxies (CIDRs or addresses) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Runtime worker threads; default: the number of cores this process may use.
    pub workers: Option<usize>,
    /// Compress responses (gzip, br) for clients that accept it.
    pub compression: bool,
    /// Responses smaller than this are sent uncompressed.
    pub compression_min_size: String,
    /// Cross-origin access for browser dashboards; absent means no CORS headers at all.
    pub cors: Option<CorsConfig>,
    /// Connections served at once; more wait in the listen backlog. Default: no limit.
    pub max_connections: Option<usize>,
    /// Address of the admin listener (health, ready, metrics, config, reload), or `"off"`.
    pub admin_listen: String,
    /// Bearer token required for the admin POSTs, and for any non-loopback admin address.
    pub admin_token: Option<String>,
    /// TLS on the main listener; absent: plain HTTP.
    pub tls: Option<ServerTlsConfig>,
    /// Limits of the main listener's HTTP/2 connections.
    pub http2: Http2Config,
    /// With `tls`: an address (`IP:PORT`) of a plain listener that answers every request
    /// with `308` to the same URL over https.
    pub redirect_http: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            request_timeout: "30s".into(),
            header_read_timeout: "10s".into(),
            // nginx's keepalive_timeout.
            keepalive_timeout: "75s".into(),
            // nginx's send_timeout, and a proxy route's default idle_timeout.
            send_timeout: "60s".into(),
            shutdown_grace: "30s".into(),
            max_body: "10MiB".into(),
            max_body_values: 100_000,
            health_path: "/__health".into(),
            trusted_proxies: Vec::new(),
            workers: None,
            compression: true,
            compression_min_size: "1KiB".into(),
            cors: None,
            max_connections: None,
            admin_listen: "127.0.0.1:9901".into(),
            admin_token: None,
            tls: None,
            http2: Http2Config::default(),
            redirect_http: None,
        }
    }
}

/// `[cache]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Capacity in bytes of keys and answers; the least useful entries are evicted.
    pub max_size: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_size: "256MiB".into(),
        }
    }
}

/// `[access_log]`. Every key applies on a reload.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Write a line per request.
    pub enabled: bool,
    /// `"stdout"`, `"stderr"`, or the path of a file to append to (reopened on SIGUSR1).
    pub path: String,
    /// `"json"` (one object per line), `"text"` (`key=value`), or `"combined"` (nginx's).
    pub format: String,
    /// Lines are gathered up to this many bytes before a write.
    pub buffer: String,
    /// The longest a line waits in the buffer before it is written.
    pub flush: String,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "stderr".into(),
            format: "json".into(),
            buffer: "64KiB".into(),
            flush: "1s".into(),
        }
    }
}

/// `[tracing]`. Trace context (`traceparent`) is propagated whatever this says; this
/// section decides whether the gateway's own spans are recorded and exported.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// The OTLP collector's URL (`http://collector:4318`); absent: no spans are
    /// recorded, only propagated. For the HTTP protocols a URL without a path gets
    /// `/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// How spans are sent: `"http/protobuf"`, `"http/json"` or `"grpc"`.
    pub protocol: String,
    /// The share of new traces sampled, 0.0 to 1.0 (a client's sampled flag is
    /// followed; requests that fail are exported whatever this says).
    pub sample_ratio: f64,
    /// The `service.name` spans are exported under.
    pub service_name: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            protocol: "http/protobuf".into(),
            sample_ratio: 1.0,
            service_name: "fanout".into(),
        }
    }
}

/// `[server.cors]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to call the gateway (`https://dash.example.com`), or `["*"]`.
    pub allow_origins: Vec<String>,
    /// Methods allowed in preflight; absent: the method the preflight asks for.
    pub allow_methods: Option<Vec<String>>,
    /// Request headers allowed in preflight; absent: the headers the preflight asks for.
    pub allow_headers: Option<Vec<String>>,
    /// Response headers the browser may read.
    pub expose_headers: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age: String,
    /// Allow cookies and `Authorization` on cross-origin calls (not with origin `*`).
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allow_origins: Vec::new(),
            allow_methods: None,
            allow_headers: None,
            expose_headers: vec![
                "x-request-id".into(),
                "x-fanout-complete".into(),
                "server-timing".into(),
                "traceparent".into(),
            ],
            max_age: "10m".into(),
            allow_credentials: false,
        }
    }
}
