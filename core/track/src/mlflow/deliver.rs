//! Delivery of one local run to one MLflow server, from what the run store holds, resumable
//! and idempotent. The same code ships live (called again whenever the run grows) and later
//! (`pulse sync`). Order per run: experiment (get-by-name, created when missing) and the sweep's
//! parent run → the run itself (tags set at creation) → params → metric points in sequence
//! order → artifacts → when the run has ended, the metrics table and `runs/update`.
//!
//! Exactly-once for metric points: a batch is recorded *in flight* before it is sent and
//! acknowledged after the server answers. When the answer never came, the next delivery reads
//! the metric histories of the keys involved and sends only the points the server lacks. Run
//! creation is made idempotent the same way: after an unanswered `runs/create`, the run is
//! looked up by its `pulse.run_id` tag before creating again.

use super::client::{Client, MlflowError, Upload};
use super::local::{all_metrics, artifact_files, metrics_csv, MetricTail, SeqMetric};
use super::state::{ArtifactState, Rejected, SyncFile, TargetState};
use super::wire::{
    chunks, sanitize_key, truncate_value, KeyValue, LogBatch, Value, WireMetric,
    MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, MAX_PARAM_VALUE_LEN,
    MAX_TAG_VALUE_LEN,
};
use crate::read::read_head;
use crate::store::StatusFile;
use pulse_api::{Metric, RunInfo, RunStatus};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Whether delivery runs beside a live run or later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Beside `pulse run`: the run was created by this process, so nothing of it can be on
    /// the server yet.
    Live,
    /// `pulse sync`: the server may hold part of the run already (delivered by another
    /// process, or under another spelling of the URL); check before creating or sending.
    Sync,
}

/// Where a run stands after a delivery pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Everything is on the server, final status included.
    Done,
    /// Everything logged so far is on the server; the run has not ended.
    Waiting,
}

/// The run's status string in MLflow.
pub fn status_name(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "RUNNING",
        RunStatus::Finished => "FINISHED",
        RunStatus::Failed => "FAILED",
        RunStatus::Killed => "KILLED",
    }
}

/// The status of a sweep's parent run, from its runs' statuses (`None` while one runs).
pub fn sweep_status(children: impl IntoIterator<Item = RunStatus>) -> Option<RunStatus> {
    let mut out = RunStatus::Finished;
    for s in children {
        match s {
            RunStatus::Running => return None,
            RunStatus::Failed => out = RunStatus::Failed,
            RunStatus::Killed if out == RunStatus::Finished => out = RunStatus::Killed,
            _ => {}
        }
    }
    Some(out)
}

/// The OS user, as MLflow records it in `mlflow.user`: the environment's name, else the
/// account of the process's user id (`/etc/passwd`), else `unknown`.
pub fn current_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .or_else(account_name)
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(unix)]
fn account_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is the process's user id.
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid && !f[0].is_empty()).then(|| f[0].to_string())
    })
}

#[cfg(not(unix))]
fn account_name() -> Option<String> {
    None
}

/// One server and what this process learnt about it (experiment ids, sweep parent runs).
#[derive(Debug)]
pub struct Target {
    pub client: Client,
    pub user: String,
    experiments: HashMap<String, String>,
    parents: HashMap<String, String>,
}

