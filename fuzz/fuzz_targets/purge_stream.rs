//! The purge stream as a follower reads it: ids and fields come back from the cluster
//! store (Redis), so from the network, and may have been written by any of its clients.
//!
//! Properties:
//! 1. Nothing panics, on any text.
//! 2. An id in the store's form (`MILLISECONDS-SEQUENCE`) has a next id, also in that form
//!    and ordered after it (but the very last id, which has none); text of another form
//!    is passed on unchanged, for the store to refuse.
//! 3. A reading is `Lost` exactly when the stream is gone or its oldest id is ordered
//!    after the last one read (a follower always starts on a real entry).
//! 4. Otherwise it purges, in the entries' order, each entry's `url` (the first field of
//!    that name), or everything for an entry with `all` and no `url`, and passes over the
//!    others; the last id read becomes the last entry's.
//!
//! Input: lines, `\n`-separated: the follower's last id, the stream's oldest id (an
//! empty line: no stream), then entries, each `ID FIELD=VALUE FIELD=VALUE ...`.
#![no_main]

use fanout::cache::purge_events::{Reading, reading};
use fanout::cluster::{StreamEntry, StreamRead, next_stream_id, stream_id_order};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let last = lines.next().unwrap_or_default();
    let oldest = lines.next().filter(|l| !l.is_empty()).map(str::to_owned);
    let entries: Vec<StreamEntry> = lines
        .map(|line| {
            let mut words = line.split(' ');
            let id = words.next().unwrap_or_default().to_owned();
            let fields = words
                .map(|w| {
                    let (f, v) = w.split_once('=').unwrap_or((w, ""));
                    (f.to_owned(), v.to_owned())
                })
                .collect();
            StreamEntry { id, fields }
        })
        .collect();

    for id in std::iter::once(last).chain(entries.iter().map(|e| e.id.as_str())) {
        let next = next_stream_id(id);
        match stream_id_order(id) {
            Some((u64::MAX, u64::MAX)) => assert_eq!(next, id),
            Some(order) => {
                let after = stream_id_order(&next).expect("the next id is in the store's form");
                assert!(after > order, "{id} -> {next}");
            }
            None => assert_eq!(next, id),
        }
    }

    let read = StreamRead {
        newest: entries.last().map(|e| e.id.clone()),
        oldest,
        entries,
    };
    let lost = match &read.oldest {
        None => true,
        Some(oldest) => stream_id_order(oldest) > stream_id_order(last),
    };
    match reading(last, &read) {
        Reading::Lost => assert!(lost),
        Reading::Purge { purges, last: to } => {
            assert!(!lost);
            let expected: Vec<Option<&str>> = read
                .entries
                .iter()
                .filter_map(|e| {
                    let url = e.fields.iter().find(|(f, _)| f == "url");
                    let all = e.fields.iter().any(|(f, _)| f == "all");
                    match (url, all) {
                        (Some((_, u)), _) => Some(Some(u.as_str())),
                        (None, true) => Some(None),
                        (None, false) => None,
                    }
                })
                .collect();
            assert_eq!(purges, expected);
            assert_eq!(to, read.entries.last().map(|e| e.id.as_str()));
        }
    }
});
