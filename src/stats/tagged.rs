//! The lock-free cells the windows are made of: a count tagged with the period it
//! belongs to, in one `AtomicU64`, and the log-linear latency buckets.
//!
//! Why tagged counts: a ring slot is reused for a later period, and clearing it is a
//! race (a writer that adds between the clearer's check and its store loses a sample).
//! Here a slot is never cleared: its count carries its period's tag in the high bits,
//! a writer of a newer period replaces the count with its own in the same
//! compare-and-swap, and a reader counts a cell only when its tag is the period it
//! asks for. A writer that is late (its period older than the cell's) adds to the newer
//! period instead of erasing it: a sample is counted late, never lost.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of the count; the rest (24) are the period's tag. 2^40 samples per cell and
/// period is more than any gateway answers.
const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const TAG_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

fn tag_of(period: u64) -> u64 {
    period & TAG_MASK
}

/// How far behind a cell's period a writer may be and still count as late (its sample
/// added to the newer period). Anything farther is taken as the cell being stale by a
/// whole wrap of the tag (a cell untouched for months), which is replaced.
const LATE: u64 = 1024;

/// Whether tag `a` is a little older than tag `b` (by at most [`LATE`]), across the
/// tag's wrap.
fn older(a: u64, b: u64) -> bool {
    let ahead = b.wrapping_sub(a) & TAG_MASK;
    ahead != 0 && ahead <= LATE
}

/// A count for one period, in one atomic word.
#[derive(Debug, Default)]
pub struct TaggedCount(AtomicU64);

impl TaggedCount {
    /// Adds `n` to `period`'s count; a cell holding an older period starts over at `n`.
    pub fn add(&self, period: u64, n: u64) {
        let tag = tag_of(period);
        let mut current = self.0.load(Ordering::Relaxed);
        loop {
            let held = current >> COUNT_BITS;
            // An empty cell (count 0) holds no period: it is taken as it is.
            let empty = current & COUNT_MASK == 0;
            let next = if !empty && (held == tag || older(tag, held)) {
                // This period, or a newer one already (a late writer): add to it.
                let count = ((current & COUNT_MASK) + n).min(COUNT_MASK);
                (held << COUNT_BITS) | count
            } else {
                (tag << COUNT_BITS) | n.min(COUNT_MASK)
            };
            match self
                .0
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }

    /// The count of `period`: 0 when the cell holds another period.
    pub fn get(&self, period: u64) -> u64 {
        let v = self.0.load(Ordering::Relaxed);
        if v >> COUNT_BITS == tag_of(period) {
            v & COUNT_MASK
        } else {
            0
        }
    }
}

/// Sub-buckets per power of two: a bucket is at most 1/16 of its values wide, so a
/// percentile read from its middle is within ±3.2%.
const SUB_BITS: u32 = 4;
const SUB: u64 = 1 << SUB_BITS;
/// The largest power of two of microseconds with buckets of its own: 2^30 µs ≈ 18 min.
/// Longer latencies count in the last bucket.
const TOP_EXPONENT: u32 = 29;
/// Buckets of one latency histogram.
pub const BUCKETS: usize = (SUB + (TOP_EXPONENT - SUB_BITS + 1) as u64 * SUB) as usize;

/// The bucket of a latency of `micros`: exact below 16 µs, then 16 per power of two.
pub fn bucket_of(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let exponent = (63 - micros.leading_zeros()).min(TOP_EXPONENT);
    if micros >> exponent > 1 {
        return BUCKETS - 1;
    }
    let mantissa = (micros >> (exponent - SUB_BITS)) & (SUB - 1);
    (SUB + u64::from(exponent - SUB_BITS) * SUB + mantissa) as usize
}

/// The middle of bucket `index`'s values, in microseconds: what a sample in it is
/// taken to be when the histogram is read.
pub fn bucket_value(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB {
        return index;
    }
    let exponent = (index - SUB) / SUB + u64::from(SUB_BITS);
    let mantissa = (index - SUB) % SUB;
    let width = 1u64 << (exponent - u64::from(SUB_BITS));
    ((SUB + mantissa) << (exponent - u64::from(SUB_BITS))) + width / 2
}

/// One latency histogram of a period: a tagged count per bucket.
#[derive(Debug)]
pub struct TaggedBuckets(Box<[TaggedCount]>);

impl Default for TaggedBuckets {
    fn default() -> Self {
        Self((0..BUCKETS).map(|_| TaggedCount::default()).collect())
    }
}

impl TaggedBuckets {
    pub fn record(&self, period: u64, micros: u64) {
        self.0[bucket_of(micros)].add(period, 1);
    }

    /// Each non-empty bucket of `period`: (its middle in µs, its count).
    pub fn counts(&self, period: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .map(move |(i, c)| (bucket_value(i), c.get(period)))
            .filter(|(_, n)| *n > 0)
    }
}
