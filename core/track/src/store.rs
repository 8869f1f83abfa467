//! Writing runs into the local run store.
//!
//! Layout: `<root>/<experiment>/<run_id>/` with `run.json` (the [`RunInfo`] without the spec),
//! `spec.json` (resolved spec), `params.json` (flattened dotted keys), `env.json`,
//! `metrics.jsonl` (one [`Metric`] per line with its sequence number `seq`, appended and
//! flushed per call), `status.json` (written atomically at start and end) and `artifacts/`.
//! Remote trackers add their delivery records next to these (`mlflow-sync.json`).

use crate::fsutil::{io_err, write_atomic, write_json};
use crate::now_ms;
use pulse_api::{Metric, RunInfo, RunRecorder, RunStatus, TrackError, Tracker};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The status file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusFile {
    pub status: RunStatus,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub error: Option<String>,
}

/// The embedded run store rooted at a directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of one run.
    pub fn run_dir(&self, experiment: &str, run_id: &str) -> PathBuf {
        self.root.join(experiment).join(run_id)
    }
}

impl Tracker for LocalStore {
    fn name(&self) -> &str {
        "local"
    }

    fn start_run(&mut self, info: &RunInfo) -> Result<Box<dyn RunRecorder>, TrackError> {
        let dir = self.run_dir(&info.experiment, &info.run_id);
        std::fs::create_dir_all(dir.join("artifacts"))
            .map_err(io_err(format!("creating run directory {}", dir.display())))?;
        let mut head = info.clone();
        head.resolved_spec = serde_json::Value::Null;
        head.params.clear();
        head.environment.clear();
        write_json(&dir.join("run.json"), &head)?;
        write_json(&dir.join("spec.json"), &info.resolved_spec)?;
        write_json(&dir.join("params.json"), &info.params)?;
        write_json(&dir.join("env.json"), &info.environment)?;
        let start_ms = now_ms();
        let status = StatusFile {
            status: RunStatus::Running,
            start_ms,
            end_ms: None,
            error: None,
        };
        write_json(&dir.join("status.json"), &status)?;
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("metrics.jsonl"))
            .map_err(io_err(format!("opening {}/metrics.jsonl", dir.display())))?;
        Ok(Box::new(LocalRun {
            dir,
            start_ms,
            metrics,
            next_seq: 0,
        }))
    }
}

struct LocalRun {
    dir: PathBuf,
    start_ms: i64,
    metrics: std::fs::File,
    /// Sequence number of the next metric line; remote trackers record how far the server has
    /// acknowledged by it.
    next_seq: u64,
}

/// One `metrics.jsonl` line: the metric with its sequence number in the run.
#[derive(Serialize)]
struct MetricLine<'a> {
    seq: u64,
    #[serde(flatten)]
    metric: &'a Metric,
}

impl RunRecorder for LocalRun {
    fn log_metrics(&mut self, metrics: &[Metric]) -> Result<(), TrackError> {
        let mut buf = Vec::new();
        for (i, metric) in metrics.iter().enumerate() {
            let line = MetricLine {
                seq: self.next_seq + i as u64,
                metric,
            };
            serde_json::to_writer(&mut buf, &line)
                .map_err(|e| TrackError::Other(format!("serialising metric: {e}")))?;
            buf.push(b'\n');
        }
        // One write per call, so a crash loses at most the lines of this call.
        self.metrics
            .write_all(&buf)
            .and_then(|_| self.metrics.flush())
            .map_err(io_err(format!(
                "appending to {}/metrics.jsonl",
                self.dir.display()
            )))?;
        self.next_seq += metrics.len() as u64;
        Ok(())
    }

    fn log_artifact(&mut self, name: &str, bytes: &[u8]) -> Result<(), TrackError> {
        if name.contains("..") || name.starts_with('/') {
            return Err(TrackError::Other(format!(
                "artifact name '{name}' escapes the run directory"
            )));
        }
        write_atomic(&self.dir.join("artifacts").join(name), bytes)
    }

    fn finish(&mut self, status: RunStatus, error: Option<&str>) -> Result<(), TrackError> {
        let file = StatusFile {
            status,
            start_ms: self.start_ms,
            end_ms: Some(now_ms()),
            error: error.map(str::to_string),
        };
        write_json(&self.dir.join("status.json"), &file)
    }
}
