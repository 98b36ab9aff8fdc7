//! Weighted canaries at run time: a proxy route or an aggregate backend with `upstreams
//! = [{ name, weight }]` sends each request to one of them, picked by [`pick`]'s rule
//! from a 64-bit draw.
//!
//! The draw: with `sticky`, the SHA-256 prefix of the key's value (a header, a cookie, or
//! the identity's subject or claim), so a client keeps its pick across requests,
//! instances and reloads while the weights stay; a request without the key, or a canary
//! without `sticky`, draws at random from `fastrand`'s thread-local generator (no lock,
//! a few instructions). A hash of the request id was the other choice; it was not taken
//! because a client may send its own `x-request-id`, and one that repeats it would always
//! land on the same upstream, bending the split.
//!
//! Each choice holds what a call needs of its upstream (its pool, its settings), its
//! `Server-Timing` entry made once, and its `fanout_canary_requests_total` counter.

pub mod pick;

use crate::auth::Identity;
use crate::config::{CanarySpec, StickyKey};
use crate::limits::AuthKey;
use crate::metrics::Label;
use http::{HeaderMap, HeaderValue, header};
use pick::{PickTable, sticky_draw};
use prometheus_client::metrics::counter::Counter;
use serde_json::Value;

/// A canary's upstreams, each with what a call needs of it (`T`), and how one is picked.
#[derive(Debug)]
pub struct Canary<T> {
    table: PickTable,
    sticky: Option<StickyKey>,
    choices: Box<[Choice<T>]>,
}

/// One upstream of a canary.
#[derive(Debug)]
pub struct Choice<T> {
    /// The upstream's name, as the access log writes it.
    pub name: Label,
    pub target: T,
    /// `upstream;desc="NAME"`, the proxy answer's `Server-Timing` entry.
    pub timing: HeaderValue,
    /// `fanout_canary_requests_total{route,backend,upstream}`.
    requests: Counter,
}

impl<T> Canary<T> {
    /// The canary of `spec`, with `targets` in the spec's order and each upstream's
    /// request counter from `counter(name)`.
    pub fn new(spec: &CanarySpec, targets: Vec<T>, counter: impl Fn(&str) -> Counter) -> Self {
        let table = PickTable::new(&spec.weights())
            .unwrap_or_else(|| PickTable::new(&vec![1; spec.upstreams.len()]).expect("one"));
        let choices = spec
            .upstreams
            .iter()
            .zip(targets)
            .map(|((name, _), target)| Choice {
                name: Label::new(name),
                target,
                timing: HeaderValue::from_str(&format!("upstream;desc={}", quoted(name)))
                    .unwrap_or_else(|_| HeaderValue::from_static("upstream")),
                requests: counter(name),
            })
            .collect();
        Self {
            table,
            sticky: spec.sticky.clone(),
            choices,
        }
    }

    /// Picks the upstream of one request: by its sticky key's value when it has one,
    /// else at random. Not counted: [`Canary::count`] counts a pick that is called.
    pub fn pick(&self, headers: &HeaderMap, identity: Option<&Identity>) -> usize {
        let keyed = self
            .sticky
            .as_ref()
            .and_then(|key| key_draw(key, headers, identity));
        self.table.pick(keyed.unwrap_or_else(|| fastrand::u64(..)))
    }

    /// Counts a request that went to choice `i`.
    pub fn count(&self, i: usize) {
        self.choices[i].requests.inc();
    }

    /// Choice `i` (an index [`Canary::pick`] gave).
    pub fn choice(&self, i: usize) -> &Choice<T> {
        &self.choices[i]
    }

    /// Every choice, in the written order.
    pub fn choices(&self) -> &[Choice<T>] {
        &self.choices
    }
}

/// The draw of a request's sticky key; `None` when the request lacks it (or it is
/// empty).
fn key_draw(key: &StickyKey, headers: &HeaderMap, identity: Option<&Identity>) -> Option<u64> {
    let draw = |bytes: &[u8]| (!bytes.is_empty()).then(|| sticky_draw(bytes));
    match key {
        StickyKey::Header(name) => draw(headers.get(name)?.as_bytes()),
        StickyKey::Cookie(name) => headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (n, value) = pair.trim().split_once('=')?;
                (n == name).then_some(value)
            })
            .and_then(|v| draw(v.as_bytes())),
        StickyKey::Auth(AuthKey::Subject) => draw(identity?.subject.as_bytes()),
        StickyKey::Auth(AuthKey::Claim(path)) => match identity?.claim(path)? {
            Value::Null => None,
            Value::String(s) => draw(s.as_bytes()),
            other => draw(other.to_string().as_bytes()),
        },
    }
}

/// `name` as an HTTP quoted-string (RFC 9110 §5.6.4): `"v2"`.
pub fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_path::Path;
    use std::sync::Arc;

    fn canary(sticky: Option<StickyKey>) -> Canary<&'static str> {
        let spec = CanarySpec {
            upstreams: vec![("v1".into(), 50), ("v2".into(), 50)],
            sticky,
        };
        Canary::new(&spec, vec!["one", "two"], |_| Counter::default())
    }

    fn identity(sub: &str, claims: Value) -> Identity {
        Identity {
            provider: Arc::from("p"),
            subject: Arc::from(sub),
            claims,
            upstream_headers: Vec::new(),
        }
    }

    #[test]
    fn each_sticky_key_keeps_its_value_on_one_upstream() {
        let by_header = canary(Some(StickyKey::Header("x-user-id".parse().unwrap())));
        let by_cookie = canary(Some(StickyKey::Cookie("uid".into())));
        let by_sub = canary(Some(StickyKey::Auth(AuthKey::Subject)));
        let by_claim = canary(Some(StickyKey::Auth(AuthKey::Claim(
            Path::parse("org.id").unwrap(),
        ))));
        let mut seen = [[false; 2]; 4];
        for user in 0..64 {
            let value = format!("user-{user}");
            let want = PickTable::new(&[50, 50])
                .unwrap()
                .pick(sticky_draw(value.as_bytes()));
            let mut headers = HeaderMap::new();
            headers.insert("x-user-id", value.parse().unwrap());
            headers.insert(
                header::COOKIE,
                format!("a=b; uid={value}; c=d").parse().unwrap(),
            );
            let who = identity(&value, serde_json::json!({ "org": { "id": value } }));
            for (k, (c, id)) in [
                (&by_header, None),
                (&by_cookie, None),
                (&by_sub, Some(&who)),
                (&by_claim, Some(&who)),
            ]
            .into_iter()
            .enumerate()
            {
                for _ in 0..4 {
                    assert_eq!(c.pick(&headers, id), want, "key {k}, {value}");
                }
                seen[k][want] = true;
            }
        }
        assert_eq!(seen, [[true; 2]; 4], "both upstreams get users");
    }

    #[test]
    fn a_request_without_the_key_is_picked_at_random() {
        let by_header = canary(Some(StickyKey::Header("x-user-id".parse().unwrap())));
        let mut headers = HeaderMap::new();
        headers.insert("x-user-id", HeaderValue::from_static(""));
        let mut seen = [0; 2];
        for _ in 0..200 {
            seen[by_header.pick(&HeaderMap::new(), None)] += 1;
            seen[by_header.pick(&headers, None)] += 1;
        }
        assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
    }

    #[test]
    fn timing_entries_quote_the_name() {
        let c = canary(None);
        assert_eq!(c.choice(1).timing, "upstream;desc=\"v2\"");
        assert_eq!(c.choice(0).target, "one");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
