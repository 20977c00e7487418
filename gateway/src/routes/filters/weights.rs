//! Weighted backends (the Gateway API's `backendRefs` weights; nginx's
//! `split_clients`, ingress-nginx's canary weight): each request picks an upstream
//! by weight, then that upstream balances over its own backends.

/// A route's upstreams and their weights, validated (at least one weight above 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    /// `(upstream index, weight)` in the order written.
    entries: Box<[(usize, u32)]>,
    /// Running sums of the weights, for the pick.
    ends: Box<[u64]>,
    total: u64,
}

/// The largest weight (the Gateway API's bound).
pub const MAX_WEIGHT: u32 = 1_000_000;
/// `weight` when not given.
pub const DEFAULT_WEIGHT: u32 = 1;

impl Backends {
    /// `entries` as `(upstream index, weight)`; `None` when every weight is 0 (or
    /// there are none).
    pub fn new(entries: Vec<(usize, u32)>) -> Option<Self> {
        let mut total = 0u64;
        let ends = entries
            .iter()
            .map(|&(_, w)| {
                total += u64::from(w);
                total
            })
            .collect();
        (total > 0).then(|| Self {
            entries: entries.into_boxed_slice(),
            ends,
            total,
        })
    }

    /// A single upstream: no pick needed.
    pub fn one(upstream: usize) -> Self {
        Self {
            entries: Box::new([(upstream, DEFAULT_WEIGHT)]),
            ends: Box::new([u64::from(DEFAULT_WEIGHT)]),
            total: u64::from(DEFAULT_WEIGHT),
        }
    }

    /// `(upstream index, weight)` in the order written.
    pub fn entries(&self) -> &[(usize, u32)] {
        &self.entries
    }

    /// The upstream for a request, from `random` (uniform over `u64`: the per-thread
    /// `upstream::random_u64`). A weight of 0 is never picked.
    pub fn pick(&self, random: impl FnOnce() -> u64) -> usize {
        if let [(only, _)] = *self.entries {
            return only;
        }
        // `random` scaled to 0..total without a division (Lemire's multiply-shift).
        let r = ((u128::from(random()) * u128::from(self.total)) >> 64) as u64;
        let i = self.ends.partition_point(|&end| end <= r);
        self.entries.get(i).map_or(0, |&(upstream, _)| upstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: deterministic, so the split below is the same on every run.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    fn split(b: &Backends, upstreams: usize, picks: usize, seed: u64) -> Vec<usize> {
        let mut next = rng(seed);
        let mut counts = vec![0; upstreams];
        for _ in 0..picks {
            counts[b.pick(&mut next)] += 1;
        }
        counts
    }

    #[test]
    fn ten_thousand_picks_split_within_two_points() {
        for (weights, seed) in [
            (vec![90, 10], 1),
            (vec![50, 50], 7),
            (vec![1, 2, 7], 42),
            (vec![0, 3, 0, 1], 99),
        ] {
            let total: u32 = weights.iter().sum();
            let entries = weights.iter().enumerate().map(|(i, &w)| (i, w)).collect();
            let b = Backends::new(entries).unwrap();
            let counts = split(&b, weights.len(), 10_000, seed);
            for (i, (&w, &n)) in weights.iter().zip(&counts).enumerate() {
                let want = 100.0 * f64::from(w) / f64::from(total);
                let got = 100.0 * n as f64 / 10_000.0;
                assert!(
                    (want - got).abs() <= 2.0,
                    "{weights:?}: upstream {i} got {got}%, want {want}%"
                );
                if w == 0 {
                    assert_eq!(n, 0, "weight 0 is never picked");
                }
            }
        }
    }

    #[test]
    fn the_extremes_of_the_random_range_stay_in_bounds() {
        let b = Backends::new(vec![(4, 1), (5, 0), (6, 1)]).unwrap();
        assert_eq!(b.pick(|| 0), 4);
        assert_eq!(b.pick(|| u64::MAX), 6);
        assert_eq!(b.pick(|| u64::MAX / 2), 4);
        assert_eq!(b.pick(|| u64::MAX / 2 + 1), 6);
    }

    #[test]
    fn all_zero_is_no_backends_and_one_needs_no_random() {
        assert_eq!(Backends::new(vec![(0, 0), (1, 0)]), None);
        assert_eq!(Backends::new(vec![]), None);
        let one = Backends::one(3);
        assert_eq!(
            one.pick(|| unreachable!("a single upstream needs no random number")),
            3
        );
        assert_eq!(one.entries(), &[(3, 1)]);
    }
}
