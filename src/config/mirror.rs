//! `mirror = [{ upstream = "shadow", percent = 10 }]`: copies of a proxy route's
//! requests (or of an aggregate backend's calls) sent to a shadow upstream, fire and
//! forget. The raw entry as written, and the compiled [`MirrorSpec`] `validate` makes
//! of it (in `validate/mirror.rs`).

use crate::template::Template;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The default of a route's `mirror_max_body`: larger bodies are not copied.
pub const DEFAULT_MIRROR_MAX_BODY: &str = "1MiB";

/// One entry of `mirror = [...]`, on a proxy route or an aggregate backend.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorConfig {
    /// Name of an `[upstreams.NAME]` entry: the shadow the copies go to.
    pub upstream: String,
    /// Share of requests copied, `0 < percent <= 100`, in steps of 0.01; chosen by the
    /// request id, so one request is copied to every entry of the same share or none.
    pub percent: f64,
    /// Path (and query) on the shadow, in the same template language as the route's
    /// own; default: the path the primary call uses, query included.
    pub path: Option<String>,
    /// A copy without a whole answer by then is abandoned; default: the shadow
    /// upstream's `timeout`.
    pub timeout: Option<String>,
    /// Copies of this entry in flight at once; further copies are dropped and counted
    /// (`fanout_mirror_dropped_total{reason="in_flight"}`).
    pub max_in_flight: usize,
    /// The copy carries the client's credentials (`Authorization`, `Cookie`,
    /// `Proxy-Authorization`, `X-Forwarded-Client-Cert`) and an aggregate backend's own
    /// `headers`; default false: they are removed, a shadow is not trusted with them.
    pub credentials: bool,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            upstream: String::new(),
            percent: 100.0,
            path: None,
            timeout: None,
            max_in_flight: 64,
            credentials: false,
        }
    }
}

/// A mirror entry, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorSpec {
    /// The shadow upstream's name (known to exist).
    pub upstream: String,
    /// Requests whose id falls in a bucket (of 10,000) below this are copied:
    /// `percent * 100`, 1 to 10,000.
    pub threshold: u32,
    /// `None`: the primary call's path.
    pub path: Option<Template>,
    /// `None`: the shadow upstream's own timeout.
    pub timeout: Option<Duration>,
    /// At least 1.
    pub max_in_flight: usize,
    /// The route's `mirror_max_body`: a larger body is not copied.
    pub max_body: u64,
    /// The copy keeps the client's credentials and the backend's own headers.
    pub credentials: bool,
}
