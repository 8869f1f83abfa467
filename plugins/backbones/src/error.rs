//! Errors of the backbones. Each variant says what was being done and to what (file, asset,
//! metadata key, template), so a message alone is enough to act on.

use std::path::PathBuf;

/// Why a backbone could not be loaded or could not generate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackboneError {
    /// A named asset could not be fetched.
    #[error(transparent)]
    Asset(#[from] pulse_assets::AssetError),

    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not a GGUF file candle can read, or lacks a tensor.
    #[error("{path}: {reason}")]
    Gguf { path: PathBuf, reason: String },

    /// A metadata key is missing or has the wrong type.
    #[error("GGUF metadata `{key}`: {reason}")]
    Metadata { key: String, reason: String },

    /// The GGUF's `general.architecture` has no implementation here.
    #[error("unsupported GGUF architecture `{arch}`; supported: {supported}")]
    UnsupportedArchitecture { arch: String, supported: String },

    /// Tokenizer construction or use failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// The chat template could not be compiled or rendered.
    #[error("chat template: {0}")]
    Template(String),

    /// The model has no chat template and none was given.
    #[error(
        "{model} has no chat template (`tokenizer.chat_template`); give one, or pass raw prompts"
    )]
    NoChatTemplate { model: String },

    /// `device = …` is not usable.
    #[error("device `{spec}`: {reason}")]
    Device { spec: String, reason: String },

    /// Generation parameters are out of range.
    #[error("generation parameters: {0}")]
    Params(String),

    /// A prompt does not fit the model's context.
    #[error("prompt {index} has {tokens} tokens; with max_new_tokens {max_new} it exceeds the model's context of {context}")]
    PromptTooLong {
        index: usize,
        tokens: usize,
        max_new: usize,
        context: usize,
    },

    /// A tensor operation failed (shape bug or device failure).
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
}
