//! What a reload from one compiled config to another changes: routes (by path and
//! methods) and upstreams (by name) added, removed and changed, every changed value as
//! `/config` shows it (secrets stay redacted), the settings that wait for a restart and
//! a resized cache. `fanout check --diff`, `POST /reload` and the reload log show it.

use super::{Compiled, REDACTED, RouteSpec, ServerSpec};
use serde::Serialize;
use serde_json::Value;
use std::time::Duration;

/// What a reload changes, and what it keeps until a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigDiff {
    pub routes_added: Vec<String>,
    pub routes_removed: Vec<String>,
    pub routes_changed: Vec<String>,
    pub upstreams_added: Vec<String>,
    pub upstreams_removed: Vec<String>,
    pub upstreams_changed: Vec<String>,
    /// Settings that changed in the file but apply only at the next start.
    pub restart_needed: Vec<String>,
    /// `[cache] max_size` changed: the reload starts an empty cache.
    pub cache_emptied: bool,
    /// Every changed value of a changed route, upstream or setting, secrets redacted.
    pub values: Vec<ValueChange>,
}

/// One changed value: `routes[GET /a].timeout: unset → "5s"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueChange {
    /// Where, with routes named by methods and path and backends by name:
    /// `routes[GET /a].backends[user].timeout`, `upstreams.users.url`, `server.listen`.
    pub place: String,
    /// The value before, as `/config` shows it; `null` when not set.
    pub was: Value,
    /// The value after.
    pub now: Value,
}

impl std::fmt::Display for ValueChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.was == self.now {
            return write!(f, "{}: a redacted value changed", self.place);
        }
        let show = |v: &Value| match v {
            Value::Null => "unset".to_string(),
            v => v.to_string(),
        };
        write!(
            f,
            "{}: {} → {}",
            self.place,
            show(&self.was),
            show(&self.now)
        )
    }
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }

    /// The diff as `fanout check --diff` prints it, one line per change.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, items) in [
            ("route added", &self.routes_added),
            ("route removed", &self.routes_removed),
            ("route changed", &self.routes_changed),
            ("upstream added", &self.upstreams_added),
            ("upstream removed", &self.upstreams_removed),
            ("upstream changed", &self.upstreams_changed),
        ] {
            out.extend(items.iter().map(|item| format!("{what}: {item}")));
        }
        for value in &self.values {
            let restart = self.restart_needed.iter().any(|s| {
                value.place == *s
                    || value
                        .place
                        .strip_prefix(s.as_str())
                        .is_some_and(|rest| rest.starts_with('.'))
            });
            let note = if restart {
                " (needs a restart; a reload keeps the running value)"
            } else if value.place == "cache.max_size" {
                " (the reload starts an empty cache)"
            } else {
                ""
            };
            out.push(format!("{value}{note}"));
        }
        out
    }
}

/// `GET,POST /a`, or `* /a` for a route answering every method.
fn route_key(r: &RouteSpec) -> String {
    format!("{} {}", r.methods, r.path)
}

