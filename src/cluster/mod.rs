//! Several gateway instances acting as one: the `[cluster]` store they share (Redis),
//! reached only through [`Cluster`], which bounds every call by the store's `timeout`
//! so that trouble in the store never stalls a request: a call that fails or runs late
//! is an error the caller turns into its fallback (`on_error` for limits, the upstream
//! for the cache).
//!
//! - `store`: the [`ClusterStore`] trait, the operations and their types.
//! - `breaker`: after repeated failures, calls skip the store for a while, then probe.
//! - `redis_store`: [`RedisStore`], the trait on Redis (standalone or Cluster), with its
//!   Lua scripts (`gcra.lua`, `unlock.lua`, `replace.lua`); its parts `redis_events`
//!   (event streams, `events.lua`) and `redis_scan` (deleting the keys under a prefix).

mod breaker;
mod redis_store;
mod store;

pub use breaker::ClusterStats;
pub use redis_store::{ConnectError, RedisStore};
pub use store::{
    ClusterStore, GcraAnswer, GcraLimit, StoreError, StoreFuture, StreamEntry, StreamRead,
    next_stream_id, stream_id_order,
};

use crate::config::ClusterSpec;
use breaker::{Admit, Breaker, Change};
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why a cluster call gave no answer: the caller applies its fallback.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The breaker is open: the store failed repeatedly and is not called for a while.
    #[error("the store is skipped after repeated failures")]
    Skipped,
}

impl ClusterError {
    /// The `kind` label of `fanout_cluster_store_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterError::Timeout(_) => "timeout",
            ClusterError::Store(_) => "error",
            ClusterError::Skipped => "skipped",
        }
    }
}

/// The shared store of one config: its spec, the store behind the trait, and the
/// breaker every bounded call goes through.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    store: Arc<dyn ClusterStore>,
    breaker: Breaker,
    stats: ClusterStats,
}

impl Cluster {
    pub fn new(spec: ClusterSpec, store: Arc<dyn ClusterStore>) -> Self {
        let (failures, open_for) = spec.breaker;
        Self {
            breaker: Breaker::new(failures, open_for, spec.timeout),
            spec,
            store,
            stats: ClusterStats::default(),
        }
    }

    /// Records failed calls and the breaker's state in `stats` (the process's metrics).
    pub fn with_stats(mut self, stats: ClusterStats) -> Self {
        stats.touch();
        stats.open.set(i64::from(self.breaker.is_open()));
        self.stats = stats;
        self
    }

