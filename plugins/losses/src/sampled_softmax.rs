//! `sampled-softmax`: softmax cross-entropy over the positive and `k` sampled negatives, with
//! log-Q correction (Bengio & Senécal 2008; Yi et al. 2019): every candidate's logit is lowered
//! by the log-probability that the sampler draws it, which makes the sampled softmax an
//! unbiased-in-the-limit stand-in for the full one. With the popularity sampler this removes
//! the popularity bias that sampled negatives otherwise teach. Row loss
//! `logsumexp_c(s_c - log Q(c)) - (s_pos - log Q(pos))`, mean over rows. Gradients:
//! `∂/∂s_c = (p_c - [c = pos]) / n` with `p` the softmax of the corrected row.

use crate::sampling;
use crate::softmax::{candidate_ce, LogQ};
use candle_core::Tensor;
use pulse_api::config::ConfigError;
use pulse_api::{Exclude, Loss, LossInput, PluginConfig, PluginError, SamplerKind, SamplerSpec};
use serde::{Deserialize, Serialize};

/// Config of `sampled-softmax`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SampledSoftmaxConfig {
    /// Sampled negatives per positive.
    pub negatives: usize,
    /// Where negatives come from: `uniform`, `popularity` (count^alpha) or `in-batch`.
    pub sampler: SamplerKind,
    /// Popularity exponent (`popularity` sampler only).
    pub alpha: f64,
    /// Which items are never negatives: `known` (the user's training items, where the model
    /// knows the row's user; RecBole's rule) or `positive` (only the row's own positive).
    pub exclude: Exclude,
    /// Subtract each candidate's log sampling probability (the log-Q correction).
    pub log_q: bool,
}

impl Default for SampledSoftmaxConfig {
    fn default() -> Self {
        Self {
            negatives: 100,
            sampler: SamplerKind::Popularity,
            alpha: 1.0,
            exclude: Exclude::Known,
            log_q: true,
        }
    }
}

impl PluginConfig for SampledSoftmaxConfig {
    const TYPE: &'static str = "sampled-softmax";
    const SUMMARY: &'static str =
        "Softmax cross-entropy over the positive and sampled negatives, with log-Q correction";
    const EXAMPLE: &'static str = "\
# Negatives sampled per positive.
negatives = 100
# Negative distribution: \"uniform\", \"popularity\" (count^alpha) or \"in-batch\".
sampler = \"popularity\"
# Popularity exponent: 1 = proportional to training counts, 0 = uniform over seen items.
alpha = 1.0
# Never negatives: \"known\" (the user's training items, for models that know the row's user)
# or \"positive\" (only the row's own positive).
exclude = \"known\"
# Subtract log Q(item) from every candidate's logit (no effect under a uniform sampler).
log_q = true
";

    fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        sampling::check(&mut e, self.negatives, self.alpha);
        e
    }
}

/// The `sampled-softmax` loss.
#[derive(Debug, Clone)]
pub struct SampledSoftmax {
    cfg: SampledSoftmaxConfig,
}

impl SampledSoftmax {
    pub fn new(cfg: SampledSoftmaxConfig) -> Self {
        Self { cfg }
    }
}

impl Loss for SampledSoftmax {
    fn type_name(&self) -> &str {
        SampledSoftmaxConfig::TYPE
    }

    fn input(&self) -> LossInput {
        LossInput::Sampled {
            negatives: self.cfg.negatives,
        }
    }

    fn sampling(&self) -> SamplerSpec {
        sampling::spec(self.cfg.sampler, self.cfg.alpha, self.cfg.exclude)
    }

    /// Without sampling probabilities there is nothing to correct: plain sampled softmax.
    fn sampled(&self, pos: &Tensor, neg: &Tensor) -> Result<Tensor, PluginError> {
        candidate_ce(self.type_name(), self.cfg.negatives, pos, neg, 1.0, None)
    }

    fn sampled_with_q(
        &self,
        pos: &Tensor,
        neg: &Tensor,
        log_q_pos: &Tensor,
        log_q_neg: &Tensor,
    ) -> Result<Tensor, PluginError> {
        let q = self.cfg.log_q.then_some(LogQ {
            pos: log_q_pos,
            neg: log_q_neg,
        });
        candidate_ce(self.type_name(), self.cfg.negatives, pos, neg, 1.0, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{assert_close, check_example, scalar, t1, t2};
    use candle_core::Var;

    fn loss(log_q: bool) -> SampledSoftmax {
        SampledSoftmax::new(SampledSoftmaxConfig {
            negatives: 2,
            log_q,
            ..SampledSoftmaxConfig::default()
        })
    }

    #[test]
    fn log_q_correction_matches_hand_computed_value() {
        // scores [1, 0, 0], log Q = ln [0.5, 0.25, 0.25] → corrected logits
        // [1 + ln 2, ln 4, ln 4] = [1.6931472, 1.3862944, 1.3862944];
        // loss = ln(e^1.6931472 + 2 e^1.3862944) - 1.6931472 = ln(5.4365637 + 8) - 1.6931472
        //      = 2.5979795 - 1.6931472 = 0.9048323
        let (pos, neg) = (t1(&[1.0]), t2(&[[0.0, 0.0]]));
        let (qp, qn) = (t1(&[0.5f32.ln()]), t2(&[[0.25f32.ln(), 0.25f32.ln()]]));
        let got = scalar(&loss(true).sampled_with_q(&pos, &neg, &qp, &qn).unwrap());
        assert_close(&[got], &[0.904_832_3], 1e-5);
        // log_q = false: ln(e + 2) - 1 = 1.5514448 - 1 = 0.5514448
        let plain = scalar(&loss(false).sampled_with_q(&pos, &neg, &qp, &qn).unwrap());
        assert_close(&[plain], &[0.551_444_8], 1e-5);
        // A uniform Q shifts every logit alike: no effect.
        let u = t2(&[[0.2f32.ln(), 0.2f32.ln()]]);
        let uni = scalar(
            &loss(true)
                .sampled_with_q(&pos, &neg, &t1(&[0.2f32.ln()]), &u)
                .unwrap(),
        );
        assert_close(&[uni], &[0.551_444_8], 1e-5);
    }

    #[test]
    fn gradient_is_softmax_minus_target() {
        // corrected row as above: p = [5.4365637, 4, 4] / 13.4365637 = [0.4046112, 0.2976944, 0.2976944]
        let p = Var::from_tensor(&t1(&[1.0])).unwrap();
        let q = Var::from_tensor(&t2(&[[0.0, 0.0]])).unwrap();
        let (qp, qn) = (t1(&[0.5f32.ln()]), t2(&[[0.25f32.ln(), 0.25f32.ln()]]));
        let grads = loss(true)
            .sampled_with_q(p.as_tensor(), q.as_tensor(), &qp, &qn)
            .unwrap()
            .backward()
            .unwrap();
        let gp = grads.get(p.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        let gn = grads.get(q.as_tensor()).unwrap().flatten_all().unwrap();
        assert_close(&gp, &[0.404_611_2 - 1.0], 1e-5);
        assert_close(
            &gn.to_vec1::<f32>().unwrap(),
            &[0.297_694_4, 0.297_694_4],
            1e-5,
        );
    }

    #[test]
    fn example_decodes_to_default() {
        check_example::<SampledSoftmaxConfig>();
    }
}
