//! Typed forms of the spec sections of pulse's cached text stages: `[rationales]` (a generating
//! backbone explains each selected training interaction) and `[embeddings]`-like settings used
//! by the library. Typed here so the spec layer, the stage code and the runtime share one
//! definition, like [`crate::sections`].

use crate::backbone::GenSettings;
use crate::config::{check_range, ConfigError};
use serde::{Deserialize, Serialize};

/// Which training interactions get a rationale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Select {
    /// Each user's last training interaction (its history: everything before it).
    Last,
    /// Every `k`-th training interaction of each user (positions k, 2k, … counted from 1,
    /// never the first, which has no history).
    EveryK,
}

/// `[rationales]`: the rationale-generation stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RationaleSection {
    /// Name of a `[backbones.NAME]` section with the `generate` capability.
    pub backbone: String,
    /// Name of a `[prompts.NAME]` section.
    pub prompt: String,
    pub max_new_tokens: usize,
    /// `0` is greedy.
    pub temperature: f32,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub repetition_penalty: f32,
    /// Sampler seed (ignored when greedy).
    pub seed: u64,
    /// Generation ends once the answer contains this string, which stays in the raw text
    /// (`"}` ends a prefilled `{"rationale": "…` answer without the chatter small models add).
    pub stop: Option<String>,
    /// Prompts decoded together.
    pub batch_size: usize,
    /// Rows per Parquet chunk: the unit an interrupted run keeps.
    pub chunk_size: usize,
    pub select: Select,
    /// `select = "every-k"` only.
    pub k: usize,
    /// At most this many users (all when absent), drawn with `user_seed`.
    pub users: Option<usize>,
    pub user_seed: u64,
}

impl Default for RationaleSection {
    fn default() -> Self {
        Self {
            backbone: String::new(),
            prompt: String::new(),
            max_new_tokens: 96,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            repetition_penalty: 1.0,
            seed: 0,
            stop: None,
            batch_size: 64,
            chunk_size: 64,
            select: Select::Last,
            k: 5,
            users: None,
            user_seed: 0,
        }
    }
}

impl RationaleSection {
    /// The decoding settings handed to the backbone.
    pub fn gen_settings(&self) -> GenSettings {
        GenSettings {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            stop: self.stop.iter().cloned().collect(),
            batch_size: self.batch_size,
        }
    }

    pub fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        if self.backbone.is_empty() {
            e.push(ConfigError::message(
                "backbone",
                "missing: name a [backbones.NAME] section, as in backbone = \"slm\"",
            ));
        }
        if self.prompt.is_empty() {
            e.push(ConfigError::message(
                "prompt",
                "missing: name a [prompts.NAME] section, as in prompt = \"rationale\"",
            ));
        }
        check_range(&mut e, "max_new_tokens", self.max_new_tokens, 1, 8192);
        check_range(&mut e, "batch_size", self.batch_size, 1, 4096);
        check_range(&mut e, "chunk_size", self.chunk_size, 1, 1_000_000);
        check_range(&mut e, "k", self.k, 1, 1_000_000);
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            e.push(ConfigError::out_of_range(
                "temperature",
                ">= 0",
                self.temperature,
            ));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                e.push(ConfigError::out_of_range("top_p", "(0, 1]", p));
            }
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            e.push(ConfigError::out_of_range(
                "repetition_penalty",
                "> 0",
                self.repetition_penalty,
            ));
        }
        if self.stop.as_deref() == Some("") {
            e.push(ConfigError::message("stop", "must not be empty"));
        }
        if self.users == Some(0) {
            e.push(ConfigError::out_of_range("users", ">= 1", 0));
        }
        e
    }
}

/// Which encoder parameters the thought-space stage trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThoughtTrain {
    /// Every encoder weight (but the lowest `freeze_layers` layers and, when any are
    /// frozen, the embeddings) and the projection heads.
    Encoder,
    /// The transformer layers, with the token embeddings frozen.
    Layers,
    /// Only the projection heads (needs `projection > 0`): the encoders stay as loaded.
    Heads,
}

