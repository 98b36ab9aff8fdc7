//! Validation of what reads the client certificate: a `{client_cert...}` template
//! source, a `when` condition reading `client_cert` or a `client_cert` rate-limit key
//! works only where the listener asks clients for a certificate (`[server.tls] client_ca`);
//! without it every request would lack one, so each is refused at its place.

use super::Problems;
use crate::config::{RouteKind, RouteSpec};
use crate::limits::LimitKey;
use crate::template::Source;

const FIX: &str = "set [server.tls] client_ca (mutual TLS), or remove it";

pub(super) fn client_cert_reads(
    place: &str,
    route: &RouteSpec,
    has_client_ca: bool,
    p: &mut Problems,
) {
    if has_client_ca {
        return;
    }
    if let Some(limit) = &route.rate_limit
        && limit.key == LimitKey::ClientCert
    {
        p.add(
            format!("{place}.rate_limit.key"),
            format!("keys the limit by the client certificate, which no client presents without [server.tls] client_ca; {FIX}"),
        );
    }
    let mut refuse = |at: String, mut sources: Box<dyn Iterator<Item = &Source> + '_>| {
        if let Some(source) = sources.find(|s| s.reads_client_cert()) {
            p.add(
                at,
                format!(
                    "reads the client certificate ({{{}}}), which no client presents without [server.tls] client_ca; {FIX}",
                    Source::describe(source)
                ),
            );
        }
    };
    match &route.kind {
        RouteKind::Proxy(proxy) => refuse(
            format!("{place}.proxy.path"),
            Box::new(proxy.path.sources()),
        ),
        RouteKind::Aggregate(spec) => {
            for (i, b) in spec.backends.iter().enumerate() {
                let at = format!("{place}.backends[{i}]");
                refuse(format!("{at}.path"), Box::new(b.path.sources()));
                let body = b.body.iter().flat_map(|t| t.sources());
                refuse(format!("{at}.body"), Box::new(body));
                for (name, t) in &b.headers {
                    refuse(format!("{at}.headers.{name}"), Box::new(t.sources()));
                }
            }
        }
    }
    if let RouteKind::Aggregate(spec) = &route.kind {
        for (i, b) in spec.backends.iter().enumerate() {
            if let Some(when) = b.when.as_ref().filter(|w| w.reads_client_cert()) {
                p.add(
                    format!("{place}.backends[{i}].when"),
                    format!(
                        "reads the client certificate ({}), which no client presents without [server.tls] client_ca; {FIX}",
                        when.source()
                    ),
                );
            }
        }
    }
}
