//! Weighted canaries as written and as compiled: a proxy route's `proxy` table or an
//! aggregate backend may name `upstreams = [{ name = "v1", weight = 90 }, { name = "v2",
//! weight = 10 }]` in place of one `upstream`, with an optional `sticky` key that keeps a
//! client on its pick. The pick itself is the gateway's (`crate::canary`).

use crate::json_path::Path;
use crate::limits::AuthKey;
use http::HeaderName;
use serde::{Deserialize, Serialize};

/// One entry of `upstreams = [{ name = "v2", weight = 10 }]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeightedUpstreamConfig {
    /// Name of an `[upstreams.NAME]` entry.
    pub name: String,
    /// Share of requests, relative to the other entries' weights (an integer ≥ 0);
    /// `0`: never picked (draining).
    pub weight: i64,
}

impl Default for WeightedUpstreamConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            weight: 1,
        }
    }
}

/// A checked canary: the upstreams in their written order, with their weights, and the
/// key that makes the pick sticky.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanarySpec {
    /// `(upstream name, weight)`, in the order written; the weights' sum is positive.
    pub upstreams: Vec<(String, u32)>,
    /// `None`: a fresh random pick per request.
    pub sticky: Option<StickyKey>,
}

impl CanarySpec {
    /// The weights, in the written order.
    pub fn weights(&self) -> Vec<u32> {
        self.upstreams.iter().map(|(_, w)| *w).collect()
    }

    /// `v1 90, v2 10 (sticky header:x-user-id)`: how `fanout check`'s route table shows it.
    pub fn describe(&self) -> String {
        let list: Vec<String> = self
            .upstreams
            .iter()
            .map(|(name, weight)| format!("{name} {weight}"))
            .collect();
        match &self.sticky {
            None => list.join(", "),
            Some(key) => format!("{} (sticky {key})", list.join(", ")),
        }
    }
}

/// What keeps a client on its pick: the value is hashed into the draw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// `header:NAME`: a request header's value.
    Header(HeaderName),
    /// `auth:sub` or `auth:CLAIM`: the identity the route's `auth` proved.
    Auth(AuthKey),
    /// `cookie:NAME`: a cookie's value.
    Cookie(String),
}

impl StickyKey {
    /// Parses `header:NAME`, `auth:sub`, `auth:CLAIM` (a dotted path) or `cookie:NAME`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("header:") {
            return HeaderName::from_bytes(name.as_bytes())
                .map(StickyKey::Header)
                .map_err(|_| format!("\"{name}\" is not a valid header name"));
        }
        if text == "auth:sub" {
            return Ok(StickyKey::Auth(AuthKey::Subject));
        }
        if let Some(claim) = text.strip_prefix("auth:") {
            return Path::parse(claim)
                .map(|path| StickyKey::Auth(AuthKey::Claim(path)))
                .map_err(|_| {
                    format!(
                        "\"{claim}\" is not a claim; write auth:sub, or a claim such as auth:tenant"
                    )
                });
        }
        if let Some(name) = text.strip_prefix("cookie:") {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
            return if token {
                Ok(StickyKey::Cookie(name.to_owned()))
            } else {
                Err(format!("\"{name}\" is not a cookie name"))
            };
        }
        Err(format!(
            "unknown key \"{text}\"; use header:NAME, auth:sub, auth:CLAIM or cookie:NAME"
        ))
    }
}

impl std::fmt::Display for StickyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StickyKey::Header(name) => write!(f, "header:{name}"),
            StickyKey::Auth(AuthKey::Subject) => f.write_str("auth:sub"),
            StickyKey::Auth(AuthKey::Claim(path)) => write!(f, "auth:{path}"),
            StickyKey::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_keys_parse_and_print_back() {
        for text in [
            "header:x-user-id",
            "auth:sub",
            "auth:org.id",
            "cookie:session",
        ] {
            let key = StickyKey::parse(text).unwrap();
            assert_eq!(key.to_string(), text);
        }
        assert!(StickyKey::parse("header:bad name").is_err());
        assert!(StickyKey::parse("cookie:").is_err());
        assert!(StickyKey::parse("cookie:a;b").is_err());
        assert!(StickyKey::parse("auth:a..b").is_err());
        let e = StickyKey::parse("ip").unwrap_err();
        assert!(e.contains("header:NAME"), "{e}");
    }
}
