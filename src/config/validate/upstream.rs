//! Validation of `[upstreams.NAME]`.

use super::Problems;
use super::server::MAX_AT_ONCE;
use crate::config::compiled::MAX_DEPTH_LIMIT;
use crate::config::*;
use crate::limits::Rate;
use http::{HeaderMap, HeaderValue};
use std::num::NonZeroU32;

/// The shortest time between health probes.
const MIN_HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

pub(super) fn upstream(name: &str, u: &UpstreamConfig, p: &mut Problems) -> UpstreamSpec {
    let place = format!("upstreams.{name}");
    let lowercase = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !lowercase {
        // FANOUT__UPSTREAMS__NAME__KEY overrides arrive lowercased; another name could
        // never be overridden.
        p.add(
            place.clone(),
            "upstream names use lowercase letters, digits, _ and -",
        );
    }
    let base = match url::Url::parse(&u.url) {
        _ if u.url.is_empty() => {
            p.add(
                format!("{place}.url"),
                "is required: the base URL, such as \"http://127.0.0.1:9001\"",
            );
            String::new()
        }
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.has_host()
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            url.as_str().trim_end_matches('/').to_string()
        }
        _ => {
            p.add(
                format!("{place}.url"),
                format!(
                    "\"{}\" is not an http(s) base URL; write it as \"http://host:port\" or \"https://host/prefix\", without query",
                    crate::config::document::redact_user_info(&u.url)
                ),
            );
            String::new()
        }
    };
    // Empty when the URL was refused: tls and h2c are then not checked against it.
    let scheme = base.split_once("://").map(|(scheme, _)| scheme);
    let mut headers = HeaderMap::new();
    for (k, v) in &u.headers {
        let hplace = format!("{place}.headers.{k}");
        let Some(name) = p.header_name(&hplace, k) else {
            continue;
        };
        match HeaderValue::from_str(v) {
            Ok(mut value) => {
                value.set_sensitive(true);
                headers.insert(name, value);
            }
            // The value may hold a secret: name the place, never the text.
            Err(_) => p.add(
                hplace,
                "the value is not valid header text (control characters or non-ASCII)",
            ),
        }
    }
    let tls = super::upstream_tls::upstream_tls(&place, scheme, u.tls.as_ref(), u.h2c, p);
    UpstreamSpec {
        name: name.to_string(),
        base,
        timeout: p.duration(&format!("{place}.timeout"), &u.timeout),
        connect_timeout: p.duration(&format!("{place}.connect_timeout"), &u.connect_timeout),
        pool_idle_per_host: u.pool_idle_per_host,
        pool_idle_timeout: p.duration(&format!("{place}.pool_idle_timeout"), &u.pool_idle_timeout),
        headers,
        max_response: p.size(&format!("{place}.max_response"), &u.max_response),
        max_depth: match u.max_depth {
            depth @ 1..=MAX_DEPTH_LIMIT => depth,
            other => {
                p.add(
                    format!("{place}.max_depth"),
                    format!(
                        "{other} is out of range; write a nesting depth from 1 to {MAX_DEPTH_LIMIT}"
                    ),
                );
                MAX_DEPTH_LIMIT
            }
        },
        max_values: match u.max_values {
            0 => {
                p.add(
                    format!("{place}.max_values"),
                    "must be at least 1; leave it out for the default of 1000000",
                );
                1
            }
            n => n,
        },
        max_in_flight: match u.max_in_flight {
            Some(0) => {
                p.add(
                    format!("{place}.max_in_flight"),
                    "must be at least 1; leave it out for no limit",
                );
                None
            }
            Some(n) if n > MAX_AT_ONCE => {
                p.add(
                    format!("{place}.max_in_flight"),
                    format!("{n} is more calls than can be counted at once; the most is {MAX_AT_ONCE}, or leave it out for no limit"),
                );
                None
            }
            n => n,
        },
        queue_timeout: p.duration(&format!("{place}.queue_timeout"), &u.queue_timeout),
        rate_limit: u.rate_limit.as_ref().and_then(|l| {
            let rate = Rate::parse(&l.rate)
                .map_err(|e| p.add(format!("{place}.rate_limit.rate"), e))
                .ok()?;
            if l.burst == Some(0) {
                p.add(
                    format!("{place}.rate_limit.burst"),
                    "must be at least 1; leave it out to allow the rate's count at once",
                );
            }
            Some(UpstreamLimitSpec {
                rate,
                burst: l.burst.and_then(NonZeroU32::new),
                scope: super::cluster::scope(&format!("{place}.rate_limit.scope"), &l.scope, p),
            })
        }),
        retries: u.retries,
        hedge_after: u
            .hedge_after
            .as_ref()
            .map(|h| p.duration(&format!("{place}.hedge_after"), h)),
        circuit_breaker: u.circuit_breaker.as_ref().map(|c| {
            if c.failures == 0 {
                p.add(
                    format!("{place}.circuit_breaker.failures"),
                    "must be at least 1",
                );
            }
            (
                c.failures.max(1),
                p.duration(&format!("{place}.circuit_breaker.open_for"), &c.open_for),
            )
        }),
        health_check: u.health_check.as_ref().map(|h| {
            if !h.path.starts_with('/') {
                p.add(
                    format!("{place}.health_check.path"),
                    format!("\"{}\" must start with \"/\"", h.path),
                );
            }
            let interval_place = format!("{place}.health_check.interval");
            let interval = p.duration(&interval_place, &h.interval);
            if interval < MIN_HEALTH_INTERVAL {
                p.add(
                    interval_place,
                    format!("\"{}\" is shorter than 100ms: probes that often load the upstream more than they tell; use \"1s\" or more", h.interval),
                );
            }
            HealthCheckSpec {
                path: h.path.clone(),
                interval,
                timeout: p.duration(&format!("{place}.health_check.timeout"), &h.timeout),
            }
        }),
        tls,
        h2c: u.h2c,
    }
}
