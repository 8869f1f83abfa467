//! Reading runs back from the local run store (for `pulse runs` and `pulse compare`).

use crate::fsutil::io_err;
use crate::store::StatusFile;
use pulse_api::{Metric, RunInfo, TrackError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One stored run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub dir: PathBuf,
    pub info: RunInfo,
    pub status: StatusFile,
    pub metrics: Vec<Metric>,
}

impl RunRecord {
    /// The last logged value of each metric key (a key logged per epoch keeps its last step).
    pub fn latest(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for m in &self.metrics {
            out.insert(m.key.clone(), m.value);
        }
        out
    }

    /// Final test metrics keyed without the `test/` prefix (`ndcg@10`).
    pub fn test_metrics(&self) -> BTreeMap<String, f64> {
        self.latest()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("test/").map(|k| (k.to_string(), v)))
            .collect()
    }
}

/// Reads a run store directory.
#[derive(Debug, Clone)]
pub struct StoreReader {
    root: PathBuf,
}

impl StoreReader {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Experiment names present in the store, sorted.
    pub fn experiments(&self) -> Result<Vec<String>, TrackError> {
        let mut out = Vec::new();
        if !self.root.exists() {
            return Ok(out);
        }
        for e in std::fs::read_dir(&self.root)
            .map_err(io_err(format!("reading {}", self.root.display())))?
        {
            let e = e.map_err(io_err(format!("reading {}", self.root.display())))?;
            if e.path().is_dir() {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every run of `experiment` (or of all experiments), oldest first. Unreadable run
    /// directories are skipped with their error returned alongside.
    pub fn runs(
        &self,
        experiment: Option<&str>,
    ) -> Result<(Vec<RunRecord>, Vec<TrackError>), TrackError> {
        let names = match experiment {
            Some(e) => vec![e.to_string()],
            None => self.experiments()?,
        };
        let mut runs = Vec::new();
        let mut problems = Vec::new();
        for name in names {
            let dir = self.root.join(&name);
            if !dir.is_dir() {
                continue;
            }
            for e in
                std::fs::read_dir(&dir).map_err(io_err(format!("reading {}", dir.display())))?
            {
                let path = e
                    .map_err(io_err(format!("reading {}", dir.display())))?
                    .path();
                if path.join("run.json").is_file() {
                    match read_run(&path) {
                        Ok(r) => runs.push(r),
                        Err(err) => problems.push(err),
                    }
                }
            }
        }
        runs.sort_by(|a, b| {
            (a.status.start_ms, &a.info.run_id).cmp(&(b.status.start_ms, &b.info.run_id))
        });
        Ok((runs, problems))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, TrackError> {
    let bytes = std::fs::read(path).map_err(io_err(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| TrackError::Other(format!("{}: {e}", path.display())))
}

/// Reads a run's description (spec, params and environment included) and its status.
pub fn read_head(dir: &Path) -> Result<(RunInfo, StatusFile), TrackError> {
    let mut info: RunInfo = read_json(&dir.join("run.json"))?;
    info.resolved_spec = read_json(&dir.join("spec.json")).unwrap_or(serde_json::Value::Null);
    info.params = read_json(&dir.join("params.json")).unwrap_or_default();
    info.environment = read_json(&dir.join("env.json")).unwrap_or_default();
    Ok((info, read_status(dir)?))
}

/// Reads a run's `status.json`.
pub fn read_status(dir: &Path) -> Result<StatusFile, TrackError> {
    read_json(&dir.join("status.json"))
}

/// Reads one run directory.
pub fn read_run(dir: &Path) -> Result<RunRecord, TrackError> {
    let (info, status) = read_head(dir)?;
    let mut metrics = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("metrics.jsonl")) {
        // A torn last line (crash mid-write) is skipped rather than failing the whole run.
        metrics.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Metric>(l).ok()),
        );
    }
    Ok(RunRecord {
        dir: dir.to_path_buf(),
        info,
        status,
        metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStore;
    use pulse_api::{RunStatus, Tracker};

    fn info(run_id: &str) -> RunInfo {
        RunInfo {
            run_id: run_id.into(),
            experiment: "exp".into(),
            sweep_id: "s1".into(),
            trial_id: "t1".into(),
            trial_label: "base".into(),
            ablation: None,
            model: "pop".into(),
            model_type: "pop".into(),
            dataset: "d".into(),
            seed: 1,
            resolved_spec: serde_json::json!({"a": 1}),
            params: [("a".to_string(), "1".to_string())].into(),
            environment: [("pulse".to_string(), "0.1".to_string())].into(),
        }
    }

    fn metric(key: &str, value: f64, step: i64) -> Metric {
        Metric {
            key: key.into(),
            value,
            step,
            timestamp: 0,
        }
    }

    #[test]
    fn round_trip_and_status() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = LocalStore::new(tmp.path());
        let mut run = store.start_run(&info("r1")).unwrap();
        run.log_metrics(&[
            metric("valid/ndcg@10", 0.1, 1),
            metric("valid/ndcg@10", 0.2, 2),
        ])
        .unwrap();
        run.log_metrics(&[metric("test/ndcg@10", 0.3, 0)]).unwrap();
        run.log_artifact("weights.safetensors", b"abc").unwrap();
        assert!(run.log_artifact("../escape", b"x").is_err());
        let mut failed = store.start_run(&info("r2")).unwrap();
        failed.finish(RunStatus::Failed, Some("boom")).unwrap();
        run.finish(RunStatus::Finished, None).unwrap();

        let (runs, problems) = StoreReader::new(tmp.path()).runs(Some("exp")).unwrap();
        assert!(problems.is_empty());
        assert_eq!(runs.len(), 2);
        let r1 = runs.iter().find(|r| r.info.run_id == "r1").unwrap();
        assert_eq!(r1.status.status, RunStatus::Finished);
        assert_eq!(r1.latest()["valid/ndcg@10"], 0.2);
        assert_eq!(r1.test_metrics()["ndcg@10"], 0.3);
        assert_eq!(r1.info.params["a"], "1");
        assert_eq!(
            std::fs::read(r1.dir.join("artifacts/weights.safetensors")).unwrap(),
            b"abc"
        );
        let r2 = runs.iter().find(|r| r.info.run_id == "r2").unwrap();
        assert_eq!(r2.status.status, RunStatus::Failed);
        assert_eq!(r2.status.error.as_deref(), Some("boom"));
    }

    #[test]
    fn torn_metric_line_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = LocalStore::new(tmp.path());
        let mut run = store.start_run(&info("r1")).unwrap();
        run.log_metrics(&[metric("test/hr@10", 0.5, 0)]).unwrap();
        let path = tmp.path().join("exp/r1/metrics.jsonl");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"key\": \"te");
        std::fs::write(&path, text).unwrap();
        let rec = read_run(&tmp.path().join("exp/r1")).unwrap();
        assert_eq!(rec.metrics.len(), 1);
    }
}
