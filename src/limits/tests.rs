//! Unit tests of rate limits and client identity.
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
        "unknown key \"user\"; use ip, global, header:NAME, auth:sub, auth:CLAIM or client_cert"
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
        client_key(&key, ip("1.1.1.1"), &HeaderMap::new(), &[], None),
        ClientKey::Anonymous
    );
    assert_eq!(
        client_key(&key, ip("2.2.2.2"), &HeaderMap::new(), &[], None),
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
        DEFAULT_MAX_KEYS,
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
        DEFAULT_MAX_KEYS,
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
        300_000,
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

#[test]
fn at_max_keys_the_least_recently_used_key_is_evicted_and_starts_full() {
    let clock = FakeRelativeClock::default();
    let limit = RouteLimit::with_clock(
        Rate::parse("1/min").unwrap(),
        None,
        LimitKey::Ip,
        3,
        clock.clone(),
    );
    let key = |i: u8| ClientKey::Ip(IpAddr::from([10, 0, 0, i]));
    for i in 1..=3 {
        assert_eq!(limit.check(&key(i)), Verdict::Allowed { remaining: 0 });
    }
    // 1 is used again (and refused): 2 is now the least recently used.
    assert!(matches!(limit.check(&key(1)), Verdict::Limited { .. }));
    assert_eq!(limit.check(&key(4)), Verdict::Allowed { remaining: 0 });
    assert_eq!(limit.len(), 3, "never more than max_keys");
    assert_eq!(
        limit.check(&key(2)),
        Verdict::Allowed { remaining: 0 },
        "an evicted key starts with a full bucket"
    );
    assert!(matches!(limit.check(&key(1)), Verdict::Limited { .. }));
    assert!(matches!(limit.check(&key(4)), Verdict::Limited { .. }));
}

#[test]
fn a_large_store_is_bounded_across_its_shards() {
    let limit = RouteLimit::new(Rate::parse("10/s").unwrap(), None, LimitKey::Ip, 20_000);
    for i in 0..50_000u32 {
        limit.check(&ClientKey::Ip(IpAddr::from(i.to_be_bytes())));
    }
    assert!(limit.len() <= 20_000 + 16, "{} keys", limit.len());
    assert!(limit.len() >= 19_000, "{} keys", limit.len());
}

#[test]
fn header_values_are_keyed_by_a_fixed_size_digest() {
    let key = LimitKey::Header(HeaderName::from_static("x-user-id"));
    let with = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert("x-user-id", v.parse().unwrap());
        client_key(&key, ip("1.1.1.1"), &h, &[], None)
    };
    assert_eq!(with("ann"), with("ann"));
    assert_ne!(with("ann"), with("bob"));
    assert_ne!(with("ann"), with("ann "));
    let long = "x".repeat(8192);
    assert_eq!(with(&long), with(&long));
    assert!(
        std::mem::size_of::<ClientKey>() <= 32,
        "no key holds heap bytes"
    );
}

#[test]
fn mapped_addresses_are_their_ipv4_address() {
    let trusted = [parse_trusted("10.0.0.0/8").unwrap()];
    assert_eq!(
        client_ip(ip("::ffff:203.0.113.5"), &HeaderMap::new(), &trusted),
        ip("203.0.113.5")
    );
    // A mapped peer in a trusted IPv4 range is trusted.
    assert_eq!(
        client_ip(ip("::ffff:10.0.0.2"), &xff("::ffff:1.1.1.1"), &trusted),
        ip("1.1.1.1")
    );
    assert_eq!(
        client_ip(ip("::1"), &HeaderMap::new(), &trusted),
        ip("::1"),
        "other IPv6 addresses stay as they are"
    );
}

#[test]
fn forwarded_hops_with_ports_are_addresses() {
    let trusted = [parse_trusted("10.0.0.0/8").unwrap()];
    for (hop, client) in [
        ("1.1.1.1:5678", "1.1.1.1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[::ffff:1.1.1.1]:80", "1.1.1.1"),
        ("2001:db8::1", "2001:db8::1"),
    ] {
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff(hop), &trusted),
            ip(client),
            "{hop}"
        );
    }
    // A trusted hop with a port is still skipped.
    assert_eq!(
        client_ip(ip("10.0.0.2"), &xff("1.1.1.1, 10.1.1.1:80"), &trusted),
        ip("1.1.1.1")
    );
    // Garbage still ends the chain.
    for hop in ["1.1.1.1:", "[1.1.1.1]:80", "::1]:80", "host:80"] {
        assert_eq!(
            client_ip(ip("10.0.0.2"), &xff(hop), &trusted),
            ip("10.0.0.2"),
            "{hop}"
        );
    }
}