impl Target {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            user: current_user(),
            experiments: HashMap::new(),
            parents: HashMap::new(),
        }
    }

    pub fn uri(&self) -> &str {
        self.client.uri()
    }

    /// Drops what was learnt about the server (it lost its data, or is another one now).
    pub fn forget(&mut self) {
        self.experiments.clear();
        self.parents.clear();
    }

    async fn experiment(&mut self, name: &str) -> Result<String, MlflowError> {
        if let Some(id) = self.experiments.get(name) {
            return Ok(id.clone());
        }
        let id = self.client.ensure_experiment(name).await?;
        self.experiments.insert(name.to_string(), id.clone());
        Ok(id)
    }

    /// The sweep's parent run: looked up by tag first (another process, or an unanswered
    /// create, may have made it), created otherwise.
    async fn parent(
        &mut self,
        experiment_id: &str,
        info: &RunInfo,
        start_ms: i64,
    ) -> Result<String, MlflowError> {
        if let Some(id) = self.parents.get(&info.sweep_id) {
            return Ok(id.clone());
        }
        let filter = format!(
            "tags.`pulse.sweep_id` = '{}' and tags.`pulse.kind` = 'sweep'",
            info.sweep_id.replace('\'', "\\'")
        );
        let found = self
            .client
            .search_runs(&[experiment_id.to_string()], &filter, None)
            .await?
            .0;
        let id = match found.into_iter().next() {
            Some(run) => run.info.run_id,
            None => {
                let name = format!("{} sweep {}", info.experiment, info.sweep_id);
                let mut tags = vec![
                    KeyValue::new("mlflow.runName", name.clone()),
                    KeyValue::new("mlflow.user", self.user.clone()),
                    KeyValue::new("mlflow.source.type", "LOCAL"),
                    KeyValue::new("mlflow.source.name", "pulse"),
                    KeyValue::new("pulse.kind", "sweep"),
                    KeyValue::new("pulse.sweep_id", info.sweep_id.clone()),
                    KeyValue::new("pulse.experiment", info.experiment.clone()),
                ];
                if let Some(c) = info.environment.get("git_commit") {
                    tags.push(KeyValue::new("mlflow.source.git.commit", c.clone()));
                }
                self.client
                    .create_run(experiment_id, &name, &self.user, start_ms, &tags)
                    .await?
                    .info
                    .run_id
            }
        };
        self.parents.insert(info.sweep_id.clone(), id.clone());
        Ok(id)
    }

    /// Ends a sweep's parent run (idempotent).
    pub async fn finish_parent(
        &self,
        parent_run_id: &str,
        status: RunStatus,
        end_ms: i64,
    ) -> Result<(), MlflowError> {
        self.client
            .update_run(parent_run_id, status_name(status), Some(end_ms))
            .await
    }
}

/// Counts of what one job sent (for reports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub metrics: u64,
    pub params: u64,
    pub artifacts: u64,
    pub skipped_artifacts: u64,
}

/// Delivery of one run to one server.
#[derive(Debug)]
pub struct RunJob {
    pub dir: PathBuf,
    pub info: RunInfo,
    pub status: StatusFile,
    pub state: TargetState,
    pub sent: Sent,
    uri: String,
    mode: Mode,
    tail: MetricTail,
    /// Local metric points not yet acknowledged, in sequence order.
    pending: Vec<SeqMetric>,
}

fn local(e: pulse_api::TrackError) -> MlflowError {
    MlflowError::Local(e.to_string())
}

fn wire(m: &Metric) -> WireMetric {
    WireMetric {
        key: sanitize_key(&m.key),
        value: Value(m.value),
        timestamp: m.timestamp.max(0),
        step: m.step,
    }
}

impl RunJob {
    /// Opens run `dir` for delivery to `uri`, with what was already acknowledged.
    pub fn open(dir: &Path, uri: &str, mode: Mode) -> Result<Self, MlflowError> {
        let (info, status) = read_head(dir).map_err(local)?;
        let state = SyncFile::load(dir).map_err(local)?.target(uri);
        Ok(Self {
            dir: dir.to_path_buf(),
            info,
            status,
            state,
            sent: Sent::default(),
            uri: uri.to_string(),
            mode,
            tail: MetricTail::new(dir),
            pending: Vec::new(),
        })
    }

    /// Writes the delivery record as it stands (marking the run as tracked to this server).
    pub fn record(&mut self) -> Result<(), MlflowError> {
        self.save()
    }

    fn save(&mut self) -> Result<(), MlflowError> {
        SyncFile::save(&self.dir, &self.uri, &self.state).map_err(local)
    }

