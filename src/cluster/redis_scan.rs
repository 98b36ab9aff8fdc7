//! Deleting every key under a prefix, for [`RedisStore`] (a cache purge): `SCAN` with a
//! `MATCH` pattern in steps, and `UNLINK` what each step found. On a Redis Cluster a
//! `SCAN` sees one node's keys only, so it runs on each master in turn (from `CLUSTER
//! NODES`). Not atomic: a key written under the prefix meanwhile may stay.

use super::{Connection, RedisStore};
use crate::cluster::store::StoreError;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{FromRedisValue, Value};

/// Keys asked for per `SCAN` step, and deleted per `UNLINK`.
const SCAN_COUNT: usize = 500;

impl RedisStore {
    /// Deletes every key under `prefix`: how many there were.
    pub(super) async fn delete_under(&self, prefix: &str) -> Result<u64, StoreError> {
        let pattern = format!("{}*", glob_escaped(prefix));
        match &self.connection {
            Connection::Standalone(_) => self.delete_scanned(None, &pattern).await,
            Connection::Cluster(c) => {
                let mut deleted = 0;
                for (host, port) in self.masters(&mut c.clone()).await? {
                    deleted += self.delete_scanned(Some((&host, port)), &pattern).await?;
                }
                Ok(deleted)
            }
        }
    }

    /// The masters of a Redis Cluster, as `(host, port)`, from `CLUSTER NODES`.
    async fn masters(
        &self,
        connection: &mut ClusterConnection,
    ) -> Result<Vec<(String, u16)>, StoreError> {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("NODES");
        let nodes = connection
            .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await
            .map_err(|e| self.error(e))?;
        let text = String::from_redis_value(nodes).map_err(|e| self.error(e.into()))?;
        Ok(cluster_masters(&text))
    }

    /// Deletes the keys under `prefix` that one node holds: `SCAN` in steps, `UNLINK`
    /// what each step found (UNLINK frees memory off Redis's main thread).
    async fn delete_scanned(
        &self,
        node: Option<(&str, u16)>,
        pattern: &str,
    ) -> Result<u64, StoreError> {
        let mut cursor: u64 = 0;
        let mut deleted = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let answer = match (&self.connection, node) {
                (Connection::Cluster(c), Some((host, port))) => c
                    .clone()
                    .route_command(
                        scan,
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.to_owned(),
                            port,
                        }),
                    )
                    .await
                    .map_err(|e| self.error(e))?,
                _ => self.query::<Value>(&scan).await?,
            };
            let (next, keys): (u64, Vec<String>) =
                FromRedisValue::from_redis_value(answer).map_err(|e| self.error(e.into()))?;
            if !keys.is_empty() {
                // On a Cluster, redis-rs splits a many-key UNLINK by slot.
                let mut unlink = redis::cmd("UNLINK");
                unlink.arg(&keys);
                deleted += self.query::<u64>(&unlink).await?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// `prefix` with the glob characters of `SCAN MATCH` escaped, so it matches itself.
fn glob_escaped(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 4);
    for ch in prefix.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The masters' addresses in a `CLUSTER NODES` answer: lines of `id host:port@cport
/// flags ...`, the flags holding `master` (and not `fail`).
fn cluster_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            let is_master = flags.split(',').any(|f| f == "master");
            let failed = flags.split(',').any(|f| f == "fail" || f == "noaddr");
            if !is_master || failed {
                return None;
            }
            let address = address.split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_matches_only_itself_in_scan() {
        assert_eq!(glob_escaped("fanout:cache:"), "fanout:cache:");
        assert_eq!(glob_escaped("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn cluster_nodes_give_the_live_masters() {
        let nodes = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master,fail - 0 1426238318243 3 connected 10923-16383
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
";
        assert_eq!(
            cluster_masters(nodes),
            vec![
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30001)
            ]
        );
    }
}
