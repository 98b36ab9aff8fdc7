//! Event streams on Redis, for [`RedisStore`]: an entry is appended with `XADD ... MAXLEN
//! ~ keep` (Redis trims whole nodes, so at least `keep` stay), and read with one script
//! (`events.lua`) that gives the stream's oldest and newest ids beside the entries after
//! an id, so a reader can tell when entries it never read were trimmed away. XRANGE's
//! start is inclusive (its exclusive form, `(id`, needs Redis 6.2): the script is given
//! the id after the last one read ([`next_stream_id`]).

use super::{Connection, RedisStore};
use crate::cluster::store::{StoreError, StreamEntry, StreamRead, next_stream_id};
use redis::RedisError;

/// A stream's oldest and newest ids (`""`: no stream), and its entries as Redis gives
/// them: an id and the fields and values in turn, as bytes (any client of the store
/// may have written them; text that is not UTF-8 must not stop the reader there).
type ScriptAnswer = (String, String, Vec<(String, Vec<Vec<u8>>)>);

impl RedisStore {
    pub(super) async fn append_entry(
        &self,
        key: &str,
        fields: &[(&str, &str)],
        keep: usize,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(key).arg("MAXLEN").arg("~").arg(keep).arg("*");
        for (field, value) in fields {
            cmd.arg(*field).arg(*value);
        }
        self.query::<String>(&cmd).await.map(drop)
    }

    pub(super) async fn read_entries(
        &self,
        key: &str,
        after: Option<&str>,
        count: usize,
    ) -> Result<StreamRead, StoreError> {
        let mut call = self.events.key(key);
        call.arg(after.map(next_stream_id).unwrap_or_default())
            .arg(count);
        let result: Result<ScriptAnswer, RedisError> = match self.connection.clone() {
            Connection::Standalone(mut c) => call.invoke_async(&mut c).await,
            Connection::Cluster(mut c) => call.invoke_async(&mut c).await,
        };
        let (oldest, newest, entries) = result.map_err(|e| self.error(e))?;
        let some = |id: String| (!id.is_empty()).then_some(id);
        Ok(StreamRead {
            oldest: some(oldest),
            newest: some(newest),
            entries: entries
                .into_iter()
                .map(|(id, flat)| StreamEntry {
                    id,
                    fields: pairs(flat),
                })
                .collect(),
        })
    }
}

/// `[f1, v1, f2, v2]` as `[(f1, v1), (f2, v2)]`, bytes that are not UTF-8 replaced; an
/// odd last field is dropped.
fn pairs(flat: Vec<Vec<u8>>) -> Vec<(String, String)> {
    let text = |bytes: Vec<u8>| {
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    };
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut items = flat.into_iter();
    while let (Some(field), Some(value)) = (items.next(), items.next()) {
        out.push((text(field), text(value)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_pair_up_and_an_odd_one_is_dropped() {
        let flat = |v: &[&[u8]]| v.iter().map(|s| s.to_vec()).collect::<Vec<_>>();
        assert_eq!(
            pairs(flat(&[b"url", b"/a", b"all", b"1"])),
            [("url".into(), "/a".into()), ("all".into(), "1".into())]
        );
        assert_eq!(pairs(flat(&[b"url", b"/a", b"odd"])).len(), 1);
        assert!(pairs(Vec::new()).is_empty());
        assert_eq!(
            pairs(flat(&[b"url", b"/\xff"])),
            [("url".into(), "/\u{fffd}".into())]
        );
    }
}
