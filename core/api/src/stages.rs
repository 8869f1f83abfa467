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
