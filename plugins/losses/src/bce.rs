//! `bce`: binary cross-entropy with logits over one positive (label 1) and `k` sampled negatives
//! (label 0) per row.
//!
//! Normalisation: each row contributes the mean of its `1 + k` terms,
//! `row_i = (softplus(-pos_i) + Σ_j softplus(neg_ij)) / (1 + k)`, and the loss is the mean of
//! the rows — the same as the mean over all `n·(1 + k)` binary terms. (`-log σ(x) =
//! softplus(-x)` and `-log(1 - σ(x)) = softplus(x)`, computed in the stable form.) Gradients:
//! `∂/∂pos_i = -σ(-pos_i) / (n·(1 + k))`, `∂/∂neg_ij = σ(neg_ij) / (n·(1 + k))`.

use crate::common::{sampled_shapes, softplus};
use candle_core::Tensor;
use pulse_api::config::ConfigError;
use pulse_api::{Exclude, Loss, LossInput, PluginConfig, PluginError, SamplerKind, SamplerSpec};
use serde::{Deserialize, Serialize};

/// Config of `bce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BceConfig {
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

impl Default for BceConfig {
    fn default() -> Self {
        Self {
            negatives: 1,
            sampler: SamplerKind::Uniform,
            alpha: 1.0,
            exclude: Exclude::Known,
        }
    }
}

impl PluginConfig for BceConfig {
    const TYPE: &'static str = "bce";
    const SUMMARY: &'static str =
        "Binary cross-entropy with logits: positive labelled 1, sampled negatives labelled 0";
    const EXAMPLE: &'static str = "\
# Negatives sampled per positive; each row's loss is the mean of its 1 + negatives terms.
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

/// The `bce` loss.
#[derive(Debug, Clone)]
pub struct Bce {
    cfg: BceConfig,
}

impl Bce {
    pub fn new(cfg: BceConfig) -> Self {
        Self { cfg }
    }
}

impl Loss for Bce {
    fn type_name(&self) -> &str {
        BceConfig::TYPE
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
        let (_, k) = sampled_shapes(BceConfig::TYPE, self.cfg.negatives, pos, neg)?;
        let pos_terms = softplus(&pos.neg()?)?;
        let neg_terms = softplus(neg)?.sum(1)?;
        let rows = (pos_terms + neg_terms)?.affine(1.0 / (1 + k) as f64, 0.0)?;
        Ok(rows.mean_all()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{assert_close, check_example, scalar, t1, t2};
    use candle_core::Var;

    fn bce(k: usize) -> Bce {
        Bce::new(BceConfig {
            negatives: k,
            ..BceConfig::default()
        })
    }

    #[track_caller]
    fn check<const K: usize>(pos: &[f32], neg: &[[f32; K]], want: f32) {
        let got = scalar(&bce(K).sampled(&t1(pos), &t2(neg)).unwrap());
        assert_close(&[got], &[want], 1e-6);
    }

    #[test]
    fn forward_matches_hand_computed_values() {
        // all logits 0: every term is ln 2 = 0.6931472, so the mean is ln 2
        check(&[0.0], &[[0.0, 0.0]], std::f32::consts::LN_2);
        // row 1: (softplus(-2) + softplus(-1)) / 2 = (0.1269280 + 0.3132617) / 2 = 0.2200949
        // row 2: (softplus(0) + softplus(1)) / 2 = (0.6931472 + 1.3132617) / 2 = 1.0032044
        // mean = 0.6116497
        check(&[2.0, 0.0], &[[-1.0], [1.0]], 0.611_649_6);
        // k = 3, one row: (softplus(-1) + softplus(0) + softplus(2) + softplus(-2)) / 4
        // = (0.3132617 + 0.6931472 + 2.1269280 + 0.1269280) / 4 = 0.8150662
        check(&[1.0], &[[0.0, 2.0, -2.0]], 0.815_066_2);
        // saturated: confident and right → ~0; confident and wrong → (100 + 100) / 2 = 100
        check(&[100.0, -100.0], &[[-100.0], [100.0]], 50.0);
    }

    #[test]
    fn gradient_matches_analytic_form() {
        let pos = [0.5f32, -1.0];
        let neg = [[1.0f32, -0.5, 0.0], [0.0, -3.0, 2.5]];
        let (n, k) = (pos.len() as f64, neg[0].len() as f64);
        let p = Var::from_tensor(&t1(&pos)).unwrap();
        let q = Var::from_tensor(&t2(&neg)).unwrap();
        let grads = bce(3)
            .sampled(p.as_tensor(), q.as_tensor())
            .unwrap()
            .backward()
            .unwrap();
        let sigma = |x: f64| 1.0 / (1.0 + (-x).exp());
        let norm = n * (1.0 + k);
        let want_pos: Vec<f32> = pos
            .iter()
            .map(|&v| (-sigma(-f64::from(v)) / norm) as f32)
            .collect();
        let want_neg: Vec<f32> = neg
            .iter()
            .flatten()
            .map(|&v| (sigma(f64::from(v)) / norm) as f32)
            .collect();
        let got_pos = grads.get(p.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let got_neg = grads.get(q.as_tensor()).unwrap().flatten_all().unwrap();
        assert_close(&got_pos, &want_pos, 1e-6);
        assert_close(&got_neg.to_vec1::<f32>().unwrap(), &want_neg, 1e-6);
    }

    #[test]
    fn example_decodes_to_default() {
        check_example::<BceConfig>();
    }
}
