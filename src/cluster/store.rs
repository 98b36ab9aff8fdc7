//! The store behind `[cluster]`, as a trait: the few operations cluster-scoped limits,
//! the shared cache and cluster-wide purges need, each one round trip. The Redis implementation is
//! `redis_store`; tests and a future store can put another behind the same calls.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use std::time::Duration;

/// A store call's future: boxed, so the trait can be used as `dyn ClusterStore`.
pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// Why a store call failed. The text never holds a password or a stored value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be made or kept.
    #[error("the store is unreachable: {0}")]
    Unreachable(String),
    /// The store answered with an error, or with something this client cannot read.
    #[error("the store refused the call: {0}")]
    Refused(String),
}

/// One rate limit as the store applies it: GCRA, a request every `interval`, up to
/// `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraLimit {
    /// The rate's period divided by its count.
    pub interval: Duration,
    /// Requests allowed at once.
    pub burst: u32,
}

/// The store's decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcraAnswer {
    Allowed { remaining: u32 },
    Limited { retry_after: Duration },
}

/// One entry of an event stream: its id, which the store orders, and its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    /// `MILLISECONDS-SEQUENCE`, as Redis gives it.
    pub id: String,
    pub fields: Vec<(String, String)>,
}

/// What one read of an event stream found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamRead {
    /// The id of the oldest entry the stream still holds; `None`: no stream.
    pub oldest: Option<String>,
    /// The id of the newest entry; `None`: no stream.
    pub newest: Option<String>,
    /// The entries after the id asked for, oldest first.
    pub entries: Vec<StreamEntry>,
}

/// A stream id (`MILLISECONDS-SEQUENCE`) as two numbers, ordered as the store orders
/// ids; `None` for text of another form.
pub fn stream_id_order(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The smallest stream id after `id`: the next sequence number, or the next
/// millisecond's first. The last id there is (`u64::MAX` twice) and text of another
/// form are returned as they are (a store refuses the latter).
pub fn next_stream_id(id: &str) -> String {
    match stream_id_order(id) {
        Some((u64::MAX, u64::MAX)) | None => id.to_owned(),
        Some((ms, u64::MAX)) => format!("{}-0", ms + 1),
        Some((ms, seq)) => format!("{ms}-{}", seq + 1),
    }
}

/// What instances share. Keys come whole (the `key_prefix` already in them); every call
/// touches one key, so each works on a Redis Cluster.
pub trait ClusterStore: Send + Sync + std::fmt::Debug + 'static {
    /// Counts one request against the GCRA state at `key`, on the store's clock.
    fn throttle<'a>(&'a self, key: &'a str, limit: GcraLimit) -> StoreFuture<'a, GcraAnswer>;
    /// The value at `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>>;
    /// Stores `value` at `key` for `ttl`.
    fn set<'a>(&'a self, key: &'a str, value: Bytes, ttl: Duration) -> StoreFuture<'a, ()>;
    /// Takes the lock at `key` for `ttl` if no one holds it (`SET NX PX`): whether it
    /// was taken. `token` proves the holder when it lets go.
    fn lock<'a>(&'a self, key: &'a str, token: &'a str, ttl: Duration) -> StoreFuture<'a, bool>;
    /// Lets go of the lock at `key` if `token` still holds it.
    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> StoreFuture<'a, ()>;
    /// Deletes `key` (async routes' jobs). By default an empty value that expires at
    /// once; a store with a delete of its own says so.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.set(key, Bytes::new(), Duration::from_millis(1))
    }
    /// Stores `value` at `key` for `ttl` only if `key` holds exactly `expected`:
    /// whether it did (async routes' jobs: a job's final state replaces only its
    /// pending one). By default a read then a write, not atomic: a store shared by
    /// instances does it in one step.
    fn replace<'a>(
        &'a self,
        key: &'a str,
        expected: Bytes,
        value: Bytes,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            if self.get(key).await?.as_ref() != Some(&expected) {
                return Ok(false);
            }
            self.set(key, value, ttl).await?;
            Ok(true)
        })
    }
    /// Deletes every key that starts with `prefix`: how many.
    fn delete_prefixed<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, u64>;
    /// Whether the store answers (`PING`).
    fn ping(&self) -> StoreFuture<'_, ()>;
    /// Appends an entry of `fields` to the event stream at `key`, which keeps at least
    /// the newest `keep` entries. A store without streams refuses.
    fn append<'a>(
        &'a self,
        key: &'a str,
        fields: &'a [(&'a str, &'a str)],
        keep: usize,
    ) -> StoreFuture<'a, ()> {
        let _ = (key, fields, keep);
        Box::pin(async {
            Err(StoreError::Refused(
                "the store keeps no event streams".into(),
            ))
        })
    }
    /// The stream at `key`: its oldest and newest ids, and up to `count` entries after
    /// the id `after` (none asked for without one). A store without streams refuses.
    fn read_after<'a>(
        &'a self,
        key: &'a str,
        after: Option<&'a str>,
        count: usize,
    ) -> StoreFuture<'a, StreamRead> {
        let _ = (key, after, count);
        Box::pin(async {
            Err(StoreError::Refused(
                "the store keeps no event streams".into(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_id_is_the_next_sequence_or_the_next_millisecond() {
        assert_eq!(next_stream_id("1733240000000-0"), "1733240000000-1");
        assert_eq!(next_stream_id("5-41"), "5-42");
        assert_eq!(next_stream_id(&format!("5-{}", u64::MAX)), "6-0");
        let last = format!("{}-{}", u64::MAX, u64::MAX);
        assert_eq!(next_stream_id(&last), last);
        assert_eq!(next_stream_id("garbage"), "garbage");
        assert!(stream_id_order("9-0") < stream_id_order("10-0"));
        for odd in ["", "-", "1-", "-1", "+1-2", "1-2-3", "a-1", "1 -2"] {
            assert_eq!(stream_id_order(odd), None, "{odd:?}");
        }
    }
}