/// Sentence pooling of the thought-space encoders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThoughtPooling {
    /// The backbone's own pooling (all-MiniLM-L6-v2: mean).
    Default,
    Mean,
    Cls,
}

/// `[thought_space]`: the behaviour and rationale encoders trained with InfoNCE so that a
/// behaviour (`[CONTEXT] History: … [CHOSEN_ITEM] …`) lands next to its own rationale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThoughtSpaceSection {
    /// Name of a `[backbones.NAME]` section of type `bert`: both encoders start from it.
    pub encoder: String,
    /// One encoder for both sides (`true`) or two copies trained apart (the paper's).
    pub shared: bool,
    pub pooling: ThoughtPooling,
    /// Width of a linear projection head on each side (0 = none: the encoder's width).
    pub projection: usize,
    /// What trains.
    pub train: ThoughtTrain,
    /// Lowest transformer layers kept frozen (with the embeddings) when `train = "encoder"`.
    pub freeze_layers: usize,
    /// InfoNCE temperature (PULSE's reference code: 1 on unnormalised CLS vectors; with the
    /// L2-normalised vectors used here 0.05 is the usual scale).
    pub temperature: f64,
    /// Negatives per pair drawn from the other pairs of the batch (0 = all of them).
    pub negatives: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// History items shown in the behaviour text (most recent last).
    pub history: usize,
    /// Token limit per text.
    pub max_tokens: usize,
    /// Share of the pairs held out for retrieval metrics and checkpoint choice.
    pub valid_fraction: f64,
    pub seed: u64,
}

impl Default for ThoughtSpaceSection {
    fn default() -> Self {
        Self {
            encoder: String::new(),
            shared: false,
            pooling: ThoughtPooling::Default,
            projection: 0,
            train: ThoughtTrain::Encoder,
            freeze_layers: 0,
            temperature: 0.05,
            negatives: 0,
            epochs: 3,
            batch_size: 32,
            learning_rate: 5e-5,
            weight_decay: 0.01,
            history: 10,
            max_tokens: 128,
            valid_fraction: 0.1,
            seed: 0,
        }
    }
}

impl ThoughtSpaceSection {
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        if self.encoder.is_empty() {
            e.push(ConfigError::message(
                "encoder",
                "missing: name a [backbones.NAME] section of type \"bert\", as in encoder = \"minilm\"",
            ));
        }
        if self.train == ThoughtTrain::Heads && self.projection == 0 {
            e.push(ConfigError::message(
                "train",
                "\"heads\" trains only the projection heads, and projection = 0 means none: \
                 set projection > 0 (e.g. projection = 128)",
            ));
        }
        check_range(&mut e, "projection", self.projection, 0, 8192);
        check_range(&mut e, "freeze_layers", self.freeze_layers, 0, 64);
        check_range(&mut e, "epochs", self.epochs, 0, 1000);
        check_range(&mut e, "batch_size", self.batch_size, 2, 4096);
        check_range(&mut e, "history", self.history, 1, 200);
        check_range(&mut e, "max_tokens", self.max_tokens, 8, 4096);
        if !(self.temperature > 1e-4 && self.temperature <= 100.0) {
            e.push(ConfigError::out_of_range(
                "temperature",
                "between 0.0001 and 100",
                self.temperature,
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            e.push(ConfigError::out_of_range(
                "learning_rate",
                "> 0",
                self.learning_rate,
            ));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            e.push(ConfigError::out_of_range(
                "weight_decay",
                ">= 0",
                self.weight_decay,
            ));
        }
        if !(self.valid_fraction > 0.0 && self.valid_fraction < 0.9) {
            e.push(ConfigError::out_of_range(
                "valid_fraction",
                "between 0 and 0.9 (exclusive)",
                self.valid_fraction,
            ));
        }
        e
    }
}
