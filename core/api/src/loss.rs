//! The loss plugin contract. A model declares which inputs it can produce; a loss declares which
//! it needs ([`LossInput`]); the model's factory rejects an incompatible pair at validate time.

use crate::config::ConfigError;
use crate::error::PluginError;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a loss consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossInput {
    /// Logits over the whole catalogue, `[n, n_items]`, and target ids `[n]`.
    FullLogits,
    /// Scores of the positive `[n]` and of `negatives` sampled items `[n, negatives]`.
    Sampled { negatives: usize },
}

/// A training objective. Both methods return a scalar: the mean over rows.
pub trait Loss: Send + Sync {
    fn type_name(&self) -> &str;
    fn input(&self) -> LossInput;

    /// Loss from full logits `[n, n_items]` (f32) and targets `[n]` (u32).
    fn full(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor, PluginError> {
        let _ = (logits, targets);
        Err(PluginError::Other(format!(
            "loss '{}' does not take full logits",
            self.type_name()
        )))
    }

    /// Loss from positive scores `[n]` and negative scores `[n, k]` (f32).
    fn sampled(&self, pos: &Tensor, neg: &Tensor) -> Result<Tensor, PluginError> {
        let _ = (pos, neg);
        Err(PluginError::Other(format!(
            "loss '{}' does not take sampled scores",
            self.type_name()
        )))
    }
}

/// Builds a loss from its section (`{ type = "bpr", … }`); the registry provides it to model
/// factories so models never name concrete losses.
pub trait LossBuilder {
    fn build_loss(&self, section: &serde_json::Value) -> Result<Arc<dyn Loss>, Vec<ConfigError>>;
}

/// A model's `loss = { type = … }` key, kept as an untyped section until the registry builds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LossSpec(pub serde_json::Value);

impl LossSpec {
    /// A loss section with only a type.
    pub fn of(type_name: &str) -> Self {
        LossSpec(serde_json::json!({ "type": type_name }))
    }

    /// Builds it, re-rooting errors under `loss`.
    pub fn build(&self, builder: &dyn LossBuilder) -> Result<Arc<dyn Loss>, Vec<ConfigError>> {
        builder.build_loss(&self.0).map_err(|errs| {
            errs.into_iter()
                .map(|e| e.prefixed(&["loss".to_string()]))
                .collect()
        })
    }
}
