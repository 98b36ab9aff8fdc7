//! Several gateway instances acting as one: the `[cluster]` store they share (Redis),
//! reached only through [`Cluster`], which bounds every call by the store's `timeout`
//! so that trouble in the store never stalls a request: a call that fails or runs late
//! is an error the caller turns into its fallback (`on_error` for limits, the upstream
//! for the cache).
//!
//! - `store`: the [`ClusterStore`] trait, the operations and their types.
//! - `redis_store`: [`RedisStore`], the trait on Redis (standalone or Cluster), with its
//!   Lua scripts (`gcra.lua`, `unlock.lua`).

mod redis_store;
mod store;

pub use redis_store::{ConnectError, RedisStore};
pub use store::{ClusterStore, GcraAnswer, GcraLimit, StoreError, StoreFuture};

use crate::config::ClusterSpec;
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
}

/// The shared store of one config: its spec, and the store behind the trait.
#[derive(Debug)]
pub struct Cluster {
    spec: ClusterSpec,
    store: Arc<dyn ClusterStore>,
}

impl Cluster {
    pub fn new(spec: ClusterSpec, store: Arc<dyn ClusterStore>) -> Self {
        Self { spec, store }
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

    /// Runs one store call within `timeout`.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(self.spec.timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClusterError::Timeout(self.spec.timeout)),
        }
    }

    pub async fn throttle(&self, key: &str, limit: GcraLimit) -> Result<GcraAnswer, ClusterError> {
        self.call(self.store.throttle(key, limit)).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, ClusterError> {
        self.call(self.store.get(key)).await
    }

    pub async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), ClusterError> {
        self.call(self.store.set(key, value, ttl)).await
    }

    pub async fn lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, ClusterError> {
        self.call(self.store.lock(key, token, ttl)).await
    }

    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), ClusterError> {
        self.call(self.store.unlock(key, token)).await
    }

    /// Deletes every key under `prefix`; not bounded by `timeout` (an admin call).
    pub async fn delete_prefixed(&self, prefix: &str) -> Result<u64, ClusterError> {
        Ok(self.store.delete_prefixed(prefix).await?)
    }

    pub async fn ping(&self) -> Result<(), ClusterError> {
        self.call(self.store.ping()).await
    }
}
