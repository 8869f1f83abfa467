//! Reading runs back from an MLflow server (`runs/search`) as the same [`RunRecord`]s the local
//! store yields, so `pulse compare --from mlflow` builds the same table from runs logged on
//! several machines. Only pulse's runs (tag `pulse.kind = run`) are read; sweep parents and
//! runs of other tools are left out.

use super::client::{Client, ClientConfig, MlflowError};
use super::wire::{unsanitize_metric, Run};
use crate::read::RunRecord;
use crate::store::StatusFile;
use pulse_api::{Metric, RunInfo, RunStatus};
use std::path::PathBuf;

/// Every pulse run of `experiment` on the server at `uri`, oldest first. `Ok(None)` when the
/// server has no such experiment.
pub fn fetch_runs(uri: &str, experiment: &str) -> Result<Option<Vec<RunRecord>>, MlflowError> {
    let client = Client::new(&ClientConfig::from_env(uri))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MlflowError::Local(e.to_string()))?;
    runtime.block_on(async {
        let Some(id) = client.experiment_id(experiment).await? else {
            return Ok(None);
        };
        let runs = client
            .search_all(&[id], "tags.`pulse.kind` = 'run'")
            .await?;
        let mut records: Vec<RunRecord> = runs
            .iter()
            .map(|r| to_record(r, experiment, client.uri()))
            .collect();
        records.sort_by(|a, b| {
            (a.status.start_ms, &a.info.run_id).cmp(&(b.status.start_ms, &b.info.run_id))
        });
        Ok(Some(records))
    })
}

fn status(s: &str) -> RunStatus {
    match s {
        "FINISHED" => RunStatus::Finished,
        "FAILED" => RunStatus::Failed,
        "KILLED" => RunStatus::Killed,
        _ => RunStatus::Running,
    }
}

/// One MLflow run as a local-store record: identity from the `pulse.*` tags, metrics as their
/// latest values with pulse's names (`test_at_…` → `test@…`).
pub fn to_record(run: &Run, experiment: &str, uri: &str) -> RunRecord {
    let tag = |k: &str| run.tag(k).unwrap_or_default().to_string();
    let run_id = Some(tag("pulse.run_id"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| run.info.run_id.clone());
    let ablation = Some(tag("pulse.ablation")).filter(|s| !s.is_empty());
    let mut environment = std::collections::BTreeMap::new();
    environment.insert("mlflow_run_id".to_string(), run.info.run_id.clone());
    environment.insert("mlflow_uri".to_string(), uri.to_string());
    for (k, t) in [
        ("host", "pulse.host"),
        ("git_commit", "mlflow.source.git.commit"),
    ] {
        if let Some(v) = run.tag(t) {
            environment.insert(k.to_string(), v.to_string());
        }
    }
    let info = RunInfo {
        run_id,
        experiment: experiment.to_string(),
        sweep_id: tag("pulse.sweep_id"),
        trial_id: tag("pulse.trial_id"),
        trial_label: tag("pulse.trial_label"),
        ablation,
        model: Some(tag("pulse.model"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| run.info.run_name.clone()),
        model_type: tag("pulse.model_type"),
        dataset: tag("pulse.dataset"),
        seed: tag("pulse.seed").parse().unwrap_or(0),
        resolved_spec: serde_json::Value::Null,
        params: run
            .data
            .params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
        environment,
    };
    let error = run.tag("pulse.error").map(str::to_string);
    let metrics = run
        .data
        .metrics
        .iter()
        .map(|m| Metric {
            key: unsanitize_metric(&m.key),
            value: m.value.0,
            step: m.step,
            timestamp: m.timestamp,
        })
        .collect();
    RunRecord {
        dir: PathBuf::new(),
        info,
        status: StatusFile {
            status: status(&run.info.status),
            start_ms: run.info.start_time.unwrap_or(0),
            end_ms: run.info.end_time,
            error,
        },
        metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_runs_read_back_as_local_records() {
        let run: Run = serde_json::from_value(serde_json::json!({
            "info": {"run_id": "m1", "experiment_id": "1", "run_name": "n", "status": "FAILED",
                     "start_time": 5, "end_time": 9, "artifact_uri": "", "lifecycle_stage": "active"},
            "data": {
                "metrics": [{"key": "test/ndcg_at_10", "value": 0.5, "timestamp": 1, "step": 0},
                            {"key": "best_epoch", "value": 3.0, "timestamp": 1, "step": 0}],
                "tags": [{"key": "pulse.run_id", "value": "p1"}, {"key": "pulse.model", "value": "sasrec"},
                         {"key": "pulse.seed", "value": "7"}, {"key": "pulse.error", "value": "boom"}]
            }
        }))
        .unwrap();
        let r = to_record(&run, "exp", "http://x");
        assert_eq!(r.info.run_id, "p1");
        assert_eq!(r.info.model, "sasrec");
        assert_eq!(r.info.seed, 7);
        assert_eq!(r.status.status, RunStatus::Failed);
        assert_eq!(r.status.error.as_deref(), Some("boom"));
        assert_eq!(r.test_metrics()["ndcg@10"], 0.5);
        assert_eq!(r.latest()["best_epoch"], 3.0);
        assert_eq!(r.info.environment["mlflow_run_id"], "m1");
    }
}
