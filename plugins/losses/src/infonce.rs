//! `infonce`: the contrastive InfoNCE objective (van den Oord et al. 2018) — softmax
//! cross-entropy of the positive against its negatives with similarities divided by a
//! temperature τ: row loss `logsumexp_c(s_c / τ) - s_pos / τ`, mean over rows; gradient
//! `∂/∂s_c = (p_c - [c = pos]) / (n τ)`. Negatives come from the shared sampler, by default
//! in-batch (the other rows' positives), as in PULSE's thought space (10 in-batch negatives,
//! τ = 1). It also takes a full similarity matrix (`[n, m]` against targets), which is the
//! all-in-batch form a two-tower encoder uses (`targets = 0..n` on the diagonal).

use crate::sampling;
use crate::softmax::{candidate_ce, full_ce};
use candle_core::Tensor;
use pulse_api::config::ConfigError;
use pulse_api::{Exclude, Loss, LossInput, PluginConfig, PluginError, SamplerKind, SamplerSpec};
use serde::{Deserialize, Serialize};

/// Config of `infonce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfoNceConfig {
    /// Temperature τ dividing every similarity (smaller = sharper).
    pub temperature: f64,
    /// Negatives per positive.
    pub negatives: usize,
    /// Where negatives come from: `in-batch`, `uniform` or `popularity`.
    pub sampler: SamplerKind,
    /// Popularity exponent (`popularity` sampler only).
    pub alpha: f64,
    /// Which items are never negatives: `known` (the user's training items, where the model
    /// knows the row's user; RecBole's rule) or `positive` (only the row's own positive).
    pub exclude: Exclude,
}

impl Default for InfoNceConfig {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            negatives: 10,
            sampler: SamplerKind::InBatch,
            alpha: 1.0,
            exclude: Exclude::Known,
        }
    }
}

impl PluginConfig for InfoNceConfig {
    const TYPE: &'static str = "infonce";
    const SUMMARY: &'static str =
        "Contrastive InfoNCE: softmax of the positive against negatives at a temperature";
    const EXAMPLE: &'static str = "\
# Temperature dividing every similarity (PULSE uses 1; 0.05–0.2 is common with cosine scores).
temperature = 1.0
# Negatives per positive.
negatives = 10
# Negative distribution: \"in-batch\" (other rows' positives), \"uniform\" or \"popularity\".
sampler = \"in-batch\"
# Popularity exponent (popularity sampler only).
alpha = 1.0
# Never negatives: \"known\" (the user\'s training items, for models that know the row\'s user)
# or \"positive\" (only the row\'s own positive).
exclude = \"known\"
";

    fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        sampling::check(&mut e, self.negatives, self.alpha);
        if !(self.temperature > 1e-4 && self.temperature <= 100.0) {
            e.push(ConfigError::out_of_range(
                "temperature",
                "between 0.0001 and 100",
                self.temperature,
            ));
        }
        e
    }
}

/// The `infonce` loss.
#[derive(Debug, Clone)]
pub struct InfoNce {
    cfg: InfoNceConfig,
}

impl InfoNce {
    pub fn new(cfg: InfoNceConfig) -> Self {
        Self { cfg }
    }
}

impl Loss for InfoNce {
    fn type_name(&self) -> &str {
        InfoNceConfig::TYPE
    }

    fn input(&self) -> LossInput {
        LossInput::Sampled {
            negatives: self.cfg.negatives,
        }
    }

    fn sampling(&self) -> SamplerSpec {
        sampling::spec(self.cfg.sampler, self.cfg.alpha, self.cfg.exclude)
    }

    fn sampled(&self, pos: &Tensor, neg: &Tensor) -> Result<Tensor, PluginError> {
        let inv_t = 1.0 / self.cfg.temperature;
        candidate_ce(self.type_name(), self.cfg.negatives, pos, neg, inv_t, None)
    }

    fn full(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor, PluginError> {
        full_ce(&logits.affine(1.0 / self.cfg.temperature, 0.0)?, targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{assert_close, check_example, scalar, t1, t2};
    use candle_core::{Device, Var};

    fn loss(temperature: f64, negatives: usize) -> InfoNce {
        InfoNce::new(InfoNceConfig {
            temperature,
            negatives,
            ..InfoNceConfig::default()
        })
    }

    #[track_caller]
    fn check<const K: usize>(t: f64, pos: &[f32], neg: &[[f32; K]], want: f32) {
        let got = scalar(&loss(t, K).sampled(&t1(pos), &t2(neg)).unwrap());
        assert_close(&[got], &[want], 1e-5);
    }

    #[test]
    fn forward_matches_hand_computed_values() {
        // τ = 1, [1, 0]: softplus(-1) = 0.3132617
        check(1.0, &[1.0], &[[0.0]], 0.313_261_7);
        // τ = 0.5, [1, 0] → [2, 0]: softplus(-2) = 0.1269280
        check(0.5, &[1.0], &[[0.0]], 0.126_928);
        // τ = 2, [0, 1, 1] → [0, .5, .5]: ln(1 + 2 e^0.5) = ln(4.2974425) = 1.4580202
        check(2.0, &[0.0], &[[1.0, 1.0]], 1.458_020_2);
    }

    #[test]
    fn gradient_is_scaled_softmax_minus_target() {
        // τ = 0.5, row [1, 0] → logits [2, 0], p = [0.8807971, 0.1192029];
        // ∂/∂pos = (p0 - 1)/τ = -0.2384058, ∂/∂neg = p1/τ = 0.2384058
        let p = Var::from_tensor(&t1(&[1.0])).unwrap();
        let q = Var::from_tensor(&t2(&[[0.0]])).unwrap();
        let grads = loss(0.5, 1)
            .sampled(p.as_tensor(), q.as_tensor())
            .unwrap()
            .backward()
            .unwrap();
        let gp = grads.get(p.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let gn = grads.get(q.as_tensor()).unwrap().flatten_all().unwrap();
        assert_close(&gp, &[-0.238_405_8], 1e-5);
        assert_close(&gn.to_vec1::<f32>().unwrap(), &[0.238_405_8], 1e-5);
    }

    #[test]
    fn full_matrix_form_is_in_batch_infonce() {
        // 2×2 similarity matrix, diagonal targets, τ = 1:
        // row 0 [1, 0] → softplus(-1) = 0.3132617; row 1 [0, 2] → softplus(-2) = 0.1269280
        let sim = t2(&[[1.0, 0.0], [0.0, 2.0]]);
        let targets = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let got = scalar(&loss(1.0, 10).full(&sim, &targets).unwrap());
        assert_close(&[got], &[(0.313_261_7 + 0.126_928) / 2.0], 1e-5);
    }

    #[test]
    fn example_decodes_to_default() {
        check_example::<InfoNceConfig>();
    }
}
