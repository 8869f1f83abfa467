//! Negatives for the sampled protocol: per user, `k` distinct items that are not excluded
//! (targets, and known items when masking), drawn uniformly or proportionally to training
//! popularity.
//!
//! Determinism: one ChaCha generator is derived from the trial seed with the label
//! `eval-negatives`, and user `u` reads its own ChaCha stream `u` of that key. A user's negatives
//! therefore depend only on the seed, the user and the excluded set — not on batch size, thread
//! split, or which other users are evaluated.

use pulse_api::rng::{derive, Rng};
use pulse_api::sections::NegativeSampling;
use rand::Rng as _;

/// Rejection sampling gives up after this many draws per wanted negative (plus a constant) and
/// finishes with an exact pass over the remaining candidates; only users whose excluded items
/// hold nearly all of the probability mass get there.
const REJECTION_TRIES_PER_DRAW: usize = 32;

/// Draws sampled-protocol negatives.
#[derive(Debug, Clone)]
pub struct NegativeSampler {
    n_items: usize,
    k: usize,
    /// `Some(prefix sums of item weights)` for popularity sampling.
    cumulative: Option<Vec<f64>>,
    weights: Vec<f64>,
    base: Rng,
}

/// Not enough items are left to draw from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooFew {
    pub available: usize,
}

impl NegativeSampler {
    /// `counts` are training interaction counts per item (used for popularity; items never seen
    /// in training are then never drawn).
    pub fn new(kind: NegativeSampling, counts: &[u32], k: usize, seed: u64) -> Self {
        let (weights, cumulative) = match kind {
            NegativeSampling::Uniform => (Vec::new(), None),
            NegativeSampling::Popularity => {
                let w: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
                let cum = w
                    .iter()
                    .scan(0.0, |acc, &x| {
                        *acc += x;
                        Some(*acc)
                    })
                    .collect();
                (w, Some(cum))
            }
        };
        Self {
            n_items: counts.len(),
            k,
            cumulative,
            weights,
            base: derive(seed, "eval-negatives"),
        }
    }

    /// Negatives drawn per user.
    pub fn k(&self) -> usize {
        self.k
    }

    /// `k` distinct negatives for `user`, none in `exclude` (distinct item ids `< n_items`).
    /// `marks` is scratch space of `n_items` falses, returned all false.
    pub fn draw(&self, user: u32, exclude: &[u32], marks: &mut [bool]) -> Result<Vec<u32>, TooFew> {
        let mut rng = self.base.clone();
        rng.set_stream(u64::from(user));
        for &i in exclude {
            marks[i as usize] = true;
        }
        let drawn = match &self.cumulative {
            None => self.uniform(&mut rng, exclude, marks),
            Some(cum) => self.popular(&mut rng, cum, exclude, marks),
        };
        for &i in exclude {
            marks[i as usize] = false;
        }
        if let Ok(out) = &drawn {
            for &i in out {
                marks[i as usize] = false;
            }
        }
        drawn
    }

    fn uniform(
        &self,
        rng: &mut Rng,
        exclude: &[u32],
        marks: &mut [bool],
    ) -> Result<Vec<u32>, TooFew> {
        let available = self.n_items - exclude.len();
        if available < self.k {
            return Err(TooFew { available });
        }
        let mut out = Vec::with_capacity(self.k);
        if 2 * self.k <= available {
            // At least half of the candidates stay free, so each draw takes few tries.
            while out.len() < self.k {
                let i = rng.random_range(0..self.n_items);
                if !marks[i] {
                    marks[i] = true;
                    out.push(i as u32);
                }
            }
        } else {
            let mut pool: Vec<u32> = (0..self.n_items as u32)
                .filter(|&i| !marks[i as usize])
                .collect();
            for j in 0..self.k {
                let pick = rng.random_range(j..pool.len());
                pool.swap(j, pick);
                marks[pool[j] as usize] = true;
                out.push(pool[j]);
            }
        }
        Ok(out)
    }

