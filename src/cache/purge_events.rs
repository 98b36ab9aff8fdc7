//! Purges told to every instance. Each instance keeps its own memory level of the cache,
//! so a purge on one (`POST /cache/purge`) would leave the others serving their copies
//! until `cache_ttl`. With `[cluster]` the purge is also appended to an event stream in
//! the store (`<key_prefix>purges:`), and every instance reads that stream once a second
//! ([`PurgeFollower`]) and purges its own memory the same way (the instance that was
//! asked, again: what it cached in between goes too).
//!
//! The follower starts at the stream's newest entry (writing a first entry that purges
//! nothing when there is no stream, so that it always has a real entry to go on from),
//! and purges what its memory already holds then (little, at start): whatever was
//! purged before it could read the stream is gone with it. Should it find entries it
//! never read gone from the stream (the stream trimmed past them while it was cut off
//! from the store, or the store emptied or restarted), or fall more than
//! `MAX_READS x READ_COUNT` entries behind, it cannot know what they purged, and purges
//! everything it holds likewise.
//!
//! `fanout_cache_purge_events_total{outcome}` counts `started` (the stream's end found),
//! `applied` (an entry read and purged here, this instance's own included) and `lost`
//! (everything purged).

use super::ResponseCache;
use super::shared::{SharedLabels, count};
use crate::cluster::{Cluster, ClusterError, StreamRead, stream_id_order};
use std::collections::HashSet;
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
/// The fields of the entry a follower writes into a stream that does not exist: neither
/// `url` nor `all`, so it purges nothing.
const START: &[(&str, &str)] = &[("start", "1")];

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
    /// The store and stream followed: a reload that points `[cluster]` at another store
    /// or key prefix starts afresh, as ids in one stream say nothing of another's.
    followed: String,
    /// The id of the last entry read; `None` before the first reading.
    last: Option<String>,
    /// Readings failed in a row (the first is logged as a warning, not every second).
    failures_in_a_row: u32,
}

impl PurgeFollower {
    /// Reads what other instances purged since the last call and purges it from
    /// `cache`: how many entries it dropped.
    pub async fn follow(
        &mut self,
        cluster: &Cluster,
        cache: &ResponseCache,
    ) -> Result<u64, ClusterError> {
        let result = self.read_and_purge(cluster, cache).await;
        self.failures_in_a_row = match result {
            Ok(_) => 0,
            Err(_) => self.failures_in_a_row.saturating_add(1),
        };
        result
    }

    /// Whether the reading that just failed is the first since one succeeded.
    pub fn first_failure(&self) -> bool {
        self.failures_in_a_row == 1
    }

    async fn read_and_purge(
        &mut self,
        cluster: &Cluster,
        cache: &ResponseCache,
    ) -> Result<u64, ClusterError> {
        let key = stream(cluster);
        let followed = format!("{} {key}", cluster.spec().display);
        if self.followed != followed {
            self.followed = followed;
            self.last = None;
        }
        let Some(mut last) = self.last.clone() else {
            // The first reading: where the stream ends.
            let Some(end) = end(cluster, &key).await? else {
                return Ok(0);
            };
            self.last = Some(end);
            count(&cache.stats.purge_events, "started");
            return Ok(cache.purge(None).await);
        };
        let mut purged = 0;
        let mut newest = None;
        for _ in 0..MAX_READS {
            let read = cluster.read_after(&key, Some(&last), READ_COUNT).await?;
            match reading(&last, &read) {
                Reading::Lost => {
                    tracing::warn!(
                        stream = %key,
                        "purge events were lost from the cluster store; purging every cached answer here"
                    );
                    // A stream that vanished is written again (as at the start) to have
                    // an entry to go on from; failing that, the next reading starts.
                    self.last = match read.newest {
                        Some(newest) => Some(newest),
                        None => end(cluster, &key).await.ok().flatten(),
                    };
                    return Ok(purged + lost(cache).await);
                }
                Reading::Purge { purges, last: to } => {
                    purged += purge_all(cache, &purges).await;
                    if let Some(to) = to {
                        last = to.to_owned();
                        self.last = Some(last.clone());
                    }
                }
            }
            if read.entries.len() < READ_COUNT {
                return Ok(purged);
            }
            newest = read.newest;
        }
        tracing::warn!(
            stream = %key,
            behind = MAX_READS * READ_COUNT,
            "purge events are coming faster than this instance reads them; purging every cached answer here"
        );
        // On from the stream's end, as after lost entries.
        if newest.is_some() {
            self.last = newest;
        }
        Ok(purged + lost(cache).await)
    }
}

