//! The pick: which of a canary's upstreams a request goes to, as a pure function of the
//! weights and one 64-bit draw.
//!
//! The rule: the draw is read as a fraction `u = draw / 2^64` of the whole, and the
//! upstreams own consecutive slices of `[0, 1)` in their written order, each as wide as
//! its share of the weights: upstream `k` is picked when `C(k-1)/T <= u < C(k)/T`, with
//! `C` the cumulative weights and `T` their sum. Computed in integers: `point =
//! floor(draw * T / 2^64)` (a 128-bit product, no division) is below `C(k)` exactly when
//! `u < C(k)/T`, so the first `k` with `point < C(k)` is the pick.
//!
//! Why slices of a fraction, and not `draw mod T`: a sticky client's draw is fixed (a
//! hash of its key), and when one weight changes only the clients that must move do.
//! Raising upstream `j`'s weight moves every slice boundary before `j` down and every one
//! after it up, so a client that moves, moves to `j`; lowering it moves clients only
//! away from `j`. `draw mod T` would reshuffle everyone whenever `T` changed. A weight of
//! 0 owns an empty slice: never picked.

/// A canary's compiled weights: their running sums, in the written order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickTable {
    /// `cumulative[k]`: the weights of upstreams `0..=k`.
    cumulative: Box<[u64]>,
}

impl PickTable {
    /// The table of `weights`; `None` when they add up to 0 (validation refuses that).
    pub fn new(weights: &[u32]) -> Option<Self> {
        let mut sum = 0u64;
        let cumulative: Box<[u64]> = weights
            .iter()
            .map(|&w| {
                sum += u64::from(w);
                sum
            })
            .collect();
        (sum > 0).then_some(Self { cumulative })
    }

    /// The sum of the weights.
    fn total(&self) -> u64 {
        *self.cumulative.last().expect("a table has an upstream")
    }

    /// The index of the upstream `draw` picks (see the module's rule).
    pub fn pick(&self, draw: u64) -> usize {
        let point = ((u128::from(draw) * u128::from(self.total())) >> 64) as u64;
        // The first running sum above the point; `point < total` so there is one.
        self.cumulative.partition_point(|&c| c <= point)
    }
}

/// The draw of a sticky key's value: the first 8 bytes of its SHA-256. Stable across
/// processes, builds and reloads (unlike std's `RandomState`), so a client keeps its
/// pick wherever and whenever it is made while the weights stay as they are.
pub fn sticky_draw(value: &[u8]) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, value);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(table: &PickTable, n: usize, draw: impl FnMut() -> u64) -> Vec<usize> {
        let mut counts = vec![0; table.cumulative.len()];
        let mut draw = draw;
        for _ in 0..n {
            counts[table.pick(draw())] += 1;
        }
        counts
    }

    #[test]
    fn weights_hold_within_three_percent_over_ten_thousand_seeded_picks() {
        for weights in [vec![90, 10], vec![50, 50], vec![1, 2, 7], vec![70, 20, 10]] {
            let table = PickTable::new(&weights).unwrap();
            let total: u32 = weights.iter().sum();
            for seed in [1, 7, 42] {
                let mut rng = fastrand::Rng::with_seed(seed);
                let got = counts(&table, 10_000, || rng.u64(..));
                for (k, &w) in weights.iter().enumerate() {
                    let want = 10_000.0 * f64::from(w) / f64::from(total);
                    let share = got[k] as f64;
                    assert!(
                        (share - want).abs() <= 300.0,
                        "weights {weights:?} seed {seed}: upstream {k} got {share}, want {want} ± 3%"
                    );
                }
            }
        }
    }

    #[test]
    fn a_zero_weight_is_never_picked() {
        let table = PickTable::new(&[0, 5, 0, 5, 0]).unwrap();
        let mut rng = fastrand::Rng::with_seed(3);
        let got = counts(&table, 10_000, || rng.u64(..));
        assert_eq!((got[0], got[2], got[4]), (0, 0, 0), "{got:?}");
        // The edges of the draw too.
        for draw in [0, 1, u64::MAX / 2, u64::MAX / 2 + 1, u64::MAX - 1, u64::MAX] {
            assert!([1, 3].contains(&table.pick(draw)), "draw {draw}");
        }
        assert_eq!(PickTable::new(&[0, 0]), None);
        assert_eq!(PickTable::new(&[0, 1]).unwrap().pick(0), 1);
    }

    #[test]
    fn the_edges_of_the_draw_pick_the_first_and_last_slices() {
        let table = PickTable::new(&[90, 10]).unwrap();
        assert_eq!(table.pick(0), 0);
        assert_eq!(table.pick(u64::MAX), 1);
        // 0.9 of the way: the boundary belongs to the second slice.
        let boundary = ((u128::from(u64::MAX) + 1) * 9 / 10) as u64;
        assert_eq!(table.pick(boundary - 1), 0);
        assert_eq!(table.pick(boundary + 1), 1);
        let one = PickTable::new(&[u32::MAX]).unwrap();
        assert_eq!(one.pick(u64::MAX), 0);
    }

    #[test]
    fn a_sticky_key_picks_the_same_upstream_every_time() {
        let table = PickTable::new(&[90, 10]).unwrap();
        for user in 0..1000 {
            let key = format!("user-{user}");
            let first = table.pick(sticky_draw(key.as_bytes()));
            for _ in 0..3 {
                assert_eq!(table.pick(sticky_draw(key.as_bytes())), first);
            }
        }
        // Fixed across processes and builds: the SHA-256 of "" starts so.
        assert_eq!(sticky_draw(b""), 0xe3b0_c442_98fc_1c14);
    }

    /// Every key's pick before and after a weight change: each one that moves, moves to
    /// (when raised) or away from (when lowered) the changed upstream.
    fn moves(before: &[u32], after: &[u32]) -> Vec<(usize, usize)> {
        let (b, a) = (
            PickTable::new(before).unwrap(),
            PickTable::new(after).unwrap(),
        );
        (0..20_000)
            .map(|i| sticky_draw(format!("client-{i}").as_bytes()))
            .map(|d| (b.pick(d), a.pick(d)))
            .filter(|(x, y)| x != y)
            .collect()
    }

    #[test]
    fn raising_a_weight_moves_clients_only_toward_it() {
        let moved = moves(&[90, 10], &[90, 20]);
        assert!(!moved.is_empty());
        assert!(moved.iter().all(|&m| m == (0, 1)), "{moved:?}");
        // In the middle of three: from both sides, only to it.
        let moved = moves(&[40, 20, 40], &[40, 50, 40]);
        assert!(moved.iter().any(|m| m.0 == 0) && moved.iter().any(|m| m.0 == 2));
        assert!(moved.iter().all(|m| m.1 == 1), "{moved:?}");
        // Lowering: only away from it.
        let moved = moves(&[40, 50, 40], &[40, 20, 40]);
        assert!(moved.iter().all(|m| m.0 == 1), "{moved:?}");
        // Draining to 0 moves exactly its clients.
        let moved = moves(&[50, 50], &[50, 0]);
        assert!(moved.iter().all(|&m| m == (1, 0)), "{moved:?}");
    }

    #[test]
    fn about_the_right_share_moves_when_a_weight_is_raised() {
        // 90/10 to 80/20: about a tenth of all clients move.
        let moved = moves(&[90, 10], &[80, 20]).len();
        assert!((1_800..=2_200).contains(&moved), "{moved} of 20000 moved");
    }
}
