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

/// Where a sampled loss wants its negatives drawn from. The model draws them through the shared
/// sampler of `pulse-data` (so every model samples the same way) and hands the loss the scores
/// together with each candidate's log sampling probability (for log-Q correction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// Uniform over every item except the positive.
    #[default]
    Uniform,
    /// Proportional to `count(item)^alpha` in the training data, positive excluded.
    Popularity,
    /// The positives of the other rows in the same batch (so, popularity-distributed).
    InBatch,
}

/// Which items a drawn negative may not be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exclude {
    /// Only the row's own positive.
    Positive,
    /// Every item the row's user interacted with in training (RecBole's sampler), where the
    /// model knows the row's user (bpr-mf, lightgcn); otherwise the positive only.
    #[default]
    Known,
}

/// How a sampled loss wants its negatives: the distribution, its popularity exponent and which
/// items are never negatives.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplerSpec {
    pub kind: SamplerKind,
    /// Exponent of the popularity distribution (`popularity` only): 1 = proportional to
    /// counts, 0 = uniform, 0.75 = word2vec's smoothing.
    pub alpha: f64,
    pub exclude: Exclude,
}

impl Default for SamplerSpec {
    fn default() -> Self {
        Self {
            kind: SamplerKind::Uniform,
            alpha: 1.0,
            exclude: Exclude::Positive,
        }
    }
}

/// A training objective. Both methods return a scalar: the mean over rows.
pub trait Loss: Send + Sync {
    fn type_name(&self) -> &str;
    fn input(&self) -> LossInput;

    /// The negative distribution this loss is configured for (sampled losses only).
    fn sampling(&self) -> SamplerSpec {
        SamplerSpec::default()
    }

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

    /// Like [`Loss::sampled`], also given the log sampling probability of the positive `[n]`
    /// and of each negative `[n, k]` under [`Loss::sampling`]'s distribution. Losses that
    /// correct for the sampling distribution (`sampled-softmax`'s log-Q) use them; the default
    /// ignores them.
    fn sampled_with_q(
        &self,
        pos: &Tensor,
        neg: &Tensor,
        log_q_pos: &Tensor,
        log_q_neg: &Tensor,
    ) -> Result<Tensor, PluginError> {
        let _ = (log_q_pos, log_q_neg);
        self.sampled(pos, neg)
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
