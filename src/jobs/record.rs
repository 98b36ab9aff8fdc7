//! One job as the store holds it: whose it is and where it is (pending, done with its
//! answer, cancelled), and the binary value written to the `[cluster]` store. Read back
//! from Redis it is bytes from the network: [`decode`] takes only a value that is whole
//! and one [`encode`] could write, anything else is an error, never a panic (fuzzed:
//! `fuzz/fuzz_targets/job_record.rs`). A done job's answer uses the shared cache's
//! answer layout (`cache::encode`).

use super::Owner;
use crate::cache::{CachePolicy, Stored};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The first bytes of every value: a tag and the layout's version.
const MAGIC: &[u8; 4] = b"fjb\x01";

/// Where a job is.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Running somewhere (or its instance died: the entry then expires).
    Pending,
    /// Finished: the answer the synchronous route would have given (a failure's too).
    Done(Stored),
    /// `DELETE`d before it finished.
    Cancelled,
}

/// A job in the store.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Whose it is; `None`: anyone's with the id.
    pub owner: Option<Owner>,
    pub state: JobState,
}

/// Why a stored value is not a job record (it is then answered as an unknown job).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a job record of this version")]
    Magic,
    #[error("the value ends early")]
    Truncated,
    #[error("an unknown job state or owner tag")]
    Tag,
    #[error("the answer: {0}")]
    Answer(#[from] crate::cache::DecodeError),
}

/// The value for `record`: magic, the state (u8: 0 pending, 1 done, 2 cancelled), the
/// owner (u8: 0 none, 1 then 32 bytes), and for a done job its answer as
/// `cache::encode` writes it (no windows, time 0).
pub fn encode(record: &JobRecord) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + 2 + 32);
    out.put_slice(MAGIC);
    out.put_u8(match record.state {
        JobState::Pending => 0,
        JobState::Done(_) => 1,
        JobState::Cancelled => 2,
    });
    match &record.owner {
        None => out.put_u8(0),
        Some(owner) => {
            out.put_u8(1);
            out.put_slice(&owner.0);
        }
    }
    if let JobState::Done(stored) = &record.state {
        out.put_slice(&crate::cache::encode(stored, CachePolicy::default(), 0));
    }
    out.freeze()
}

/// Reads a value [`encode`] wrote, whole; anything else is an error, never a panic.
pub fn decode(mut value: Bytes) -> Result<JobRecord, RecordError> {
    if value.len() < MAGIC.len() || value.split_to(MAGIC.len()) != MAGIC[..] {
        return Err(RecordError::Magic);
    }
    let state = value.try_get_u8().map_err(|_| RecordError::Truncated)?;
    let owner = match value.try_get_u8().map_err(|_| RecordError::Truncated)? {
        0 => None,
        1 => {
            let mut bytes = [0u8; 32];
            value
                .try_copy_to_slice(&mut bytes)
                .map_err(|_| RecordError::Truncated)?;
            Some(Owner(bytes))
        }
        _ => return Err(RecordError::Tag),
    };
    let state = match state {
        0 | 2 if value.has_remaining() => return Err(RecordError::Truncated),
        0 => JobState::Pending,
        2 => JobState::Cancelled,
        1 => {
            let entry = crate::cache::decode(value)?;
            if entry.policy != CachePolicy::default() || entry.stored_at_ms != 0 {
                return Err(RecordError::Tag);
            }
            JobState::Done(entry.stored)
        }
        _ => return Err(RecordError::Tag),
    };
    Ok(JobRecord { owner, state })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, StatusCode};

    fn done() -> JobRecord {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        JobRecord {
            owner: Some(Owner([7; 32])),
            state: JobState::Done(Stored {
                status: StatusCode::CREATED,
                headers,
                body: Bytes::from_static(b"{\"ok\":true}"),
            }),
        }
    }

    #[test]
    fn every_state_reads_back_as_written() {
        for record in [
            done(),
            JobRecord {
                owner: None,
                state: JobState::Pending,
            },
            JobRecord {
                owner: Some(Owner([1; 32])),
                state: JobState::Cancelled,
            },
        ] {
            assert_eq!(decode(encode(&record)).unwrap(), record);
        }
    }

    #[test]
    fn a_prefix_or_a_longer_value_is_refused() {
        let value = encode(&done());
        for len in 0..value.len() {
            assert!(decode(value.slice(..len)).is_err(), "prefix of {len}");
        }
        let mut longer = value.to_vec();
        longer.push(0);
        assert!(decode(Bytes::from(longer)).is_err());
        let pending = encode(&JobRecord {
            owner: None,
            state: JobState::Pending,
        });
        let mut longer = pending.to_vec();
        longer.push(0);
        assert_eq!(
            decode(Bytes::from(longer)),
            Err(RecordError::Truncated),
            "a pending record has nothing after its owner"
        );
    }
}
