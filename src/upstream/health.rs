//! Active health checks: one background task per upstream with `health_check`, probing
//! `GET base + path` every interval. While the last probe failed, calls fail at once
//! with `upstream_unhealthy`. The task ends when its upstream is dropped (a reload).

use super::Upstream;
use crate::config::HealthCheckSpec;
use http::{HeaderMap, Method};
use std::sync::{Arc, Weak};

/// Starts the health check of `upstream`, if it has one and a runtime is running.
pub fn spawn(upstream: &Arc<Upstream>) {
    let Some(check) = upstream.spec.health_check.clone() else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(probe_loop(Arc::downgrade(upstream), check));
}

async fn probe_loop(upstream: Weak<Upstream>, check: HealthCheckSpec) {
    let mut every = tokio::time::interval(check.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // Held only for one probe, so the upstream can be dropped between probes.
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        let url = format!("{}{}", upstream.spec.base, check.path);
        let healthy = match upstream.transport.target(&url) {
            Ok(target) => {
                let (transport, none) = (&upstream.transport, HeaderMap::new());
                let probe = transport.send(&Method::GET, &target, &none, None, None, false);
                matches!(
                    tokio::time::timeout(check.timeout, probe).await,
                    Ok(Ok(answer)) if answer.status().is_success()
                )
            }
            Err(_) => false,
        };
        if upstream.guard.set_healthy(healthy) {
            if healthy {
                tracing::info!(upstream = %upstream.spec.name, "upstream healthy again");
            } else {
                tracing::warn!(upstream = %upstream.spec.name, path = %check.path, "upstream unhealthy");
            }
        }
    }
}
