//! `ce`: softmax cross-entropy over the whole catalogue (RecBole's `CE` for sequential models),
//! with optional label smoothing.
//!
//! For a row with logits `x ∈ R^C` and target `t`, `log p = log_softmax(x)` (computed as
//! `x - max - log Σ exp(x - max)`, so large logits neither overflow nor lose the target) and
//!
//! `loss = -(1 - ε) · log p_t - (ε / C) · Σ_j log p_j`,
//!
//! i.e. cross-entropy against `q = (1 - ε)·onehot(t) + ε/C` (PyTorch's convention). The result is
//! the mean over rows; its gradient with respect to the logits is `(softmax(x) - q) / n`.

use candle_core::Tensor;
use pulse_api::config::ConfigError;
use pulse_api::{Loss, LossInput, PluginConfig, PluginError};
use serde::{Deserialize, Serialize};

/// Config of `ce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrossEntropyConfig {
    /// Probability mass spread uniformly over every item, in `[0, 1)`.
    pub label_smoothing: f64,
}

impl Default for CrossEntropyConfig {
    fn default() -> Self {
        Self {
            label_smoothing: 0.0,
        }
    }
}

impl PluginConfig for CrossEntropyConfig {
    const TYPE: &'static str = "ce";
    const SUMMARY: &'static str =
        "Softmax cross-entropy over all items (full logits), optional label smoothing";
    const EXAMPLE: &'static str = "\
# Share of the target's probability mass spread uniformly over every item, in [0, 1).
# 0 is plain cross-entropy.
label_smoothing = 0.0
";

    fn validate(&self) -> Vec<ConfigError> {
        if (0.0..1.0).contains(&self.label_smoothing) {
            Vec::new()
        } else {
            vec![ConfigError::out_of_range(
                "label_smoothing",
                "0 <= value < 1",
                self.label_smoothing,
            )]
        }
    }
}

/// The `ce` loss.
#[derive(Debug, Clone)]
pub struct CrossEntropy {
    cfg: CrossEntropyConfig,
}

impl CrossEntropy {
    pub fn new(cfg: CrossEntropyConfig) -> Self {
        Self { cfg }
    }
}

impl Loss for CrossEntropy {
    fn type_name(&self) -> &str {
        CrossEntropyConfig::TYPE
    }

    fn input(&self) -> LossInput {
        LossInput::FullLogits
    }