    /// Records `e` as the last problem (best effort) and hands it back.
    fn failed(&mut self, e: MlflowError) -> MlflowError {
        self.state.last_error = Some(e.to_string());
        let _ = self.save();
        e
    }

    /// Metric points logged locally and not yet acknowledged (after the last pass).
    pub fn unsent_metrics(&self) -> usize {
        self.pending.len()
    }

    /// Runs one delivery pass: sends everything the local store holds that the server lacks.
    pub async fn deliver(&mut self, t: &mut Target) -> Result<Progress, MlflowError> {
        if self.state.complete {
            return Ok(Progress::Done);
        }
        self.status = crate::read::read_status(&self.dir).map_err(local)?;
        let mut result = self.pass(t).await;
        if let Err(e) = &result {
            if e.code() == Some("RESOURCE_DOES_NOT_EXIST") && self.vanished(t).await {
                tracing::warn!(
                    "mlflow: run {} is gone from {} (a new server or database?); delivering it \
                     again from the start",
                    self.info.run_id,
                    t.uri()
                );
                t.forget();
                self.state = TargetState::default();
                self.pending.clear();
                self.tail = MetricTail::new(&self.dir);
                self.save()?;
                result = self.pass(t).await;
            }
        }
        match result {
            Ok(p) => {
                if self.state.last_error.take().is_some() {
                    self.save()?;
                }
                Ok(p)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Whether the MLflow run this record points at no longer exists on the server (not even
    /// as deleted), so nothing of it can be there and delivery must start over.
    async fn vanished(&self, t: &Target) -> bool {
        let Some(id) = &self.state.run_id else {
            return false;
        };
        matches!(
            t.client.get_run(id).await,
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST")
        )
    }

    async fn pass(&mut self, t: &mut Target) -> Result<Progress, MlflowError> {
        self.ensure_run(t).await?;
        if !self.state.params_sent {
            self.send_params(t).await?;
        }
        if self.state.in_flight.is_some() {
            self.reconcile(t).await?;
        }
        self.pending.extend(self.tail.read_new().map_err(local)?);
        let acked = self.state.metrics_acked;
        self.pending.retain(|m| m.seq >= acked);
        self.send_metrics(t).await?;
        self.send_artifacts(t).await?;
        if self.status.status == RunStatus::Running {
            return Ok(Progress::Waiting);
        }
        self.send_end(t).await?;
        Ok(Progress::Done)
    }

    fn run_id(&self) -> Result<String, MlflowError> {
        self.state
            .run_id
            .clone()
            .ok_or_else(|| MlflowError::Local("run not created".into()))
    }

    async fn ensure_run(&mut self, t: &mut Target) -> Result<(), MlflowError> {
        if self.state.run_id.is_some() {
            return Ok(());
        }
        let exp = t.experiment(&self.info.experiment).await?;
        let parent = t.parent(&exp, &self.info, self.status.start_ms).await?;
        self.state.experiment_id = Some(exp.clone());
        self.state.parent_run_id = Some(parent.clone());
        if self.state.create_attempted || self.mode == Mode::Sync {
            if let Some(run) = t
                .client
                .find_run_by_tag(&exp, "pulse.run_id", &self.info.run_id)
                .await?
            {
                self.state.run_id = Some(run.info.run_id);
                self.state.artifact_uri = Some(run.info.artifact_uri);
                // Nothing says what of it the server holds: check every point before sending.
                if self.state.metrics_acked == 0 && self.state.in_flight.is_none() {
                    self.state.in_flight = Some([0, u64::MAX]);
                }
                return self.save();
            }
        }
        self.state.create_attempted = true;
        self.save()?;
        let run_name = format!(
            "{} · {} · {}",
            self.info.model, self.info.dataset, self.info.trial_id
        );
        let tags = run_tags(&self.info, &run_name, &t.user, &parent);
        let run = t
            .client
            .create_run(&exp, &run_name, &t.user, self.status.start_ms, &tags)
            .await?;
        self.state.run_id = Some(run.info.run_id);
        self.state.artifact_uri = Some(run.info.artifact_uri);
        self.save()
    }

    async fn send_params(&mut self, t: &mut Target) -> Result<(), MlflowError> {
        let run_id = self.run_id()?;
        let mut seen = BTreeSet::new();
        let mut truncated = Vec::new();
        let mut params = Vec::new();
        for (k, v) in &self.info.params {
            let key = sanitize_key(k);
            // Two pulse keys that map onto one MLflow key: the first wins (MLflow refuses
            // a param logged twice with different values).
            if !seen.insert(key.clone()) {
                continue;
            }
            let (value, cut) = truncate_value(v, MAX_PARAM_VALUE_LEN);
            if cut {
                truncated.push(key.clone());
            }
            params.push(KeyValue::new(key, value));
        }
        for r in chunks(&params, MAX_PARAMS_TAGS_PER_BATCH) {
            let batch = LogBatch {
                run_id: run_id.clone(),
                params: params[r].to_vec(),
                ..LogBatch::default()
            };
            match t.client.log_batch(&batch).await {
                Ok(()) => {}
                Err(e) if e.is_transient() || e.is_auth() => return Err(e),
                // Refused (e.g. the run already holds a different value): reported, not
                // retried forever.
                Err(e) => {
                    tracing::warn!("mlflow: params of run {} refused: {e}", self.info.run_id);
                    self.state.last_error = Some(format!("params refused: {e}"));
                }
            }
        }
        if !truncated.is_empty() {
            tracing::debug!(
                "mlflow: run {}: {} long param value(s) truncated; spec.json has them whole",
                self.info.run_id,
                truncated.len()
            );
        }
        self.sent.params += params.len() as u64;
        self.state.params_sent = true;
        self.save()
    }

    /// After an unanswered metrics request: asks the server which of the points in flight it
    /// holds and sends only the others.
    async fn reconcile(&mut self, t: &mut Target) -> Result<(), MlflowError> {
        let Some([from, to]) = self.state.in_flight else {
            return Ok(());
        };
        let run_id = self.run_id()?;
        let all = all_metrics(&self.dir).map_err(local)?;
        let upto = all.iter().map(|m| m.seq + 1).max().unwrap_or(0).min(to);
        let flight: Vec<&SeqMetric> = all
            .iter()
            .filter(|m| m.seq >= from && m.seq < upto)
            .collect();
        let keys: BTreeSet<String> = flight.iter().map(|m| sanitize_key(&m.metric.key)).collect();
        let mut on_server: HashMap<(String, i64, i64, u64), i64> = HashMap::new();
        for key in &keys {
            for m in t.client.metric_history(&run_id, key).await? {
                *on_server.entry(m.identity()).or_default() += 1;
            }
        }
        // Points acknowledged before this range account for their share of the history.
        for m in all.iter().filter(|m| m.seq < from) {
            if let Some(n) = on_server.get_mut(&wire(&m.metric).identity()) {
                *n -= 1;
            }
        }
        let mut missing = Vec::new();
        for m in flight {
            let w = wire(&m.metric);
            match on_server.get_mut(&w.identity()) {
                Some(n) if *n > 0 => *n -= 1,
                _ => missing.push(w),
            }
        }
        tracing::debug!(
            "mlflow: run {}: {} point(s) of an unanswered request were missing on the server",
            self.info.run_id,
            missing.len()
        );
        for r in chunks(&missing, MAX_METRICS_PER_BATCH) {
            let batch = LogBatch {
                run_id: run_id.clone(),
                metrics: missing[r].to_vec(),
                ..LogBatch::default()
            };
            // Still recorded in flight: a failure here is reconciled the same way next time.
            t.client.log_batch(&batch).await?;
            self.sent.metrics += batch.metrics.len() as u64;
        }
        self.state.metrics_acked = self.state.metrics_acked.max(upto);
        self.state.in_flight = None;
        self.save()
    }

    async fn send_metrics(&mut self, t: &mut Target) -> Result<(), MlflowError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let run_id = self.run_id()?;
        let wired: Vec<WireMetric> = self.pending.iter().map(|m| wire(&m.metric)).collect();
        let mut done = 0;
        for r in chunks(&wired, MAX_METRICS_PER_BATCH.min(MAX_ENTITIES_PER_BATCH)) {
            let from = self.pending[r.start].seq;
            let to = self.pending[r.end - 1].seq + 1;
            self.state.in_flight = Some([from, to]);
            self.save()?;
            let batch = LogBatch {
                run_id: run_id.clone(),
                metrics: wired[r.clone()].to_vec(),
                ..LogBatch::default()
            };
            match t.client.log_batch(&batch).await {
                Ok(()) => self.sent.metrics += r.len() as u64,
                Err(e) if e.is_transient() || e.is_auth() || e.maybe_applied() => {
                    if !e.maybe_applied() {
                        self.state.in_flight = None;
                        self.save()?;
                    }
                    self.pending.drain(..done);
                    return Err(e);
                }
                Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => {
                    self.state.in_flight = None;
                    self.pending.drain(..done);
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(
                        "mlflow: run {}: the server refused metric points {from}..{to}: {e}",
                        self.info.run_id
                    );
                    self.state.rejected.push(Rejected {
                        from,
                        to,
                        error: e.to_string(),
                    });
                }
            }
            self.state.metrics_acked = to;
            self.state.in_flight = None;
            self.save()?;
            done = r.end;
        }
        self.pending.clear();
        Ok(())
    }

    /// Uploads `bytes` as `name` unless it went already at this size.
    async fn artifact(
        &mut self,
        t: &Target,
        name: &str,
        size: u64,
        bytes: impl FnOnce() -> Result<Vec<u8>, MlflowError>,
    ) -> Result<(), MlflowError> {
        if self
            .state
            .artifacts
            .get(name)
            .is_some_and(|a| a.size == size)
        {
            return Ok(());
        }
        let uri = self.state.artifact_uri.clone().unwrap_or_default();
        let skipped = match t.client.upload_artifact(&uri, name, bytes()?).await {
            Ok(Upload::Uploaded) => {
                self.sent.artifacts += 1;
                None
            }
            Ok(Upload::Skipped(why)) => Some(why),
            Err(e) if e.is_transient() || e.is_auth() => return Err(e),
            Err(e) => Some(format!("refused by the server: {e}")),
        };
        if let Some(why) = &skipped {
            self.sent.skipped_artifacts += 1;
            tracing::debug!(
                "mlflow: artifact {name} of run {} skipped: {why}",
                self.info.run_id
            );
        }
        self.state
            .artifacts
            .insert(name.to_string(), ArtifactState { size, skipped });
        self.save()
    }

    async fn send_artifacts(&mut self, t: &Target) -> Result<(), MlflowError> {
        let read = |p: PathBuf| {
            move || {
                std::fs::read(&p).map_err(|e| MlflowError::Local(format!("{}: {e}", p.display())))
            }
        };
        let spec = self.dir.join("spec.json");
        if let Ok(meta) = std::fs::metadata(&spec) {
            self.artifact(t, "spec.json", meta.len(), read(spec))
                .await?;
        }
        for (name, size) in artifact_files(&self.dir).map_err(local)? {
            let path = self.dir.join("artifacts").join(&name);
            self.artifact(t, &name, size, read(path)).await?;
        }
        Ok(())
    }

    async fn send_end(&mut self, t: &Target) -> Result<(), MlflowError> {
        let run_id = self.run_id()?;
        let all = all_metrics(&self.dir).map_err(local)?;
        let csv = metrics_csv(&all);
        self.artifact(t, "metrics.csv", csv.len() as u64, || Ok(csv))
            .await?;
        let status = self.status.status;
        let mut tags = vec![KeyValue::new("pulse.status", status_name(status))];
        if let Some(err) = &self.status.error {
            tags.push(KeyValue::new(
                "pulse.error",
                truncate_value(err, MAX_TAG_VALUE_LEN).0,
            ));
        }
        let batch = LogBatch {
            run_id: run_id.clone(),
            tags,
            ..LogBatch::default()
        };
        t.client.log_batch(&batch).await?;
        t.client
            .update_run(&run_id, status_name(status), self.status.end_ms)
            .await?;
        self.state.status_sent = Some(status);
        self.state.complete = true;
        self.save()
    }
}

/// The tags a run is created with.
fn run_tags(info: &RunInfo, run_name: &str, user: &str, parent: &str) -> Vec<KeyValue> {
    let mut tags = vec![
        KeyValue::new("mlflow.runName", run_name),
        KeyValue::new("mlflow.user", user),
        KeyValue::new("mlflow.parentRunId", parent),
        KeyValue::new("mlflow.source.type", "LOCAL"),
        KeyValue::new("mlflow.source.name", "pulse"),
        KeyValue::new("pulse.kind", "run"),
        KeyValue::new("pulse.run_id", info.run_id.clone()),
        KeyValue::new("pulse.sweep_id", info.sweep_id.clone()),
        KeyValue::new("pulse.trial_id", info.trial_id.clone()),
        KeyValue::new("pulse.trial_label", info.trial_label.clone()),
        KeyValue::new("pulse.model", info.model.clone()),
        KeyValue::new("pulse.model_type", info.model_type.clone()),
        KeyValue::new("pulse.dataset", info.dataset.clone()),
        KeyValue::new("pulse.seed", info.seed.to_string()),
    ];
    if let Some(a) = &info.ablation {
        tags.push(KeyValue::new("pulse.ablation", a.clone()));
    }
    if let Some(c) = info.environment.get("git_commit") {
        tags.push(KeyValue::new("mlflow.source.git.commit", c.clone()));
    }
    for (env_key, tag) in [("host", "pulse.host"), ("pulse_version", "pulse.version")] {
        if let Some(v) = info.environment.get(env_key) {
            tags.push(KeyValue::new(tag, v.clone()));
        }
    }
    for t in &mut tags {
        t.value = truncate_value(&t.value, MAX_TAG_VALUE_LEN).0;
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(children: &[RunStatus], expected: Option<RunStatus>) {
        assert_eq!(
            sweep_status(children.iter().copied()),
            expected,
            "{children:?}"
        );
    }

    #[test]
    fn sweep_status_from_children() {
        use RunStatus::*;
        check(&[Finished, Finished], Some(Finished));
        check(&[Finished, Killed], Some(Killed));
        check(&[Killed, Failed, Finished], Some(Failed));
        check(&[Failed, Killed], Some(Failed));
        check(&[Finished, Running], None);
        check(&[], Some(Finished));
    }

    #[test]
    fn run_tags_carry_pulse_identity() {
        let info = RunInfo {
            run_id: "r1".into(),
            experiment: "e".into(),
            sweep_id: "s1".into(),
            trial_id: "t1".into(),
            trial_label: "x".repeat(6000),
            ablation: Some("no-dropout".into()),
            model: "sasrec".into(),
            model_type: "sasrec".into(),
            dataset: "ml".into(),
            seed: 7,
            resolved_spec: serde_json::Value::Null,
            params: Default::default(),
            environment: [("git_commit".to_string(), "abc".to_string())].into(),
        };
        let tags = run_tags(&info, "n", "u", "p");
        let get = |k: &str| tags.iter().find(|t| t.key == k).map(|t| t.value.clone());
        assert_eq!(get("mlflow.parentRunId").as_deref(), Some("p"));
        assert_eq!(get("mlflow.source.git.commit").as_deref(), Some("abc"));
        assert_eq!(get("pulse.ablation").as_deref(), Some("no-dropout"));
        assert_eq!(get("pulse.seed").as_deref(), Some("7"));
        assert_eq!(
            get("pulse.trial_label").unwrap().chars().count(),
            MAX_TAG_VALUE_LEN
        );
    }
}
