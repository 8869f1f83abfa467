//! Picking the next token from a row of logits: repetition penalty, then greedy argmax or
//! sampling with temperature, top-k and top-p. Each sequence has its own generator, seeded from
//! the run's seed and the prompt's index, so a sequence's text does not depend on which other
//! prompts shared its batch.

use crate::GenParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One sequence's sampler.
#[derive(Debug, Clone)]
pub(crate) struct Sampler {
    rng: ChaCha8Rng,
}

/// SplitMix64: spreads nearby seeds (0, 1, 2, …) over the whole generator state space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Sampler {
    pub(crate) fn new(seed: u64, index: usize) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(mix(seed ^ mix(index as u64))),
        }
    }

    /// The next token. `seen` holds the tokens the repetition penalty applies to (prompt and
    /// output so far); `logits` is modified.
    pub(crate) fn pick(&mut self, logits: &mut [f32], seen: &[u32], p: &GenParams) -> u32 {
        if p.repetition_penalty != 1.0 {
            penalize(logits, seen, p.repetition_penalty);
        }
        if p.is_greedy() {
            return argmax(logits);
        }
        let t = p.temperature;
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(i, &l)| (i as u32, l / t))
            .collect();
        if cand.is_empty() {
            return argmax(logits);
        }
        let by_logit_desc =
            |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if let Some(k) = p.top_k.filter(|&k| k > 0 && k < cand.len()) {
            cand.select_nth_unstable_by(k - 1, by_logit_desc);
            cand.truncate(k);
        }
        cand.sort_unstable_by(by_logit_desc);
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|(_, l)| (l - max).exp()).collect();
        let total: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= total);
        if let Some(top_p) = p.top_p.filter(|&x| x < 1.0) {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, x) in probs.iter().enumerate() {
                acc += x;
                if acc >= top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let total: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|x| *x /= total);
        }
        let mut u: f32 = self.rng.random();
        for (i, x) in probs.iter().enumerate() {
            if u < *x {
                return cand[i].0;
            }
            u -= x;
        }
        // Rounding left a sliver of mass: it belongs to the last kept token.
        cand[probs.len() - 1].0
    }
}

/// CTRL's penalty as transformers applies it: positive logits divided, negative multiplied.
fn penalize(logits: &mut [f32], seen: &[u32], penalty: f32) {
    let mut done = std::collections::HashSet::with_capacity(seen.len());
    for &t in seen {
        if let Some(l) = logits.get_mut(t as usize) {
            if done.insert(t) {
                *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
            }
        }
    }
}

/// Index of the largest logit (the first on ties).
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: Option<usize>, top_p: Option<f32>, rep: f32) -> GenParams {
        GenParams {
            temperature,
            top_k,
            top_p,
            repetition_penalty: rep,
            ..GenParams::default()
        }
    }

    /// Draws 2,000 tokens and returns how often each of the 4 tokens came up.
    fn histogram(logits: &[f32], p: &GenParams, seen: &[u32]) -> [usize; 4] {
        let mut s = Sampler::new(7, 0);
        let mut h = [0; 4];
        for _ in 0..2000 {
            let mut l = logits.to_vec();
            h[s.pick(&mut l, seen, p) as usize] += 1;
        }
        h
    }

    #[track_caller]
    fn check(logits: &[f32], p: GenParams, seen: &[u32], expected: impl Fn([usize; 4]) -> bool) {
        let h = histogram(logits, &p, seen);
        assert!(expected(h), "{p:?}: {h:?}");
    }

    #[test]
    fn sampling_respects_the_knobs() {
        let l = [2.0, 1.0, 0.5, -1.0];
        // Greedy: always the argmax; with the penalty on token 0 (2/3 < 1), token 1 wins.
        check(&l, params(0.0, None, None, 1.0), &[], |h| {
            h == [2000, 0, 0, 0]
        });
        check(&l, params(0.0, None, None, 3.0), &[0], |h| {
            h == [0, 2000, 0, 0]
        });
        // Negative logits are pushed further down by the penalty, never up.
        check(
            &[-1.0, -0.5, -3.0, -4.0],
            params(0.0, None, None, 2.0),
            &[1],
            |h| h == [2000, 0, 0, 0],
        );
        // Sampling visits every token; top-k 2 only the best two.
        check(&l, params(1.0, None, None, 1.0), &[], |h| {
            h.iter().all(|&c| c > 0)
        });
        check(&l, params(1.0, Some(2), None, 1.0), &[], |h| {
            h[2] == 0 && h[3] == 0 && h[0] > h[1] && h[1] > 0
        });
        // top-p 0.5: token 0 alone holds p = 0.61 of the mass.
        check(&l, params(1.0, None, Some(0.5), 1.0), &[], |h| {
            h == [2000, 0, 0, 0]
        });
        // Low temperature sharpens towards the argmax.
        check(&l, params(0.1, None, None, 1.0), &[], |h| h[0] > 1990);
        // -inf logits (masked tokens) are never drawn.
        check(
            &[1.0, f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY],
            params(1.0, None, None, 1.0),
            &[],
            |h| h[1] == 0 && h[3] == 0 && h[0] > 900 && h[2] > 900,
        );
    }

    #[test]
    fn seeds_make_runs_repeatable() {
        let draw = |seed: u64, index: usize| -> Vec<u32> {
            let mut s = Sampler::new(seed, index);
            let p = params(1.0, None, None, 1.0);
            (0..32)
                .map(|_| s.pick(&mut [0.0, 0.0, 0.0, 0.0], &[], &p))
                .collect()
        };
        assert_eq!(draw(1, 0), draw(1, 0));
        assert_ne!(draw(1, 0), draw(2, 0));
        assert_ne!(draw(1, 0), draw(1, 1));
    }
}
