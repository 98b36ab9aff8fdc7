//! Route rate limits and client identity: governor buckets keyed by client (its address,
//! a header's value, the identity the route's auth proved, or one global bucket), the address a client really has behind
//! trusted proxies, and a bounded key store (`max_keys`, least recently used evicted,
//! refilled buckets pruned) so a flood of distinct keys cannot grow memory.

mod cluster;
mod store;

pub use cluster::{ClusterLimit, ClusterVerdict, Fallback};

use crate::auth::Identity;
use crate::json_path::Path;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use serde_json::Value;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::LazyLock;
use std::time::Duration;
use store::LruStore;

/// Keys a route's limit holds when its `rate_limit` sets no `max_keys`.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// A rate: so many events per period (`"100/min"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/min` or `N/hour`, as documented; another spelling of a period
    /// (`600/minute`) is refused with the documented one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid rate \"{text}\"; write a count per period, such as \"100/s\", \"600/min\" or \"1000/hour\""
            )
        };
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "hour" => Duration::from_secs(3600),
            _ => Duration::ZERO,
        };
        let strict = count.bytes().all(|b| b.is_ascii_digit()) && !per.is_zero();
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let count = NonZeroU32::new(count).ok_or_else(bad)?;
        if !strict {
            let period = match unit.trim().to_ascii_lowercase().as_str() {
                "s" | "sec" | "secs" | "second" | "seconds" => "s",
                "m" | "min" | "mins" | "minute" | "minutes" => "min",
                "h" | "hr" | "hrs" | "hour" | "hours" => "hour",
                _ => return Err(bad()),
            };
            return Err(format!(
                "rate \"{text}\" is not written the documented way; write \"{count}/{period}\""
            ));
        }
        Ok(Self { count, per })
    }

    /// The governor quota: refill evenly over the period, hold up to `burst` at once.
    pub fn quota(&self, burst: Option<NonZeroU32>) -> Quota {
        let every = self.per / self.count.get();
        Quota::with_period(every.max(Duration::from_nanos(1)))
            .expect("a positive period")
            .allow_burst(burst.unwrap_or(self.count))
    }
}

/// What a route's limit is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client's address (see [`client_ip`]).
    Ip,
    /// The value of a request header; requests without it share one bucket.
    Header(HeaderName),
    /// One bucket for everyone.
    Global,
    /// The identity the route's `auth` proved (`auth:sub`, `auth:CLAIM`); anonymous
    /// requests (an `auth_optional` route) share one bucket.
    Auth(AuthKey),
    /// The subject of the connection's verified client certificate (mutual TLS); a
    /// request without one is counted by its client's address, as `ip` counts it.
    ClientCert,
}

/// What of an identity a limit is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKey {
    /// `auth:sub`: the subject.
    Subject,
    /// `auth:CLAIM`: a claim (a dotted path), its string value or its JSON text; an
    /// identity without it is counted with the anonymous requests.
    Claim(Path),
}

impl LimitKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "ip" => Ok(LimitKey::Ip),
            "global" => Ok(LimitKey::Global),
            "client_cert" => Ok(LimitKey::ClientCert),
            "auth:sub" => Ok(LimitKey::Auth(AuthKey::Subject)),
            _ => match (text.strip_prefix("header:"), text.strip_prefix("auth:")) {
                (Some(name), _) => HeaderName::from_bytes(name.as_bytes())
                    .map(LimitKey::Header)
                    .map_err(|_| format!("\"{name}\" is not a valid header name")),
                (_, Some(claim)) => Path::parse(claim)
                    .map(|path| LimitKey::Auth(AuthKey::Claim(path)))
                    .map_err(|_| {
                        format!(
                            "\"{claim}\" is not a claim; write auth:sub, or a claim such as \
                             auth:tenant or auth:org.id"
                        )
                    }),
                _ => Err(format!(
                    "unknown key \"{text}\"; use ip, global, header:NAME, auth:sub, auth:CLAIM or client_cert"
                )),
            },
        }
    }
}

/// The bucket a request is counted in: fixed-size and owning nothing, so a stored key
/// never keeps the request it came from alive, and no string is built per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// The client's address, IPv4-mapped IPv6 written as IPv4 (see [`client_ip`]).
    Ip(IpAddr),
    /// A 128-bit keyed digest of the header's value (see [`ClientKey::value`]).
    Value(u128),
    /// A request without the keyed header: limited together, never let through.
    Anonymous,
    Global,
}

/// The decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed { remaining: u32 },
    Limited { retry_after: Duration },
}

impl ClientKey {
    /// The key of a header value: two 64-bit hashes under seeds drawn once per process
    /// (so keys carry over a reload), 16 bytes whatever the value's length. Two values
    /// share a bucket only if both hashes collide, which an attacker who cannot see the
    /// seeds cannot arrange.
    pub fn value(bytes: &[u8]) -> Self {
        static SEEDS: LazyLock<[foldhash::quality::RandomState; 2]> =
            LazyLock::new(Default::default);
        let [high, low] = &*SEEDS;
        ClientKey::Value(u128::from(high.hash_one(bytes)) << 64 | u128::from(low.hash_one(bytes)))
    }
}