    fn full(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor, PluginError> {
        let bad = |why: &str| {
            PluginError::Other(format!(
                "loss 'ce': {why} (got logits {:?}, targets {:?})",
                logits.dims(),
                targets.dims()
            ))
        };
        let (&[n, c], &[m]) = (logits.dims(), targets.dims()) else {
            return Err(bad("expected logits [n, n_items] and targets [n]"));
        };
        if n != m {
            return Err(bad("logits and targets have different row counts"));
        }
        if n == 0 || c == 0 {
            return Err(bad("empty batch"));
        }
        if !targets.dtype().is_int() {
            return Err(bad("targets must be integer item ids"));
        }
        if logits.device().is_cpu() && logits.dtype() == candle_core::DType::F32 {
            let targets = targets.to_dtype(candle_core::DType::U32)?.contiguous()?;
            let fused = crate::fused_ce::FusedCe {
                smoothing: self.cfg.label_smoothing as f32,
            };
            return Ok(logits
                .contiguous()?
                .apply_op2(&targets, fused)?
                .mean_all()?);
        }
        let log_p = candle_nn::ops::log_softmax(logits, 1)?;
        // gather needs a contiguous index; out-of-range ids are reported by candle.
        let index = targets.contiguous()?.unsqueeze(1)?;
        let nll = log_p.gather(&index, 1)?.squeeze(1)?.neg()?;
        let eps = self.cfg.label_smoothing;
        let rows = if eps > 0.0 {
            // -(1/C) Σ_j log p_j per row
            let uniform = log_p.mean(1)?.neg()?;
            (nll.affine(1.0 - eps, 0.0)? + uniform.affine(eps, 0.0)?)?
        } else {
            nll
        };
        Ok(rows.mean_all()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{assert_close, check_example, scalar, t2};
    use candle_core::{Device, Var};

    fn ce(eps: f64) -> CrossEntropy {
        CrossEntropy::new(CrossEntropyConfig {
            label_smoothing: eps,
        })
    }

    fn ids(v: &[u32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[track_caller]
    fn check<const C: usize>(eps: f64, logits: &[[f32; C]], targets: &[u32], want: f32) {
        let got = scalar(&ce(eps).full(&t2(logits), &ids(targets)).unwrap());
        assert_close(&[got], &[want], 1e-5);
    }

    #[test]
    fn forward_matches_hand_computed_values() {
        // lse(1,2,3) = 3 + ln(1 + e^-1 + e^-2) = 3 + ln(1.5032147) = 3.4076059
        // target 2: 3.4076059 - 3 = 0.4076059; target 0: 3.4076059 - 1 = 2.4076059
        check(0.0, &[[1.0, 2.0, 3.0]], &[2], 0.407_605_9);
        check(0.0, &[[1.0, 2.0, 3.0]], &[0], 2.407_606);
        // uniform logits over 3 items: ln 3 = 1.0986123; mean with the first row:
        // (0.4076059 + 1.0986123) / 2 = 0.7531091
        check(
            0.0,
            &[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
            &[2, 1],
            0.753_109_1,
        );
        // smoothing 0.1: -(1/3) Σ log p_j = lse - mean(x) = 3.4076059 - 2 = 1.4076059;
        // 0.9 · 0.4076059 + 0.1 · 1.4076059 = 0.5076059
        check(0.1, &[[1.0, 2.0, 3.0]], &[2], 0.507_605_9);
        // stability: lse(1000, 0, -1000) = 1000 exactly in f32; target 1 → 1000, target 0 → 0
        check(0.0, &[[1000.0, 0.0, -1000.0]], &[1], 1000.0);
        check(0.0, &[[1000.0, 0.0, -1000.0]], &[0], 0.0);
    }

    #[test]
    fn rejects_bad_inputs() {
        let logits = t2(&[[1.0f32, 2.0], [0.0, 0.0]]);
        for (targets, want) in [
            (ids(&[0]), "different row counts"),
            (
                Tensor::new(&[0.0f32, 1.0], &Device::Cpu).unwrap(),
                "integer",
            ),
            (ids(&[0, 2]), "out of range"),
        ] {
            let err = ce(0.0).full(&logits, &targets).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = ce(0.0)
            .sampled(&ids(&[1]), &logits)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not take sampled"), "{err}");
    }

    /// d loss / d logits = (softmax(x) - q) / n with q = (1 - ε)·onehot + ε/C.
    #[track_caller]
    fn check_gradient(eps: f64) {
        let rows: [[f32; 4]; 3] = [
            [0.5, -1.0, 2.0, 0.0],
            [3.0, 3.0, -2.0, 1.0],
            [-0.3, 0.7, 0.1, -1.2],
        ];
        let targets = [2u32, 1, 3];
        let x = Var::from_tensor(&t2(&rows)).unwrap();
        let loss = ce(eps).full(x.as_tensor(), &ids(&targets)).unwrap();
        let grad = loss.backward().unwrap();
        let got = grad.get(x.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let n = rows.len() as f64;
        let c = rows[0].len() as f64;
        for (r, row) in rows.iter().enumerate() {
            let z: f64 = row.iter().map(|&v| f64::from(v).exp()).sum();
            let want: Vec<f32> = row
                .iter()
                .enumerate()
                .map(|(j, &v)| {
                    let onehot = if j as u32 == targets[r] { 1.0 } else { 0.0 };
                    let q = (1.0 - eps) * onehot + eps / c;
                    ((f64::from(v).exp() / z - q) / n) as f32
                })
                .collect();
            assert_close(&got[r], &want, 1e-6);
        }
    }

    #[test]
    fn gradient_is_softmax_minus_target_distribution() {
        check_gradient(0.0);
        check_gradient(0.2);
    }

    #[test]
    fn example_decodes_to_default() {
        check_example::<CrossEntropyConfig>();
    }
}
