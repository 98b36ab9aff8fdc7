//! Route rate limits and client identity: governor buckets keyed by client (its address,
//! a header's value, or one global bucket), the address a client really has behind
//! trusted proxies, and pruning so a flood of distinct keys cannot grow memory.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

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
}

impl LimitKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "ip" => Ok(LimitKey::Ip),
            "global" => Ok(LimitKey::Global),
            _ => match text.strip_prefix("header:") {
                Some(name) => HeaderName::from_bytes(name.as_bytes())
                    .map(LimitKey::Header)
                    .map_err(|_| format!("\"{name}\" is not a valid header name")),
                None => Err(format!(
                    "unknown key \"{text}\"; use ip, global or header:NAME"
                )),
            },
        }
    }
}

/// The bucket a request is counted in. No strings are built per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Ip(IpAddr),
    Value(HeaderValue),
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

type Limiter<C> =
    RateLimiter<ClientKey, DefaultKeyedStateStore<ClientKey>, C, StateInformationMiddleware>;

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
    pub fn new(rate: Rate, burst: Option<NonZeroU32>, key: LimitKey) -> Self {
        Self::with_clock(rate, burst, key, DefaultClock::default())
    }
}

impl<C: Clock> RouteLimit<C> {
    pub fn with_clock(rate: Rate, burst: Option<NonZeroU32>, key: LimitKey, clock: C) -> Self {
        let quota = rate.quota(burst);
        let store: DefaultKeyedStateStore<ClientKey> = DefaultKeyedStateStore::default();
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
        self.limiter.shrink_to_fit();
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// The bucket of a request from `peer` with these headers.
pub fn client_key(
    key: &LimitKey,
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> ClientKey {
    match key {
        LimitKey::Ip => ClientKey::Ip(client_ip(peer, headers, trusted)),
        LimitKey::Header(name) => headers
            .get(name)
            .map_or(ClientKey::Anonymous, |v| ClientKey::Value(v.clone())),
        LimitKey::Global => ClientKey::Global,
    }
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then the first
/// address from the right of `X-Forwarded-For` that is not a trusted proxy (or the
/// leftmost, if all are). A client that is not a trusted proxy cannot pick its identity.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
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
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// Parses a trusted proxy: a CIDR (`10.0.0.0/8`) or one address.
pub fn parse_trusted(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("\"{text}\" is not an address or CIDR; write one such as \"10.0.0.0/8\" or \"192.0.2.7\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn rates_parse() {
        assert_eq!(Rate::parse("100/s").unwrap().per, Duration::from_secs(1));
        assert_eq!(Rate::parse("600/min").unwrap().count.get(), 600);
        assert_eq!(
            Rate::parse("3/hour").unwrap().per,
            Duration::from_secs(3600)
        );
        assert_eq!(
            Rate::parse("600/minute").unwrap_err(),
            "rate \"600/minute\" is not written the documented way; write \"600/min\""
        );
        assert!(
            Rate::parse("5 / hour")
                .unwrap_err()
                .ends_with("write \"5/hour\"")
        );
        assert!(
            Rate::parse("10/sec")
                .unwrap_err()
                .ends_with("write \"10/s\"")
        );
        assert_eq!(
            Rate::parse("fast").unwrap_err(),
            "invalid rate \"fast\"; write a count per period, such as \"100/s\", \"600/min\" or \"1000/hour\""
        );
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("10/week").is_err());
    }

    #[test]
    fn keys_parse() {
        assert_eq!(LimitKey::parse("ip"), Ok(LimitKey::Ip));
        assert_eq!(LimitKey::parse("global"), Ok(LimitKey::Global));
        assert_eq!(
            LimitKey::parse("header:x-user-id"),
            Ok(LimitKey::Header(HeaderName::from_static("x-user-id")))
        );
        assert_eq!(
            LimitKey::parse("user").unwrap_err(),
            "unknown key \"user\"; use ip, global or header:NAME"
        );
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_identity() {
        let trusted = [parse_trusted("10.0.0.0/8").unwrap()];
        assert_eq!(
            client_ip(ip("203.0.113.5"), &xff("1.2.3.4"), &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(ip("203.0.113.5"), &xff("1.2.3.4"), &[]),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn trusted_proxies_are_skipped_from_the_right() {
        let trusted = [
            parse_trusted("10.0.0.0/8").unwrap(),
            parse_trusted("192.0.2.7").unwrap(),
        ];
        // The client forged "6.6.6.6"; its real address was appended by our proxies.
        let h = xff("6.6.6.6, 198.51.100.4, 10.1.1.1, 192.0.2.7");
        assert_eq!(client_ip(ip("10.0.0.2"), &h, &trusted), ip("198.51.100.4"));
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff("10.9.9.9, 10.8.8.8"), &trusted),
            ip("10.9.9.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff("1.1.1.1, garbage, 10.1.1.1"), &trusted),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn missing_keyed_header_is_one_anonymous_bucket() {
        let key = LimitKey::Header(HeaderName::from_static("x-user-id"));
        assert_eq!(
            client_key(&key, ip("1.1.1.1"), &HeaderMap::new(), &[]),
            ClientKey::Anonymous
        );
        assert_eq!(
            client_key(&key, ip("2.2.2.2"), &HeaderMap::new(), &[]),
            ClientKey::Anonymous
        );
    }

    #[test]
    fn limits_refill_and_tell_how_long_to_wait() {
        let clock = FakeRelativeClock::default();
        let limit = RouteLimit::with_clock(
            Rate::parse("2/s").unwrap(),
            None,
            LimitKey::Global,
            clock.clone(),
        );
        let k = ClientKey::Global;
        assert_eq!(limit.check(&k), Verdict::Allowed { remaining: 1 });
        assert_eq!(limit.check(&k), Verdict::Allowed { remaining: 0 });
        assert_eq!(
            limit.check(&k),
            Verdict::Limited {
                retry_after: Duration::from_millis(500)
            }
        );
        clock.advance(Duration::from_millis(500));
        assert_eq!(limit.check(&k), Verdict::Allowed { remaining: 0 });
    }

    #[test]
    fn burst_allows_more_at_once() {
        let clock = FakeRelativeClock::default();
        let burst = NonZeroU32::new(5);
        let limit = RouteLimit::with_clock(
            Rate::parse("1/min").unwrap(),
            burst,
            LimitKey::Global,
            clock.clone(),
        );
        assert_eq!(limit.burst, 5);
        for left in (0..5).rev() {
            assert_eq!(
                limit.check(&ClientKey::Global),
                Verdict::Allowed { remaining: left }
            );
        }
        assert_eq!(
            limit.check(&ClientKey::Global),
            Verdict::Limited {
                retry_after: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn pruning_forgets_200k_distinct_keys() {
        let clock = FakeRelativeClock::default();
        let limit = RouteLimit::with_clock(
            Rate::parse("10/s").unwrap(),
            None,
            LimitKey::Ip,
            clock.clone(),
        );
        for i in 0..200_000u32 {
            limit.check(&ClientKey::Ip(IpAddr::from(i.to_be_bytes())));
        }
        assert_eq!(limit.len(), 200_000);
        limit.prune();
        assert_eq!(limit.len(), 200_000, "every bucket is still in use");
        clock.advance(Duration::from_secs(2));
        limit.prune();
        assert_eq!(limit.len(), 0, "full buckets are forgotten");
    }
}
