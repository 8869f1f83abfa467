//! `bpr`: Bayesian personalised ranking (Rendle et al. 2009) over `k` sampled negatives per
//! positive: `loss = -mean_{i,j} log σ(pos_i - neg_ij)`, the mean taken over all `n·k` pairs
//! (equal to the mean over rows of each row's mean, since every row has `k` negatives).
//! `log σ` is computed as `-softplus(-x)` in its stable form, so saturated pairs give finite
//! losses and gradients. Gradients: `∂/∂neg_ij = σ(neg_ij - pos_i) / (n·k)`,
//! `∂/∂pos_i = -Σ_j σ(neg_ij - pos_i) / (n·k)`.

use crate::common::{log_sigmoid, sampled_shapes};
use candle_core::Tensor;
use pulse_api::config::ConfigError;
use pulse_api::{Exclude, Loss, LossInput, PluginConfig, PluginError, SamplerKind, SamplerSpec};
use serde::{Deserialize, Serialize};

/// Largest accepted `negatives` for the sampled losses.
pub(crate) const MAX_NEGATIVES: usize = 100_000;

/// Config of `bpr`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BprConfig {
    /// Sampled negatives per positive.
    pub negatives: usize,
    /// Where negatives come from: `uniform`, `popularity` (count^alpha) or `in-batch`.
    pub sampler: SamplerKind,
    /// Popularity exponent (`popularity` sampler only).
    pub alpha: f64,
    /// Which items are never negatives: `known` (the user's training items, where the model
    /// knows the row's user; RecBole's rule) or `positive` (only the row's own positive).
    pub exclude: Exclude,
}

impl Default for BprConfig {
    fn default() -> Self {
        Self {
            negatives: 1,
            sampler: SamplerKind::Uniform,
            alpha: 1.0,
            exclude: Exclude::Known,
        }
    }
}

impl PluginConfig for BprConfig {
    const TYPE: &'static str = "bpr";
    const SUMMARY: &'static str =
        "Bayesian personalised ranking: -mean log sigmoid(pos - neg) over sampled negatives";
    const EXAMPLE: &'static str = "\
# Negatives sampled per positive; the loss averages over every (positive, negative) pair.
negatives = 1
# Negative distribution: \"uniform\", \"popularity\" (count^alpha) or \"in-batch\".
sampler = \"uniform\"
# Popularity exponent (popularity sampler only).
alpha = 1.0
# Never negatives: \"known\" (the user\'s training items, for models that know the row\'s user)
# or \"positive\" (only the row\'s own positive).
exclude = \"known\"
";

    fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        crate::sampling::check(&mut e, self.negatives, self.alpha);
        e
    }
}

/// The `bpr` loss.
#[derive(Debug, Clone)]
pub struct Bpr {
    cfg: BprConfig,
}

impl Bpr {
    pub fn new(cfg: BprConfig) -> Self {
        Self { cfg }
    }
}

impl Loss for Bpr {
    fn type_name(&self) -> &str {
        BprConfig::TYPE
    }

    fn input(&self) -> LossInput {
        LossInput::Sampled {
            negatives: self.cfg.negatives,
        }
    }

    fn sampling(&self) -> SamplerSpec {
        crate::sampling::spec(self.cfg.sampler, self.cfg.alpha, self.cfg.exclude)
    }

    fn sampled(&self, pos: &Tensor, neg: &Tensor) -> Result<Tensor, PluginError> {
        sampled_shapes(BprConfig::TYPE, self.cfg.negatives, pos, neg)?;
        let diff = pos.unsqueeze(1)?.broadcast_sub(neg)?;
        Ok(log_sigmoid(&diff)?.mean_all()?.neg()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{assert_close, check_example, scalar, t1, t2};
    use candle_core::Var;

    fn bpr(k: usize) -> Bpr {
        Bpr::new(BprConfig {
            negatives: k,
            ..BprConfig::default()
        })
    }

    #[track_caller]
    fn check<const K: usize>(pos: &[f32], neg: &[[f32; K]], want: f32) {
        let got = scalar(&bpr(K).sampled(&t1(pos), &t2(neg)).unwrap());
        assert_close(&[got], &[want], 1e-6);
    }

    #[test]
    fn forward_matches_hand_computed_values() {
        // pairs: 2 - 1 = 1 → -ln σ(1) = ln(1 + e^-1) = 0.3132617; 0 - 0 → ln 2 = 0.6931472;
        // mean = 0.5032044
        check(&[2.0, 0.0], &[[1.0], [0.0]], 0.503_204_4);
        // one row, k = 2: diffs 0 and -2 → ln 2 = 0.6931472 and ln(1 + e^2) = 2.1269280;
        // mean = 1.4100376
        check(&[1.0], &[[1.0, 3.0]], 1.410_037_6);
        // saturated: diff 200 → ~0, diff -200 → 200 (a naive log σ gives -inf here)
        check(&[100.0, -100.0], &[[-100.0], [100.0]], 100.0);
    }

    #[test]
    fn rejects_bad_shapes() {
        for (pos, neg, want) in [
            (t1(&[1.0, 2.0]), t2(&[[0.0f32]]), "2 positive rows but 1"),
            (
                t1(&[1.0]),
                t2(&[[0.0f32, 1.0]]),
                "configured for 1 negatives",
            ),
            (
                t2(&[[1.0f32]]),
                t2(&[[0.0f32]]),
                "expected positive scores [n]",
            ),
        ] {
            let err = bpr(1).sampled(&pos, &neg).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = bpr(1).full(&t2(&[[0.0f32]]), &t1(&[0.0])).unwrap_err();
        assert!(err.to_string().contains("does not take full logits"));
    }

    #[test]
    fn gradient_matches_analytic_form() {
        let pos = [0.5f32, -1.0, 2.0];
        let neg = [[1.0f32, -0.5], [0.0, -3.0], [2.0, 4.0]];
        let (n, k) = (pos.len() as f64, neg[0].len() as f64);
        let p = Var::from_tensor(&t1(&pos)).unwrap();
        let q = Var::from_tensor(&t2(&neg)).unwrap();
        let grads = bpr(2)
            .sampled(p.as_tensor(), q.as_tensor())
            .unwrap()
            .backward()
            .unwrap();
        let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mut want_pos = Vec::new();
        let mut want_neg = Vec::new();
        for (i, row) in neg.iter().enumerate() {
            let s: Vec<f64> = row
                .iter()
                .map(|&v| sigma(f64::from(v) - f64::from(pos[i])) / (n * k))
                .collect();
            want_pos.push(-s.iter().sum::<f64>() as f32);
            want_neg.extend(s.iter().map(|&v| v as f32));
        }
        let got_pos = grads.get(p.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let got_neg = grads.get(q.as_tensor()).unwrap().flatten_all().unwrap();
        assert_close(&got_pos, &want_pos, 1e-6);
        assert_close(&got_neg.to_vec1::<f32>().unwrap(), &want_neg, 1e-6);
    }

    #[test]
    fn example_decodes_to_default() {
        check_example::<BprConfig>();
    }
}
