//! The recommender contract (after RecBole's `calculate_loss` / `full_sort_predict`, with the
//! loss a plugin of its own). The core owns the training loop: it calls
//! [`Recommender::train_epoch`], evaluates on validation data, keeps the best snapshot, stops
//! early and restores the best weights; models only say how to run one epoch and how to score.

use crate::config::{check_positive, check_range, ConfigError};
use crate::data::{Phase, SplitData};
use crate::error::PluginError;
use crate::rng::Rng;
use crate::side::{InputRequest, SideInputs};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Whether a model reads the order of the history (decides RecBole-compatible masking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Uses the set of known items (pop, BPR-MF, LightGCN, ItemKNN).
    General,
    /// Uses the ordered history (GRU4Rec, SASRec, BERT4Rec).
    Sequential,
}

/// Settings of the core's training loop, read from flat keys of a model's section
/// (`epochs`, `batch_size`, `learning_rate`, `weight_decay`, `patience`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Validation rounds without improvement before stopping (0 = never stop early).
    pub patience: usize,
    /// Evaluate on validation data every this many epochs.
    pub eval_every: usize,
}

impl TrainConfig {
    /// Range checks shared by every trained model.
    pub fn validate(&self, errors: &mut Vec<ConfigError>) {
        check_range(errors, "epochs", self.epochs, 1, 100_000);
        check_range(errors, "batch_size", self.batch_size, 1, 1 << 20);
        check_positive(errors, "learning_rate", self.learning_rate);
        if self.weight_decay < 0.0 {
            errors.push(ConfigError::out_of_range(
                "weight_decay",
                ">= 0",
                self.weight_decay,
            ));
        }
        check_range(errors, "eval_every", self.eval_every, 1, 100_000);
    }
}

/// Receives progress of one epoch; the core draws it as a progress bar.
pub trait Progress {
    fn start(&self, total_batches: u64);
    fn advance(&self, batches: u64, loss: f64);
}

/// A progress sink that shows nothing (tests, benchmarks).
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64, _: f64) {}
}

/// What one epoch may use.
pub struct EpochContext<'a> {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Seeded generator for shuffling, dropout and negative sampling.
    pub rng: &'a mut Rng,
    pub progress: &'a dyn Progress,
}

/// A recommender model.
pub trait Recommender: Send {
    fn kind(&self) -> ModelKind;

    /// Side inputs (item or rationale vectors) this model needs; the runtime computes them
    /// through the cached text stages and calls [`Recommender::attach`] before `prepare`.
    fn inputs(&self) -> Vec<InputRequest> {
        Vec::new()
    }

    /// Receives what [`Recommender::inputs`] asked for (called once, before `prepare`).
    fn attach(&mut self, side: &SideInputs) -> Result<(), PluginError> {
        let _ = side;
        Ok(())
    }

    /// Called once with the training data: allocate parameters (seeded), or fit outright for
    /// models without iterative training (pop, itemknn).
    fn prepare(&mut self, data: &SplitData, seed: u64) -> Result<(), PluginError>;

    /// Iterative training settings; `None` when `prepare` already fitted the model.
    fn training(&self) -> Option<TrainConfig> {
        None
    }

    /// Runs one epoch and returns the mean training loss.
    fn train_epoch(
        &mut self,
        data: &SplitData,
        ctx: &mut EpochContext<'_>,
    ) -> Result<f64, PluginError> {
        let _ = (data, ctx);
        Err(PluginError::Other(
            "this model has no iterative training".into(),
        ))
    }

    /// Scores of every item for each of `users`, row-major `users.len() × n_items`, using the
    /// history as of `phase` ([`SplitData::history`]). Higher is better.
    fn score(&self, data: &SplitData, phase: Phase, users: &[u32])
        -> Result<Vec<f32>, PluginError>;

    /// A deep copy of the trainable weights (kept for the best epoch, saved as an artifact).
    fn snapshot(&self) -> Result<Vec<(String, Tensor)>, PluginError> {
        Ok(Vec::new())
    }

    /// Puts back weights taken by [`Recommender::snapshot`].
    fn restore(&mut self, weights: &[(String, Tensor)]) -> Result<(), PluginError> {
        let _ = weights;
        Ok(())
    }
}