type Limiter<C> = RateLimiter<ClientKey, LruStore, C, StateInformationMiddleware>;

/// One route's limit.
pub struct RouteLimit<C: Clock = DefaultClock> {
    pub key: LimitKey,
    /// The bucket size, for `RateLimit-Limit`.
    pub burst: u32,
    limiter: Limiter<C>,
}

impl<C: Clock> std::fmt::Debug for RouteLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLimit")
            .field("key", &self.key)
            .field("burst", &self.burst)
            .finish()
    }
}

impl RouteLimit {
    /// A limit holding at most `max_keys` buckets.
    pub fn new(rate: Rate, burst: Option<NonZeroU32>, key: LimitKey, max_keys: usize) -> Self {
        Self::with_clock(rate, burst, key, max_keys, DefaultClock::default())
    }
}

impl<C: Clock> RouteLimit<C> {
    pub fn with_clock(
        rate: Rate,
        burst: Option<NonZeroU32>,
        key: LimitKey,
        max_keys: usize,
        clock: C,
    ) -> Self {
        let quota = rate.quota(burst);
        let store = LruStore::new(max_keys);
        let limiter: Limiter<C> =
            RateLimiter::<_, _, C, StateInformationMiddleware>::new(quota, store, clock);
        Self {
            key,
            burst: quota.burst_size().get(),
            limiter,
        }
    }

    /// Counts one request for `key`.
    pub fn check(&self, key: &ClientKey) -> Verdict {
        match self.limiter.check_key(key) {
            Ok(state) => Verdict::Allowed {
                remaining: state.remaining_burst_capacity(),
            },
            Err(not_until) => Verdict::Limited {
                retry_after: not_until.wait_time_from(self.limiter.clock().now()),
            },
        }
    }

    /// Forgets keys whose buckets are full again: they behave exactly like new ones.
    pub fn prune(&self) {
        self.limiter.retain_recent();
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// The bucket of a request from `peer` with these headers, and the identity the
/// route's auth proved (`None`: anonymous, or a route without `auth`).
pub fn client_key(
    key: &LimitKey,
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    identity: Option<&Identity>,
) -> ClientKey {
    client_key_by(key, peer, headers, trusted, identity, ClientKey::value)
}

/// [`client_key`] with values keyed by `value`: [`ClientKey::value`] in this process,
/// [`ClientKey::stable`] for a bucket every instance shares.
pub fn client_key_by(
    key: &LimitKey,
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    identity: Option<&Identity>,
    value: impl Fn(&[u8]) -> ClientKey,
) -> ClientKey {
    match key {
        LimitKey::Auth(by) => {
            let Some(identity) = identity else {
                return ClientKey::Anonymous;
            };
            match by {
                AuthKey::Subject => value(identity.subject.as_bytes()),
                AuthKey::Claim(path) => match identity.claim(path) {
                    None | Some(Value::Null) => ClientKey::Anonymous,
                    Some(Value::String(s)) => value(s.as_bytes()),
                    Some(other) => value(other.to_string().as_bytes()),
                },
            }
        }
        // The certificate's subject is keyed by the gateway, which holds the connection;
        // here a request without one: by address.
        LimitKey::Ip | LimitKey::ClientCert => ClientKey::Ip(client_ip(peer, headers, trusted)),
        LimitKey::Header(name) => headers
            .get(name)
            .map_or(ClientKey::Anonymous, |v| value(v.as_bytes())),
        LimitKey::Global => ClientKey::Global,
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then the first
/// address from the right of `X-Forwarded-For` that is not a trusted proxy (or the
/// leftmost, if all are). A client that is not a trusted proxy cannot pick its identity.
///
/// Addresses are canonical: an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, what a
/// dual-stack listener sees of an IPv4 client) is the IPv4 address, for the trust check
/// and as a key, so one client never has two buckets.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A malformed hop ends the chain of trust: what lies left of it is unverified.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` hop: an address, or an address with a port as some proxies
/// write it (`1.2.3.4:5678`, `[2001:db8::1]:443`, `[2001:db8::1]`), made canonical.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let ip = match hop.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match hop.parse::<SocketAddr>() {
            Ok(addr) => addr.ip(),
            Err(_) => IpAddr::V6(
                hop.strip_prefix('[')?
                    .strip_suffix(']')?
                    .parse::<Ipv6Addr>()
                    .ok()?,
            ),
        },
    };
    Some(ip.to_canonical())
}

/// Parses a trusted proxy: a CIDR (`10.0.0.0/8`) or one address.
pub fn parse_trusted(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("\"{text}\" is not an address or CIDR; write one such as \"10.0.0.0/8\" or \"192.0.2.7\""))
}

#[cfg(test)]
mod tests;
