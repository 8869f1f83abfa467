//! Errors of the sentence encoder: each says which file or step failed and, where there is
//! one, how to fix it.

use std::path::PathBuf;

/// Why an encoder could not be loaded, or could not encode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BertError {
    /// The named asset could not be fetched (pip missing, offline, hash mismatch, …).
    #[error("cannot fetch encoder asset '{name}': {source}")]
    Asset {
        name: String,
        #[source]
        source: Box<pulse_assets::AssetError>,
    },
    /// No built-in encoder has this name.
    #[error("unknown encoder asset '{name}'; known: {known}; or give a directory with model.safetensors, tokenizer.json and config.json")]
    UnknownAsset { name: String, known: String },
    /// A required file is missing from a model directory.
    #[error("{dir} has no {file} (a sentence-encoder directory holds model.safetensors, tokenizer.json and config.json)")]
    MissingFile { dir: PathBuf, file: &'static str },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON side file is malformed or asks for something unsupported.
    #[error("{file}: {why}")]
    Config { file: &'static str, why: String },
    /// `tokenizer.json` could not be loaded or could not tokenize.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The weights do not fit the configuration, or a tensor operation failed.
    #[error("model: {0}")]
    Candle(Box<candle_core::Error>),
    /// A caller-supplied option is out of range.
    #[error("{0}")]
    Invalid(String),
}

// Boxed: candle's error is large, and every `Result` here would carry its size.
impl From<candle_core::Error> for BertError {
    fn from(e: candle_core::Error) -> Self {
        BertError::Candle(Box::new(e))
    }
}
