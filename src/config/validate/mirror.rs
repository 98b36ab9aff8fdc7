//! Validation of `mirror = [...]` (on a proxy route, or an aggregate backend) and of the
//! route's `mirror_max_body`: the shadow upstream exists, the share is a percentage, the
//! path template reads only what the primary call has.

use super::{Problems, known_upstream};
use crate::config::mirror::{DEFAULT_MIRROR_MAX_BODY, MirrorConfig, MirrorSpec};
use crate::config::{BackendConfig, RouteConfig};
use crate::template::{Scope, Template, TemplateMode};

/// The mirrors of a proxy route: `routes[i].mirror`.
pub(super) fn proxy_mirrors(
    place: &str,
    r: &RouteConfig,
    params: &[String],
    known: &[&str],
    p: &mut Problems,
) -> Vec<MirrorSpec> {
    if r.mirror.is_empty() {
        unused_max_body(place, r, p);
    }
    let max_body = max_body(place, r, p);
    let scope = Scope::params(params);
    let checks = Checks {
        place,
        scope: &scope,
        mode: TemplateMode::Proxy,
        waits_for: &[],
        max_body,
        known,
    };
    entries(&checks, &r.mirror, p)
}

/// An aggregate route's `mirror_max_body`, for its backends' mirrors; a `mirror` on the
/// route itself is refused: an aggregate makes several calls, each backend says which
/// of its calls are copied.
pub(super) fn aggregate_max_body(place: &str, r: &RouteConfig, p: &mut Problems) -> u64 {
    if !r.mirror.is_empty() {
        p.add(
            format!("{place}.mirror"),
            "an aggregate route copies its backends' calls, not the request: put mirror = [...] in a [[routes.backends]]",
        );
    } else if r.backends.iter().all(|b| b.mirror.is_empty()) {
        unused_max_body(place, r, p);
    }
    max_body(place, r, p)
}

/// A `mirror_max_body` on a route that copies nothing is a mistake: the mirror it was
/// meant for is missing or misplaced.
fn unused_max_body(place: &str, r: &RouteConfig, p: &mut Problems) {
    if r.mirror_max_body.is_some() {
        p.add(
            format!("{place}.mirror_max_body"),
            "the route copies nothing: add mirror = [...] (on the route for a proxy, on a backend for an aggregate), or remove mirror_max_body",
        );
    }
}

/// The mirrors of an aggregate backend: `routes[i].backends[j].mirror`. Its path may
/// read what the backend's own path may, but another backend's answer only when the
/// backend waits for it anyway (`waits_for`).
pub(super) fn backend_mirrors(
    place: &str,
    b: &BackendConfig,
    scope: &Scope<'_>,
    waits_for: &[usize],
    max_body: u64,
    known: &[&str],
    p: &mut Problems,
) -> Vec<MirrorSpec> {
    let checks = Checks {
        place,
        scope,
        mode: TemplateMode::Backend,
        waits_for,
        max_body,
        known,
    };
    entries(&checks, &b.mirror, p)
}

/// What every entry of one `mirror` list is checked against.
struct Checks<'a> {
    /// The place of the route or backend holding the list.
    place: &'a str,
    scope: &'a Scope<'a>,
    mode: TemplateMode,
    /// The backends (by index) the primary call waits for; a mirror path reads no other.
    waits_for: &'a [usize],
    max_body: u64,
    known: &'a [&'a str],
}

fn entries(c: &Checks<'_>, list: &[MirrorConfig], p: &mut Problems) -> Vec<MirrorSpec> {
    list.iter()
        .enumerate()
        .filter_map(|(i, m)| entry(&format!("{}.mirror[{i}]", c.place), c, m, p))
        .collect()
}

fn entry(place: &str, c: &Checks<'_>, m: &MirrorConfig, p: &mut Problems) -> Option<MirrorSpec> {
    let before = p.0.len();
    known_upstream(&format!("{place}.upstream"), &m.upstream, c.known, p);
    let threshold = threshold(&format!("{place}.percent"), m.percent, p);
    let path = m.path.as_ref().and_then(|text| {
        let at = format!("{place}.path");
        let template = Template::parse(text, c.scope, c.mode)
            .map_err(|e| p.add(at.clone(), e))
            .ok()?;
        if let Some(read) = template.answers_read().find(|i| !c.waits_for.contains(i)) {
            let name = c.scope.backends.get(read).copied().unwrap_or("?");
            p.add(
                at,
                format!(
                    "reads backend \"{name}\"'s answer, which the backend's own call does not wait for; \
                     read only what its path, body, headers or when read"
                ),
            );
            return None;
        }
        Some(template)
    });
    // A zero duration is refused by the parser.
    let timeout = m
        .timeout
        .as_ref()
        .map(|t| p.duration(&format!("{place}.timeout"), t));
    if m.max_in_flight == 0 {
        p.add(
            format!("{place}.max_in_flight"),
            "must be at least 1: the copies of this entry allowed in flight at once",
        );
    }
    (p.0.len() == before).then(|| MirrorSpec {
        upstream: m.upstream.clone(),
        threshold,
        path,
        timeout,
        max_in_flight: m.max_in_flight,
        max_body: c.max_body,
        credentials: m.credentials,
    })
}

/// `percent` as a threshold out of 10,000 buckets: `0 < percent <= 100`, at least 0.01.
fn threshold(place: &str, percent: f64, p: &mut Problems) -> u32 {
    // Written so that NaN fails too.
    if !(percent > 0.0 && percent <= 100.0) {
        p.add(
            place,
            format!(
                "{percent} is not a share of requests: write more than 0 and at most 100, such as 10"
            ),
        );
        return 0;
    }
    let threshold = (percent * 100.0).round() as u32;
    if threshold == 0 {
        p.add(
            place,
            format!("{percent} is below 0.01, the smallest share copied; write at least 0.01"),
        );
    }
    threshold
}

/// The route's `mirror_max_body` (default 1MiB).
fn max_body(place: &str, r: &RouteConfig, p: &mut Problems) -> u64 {
    let text = r
        .mirror_max_body
        .as_deref()
        .unwrap_or(DEFAULT_MIRROR_MAX_BODY);
    p.size(&format!("{place}.mirror_max_body"), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn threshold_of(percent: f64) -> (u32, usize) {
        let mut p = Problems::default();
        let t = threshold("routes[0].mirror[0].percent", percent, &mut p);
        (t, p.0.len())
    }

    #[test]
    fn percent_becomes_buckets_out_of_ten_thousand() {
        assert_eq!(threshold_of(10.0), (1000, 0));
        assert_eq!(threshold_of(100.0), (10_000, 0));
        assert_eq!(threshold_of(0.01), (1, 0));
        assert_eq!(threshold_of(12.345), (1235, 0));
    }

    #[test]
    fn percent_outside_the_range_is_refused() {
        for bad in [0.0, -1.0, 150.0, 100.01, f64::NAN, f64::INFINITY, 0.001] {
            assert_eq!(threshold_of(bad).1, 1, "{bad}");
        }
    }
}