    /// For `/ready`: `unknown`, `up`, `down` (failing) or `open` (skipped for a while).
    pub fn state(&self) -> &'static str {
        self.breaker.describe()
    }

    /// The cluster on Redis at `spec`'s address, connecting in the background: it never
    /// waits for Redis (calls fail until it is up). Must be called within a tokio runtime.
    pub fn connect(spec: ClusterSpec) -> Result<Self, ConnectError> {
        let store = RedisStore::connect(&spec.topology, &spec.display)?;
        Ok(Self::new(spec, Arc::new(store)))
    }

    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// `key_prefix` + `kind` + `:` + `rest`: every key the gateway writes.
    pub fn key(&self, kind: &str, rest: &str) -> String {
        let mut key =
            String::with_capacity(self.spec.key_prefix.len() + kind.len() + 1 + rest.len());
        key.push_str(&self.spec.key_prefix);
        key.push_str(kind);
        key.push(':');
        key.push_str(rest);
        key
    }

    /// Runs one store call within `timeout`, unless the breaker skips the store: then
    /// it fails at once, and the call is not even made (nothing sent, nothing boxed).
    async fn call<'a, T, F>(&self, call: impl FnOnce() -> F) -> Result<T, ClusterError>
    where
        F: Future<Output = Result<T, StoreError>> + 'a,
    {
        self.call_counting(call, true).await
    }

    /// [`Self::call`], where a refusal (the store answered with an error) feeds the
    /// breaker only when `refusals_fail`: the purge stream's calls run once a second
    /// whatever the traffic, and a key of the wrong type, or a store without streams,
    /// must not open the breaker on the calls that serve requests.
    async fn call_counting<'a, T, F>(
        &self,
        call: impl FnOnce() -> F,
        refusals_fail: bool,
    ) -> Result<T, ClusterError>
    where
        F: Future<Output = Result<T, StoreError>> + 'a,
    {
        if self.breaker.admit() == Admit::Skip {
            self.stats.failed("skipped");
            return Err(ClusterError::Skipped);
        }
        let error = match tokio::time::timeout(self.spec.timeout, call()).await {
            Ok(Ok(answer)) => {
                if let Some(change) = self.breaker.succeeded() {
                    self.changed(change, None);
                }
                return Ok(answer);
            }
            Ok(Err(e)) => ClusterError::Store(e),
            Err(_) => ClusterError::Timeout(self.spec.timeout),
        };
        self.stats.failed(error.kind());
        let refused = matches!(error, ClusterError::Store(StoreError::Refused(_)));
        // A refusal that is not a failure is still an answer: the store is up (and a
        // probe that was refused must close the breaker, not leave it probing).
        let change = if refused && !refusals_fail {
            self.breaker.succeeded()
        } else {
            self.breaker.failed()
        };
        if let Some(change) = change {
            self.changed(change, Some(&error));
        }
        Err(error)
    }

    /// Logs a change of the breaker's state, once, and sets its gauge.
    fn changed(&self, change: Change, error: Option<&ClusterError>) {
        let store = self.spec.display.as_str();
        let open_for = self.spec.breaker.1;
        match change {
            Change::Opened => {
                self.stats.open.set(1);
                tracing::warn!(
                    store,
                    error = error.map(tracing::field::display),
                    failures = self.spec.breaker.0,
                    ?open_for,
                    "cluster store failing: skipped for a while, limits apply on_error and the cache calls upstreams"
                );
            }
            Change::Reopened => tracing::debug!(
                store,
                error = error.map(tracing::field::display),
                ?open_for,
                "cluster store probe failed: skipped again"
            ),
            Change::Closed => {
                self.stats.open.set(0);
                tracing::info!(store, "cluster store answering again");
            }
        }
    }

    pub async fn throttle(&self, key: &str, limit: GcraLimit) -> Result<GcraAnswer, ClusterError> {
        self.call(|| self.store.throttle(key, limit)).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, ClusterError> {
        self.call(|| self.store.get(key)).await
    }

    pub async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), ClusterError> {
        self.call(|| self.store.set(key, value, ttl)).await
    }

    pub async fn lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, ClusterError> {
        self.call(|| self.store.lock(key, token, ttl)).await
    }

    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), ClusterError> {
        self.call(|| self.store.unlock(key, token)).await
    }

    pub async fn replace(
        &self,
        key: &str,
        expected: Bytes,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, ClusterError> {
        self.call(|| self.store.replace(key, expected, value, ttl))
            .await
    }

    pub async fn delete(&self, key: &str) -> Result<(), ClusterError> {
        self.call(|| self.store.delete(key)).await
    }

    /// Deletes every key under `prefix`; not bounded by `timeout` (an admin call).
    pub async fn delete_prefixed(&self, prefix: &str) -> Result<u64, ClusterError> {
        Ok(self.store.delete_prefixed(prefix).await?)
    }

    pub async fn ping(&self) -> Result<(), ClusterError> {
        self.call(|| self.store.ping()).await
    }

    pub async fn append(
        &self,
        key: &str,
        fields: &[(&str, &str)],
        keep: usize,
    ) -> Result<(), ClusterError> {
        self.call_counting(|| self.store.append(key, fields, keep), false)
            .await
    }

    pub async fn read_after(
        &self,
        key: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<StreamRead, ClusterError> {
        self.call_counting(|| self.store.read_after(key, after, count), false)
            .await
    }
}

/// The hex of the first `bytes` bytes (at most 32) of the SHA-256 of `parts`, each
/// length-prefixed: a part of a store key made from anything (a path pattern, a cache
/// key), the same in every instance, with no client byte in it.
pub fn key_digest(parts: &[&[u8]], bytes: usize) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let sum = context.finish();
    let mut hex = String::with_capacity(bytes * 2);
    for byte in &sum.as_ref()[..bytes.min(32)] {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, compile};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A store whose calls hang (a Redis that accepts and never answers) or answer at
    /// once, counting the calls that reach it.
    #[derive(Debug, Default)]
    struct Hanging {
        calls: AtomicUsize,
        answers: AtomicBool,
    }

    impl Hanging {
        fn reply<'a, T: Send + 'a>(&'a self, value: T) -> StoreFuture<'a, T> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answers = self.answers.load(Ordering::SeqCst);
            Box::pin(async move {
                if !answers {
                    std::future::pending::<()>().await;
                }
                Ok(value)
            })
        }
    }

    impl ClusterStore for Hanging {
        fn throttle<'a>(&'a self, _: &'a str, _: GcraLimit) -> StoreFuture<'a, GcraAnswer> {
            self.reply(GcraAnswer::Allowed { remaining: 1 })
        }
        fn get<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<Bytes>> {
            self.reply(None)
        }
        fn set<'a>(&'a self, _: &'a str, _: Bytes, _: Duration) -> StoreFuture<'a, ()> {
            self.reply(())
        }
        fn lock<'a>(&'a self, _: &'a str, _: &'a str, _: Duration) -> StoreFuture<'a, bool> {
            self.reply(true)
        }
        fn unlock<'a>(&'a self, _: &'a str, _: &'a str) -> StoreFuture<'a, ()> {
            self.reply(())
        }
        fn delete_prefixed<'a>(&'a self, _: &'a str) -> StoreFuture<'a, u64> {
            self.reply(0)
        }
        fn ping(&self) -> StoreFuture<'_, ()> {
            self.reply(())
        }
    }

    fn cluster(store: Arc<Hanging>) -> Cluster {
        let toml = "[cluster]\nredis = \"redis://127.0.0.1:6379/0\"\ntimeout = \"5ms\"\n\
                    circuit_breaker = { failures = 3, open_for = \"1s\" }\n";
        let spec = compile(toml, &Env::default()).unwrap().cluster.unwrap();
        Cluster::new(spec, store).with_stats(ClusterStats::default())
    }

    /// A store that refuses the purge stream's calls (here: one without streams) leaves
    /// the breaker closed, however often they run: it answered. Refused as the probe of
    /// an open breaker, such a call closes it, as any answer would.
    #[tokio::test(start_paused = true)]
    async fn refused_stream_calls_never_open_the_breaker() {
        let store = Arc::new(Hanging::default());
        store.answers.store(true, Ordering::SeqCst);
        let cluster = cluster(store.clone());
        for _ in 0..10 {
            let e = cluster.read_after("s", Some("1-0"), 8).await.unwrap_err();
            assert!(
                matches!(e, ClusterError::Store(StoreError::Refused(_))),
                "{e}"
            );
            assert!(cluster.append("s", &[("all", "1")], 8).await.is_err());
        }
        assert_eq!(cluster.state(), "up", "answering, if with refusals");
        assert!(cluster.get("k").await.is_ok(), "the store is still called");
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);

        // Hung: three timeouts open the breaker; after open_for the stream's refused
        // call is the probe, and closes it.
        store.answers.store(false, Ordering::SeqCst);
        for _ in 0..3 {
            assert!(cluster.get("k").await.is_err());
        }
        assert_eq!(cluster.stats.open.get(), 1);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(cluster.read_after("s", Some("1-0"), 8).await.is_err());
        assert_eq!(cluster.state(), "up");
        assert_eq!(cluster.stats.open.get(), 0);
        store.answers.store(true, Ordering::SeqCst);
        assert!(cluster.get("k").await.is_ok(), "not skipped");
    }

    /// On tokio's paused clock: a hung store costs each call exactly `timeout` until the
    /// breaker opens, then nothing (no call reaches it, no time passes) until `open_for`
    /// has passed; one probe then, and the store's answer closes the breaker.
    #[tokio::test(start_paused = true)]
    async fn a_hung_store_costs_the_timeout_then_nothing_until_a_probe() {
        let store = Arc::new(Hanging::default());
        let cluster = cluster(store.clone());
        let limit = GcraLimit {
            interval: Duration::from_secs(1),
            burst: 1,
        };
        for _ in 0..3 {
            let started = tokio::time::Instant::now();
            let e = cluster.throttle("k", limit).await.unwrap_err();
            assert!(matches!(e, ClusterError::Timeout(_)), "{e}");
            assert_eq!(started.elapsed(), Duration::from_millis(5));
        }
        let started = tokio::time::Instant::now();
        for _ in 0..100 {
            let e = cluster.throttle("k", limit).await.unwrap_err();
            assert!(matches!(e, ClusterError::Skipped), "{e}");
        }
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(store.calls.load(Ordering::SeqCst), 3);
        assert_eq!(cluster.stats.open.get(), 1);
        let skipped = cluster
            .stats
            .errors
            .get_or_create(&breaker_kind("skipped"))
            .get();
        assert_eq!(skipped, 100);
        tokio::time::sleep(Duration::from_secs(1)).await;
        store.answers.store(true, Ordering::SeqCst);
        assert!(cluster.throttle("k", limit).await.is_ok(), "the probe");
        assert_eq!(store.calls.load(Ordering::SeqCst), 4);
        assert_eq!(cluster.state(), "up");
        assert_eq!(cluster.stats.open.get(), 0);
    }

    fn breaker_kind(kind: &'static str) -> breaker::KindLabels {
        breaker::KindLabels::of(kind)
    }
}
