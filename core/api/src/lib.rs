//! `pulse-api` is the plugin contract of pulse: the traits every plugin family implements
//! (datasets, losses, recommenders, trackers), the data types that flow between stages, and the
//! typed configuration diagnostics that let the spec layer point at a file, line and key.
//!
//! **Architecture invariant:** this crate knows nothing about TOML, HTTP or file layout. Plugin
//! configs arrive as `serde_json::Value` trees (already layered and merged by `pulse-spec`) and
//! are decoded with [`config::decode`], which turns serde's messages into structured
//! [`config::ConfigError`]s with a key path.

pub mod abi;
pub mod backbone;
pub mod config;
pub mod data;
pub mod dataset;
pub mod error;
pub mod family;
mod guard;
pub mod loss;
pub mod plugin;
pub mod prompt;
pub mod recommender;
pub mod rng;
pub mod sections;
pub mod side;
pub mod stages;
pub mod tracker;

pub use candle_core;
pub use polars;
/// Plugin crates derive their configs with `#[serde(crate = "pulse_api::serde")]`, so that
/// `pulse-api` is their only dependency.
pub use serde;
pub use serde_json;

pub use backbone::{Backbone, Capability, ChatTurn, GenOutput, GenSettings, LoadedBackbone};
pub use config::{decode, ConfigError, ConfigErrorKind, PluginConfig};
pub use data::{Phase, RawDataset, SplitData};
pub use dataset::{Dataset, LoadContext};
pub use error::PluginError;
pub use family::{Catalog, Family, PluginInfo, Reference};
pub use loss::{Exclude, Loss, LossBuilder, LossInput, LossSpec, SamplerKind, SamplerSpec};
pub use plugin::{Registrar, Registration};
pub use prompt::{CompiledPrompt, Prompt, PromptContext, PromptItem, TemplateIssue};
pub use recommender::{EpochContext, ModelKind, Progress, Recommender, TrainConfig};
pub use side::{InputRequest, RationaleVectors, SideInputs, Vectors, THOUGHT_SPACE};
pub use tracker::{Metric, RunInfo, RunRecorder, RunStatus, TrackError, Tracker};

/// Version of this contract; part of the dynamic-plugin fingerprint.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");