/// What changes from `old` to `new`: routes (matched by path and methods) and upstreams
/// (by name) added, removed or changed, with every changed value as `/config` shows it.
pub fn diff(old: &Compiled, new: &Compiled) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    let doc = |c: &Compiled, section: &str| c.document.get(section).cloned();
    let (old_routes, new_routes) = (doc(old, "routes"), doc(new, "routes"));
    for (i, r) in new.routes.iter().enumerate() {
        let key = route_key(r);
        match old
            .routes
            .iter()
            .position(|o| o.path == r.path && o.methods == r.methods)
        {
            None => d.routes_added.push(key),
            Some(j) if old.routes[j] != *r => {
                let place = format!("routes[{key}]");
                let before = d.values.len();
                let at = |doc: &Option<Value>, i: usize| {
                    doc.as_ref()
                        .and_then(|d| d.get(i))
                        .cloned()
                        .unwrap_or_default()
                };
                values(
                    &place,
                    &at(&old_routes, j),
                    &at(&new_routes, i),
                    &mut d.values,
                );
                if d.values.len() == before {
                    // Nothing shown changed: an inherited default, or a secret.
                    let o = &old.routes[j];
                    if o.timeout != r.timeout {
                        d.values.push(ValueChange {
                            place: format!("{place}.timeout"),
                            was: inherited(o.timeout),
                            now: inherited(r.timeout),
                        });
                    } else {
                        d.values.push(redacted_change(place));
                    }
                }
                d.routes_changed.push(key);
            }
            Some(_) => {}
        }
    }
    for o in &old.routes {
        if !new
            .routes
            .iter()
            .any(|r| r.path == o.path && r.methods == o.methods)
        {
            d.routes_removed.push(route_key(o));
        }
    }
    let (old_ups, new_ups) = (doc(old, "upstreams"), doc(new, "upstreams"));
    let names: std::collections::BTreeSet<&String> =
        old.upstreams.keys().chain(new.upstreams.keys()).collect();
    for name in names {
        match (old.upstreams.get(name), new.upstreams.get(name)) {
            (None, Some(_)) => d.upstreams_added.push(name.clone()),
            (Some(_), None) => d.upstreams_removed.push(name.clone()),
            (Some(o), Some(n)) if o != n => {
                let place = format!("upstreams.{name}");
                let at = |doc: &Option<Value>| {
                    doc.as_ref()
                        .and_then(|d| d.get(name))
                        .cloned()
                        .unwrap_or_default()
                };
                let before = d.values.len();
                values(&place, &at(&old_ups), &at(&new_ups), &mut d.values);
                if d.values.len() == before {
                    d.values.push(redacted_change(place));
                }
                d.upstreams_changed.push(name.clone());
            }
            _ => {}
        }
    }
    let (old_server, new_server) = (doc(old, "server"), doc(new, "server"));
    for (key, restart) in server_changes(&old.server, &new.server) {
        let place = format!("server.{key}");
        let at = |doc: &Option<Value>| {
            doc.as_ref()
                .and_then(|d| d.get(key))
                .cloned()
                .unwrap_or_default()
        };
        let before = d.values.len();
        values(&place, &at(&old_server), &at(&new_server), &mut d.values);
        if d.values.len() == before {
            d.values.push(redacted_change(place.clone()));
        }
        if restart {
            d.restart_needed.push(place);
        }
    }
    tls_changes(old, new, &mut d);
    // Every `[access_log]` key applies on the reload.
    if old.access_log != new.access_log {
        let (was, now) = (doc(old, "access_log"), doc(new, "access_log"));
        values(
            "access_log",
            &was.unwrap_or_default(),
            &now.unwrap_or_default(),
            &mut d.values,
        );
    }
    // `[jobs] max_memory` applies on the reload: the store keeps its entries and drops
    // the ones past a lowered budget at its next write.
    if old.jobs_max_memory != new.jobs_max_memory {
        let size = |c: &Compiled| c.document.pointer("/jobs/max_memory").cloned();
        d.values.push(ValueChange {
            place: "jobs.max_memory".into(),
            was: size(old).unwrap_or_default(),
            now: size(new).unwrap_or_default(),
        });
    }
    if old.cache_max_size != new.cache_max_size {
        d.cache_emptied = true;
        let size = |c: &Compiled| c.document.pointer("/cache/max_size").cloned();
        d.values.push(ValueChange {
            place: "cache.max_size".into(),
            was: size(old).unwrap_or_default(),
            now: size(new).unwrap_or_default(),
        });
    }
    d
}

/// `[server.tls]`: turning it on or off waits for a restart; a changed key, a new
/// certificate behind the same file (by serial) or new client CAs apply on the reload.
fn tls_changes(old: &Compiled, new: &Compiled, d: &mut ConfigDiff) {
    let (was, now) = (&old.server.tls, &new.server.tls);
    if was == now {
        return;
    }
    let doc = |c: &Compiled| {
        c.document
            .pointer("/server/tls")
            .cloned()
            .unwrap_or_default()
    };
    values("server.tls", &doc(old), &doc(new), &mut d.values);
    let (Some(was), Some(now)) = (was, now) else {
        d.restart_needed.push("server.tls".into());
        return;
    };
    let describe = |c: &super::ServerCert| {
        Value::from(format!(
            "serial {}, expires {}",
            c.serial,
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_secs(c.not_after.max(0) as u64)
            )
        ))
    };
    for cert in &now.certs {
        if let Some(before) = was.certs.iter().find(|c| c.place == cert.place)
            && before.serial != cert.serial
        {
            d.values.push(ValueChange {
                place: format!("{}.cert", cert.place),
                was: describe(before),
                now: describe(cert),
            });
        }
    }
    let roots = |t: &super::ServerTlsSpec| t.client_auth.as_ref().map(|a| a.roots.clone());
    if roots(was) != roots(now) && was.client_auth.is_some() && now.client_auth.is_some() {
        let count = |t: &super::ServerTlsSpec| {
            Value::from(format!(
                "{} CA certificate(s)",
                t.client_auth.as_ref().map_or(0, |a| a.roots.len())
            ))
        };
        d.values.push(ValueChange {
            place: "server.tls.client_ca".into(),
            was: count(was),
            now: count(now),
        });
    }
}

/// A route's timeout taken from `server.request_timeout`.
fn inherited(timeout: Duration) -> Value {
    Value::from(format!(
        "{} (server.request_timeout)",
        humantime::format_duration(timeout)
    ))
}

/// A change no shown value reveals: a redacted one. `was` and `now` are both shown as
/// redacted.
fn redacted_change(place: String) -> ValueChange {
    ValueChange {
        place,
        was: Value::from(REDACTED),
        now: Value::from(REDACTED),
    }
}

