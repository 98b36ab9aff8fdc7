//! `[[routes.backends]]` as written: the backend's raw struct, its defaults, and the
//! choices it names (`on_error`, `merge`, `for_each_fail`).

use super::{MirrorConfig, WeightedUpstreamConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[[routes.backends]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendConfig {
    /// Unique in the route; the key of this answer in the merged body.
    pub name: String,
    /// Name of an `[upstreams.NAME]` entry.
    pub upstream: String,
    /// Path and query on the upstream, with `{param}`, `{query.NAME}`, `{header.NAME}`,
    /// `{BACKEND.dotted.path}` (another backend's answer) and, with `for_each`, `{item}`.
    pub path: String,
    /// `true`: this backend's failure fails the whole route; the same as
    /// `on_error = "fail"`, kept as its short form.
    pub required: Option<bool>,
    /// What this backend's failure does: `"fail"` fails the route, `"default"` puts its
    /// `default` (or `null`) under its key, `"omit"` leaves its key out. Default
    /// `"default"`, or `"fail"` with `required = true`.
    pub on_error: Option<OnError>,
    /// Per-call timeout; default the upstream's `timeout`.
    pub timeout: Option<String>,
    /// JSON used in place of the answer when this optional backend fails.
    pub default: Option<serde_json::Value>,
    /// `"key"`: the answer goes under `name`; `"root"`: its fields go to the top level.
    pub merge: MergeMode,
    /// Send the client's method and body (buffered up to `max_body`) instead of a GET.
    pub forward_body: bool,
    /// Cache 2xx answers for this long; default: not cached.
    pub cache_ttl: Option<String>,
    /// After `cache_ttl`, serve the stale answer at once for this long while one
    /// background call refreshes it.
    pub stale_while_revalidate: Option<String>,
    /// After `cache_ttl`, serve the stale answer for this long when a fresh call fails.
    pub stale_if_error: Option<String>,
    /// Store answers even when the upstream says `Cache-Control: no-store` or `private`.
    pub cache_ignore_upstream: bool,
    /// `local`: this instance's cache only; `cluster`: also the `[cluster]` store, so
    /// every instance shares the answer.
    pub cache_scope: String,
    /// Shaping, first: a dotted path into the answer (`data.items`, `items.0`).
    pub extract: Option<String>,
    /// Shaping, second: keep only these dotted paths (of each element of an array).
    pub select: Vec<String>,
    /// Shaping, third: drop these dotted paths.
    pub omit: Vec<String>,
    /// Shaping, last: rename top-level keys, `{ old = "new" }`.
    pub rename: BTreeMap<String, String>,
    /// One call per element of this array in another backend's answer
    /// (`user.friend_ids`); the answers form an array in element order.
    pub for_each: Option<String>,
    /// With `for_each`: at most this many element calls at once.
    pub concurrency: usize,
    /// With `for_each`: a longer array fails the backend (`too_many_items`) rather than
    /// flooding the upstream.
    pub max_items: usize,
    /// With `for_each`: `"null"` puts null in place of a failed element; `"all"` fails the
    /// whole backend.
    pub for_each_fail: ForEachFail,
    /// The call's method: `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// A JSON body template sent with the call (`Content-Type: application/json`): a
    /// string that is exactly one placeholder keeps its value's JSON type, other strings
    /// interpolate text. Not with `GET` or `forward_body`.
    pub body: Option<serde_json::Value>,
    /// The call may be repeated: a write call (not `GET`) is retried, hedged and cached
    /// only when this is set.
    pub idempotent: bool,
    /// Request headers set on the call, `{ "x-tenant" = "{user.tenant_id}" }`: text
    /// templates whose values are checked to be valid header values.
    pub headers: BTreeMap<String, String>,
    /// A CEL condition (`"user.plan == 'pro'"`) over `request` and earlier backends'
    /// answers: false skips this backend (no call; its `default` in its place), and every
    /// backend reading it; default: always called.
    pub when: Option<String>,
    /// A weighted canary in place of `upstream`: `[{ name = "v1", weight = 90 }, { name =
    /// "v2", weight = 10 }]`; each request's call goes to one of them.
    pub upstreams: Option<Vec<WeightedUpstreamConfig>>,
    /// With `upstreams`: keep a client on its pick by hashing `header:NAME`, `auth:sub`,
    /// `auth:CLAIM` or `cookie:NAME`; default: a random pick per request.
    pub sticky: Option<String>,
    /// Copies of this backend's calls sent to shadow upstreams, fire and forget.
    pub mirror: Vec<MirrorConfig>,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            upstream: String::new(),
            path: String::new(),
            required: None,
            on_error: None,
            timeout: None,
            default: None,
            merge: MergeMode::Key,
            forward_body: false,
            cache_ttl: None,
            stale_while_revalidate: None,
            stale_if_error: None,
            cache_ignore_upstream: false,
            cache_scope: "local".into(),
            extract: None,
            select: Vec::new(),
            omit: Vec::new(),
            rename: BTreeMap::new(),
            for_each: None,
            concurrency: 8,
            max_items: 100,
            for_each_fail: ForEachFail::Null,
            method: "GET".into(),
            body: None,
            idempotent: false,
            headers: BTreeMap::new(),
            when: None,
            upstreams: None,
            sticky: None,
            mirror: Vec::new(),
        }
    }
}

/// What a failed element call of a `for_each` backend does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForEachFail {
    /// `null` takes the element's place; the others are kept.
    #[default]
    Null,
    /// The backend fails, like any failed backend.
    All,
}

/// What a backend's failure (or, for `omit`, its being skipped) does to the route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The route fails with this backend's error (`required = true`).
    Fail,
    /// Its `default` (or `null`) takes the answer's place under its key.
    #[default]
    Default,
    /// Its key is left out of the merged body (with `merge = "root"`, nothing is spread).
    Omit,
}

/// Where a backend's answer goes in the merged body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMode {
    /// Under the backend's `name`.
    #[default]
    Key,
    /// Its object's fields spread into the top level; a later backend wins a clash.
    Root,
}
