//! [`RedisStore`]: the [`ClusterStore`] on Redis (redis-rs), standalone or a Redis
//! Cluster, over TCP or TLS (`rediss://`, rustls on ring).
//!
//! Connecting never blocks: the store is made at once and connects in the background
//! (redis-rs's `ConnectionManager`, or a pending cluster connection), so the gateway
//! starts and serves while Redis is down; until it is up, calls fail (and the caller
//! applies its fallback). A dropped connection is made again on the next call.
//!
//! Every operation is one command on one key, so each works on a Redis Cluster too.
//! The rate limit is one Lua script (`gcra.lua`), sent once (`SCRIPT LOAD` when the
//! store is made, again after a Redis restart forgot it) and then called by its SHA1
//! (`EVALSHA`): one round trip per request. Event streams (cluster-wide purges) are in
//! `redis_events.rs`; deleting every key under a prefix (a cache purge), in
//! `redis_scan.rs`.

use super::store::{ClusterStore, GcraAnswer, GcraLimit, StoreError, StoreFuture, StreamRead};
use crate::config::RedisTopology;
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, FromRedisValue, RedisError, Script};
use std::time::Duration;

#[path = "redis_events.rs"]
mod events;
#[path = "redis_scan.rs"]
mod scan;

/// Longest wait for a TCP (and TLS) connection to the store. A call is bounded by the
/// store's much shorter `timeout` anyway; this bounds the background attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for an answer on a connection before it counts as broken.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The rate-limit script (see the file for its rules).
const GCRA_LUA: &str = include_str!("gcra.lua");

/// A connection to standalone Redis or to a Redis Cluster; both are cheap handles to
/// one multiplexed connection (per node), cloned per call.
#[derive(Clone)]
enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Redis, behind [`ClusterStore`].
pub struct RedisStore {
    connection: Connection,
    /// `host:port` of each URL: what logs and errors may show.
    display: String,
    /// The password in the URL, if any, cut from every error text.
    password: Option<String>,
    gcra: Script,
    unlock: Script,
    replace: Script,
    /// Reads an event stream's ends and entries (`events.lua`).
    events: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.display)
            .finish_non_exhaustive()
    }
}

/// Why a store could not be made: a URL redis-rs refuses (`validate` checks the form;
/// this is what it could not see).
#[derive(Debug, thiserror::Error)]
#[error("cluster.redis: {0}")]
pub struct ConnectError(String);

impl RedisStore {
    /// Makes the store for `topology` without waiting for Redis: the connection is made
    /// in the background, and the rate-limit script loaded once it is up. Must be called
    /// within a tokio runtime.
    pub fn connect(topology: &RedisTopology, display: &str) -> Result<Self, ConnectError> {
        let urls = match topology {
            RedisTopology::Standalone(url) => std::slice::from_ref(url),
            RedisTopology::Cluster(urls) => urls.as_slice(),
        };
        let password = urls
            .iter()
            .filter_map(|u| url::Url::parse(u).ok()?.password().map(str::to_owned))
            .find(|p| !p.is_empty());
        let redact = |e: RedisError| ConnectError(redacted(&e.to_string(), password.as_deref()));
        if urls.iter().any(|u| u.starts_with("rediss:")) {
            // redis-rs builds its TLS config with the process's default provider: ring,
            // as everywhere else in the gateway (a second install is refused, harmlessly).
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let connection = match topology {
            RedisTopology::Standalone(url) => {
                let client = redis::Client::open(url.as_str()).map_err(redact)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    // One quick retry, then the call fails and the next one starts a new
                    // attempt: the cluster breaker paces attempts during an outage.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(200));
                let manager =
                    ConnectionManager::new_lazy_with_config(client, config).map_err(redact)?;
                Connection::Standalone(manager)
            }
            RedisTopology::Cluster(urls) => {
                let client =
                    redis::cluster::ClusterClient::builder(urls.iter().map(String::as_str))
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(RESPONSE_TIMEOUT)
                        .retries(1)
                        .build()
                        .map_err(redact)?;
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(RESPONSE_TIMEOUT);
                Connection::Cluster(client.get_pending_async_connection_with_config(config))
            }
        };
        let store = Self {
            connection,
            display: display.to_owned(),
            password,
            gcra: Script::new(GCRA_LUA),
            unlock: Script::new(include_str!("unlock.lua")),
            replace: Script::new(include_str!("replace.lua")),
            events: Script::new(include_str!("events.lua")),
        };
        store.preload();
        Ok(store)
    }

    /// Connects and sends the rate-limit script in the background, so the first
    /// request does not pay for either (on a Cluster, the node of the first call loads
    /// it when asked). Failing here costs nothing: a call connects and loads on demand.
    fn preload(&self) {
        let mut connection = self.connection.clone();
        let script = self.gcra.clone();
        tokio::spawn(async move {
            match &mut connection {
                Connection::Standalone(c) => {
                    let _ = script.load_async(c).await;
                }
                Connection::Cluster(c) => {
                    let mut load = redis::cmd("SCRIPT");
                    load.arg("LOAD").arg(GCRA_LUA);
                    let every_master =
                        RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                    let _ = c.route_command(load, every_master).await;
                }
            }
        });
    }

    /// Runs `cmd` and reads its answer as `T`.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        let result = match self.connection.clone() {
            Connection::Standalone(mut c) => cmd.query_async(&mut c).await,
            Connection::Cluster(mut c) => cmd.query_async(&mut c).await,
        };
        result.map_err(|e| self.error(e))
    }

    /// Calls `script` with one key and these arguments: `EVALSHA`, and on `NOSCRIPT`
    /// (a restarted Redis) `SCRIPT LOAD` and again.
    async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        key: &str,
        args: &[u64],
    ) -> Result<T, StoreError> {
        let mut call = script.key(key);
        for a in args {
            call.arg(*a);
        }
        let result = match self.connection.clone() {
            Connection::Standalone(mut c) => call.invoke_async(&mut c).await,
            Connection::Cluster(mut c) => call.invoke_async(&mut c).await,
        };
        result.map_err(|e| self.error(e))
    }

    fn error(&self, e: RedisError) -> StoreError {
        let text = redacted(&e.to_string(), self.password.as_deref());
        if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout()
            || e.is_unrecoverable_error()
        {
            StoreError::Unreachable(text)
        } else {
            StoreError::Refused(text)
        }
    }
}

