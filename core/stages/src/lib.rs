//! `pulse-stages`: pulse's cached text stages, between data preparation and the models.
//!
//! - [`rationale`]: a generating backbone explains each selected training interaction with a
//!   prompt; rows go to resumable Parquet chunks ([`run_rationales`]).
//! - [`embed`]: item texts and rationales encoded by an embed-capable backbone into cached
//!   tables ([`embed_items`], [`embed_rationales`]).
//! - [`thought`]: the thought space: behaviour and rationale encoders fine-tuned with InfoNCE
//!   on the rationale rows, and the item / rationale tables they give ([`run_thought_space`]).
//! - [`cache`]: the content-keyed stage directories under `$PULSE_HOME/cache/stages/`.
//! - [`spec`]: the glue from a planned trial (`[rationales]`, `[thought_space]`,
//!   `[backbones.*]`, `[prompts.*]`) to a stage run, used by `pulse run` and `pulse rationales`.
//!
//! A separate crate rather than part of `pulse-runtime` because the CLI's `pulse rationales`
//! and the later PULSE model use the stages without the training loop, and because it alone
//! needs Parquet.

pub mod cache;
pub mod embed;
pub mod json;
mod progress;
pub mod rationale;
pub mod select;
pub mod side;
pub mod spec;
pub mod thought;

pub use cache::{stages_root, StageKey};
pub use embed::{embed_items, embed_rationales, EmbeddingTable};
pub use json::{parse_rationale, ParseStatus};
pub use rationale::{
    data_key, load_rationales, run_rationales, RationaleJob, RationaleReport, RationaleRow,
    StageOptions,
};
pub use select::{select, Example};
pub use spec::thought_space_for_trial;
pub use thought::{
    run_thought_space, thought_key, EpochMetrics, ThoughtJob, ThoughtMetrics, ThoughtSpace,
};

use std::path::PathBuf;

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("stage table: {0}")]
    Table(String),
    #[error(transparent)]
    Plugin(#[from] pulse_api::PluginError),
    #[error("{0}")]
    Template(String),
    #[error("{0}")]
    Invalid(String),
    #[error("data preparation failed: {0}")]
    Data(#[from] pulse_data::DataError),
    #[error("encoder: {0}")]
    Encoder(#[from] pulse_backbones::bert::BertError),
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    /// `StageOptions::cancel` was set; says what stopped.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl From<pulse_api::TemplateIssue> for StageError {
    fn from(e: pulse_api::TemplateIssue) -> Self {
        StageError::Template(format!("prompt {e}"))
    }
}

#[cfg(test)]
mod tests;