/// An added or removed backend, in short: what it calls.
fn summary(item: &Value) -> Value {
    let short: serde_json::Map<String, Value> = ["upstream", "path", "for_each"]
        .into_iter()
        .filter_map(|k| Some((k.to_string(), item.get(k).filter(|v| !v.is_null())?.clone())))
        .collect();
    if short.is_empty() {
        item.clone()
    } else {
        Value::Object(short)
    }
}

/// Every leaf that differs between two documents. Lists of named tables (backends)
/// are matched by name, other lists compared whole; a missing key is `null`.
fn values(place: &str, was: &Value, now: &Value, out: &mut Vec<ValueChange>) {
    let name = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_string);
    let named = |items: &[Value]| !items.is_empty() && items.iter().all(|i| name(i).is_some());
    match (was, now) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                values(
                    &format!("{place}.{k}"),
                    va,
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
            for (k, vb) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                values(&format!("{place}.{k}"), &Value::Null, vb, out);
            }
        }
        (Value::Array(a), Value::Array(b)) if named(a) && named(b) => {
            for item in a {
                let n = name(item);
                let at = format!("{place}[{}]", n.clone().unwrap_or_default());
                match b.iter().find(|i| name(i) == n) {
                    Some(other) => values(&at, item, other, out),
                    None => out.push(ValueChange {
                        place: at,
                        was: summary(item),
                        now: Value::Null,
                    }),
                }
            }
            for item in b.iter().filter(|i| !a.iter().any(|o| name(o) == name(i))) {
                out.push(ValueChange {
                    place: format!("{place}[{}]", name(item).unwrap_or_default()),
                    was: Value::Null,
                    now: summary(item),
                });
            }
        }
        _ if was != now => out.push(ValueChange {
            place: place.to_string(),
            was: was.clone(),
            now: now.clone(),
        }),
        _ => {}
    }
}

/// The `[server]` keys whose compiled values differ, each with whether it waits for a
/// restart: listener settings are read when the server starts.
fn server_changes(old: &ServerSpec, new: &ServerSpec) -> Vec<(&'static str, bool)> {
    let checks = [
        ("listen", old.listen != new.listen, true),
        ("workers", old.workers != new.workers, true),
        (
            "max_connections",
            old.max_connections != new.max_connections,
            true,
        ),
        (
            "header_read_timeout",
            old.header_read_timeout != new.header_read_timeout,
            true,
        ),
        (
            "keepalive_timeout",
            old.keepalive_timeout != new.keepalive_timeout,
            true,
        ),
        ("send_timeout", old.send_timeout != new.send_timeout, true),
        (
            "shutdown_grace",
            old.shutdown_grace != new.shutdown_grace,
            true,
        ),
        ("compression", old.compression != new.compression, true),
        (
            "compression_min_size",
            old.compression_min_size != new.compression_min_size,
            true,
        ),
        ("cors", old.cors != new.cors, true),
        ("http2", old.http2 != new.http2, true),
        ("admin_listen", old.admin_listen != new.admin_listen, true),
        (
            "request_timeout",
            old.request_timeout != new.request_timeout,
            false,
        ),
        ("max_body", old.max_body != new.max_body, false),
        (
            "max_body_values",
            old.max_body_values != new.max_body_values,
            false,
        ),
        ("health_path", old.health_path != new.health_path, false),
        (
            "trusted_proxies",
            old.trusted_proxies != new.trusted_proxies,
            false,
        ),
        ("admin_token", old.admin_token != new.admin_token, false),
    ];
    checks
        .into_iter()
        .filter(|(_, changed, _)| *changed)
        .map(|(key, _, restart)| (key, restart))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_lists_are_matched_by_name_and_the_rest_compared_whole() {
        let was = json!({"timeout": null, "methods": ["GET"], "backends": [
            {"name": "a", "upstream": "u", "path": "/a", "timeout": "1s"},
            {"name": "b", "upstream": "u", "path": "/b"},
        ]});
        let now = json!({"timeout": "5s", "methods": ["GET", "POST"], "backends": [
            {"name": "c", "upstream": "u", "path": "/c"},
            {"name": "a", "upstream": "u", "path": "/a", "timeout": "2s"},
        ]});
        let mut out = Vec::new();
        values("routes[GET /r]", &was, &now, &mut out);
        let lines: Vec<String> = out.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "routes[GET /r].timeout: unset → \"5s\"",
                "routes[GET /r].methods: [\"GET\"] → [\"GET\",\"POST\"]",
                "routes[GET /r].backends[a].timeout: \"1s\" → \"2s\"",
                "routes[GET /r].backends[b]: {\"upstream\":\"u\",\"path\":\"/b\"} → unset",
                "routes[GET /r].backends[c]: unset → {\"upstream\":\"u\",\"path\":\"/c\"}",
            ]
        );
        assert_eq!(
            redacted_change("upstreams.u".into()).to_string(),
            "upstreams.u: a redacted value changed"
        );
    }
}
