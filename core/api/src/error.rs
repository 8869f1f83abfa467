//! The error type plugins return at run time (loading data, training, scoring). Configuration
//! problems found before anything runs are [`crate::ConfigError`]s instead.

use crate::config::ConfigError;

/// What went wrong inside a plugin while it ran.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("table error: {0}")]
    Table(#[from] polars::error::PolarsError),
    #[error("bad data: {0}")]
    Data(String),
    #[error("could not fetch {what}: {why}")]
    Fetch { what: String, why: String },
    #[error("{0}")]
    Other(String),
}

impl PluginError {
    /// An I/O error with the path or action that failed, so the user sees what to fix.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
