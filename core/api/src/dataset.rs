//! The dataset plugin contract: a configured source of interactions and side tables.

use crate::data::RawDataset;
use crate::error::PluginError;
use std::path::PathBuf;

/// What a dataset needs from its surroundings to load.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// `$PULSE_HOME` (default `~/.cache/pulse`): fetched packages and extracted files go here.
    pub cache_dir: PathBuf,
    /// Directory of the spec file; relative `path = …` values resolve against it.
    pub base_dir: PathBuf,
    /// Seed for generated data sets.
    pub seed: u64,
}

/// A configured data source.
pub trait Dataset: Send + Sync {
    /// One line for logs: what will be loaded from where.
    fn describe(&self) -> String;
    /// Reads (fetching first if needed) the raw tables.
    fn load(&self, ctx: &LoadContext) -> Result<RawDataset, PluginError>;
}