/// The id of the newest entry of the stream at `key`, after writing a first one (that
/// purges nothing) when there is no stream; `None` if it vanished again meanwhile.
async fn end(cluster: &Cluster, key: &str) -> Result<Option<String>, ClusterError> {
    if let Some(newest) = cluster.read_after(key, None, 0).await?.newest {
        return Ok(Some(newest));
    }
    cluster.append(key, START, KEEP).await?;
    Ok(cluster.read_after(key, None, 0).await?.newest)
}

/// Purges everything in `cache` as a reading that lost entries must: how many it held.
async fn lost(cache: &ResponseCache) -> u64 {
    count(&cache.stats.purge_events, "lost");
    cache.purge(None).await
}

/// One reading's purges, in one pass over `cache` (each would be one): everything if
/// any entry asks for it, else the URLs named. How many entries went.
async fn purge_all(cache: &ResponseCache, purges: &[Option<&str>]) -> u64 {
    let applied = purges.len() as u64;
    if applied == 0 {
        return 0;
    }
    cache
        .stats
        .purge_events
        .get_or_create(&SharedLabels { outcome: "applied" })
        .inc_by(applied);
    if purges.contains(&None) {
        return cache.purge(None).await;
    }
    let urls: HashSet<&str> = purges.iter().flatten().copied().collect();
    cache.purge_urls(&urls).await
}

/// What one reading of the stream asks of a follower whose last entry read is `last`.
#[derive(Debug, PartialEq, Eq)]
pub enum Reading<'r> {
    /// Entries after `last` may be gone unread: purge everything, and go on from the
    /// stream's newest entry.
    Lost,
    /// Purge these URLs in turn (`None`: everything); then the last entry read is `last`
    /// (`None`: no entry, `last` stays).
    Purge {
        purges: Vec<Option<&'r str>>,
        last: Option<&'r str>,
    },
}

/// The rules of a reading: the entries after `last` are lost when the stream vanished
/// or its oldest entry is newer than `last` (all after `last` trimmed, or the stream
/// written anew). Otherwise each entry with a `url` purges it, one with `all` (and no
/// `url`) purges everything, and one with neither is passed over.
pub fn reading<'r>(last: &str, read: &'r StreamRead) -> Reading<'r> {
    let lost = match &read.oldest {
        None => true,
        Some(oldest) => stream_id_order(oldest) > stream_id_order(last),
    };
    if lost {
        return Reading::Lost;
    }
    let purges = read
        .entries
        .iter()
        .filter_map(|entry| {
            let field = |name: &str| {
                entry
                    .fields
                    .iter()
                    .find(|(f, _)| f == name)
                    .map(|(_, v)| v.as_str())
            };
            match (field("url"), field("all")) {
                (Some(url), _) => Some(Some(url)),
                (None, Some(_)) => Some(None),
                (None, None) => None,
            }
        })
        .collect();
    Reading::Purge {
        purges,
        last: read.entries.last().map(|e| e.id.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::StreamEntry;

    fn read(oldest: Option<&str>, entries: &[(&str, &[(&str, &str)])]) -> StreamRead {
        StreamRead {
            oldest: oldest.map(str::to_owned),
            newest: entries.last().map(|(id, _)| id.to_string()),
            entries: entries
                .iter()
                .map(|(id, fields)| StreamEntry {
                    id: id.to_string(),
                    fields: fields
                        .iter()
                        .map(|(f, v)| (f.to_string(), v.to_string()))
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn entries_are_lost_only_when_the_stream_moved_past_the_last_one_read() {
        let lost = |last: &str, oldest| reading(last, &read(oldest, &[])) == Reading::Lost;
        assert!(!lost("10-0", Some("9-5")));
        assert!(!lost("10-0", Some("10-0")));
        assert!(lost("10-0", Some("10-1")));
        assert!(lost("10-0", Some("11-0")));
        // Numbers, not text: 9 < 10.
        assert!(!lost("10-0", Some("9-0")));
        assert!(lost("9-0", Some("10-0")));
        assert!(lost("10-0", None), "the stream vanished");
        // No exception for the first id there is: a follower always starts on an entry.
        assert!(lost("0-0", None));
        assert!(lost("0-0", Some("10-0")));
    }

    #[test]
    fn entries_purge_a_url_or_everything_in_order_and_others_pass() {
        let stream = read(
            Some("1-0"),
            &[
                ("2-0", &[("url", "http://u/a")]),
                ("2-1", &[("other", "x")]),
                ("3-0", &[("all", "1")]),
                ("3-1", &[("all", "1"), ("url", "http://u/b")]),
            ],
        );
        assert_eq!(
            reading("1-0", &stream),
            Reading::Purge {
                purges: vec![Some("http://u/a"), None, Some("http://u/b")],
                last: Some("3-1"),
            }
        );
        assert_eq!(
            reading("1-0", &read(Some("1-0"), &[])),
            Reading::Purge {
                purges: vec![],
                last: None
            }
        );
    }
}