    fn popular(
        &self,
        rng: &mut Rng,
        cum: &[f64],
        exclude: &[u32],
        marks: &mut [bool],
    ) -> Result<Vec<u32>, TooFew> {
        let positive = self.weights.iter().filter(|&&w| w > 0.0).count();
        let excluded_positive = exclude
            .iter()
            .filter(|&&i| self.weights[i as usize] > 0.0)
            .count();
        let available = positive - excluded_positive;
        if available < self.k {
            return Err(TooFew { available });
        }
        let total = cum.last().copied().unwrap_or(0.0);
        let mut out = Vec::with_capacity(self.k);
        let mut tries = REJECTION_TRIES_PER_DRAW * self.k + 1024;
        while out.len() < self.k && tries > 0 {
            tries -= 1;
            let u = rng.random::<f64>() * total;
            // first item whose prefix sum exceeds u; zero-weight items are never picked
            let i = cum.partition_point(|&c| c <= u);
            if i < self.n_items && !marks[i] {
                marks[i] = true;
                out.push(i as u32);
            }
        }
        if out.len() < self.k {
            // Exact weighted sampling without replacement of the rest (Efraimidis–Spirakis:
            // the m largest keys ln(u)/w), which continues the same successive-sampling law.
            let mut keyed: Vec<(f64, u32)> = (0..self.n_items)
                .filter(|&i| !marks[i] && self.weights[i] > 0.0)
                .map(|i| {
                    let u = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
                    (u.ln() / self.weights[i], i as u32)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for &(_, i) in keyed.iter().take(self.k - out.len()) {
                marks[i as usize] = true;
                out.push(i);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(
        kind: NegativeSampling,
        counts: &[u32],
        k: usize,
        exclude: &[u32],
        expected: Result<(), TooFew>,
    ) -> Vec<u32> {
        let sampler = NegativeSampler::new(kind, counts, k, 42);
        let mut marks = vec![false; counts.len()];
        let got = sampler.draw(7, exclude, &mut marks);
        assert!(marks.iter().all(|m| !m), "scratch marks must be cleared");
        match (got, expected) {
            (Ok(neg), Ok(())) => {
                assert_eq!(neg.len(), k);
                let mut distinct = neg.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), k, "negatives repeat: {neg:?}");
                for i in &neg {
                    assert!(!exclude.contains(i), "excluded item {i} drawn: {neg:?}");
                    assert!(counts[*i as usize] > 0 || kind == NegativeSampling::Uniform);
                }
                // same seed, same user, same exclusions → same draw
                assert_eq!(sampler.draw(7, exclude, &mut marks), Ok(neg.clone()));
                neg
            }
            (got, want) => {
                assert_eq!(got.map(|_| ()), want);
                Vec::new()
            }
        }
    }

    #[test]
    fn uniform_draws_respect_exclusions() {
        let counts = [1u32; 10];
        check(NegativeSampling::Uniform, &counts, 3, &[0, 1, 2], Ok(()));
        // dense case (fewer than 2k free items) uses the shuffled pool
        let all = check(NegativeSampling::Uniform, &counts, 6, &[0, 1, 2, 3], Ok(()));
        let mut all_sorted = all;
        all_sorted.sort_unstable();
        assert_eq!(all_sorted, vec![4, 5, 6, 7, 8, 9]);
        check(
            NegativeSampling::Uniform,
            &counts,
            7,
            &[0, 1, 2, 3],
            Err(TooFew { available: 6 }),
        );
    }

    #[test]
    fn popularity_never_draws_unseen_items() {
        let counts = [0u32, 5, 0, 1, 3, 0, 2];
        // positive-weight items 1, 3, 4, 6; excluding 4 leaves 3
        let got = check(NegativeSampling::Popularity, &counts, 3, &[4, 5], Ok(()));
        let mut got = got;
        got.sort_unstable();
        assert_eq!(got, vec![1, 3, 6]);
        check(
            NegativeSampling::Popularity,
            &counts,
            4,
            &[4],
            Err(TooFew { available: 3 }),
        );
        // nearly all mass excluded: rejection gives up, the exact pass finishes the draw
        let counts = [1_000_000_000u32, 1, 1, 1, 1];
        check(NegativeSampling::Popularity, &counts, 2, &[0], Ok(()));
    }

    #[test]
    fn streams_depend_on_seed_and_user_only() {
        let counts = [1u32; 1000];
        let a = NegativeSampler::new(NegativeSampling::Uniform, &counts, 20, 1);
        let b = NegativeSampler::new(NegativeSampling::Uniform, &counts, 20, 2);
        let mut marks = vec![false; 1000];
        let a3 = a.draw(3, &[], &mut marks);
        assert_eq!(a.draw(3, &[], &mut marks), a3);
        assert_ne!(a.draw(4, &[], &mut marks), a3);
        assert_ne!(b.draw(3, &[], &mut marks), a3);
    }

    #[test]
    fn popularity_frequencies_follow_counts() {
        // item 1 is three times as popular as item 0: drawn in ~75% of users' single draws
        let sampler = NegativeSampler::new(NegativeSampling::Popularity, &[1, 3], 1, 9);
        let mut marks = vec![false; 2];
        let n = 4000;
        let ones = (0..n)
            .filter(|&u| sampler.draw(u, &[], &mut marks) == Ok(vec![1]))
            .count();
        let share = ones as f64 / f64::from(n);
        // binomial sd = sqrt(0.75 · 0.25 / 4000) ≈ 0.0068; allow ~4.4 sd
        assert!((share - 0.75).abs() < 0.03, "share {share}");
    }
}
