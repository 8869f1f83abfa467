//! `hinge`: a margin ranking loss over sampled negatives, shipped as a dynamic plugin (an
//! example of a loss that lives outside pulse): `loss = mean_{i,j} max(0, margin - (pos_i -
//! neg_ij))`, the mean over all `n·k` (positive, negative) pairs. Unlike BPR it stops pushing a
//! pair once the positive leads by `margin`, so well-ranked pairs cost nothing. The gradient is
//! the subgradient of `relu`: `-1/(n·k)` for `pos_i` and `+1/(n·k)` for `neg_ij` on each
//! violated pair, 0 elsewhere.
//!
//! `pulse plugin new NAME --family loss` scaffolds a crate from this file.

// Tests may panic on failure; library code may not (see the workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use pulse_api::candle_core::Tensor;
use pulse_api::config::check_range;
use pulse_api::serde::{Deserialize, Serialize};
use pulse_api::{ConfigError, Loss, LossInput, PluginConfig, PluginError, Registrar};
use std::sync::Arc;

/// Config of the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "pulse_api::serde", deny_unknown_fields, default)]
pub struct HingeConfig {
    /// How far the positive must lead each negative before the pair stops costing.
    pub margin: f64,
    /// Sampled negatives per positive.
    pub negatives: usize,
}

impl Default for HingeConfig {
    fn default() -> Self {
        Self {
            margin: 1.0,
            negatives: 1,
        }
    }
}

impl PluginConfig for HingeConfig {
    const TYPE: &'static str = "hinge";
    const SUMMARY: &'static str =
        "margin ranking loss: mean max(0, margin - (pos - neg)) over sampled negatives";
    const EXAMPLE: &'static str = "\
# How far the positive's score must lead each negative's before the pair stops costing.
margin = 1.0
# Negatives sampled per positive.
negatives = 1
";

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            errors.push(ConfigError::out_of_range("margin", ">= 0", self.margin));
        }
        check_range(&mut errors, "negatives", self.negatives, 1, 100_000);
        errors
    }
}

/// The loss.
#[derive(Debug, Clone)]
pub struct Hinge {
    cfg: HingeConfig,
}

impl Hinge {
    pub fn new(cfg: HingeConfig) -> Self {
        Self { cfg }
    }
}

impl Loss for Hinge {
    fn type_name(&self) -> &str {
        HingeConfig::TYPE
    }

    fn input(&self) -> LossInput {
        LossInput::Sampled {
            negatives: self.cfg.negatives,
        }
    }

    fn sampled(&self, pos: &Tensor, neg: &Tensor) -> Result<Tensor, PluginError> {
        let (&[n], &[m, k]) = (pos.dims(), neg.dims()) else {
            return Err(PluginError::Other(format!(
                "loss '{}': expected positive scores [n] and negative scores [n, k], got {:?} and {:?}",
                HingeConfig::TYPE,
                pos.dims(),
                neg.dims()
            )));
        };
        if n != m || n == 0 || k != self.cfg.negatives {
            return Err(PluginError::Other(format!(
                "loss '{}': {n} positives, {m}×{k} negatives; configured for {} negatives each",
                HingeConfig::TYPE,
                self.cfg.negatives
            )));
        }
        // margin - (pos - neg) = neg - pos + margin
        let gap = neg.broadcast_sub(&pos.unsqueeze(1)?)?;
        Ok(gap.affine(1.0, self.cfg.margin)?.relu()?.mean_all()?)
    }
}

/// Adds the loss to `r`; the same function serves a build of pulse that compiles it in.
pub fn register(r: &mut Registrar) {
    r.loss::<HingeConfig>(|c| Ok(Arc::new(Hinge::new(c))));
}

pulse_api::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_api::candle_core::{Device, Var};
    use pulse_api::plugin::{decode_section, Factory};
    use pulse_api::serde_json::json;

    fn t1(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[track_caller]
    fn check<const K: usize>(margin: f64, pos: &[f32], neg: &[[f32; K]], want: f32) {
        let loss = Hinge::new(HingeConfig {
            margin,
            negatives: K,
        });
        let neg = Tensor::new(neg.concat(), &Device::Cpu)
            .unwrap()
            .reshape((neg.len(), K))
            .unwrap();
        let got = loss
            .sampled(&t1(pos), &neg)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((got - want).abs() < 1e-6, "got {got}, expected {want}");
    }

    #[test]
    fn forward_matches_hand_computed_values() {
        // pairs: 1 - (2 - 1) = 0 → 0; 1 - (0 - 0) = 1 → mean 0.5
        check(1.0, &[2.0, 0.0], &[[1.0], [0.0]], 0.5);
        // one row, k = 2, margin 0.5: 0.5 - (1 - 1) = 0.5; 0.5 - (1 - 3) = 2.5 → mean 1.5
        check(0.5, &[1.0], &[[1.0, 3.0]], 1.5);
        // well separated: no cost
        check(1.0, &[10.0], &[[0.0, -5.0]], 0.0);
    }

    #[test]
    fn gradient_is_the_relu_subgradient() {
        let pos = Var::new(&[2.0f32, 0.0], &Device::Cpu).unwrap();
        let neg = Var::new(&[[1.5f32], [-3.0]], &Device::Cpu).unwrap();
        let loss = Hinge::new(HingeConfig::default())
            .sampled(pos.as_tensor(), neg.as_tensor())
            .unwrap();
        let grads = loss.backward().unwrap();
        // Row 0 violates the margin (1 - 0.5 > 0), row 1 does not (1 - 3 < 0); n·k = 2.
        let gp = grads.get(&pos).unwrap().to_vec1::<f32>().unwrap();
        let gn = grads.get(&neg).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(gp, vec![-0.5, 0.0]);
        assert_eq!(gn, vec![vec![0.5], vec![0.0]]);
    }

    #[test]
    fn registers_one_sampled_loss_and_checks_its_config() {
        let mut r = Registrar::new("test");
        register(&mut r);
        let entries = r.into_entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].info.type_name, HingeConfig::TYPE);
        let Factory::Loss(build) = &entries[0].factory else {
            panic!("not a loss")
        };
        let loss = build(&json!({"type": HingeConfig::TYPE, "negatives": 4})).unwrap();
        assert_eq!(loss.input(), LossInput::Sampled { negatives: 4 });
        let errs =
            (entries[0].check)(&json!({"type": HingeConfig::TYPE, "margin": -1.0})).unwrap_err();
        assert_eq!(errs[0].dotted(), "margin");
        let errs =
            (entries[0].check)(&json!({"type": HingeConfig::TYPE, "margn": 1.0})).unwrap_err();
        assert!(
            errs[0].to_string().contains("unknown field 'margn'"),
            "{errs:?}"
        );
    }

    /// `pulse example loss hinge` prints EXAMPLE: it must decode to the defaults.
    #[test]
    fn example_decodes_to_the_defaults() {
        let section = json!({"type": HingeConfig::TYPE, "margin": 1.0, "negatives": 1});
        assert_eq!(
            decode_section::<HingeConfig>(&section).unwrap(),
            HingeConfig::default()
        );
        for line in HingeConfig::EXAMPLE.lines().filter(|l| !l.starts_with('#')) {
            let key = line.split(" = ").next().unwrap();
            assert!(section.get(key).is_some(), "EXAMPLE key {key} not checked");
        }
    }
}
