//! The tracker contract: where run records go. The local run store is the default
//! implementation; remote trackers (MLflow) implement the same traits. Every hook but
//! `start_run` does nothing by default, and the runtime never lets a tracker error abort a trial.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Lifecycle state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
    Killed,
}

/// One metric point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub step: i64,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
}

/// Everything known about a run when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment: String,
    /// Id of the `pulse run` invocation (the sweep) this run belongs to.
    pub sweep_id: String,
    pub trial_id: String,
    /// What the trial changes, e.g. `ablation=no-dropout models.sasrec.layers=1`.
    pub trial_label: String,
    pub ablation: Option<String>,
    pub model: String,
    pub model_type: String,
    pub dataset: String,
    pub seed: u64,
    pub resolved_spec: serde_json::Value,
    /// Flattened resolved spec (dotted keys).
    pub params: BTreeMap<String, String>,
    /// pulse version, git commit, host, …
    pub environment: BTreeMap<String, String>,
}

/// Why a tracker could not record something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Records one run.
pub trait RunRecorder: Send {
    fn log_metrics(&mut self, metrics: &[Metric]) -> Result<(), TrackError> {
        let _ = metrics;
        Ok(())
    }
    fn log_artifact(&mut self, name: &str, bytes: &[u8]) -> Result<(), TrackError> {
        let _ = (name, bytes);
        Ok(())
    }
    /// Marks the run ended; `error` is the failure's message for `Failed`.
    fn finish(&mut self, status: RunStatus, error: Option<&str>) -> Result<(), TrackError> {
        let _ = (status, error);
        Ok(())
    }
}

/// A destination for runs.
pub trait Tracker: Send {
    fn name(&self) -> &str;
    fn start_run(&mut self, info: &RunInfo) -> Result<Box<dyn RunRecorder>, TrackError>;
}