impl ClusterStore for RedisStore {
    fn throttle<'a>(&'a self, key: &'a str, limit: GcraLimit) -> StoreFuture<'a, GcraAnswer> {
        Box::pin(async move {
            let interval = u64::try_from(limit.interval.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            let (allowed, remaining, retry_after_us): (i64, i64, i64) = self
                .eval(&self.gcra, key, &[interval, u64::from(limit.burst.max(1))])
                .await?;
            Ok(if allowed == 1 {
                GcraAnswer::Allowed {
                    remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                }
            } else {
                GcraAnswer::Limited {
                    retry_after: Duration::from_micros(retry_after_us.max(0) as u64),
                }
            })
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(key);
            let value: Option<Vec<u8>> = self.query(&cmd).await?;
            Ok(value.map(Bytes::from))
        })
    }

    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key)
                .arg(value.as_ref())
                .arg("PX")
                .arg(millis_at_least_one(ttl));
            self.query::<()>(&cmd).await
        })
    }

    fn lock<'a>(&'a self, key: &'a str, token: &'a str, ttl: Duration) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(millis_at_least_one(ttl));
            // `OK` when taken, nil when someone holds it.
            let taken: Option<String> = self.query(&cmd).await?;
            Ok(taken.is_some())
        })
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut call = self.unlock.key(key);
            call.arg(token);
            let result: Result<i64, RedisError> = match self.connection.clone() {
                Connection::Standalone(mut c) => call.invoke_async(&mut c).await,
                Connection::Cluster(mut c) => call.invoke_async(&mut c).await,
            };
            result.map(drop).map_err(|e| self.error(e))
        })
    }

    fn replace<'a>(
        &'a self,
        key: &'a str,
        expected: Bytes,
        value: Bytes,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut call = self.replace.key(key);
            call.arg(expected.as_ref())
                .arg(value.as_ref())
                .arg(millis_at_least_one(ttl));
            let result: Result<i64, RedisError> = match self.connection.clone() {
                Connection::Standalone(mut c) => call.invoke_async(&mut c).await,
                Connection::Cluster(mut c) => call.invoke_async(&mut c).await,
            };
            result.map(|n| n == 1).map_err(|e| self.error(e))
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(key);
            self.query::<()>(&cmd).await
        })
    }

    fn delete_prefixed<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(self.delete_under(prefix))
    }

    fn append<'a>(
        &'a self,
        key: &'a str,
        fields: &'a [(&'a str, &'a str)],
        keep: usize,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.append_entry(key, fields, keep))
    }

    fn read_after<'a>(
        &'a self,
        key: &'a str,
        after: Option<&'a str>,
        count: usize,
    ) -> StoreFuture<'a, StreamRead> {
        Box::pin(self.read_entries(key, after, count))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let answer: String = self.query(&redis::cmd("PING")).await?;
            if answer == "PONG" {
                Ok(())
            } else {
                Err(StoreError::Refused(format!("PING answered \"{answer}\"")))
            }
        })
    }
}

/// A TTL in whole milliseconds, at least 1 (`PX 0` is an error).
fn millis_at_least_one(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// `text` with `password` cut out, wherever an error quoted it.
fn redacted(text: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() && text.contains(p) => text.replace(p, "***"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_an_error_text() {
        assert_eq!(
            redacted("auth failed for s3cret at host", Some("s3cret")),
            "auth failed for *** at host"
        );
        assert_eq!(redacted("refused", None), "refused");
    }
}
