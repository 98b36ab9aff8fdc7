//! `fanout demo`'s background traffic, so its dashboard moves: every second, one GET to
//! each route the demo's curl lines GET (ids 1 to 3 in turn, the demo token on a route
//! with `auth`). The slow weather sample then shows timeouts in the outcome mix, the
//! cached profile hits, and the 10-a-minute route its 429s. Demo mode only.

use super::{demo_tokens, route_providers, with_params};
use crate::config::Compiled;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// Between two rounds of calls.
const EVERY: Duration = Duration::from_secs(1);

/// The dashboard's address for the demo's banner: `None` without an admin listener.
pub fn dashboard_url(compiled: &Compiled) -> Option<String> {
    let admin = compiled.server.admin_listen?;
    Some(format!("http://{admin}/"))
}

/// One target: a route pattern and the token its `auth` takes, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub pattern: String,
    pub token: Option<String>,
}

/// The routes the traffic calls: every route answering GET.
pub fn targets(compiled: &Compiled) -> Vec<Target> {
    let tokens = demo_tokens(compiled, SystemTime::now());
    compiled
        .routes
        .iter()
        .filter(|r| r.methods.contains(&http::Method::GET))
        .map(|r| Target {
            pattern: r.path.clone(),
            token: route_providers(compiled, &r.path)
                .iter()
                .find_map(|name| tokens.get(name).cloned()),
        })
        .collect()
}

/// Calls `targets` on the plain-HTTP gateway at `gateway` every second, forever
/// (abort the task to stop). Answers are read and dropped; failures are the point.
pub async fn run(gateway: SocketAddr, targets: Vec<Target>) {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let mut tick = tokio::time::interval(EVERY);
    for round in 0u64.. {
        tick.tick().await;
        let id = (round % 3 + 1).to_string();
        for target in &targets {
            let url = format!("http://{gateway}{}", with_params(&target.pattern, &id));
            let mut request = http::Request::get(url);
            if let Some(token) = &target.token {
                request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let Ok(request) = request.body(Empty::new()) else {
                continue;
            };
            let call = async {
                if let Ok(answer) = client.request(request).await {
                    let _ = answer.into_body().collect().await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), call).await;
        }
    }
}
