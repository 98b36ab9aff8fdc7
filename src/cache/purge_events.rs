//! Purges told to every instance. Each instance keeps its own memory level of the cache,
//! so a purge on one (`POST /cache/purge`) would leave the others serving their copies
//! until `cache_ttl`. With `[cluster]` the purge is also appended to an event stream in
//! the store (`<key_prefix>purges:`), and every instance reads that stream once a second
//! ([`PurgeFollower`]) and purges its own memory the same way (the instance that was
//! asked, again: what it cached in between goes too).
//!
//! The follower starts at the stream's newest entry, and purges what its memory already
//! holds then (little, at start): whatever was purged before it could read the stream
//! is gone with it. Should it find entries it never read gone from the stream (the
//! stream trimmed past them while it was cut off from the store, or the store emptied),
//! it cannot know what they purged, and purges everything it holds likewise.
//!
//! `fanout_cache_purge_events_total{outcome}` counts `started` (the stream's end found),
//! `applied` (another instance's entry purged here) and `lost` (everything purged).

use super::ResponseCache;
use super::shared::count;
use crate::cluster::{Cluster, ClusterError, StreamRead};
use std::time::Duration;

/// How often a follower reads the stream: how long another instance's memory may serve
/// an answer purged elsewhere.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// The entries the stream keeps at least (about 100 bytes each).
const KEEP: usize = 10_000;
/// The outcomes of `fanout_cache_purge_events_total`, each at 0 from the start.
pub const PURGE_OUTCOMES: [&str; 3] = ["started", "applied", "lost"];
/// Entries read per round trip.
const READ_COUNT: usize = 256;
/// Round trips per reading at most; a longer backlog is treated as lost.
const MAX_READS: usize = 8;

/// The stream's key.
fn stream(cluster: &Cluster) -> String {
    cluster.key("purges", "")
}

/// Tells the other instances to purge `url`'s entries (every entry without one).
pub async fn announce(cluster: &Cluster, url: Option<&str>) -> Result<(), ClusterError> {
    let fields: &[(&str, &str)] = match url {
        Some(url) => &[("url", url)],
        None => &[("all", "1")],
    };
    cluster.append(&stream(cluster), fields, KEEP).await
}

/// Where one instance is in the stream.
#[derive(Debug, Default)]
pub struct PurgeFollower {
    /// The stream followed (a reload may change the key prefix: then it starts afresh).
    key: String,
    /// The id of the last entry read; `None` before the first reading; `0-0` for a
    /// stream that did not exist.
    last: Option<String>,
}

impl PurgeFollower {
    /// Reads what other instances purged since the last call and purges it from
    /// `cache`: how many entries it dropped.
    pub async fn follow(
        &mut self,
        cluster: &Cluster,
        cache: &ResponseCache,
    ) -> Result<u64, ClusterError> {
        let key = stream(cluster);
        if self.key != key {
            self.key = key;
            self.last = None;
        }
        let mut purged = 0;
        for _ in 0..MAX_READS {
            let Some(last) = self.last.clone() else {
                // The first reading: where the stream ends.
                let read = cluster.read_after(&self.key, None, 0).await?;
                self.last = Some(read.newest.unwrap_or_else(|| "0-0".into()));
                count(&cache.stats.purge_events, "started");
                return Ok(cache.purge(None).await);
            };
            let read = cluster
                .read_after(&self.key, Some(&last), READ_COUNT)
                .await?;
            if lost_entries(&last, &read) {
                tracing::warn!(
                    stream = %self.key,
                    "purge events were lost from the cluster store; purging every cached answer here"
                );
                self.last = Some(read.newest.unwrap_or_else(|| "0-0".into()));
                count(&cache.stats.purge_events, "lost");
                return Ok(purged + cache.purge(None).await);
            }
            let full = read.entries.len() == READ_COUNT;
            for entry in read.entries {
                let field = |name: &str| {
                    entry
                        .fields
                        .iter()
                        .find(|(f, _)| f == name)
                        .map(|(_, v)| v.as_str())
                };
                let url = match (field("url"), field("all")) {
                    (Some(url), _) => Some(Some(url)),
                    (None, Some(_)) => Some(None),
                    (None, None) => None,
                };
                if let Some(url) = url {
                    purged += cache.purge(url).await;
                    count(&cache.stats.purge_events, "applied");
                }
                self.last = Some(entry.id);
            }
            if !full {
                return Ok(purged);
            }
        }
        // More than MAX_READS x READ_COUNT behind: start again from the stream's end,
        // which purges everything here.
        self.last = None;
        Ok(purged)
    }
}

/// Whether entries after `last` may be gone unread: the stream vanished, or its oldest
/// entry is newer than `last` (all after `last` trimmed). `0-0` (no stream when the
/// follower started) has nothing older to lose.
fn lost_entries(last: &str, read: &StreamRead) -> bool {
    if last == "0-0" {
        return false;
    }
    match &read.oldest {
        None => true,
        Some(oldest) => id_key(oldest) > id_key(last),
    }
}

/// A stream id as numbers, ordered as the store orders them.
fn id_key(id: &str) -> (u64, u64) {
    id.split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse().ok()?, seq.parse().ok()?)))
        .unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(oldest: Option<&str>) -> StreamRead {
        StreamRead {
            oldest: oldest.map(str::to_owned),
            newest: oldest.map(str::to_owned),
            entries: Vec::new(),
        }
    }

    #[test]
    fn entries_are_lost_only_when_the_stream_moved_past_the_last_one_read() {
        assert!(!lost_entries("10-0", &read(Some("9-5"))));
        assert!(!lost_entries("10-0", &read(Some("10-0"))));
        assert!(lost_entries("10-0", &read(Some("10-1"))));
        assert!(lost_entries("10-0", &read(Some("11-0"))));
        // Numbers, not text: 9 < 10.
        assert!(!lost_entries("10-0", &read(Some("9-0"))));
        assert!(lost_entries("9-0", &read(Some("10-0"))));
        assert!(lost_entries("10-0", &read(None)), "the stream vanished");
        assert!(!lost_entries("0-0", &read(None)));
        assert!(!lost_entries("0-0", &read(Some("10-0"))));
    }
}
