//! `pulse sync`: delivers runs that the live tracker could not finish (server down, slow, or
//! the process stopped) — or runs never tracked — to an MLflow server, after the fact. Each
//! run goes to the server given (`--to`), else to the servers its delivery record names, else
//! to `$MLFLOW_TRACKING_URI`. Delivery is the live tracker's, in [`Mode::Sync`]: it looks on
//! the server before creating or re-sending anything, so running it twice sends nothing twice.

use super::client::{Client, ClientConfig, MlflowError};
use super::deliver::{sweep_status, Mode, Progress, RunJob, Sent, Target};
use super::local::{all_metrics, artifact_files};
use super::state::{RunLock, SyncFile};
use crate::read::read_head;
use pulse_api::RunStatus;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What happened to one run.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncOutcome {
    /// Everything the local store holds is now on the server.
    Delivered(Sent),
    /// It was there already; nothing was sent.
    AlreadySynced,
    /// Delivered so far, but the run has not ended locally (still running, or its process
    /// died without recording an end).
    StillRunning(Sent),
    /// Not (fully) delivered; it stays marked unsynced.
    Failed(String),
    /// Another live process is delivering it.
    Busy(u32),
    /// `--dry-run`: what delivery would send.
    Pending(String),
}

/// One run's line in the report.
#[derive(Debug, Clone)]
pub struct RunSync {
    pub dir: PathBuf,
    pub run_id: String,
    pub label: String,
    pub uri: String,
    pub outcome: SyncOutcome,
}

/// The servers a run would be synced to: `to`, else those of its delivery record, else
/// `env_uri` (`$MLFLOW_TRACKING_URI`). Empty when there is none.
pub fn targets_of(dir: &Path, to: Option<&str>, env_uri: Option<&str>) -> Vec<String> {
    if let Some(t) = to {
        return vec![super::state::target_key(t)];
    }
    let recorded: Vec<String> = SyncFile::load(dir)
        .map(|f| f.targets.keys().cloned().collect())
        .unwrap_or_default();
    if !recorded.is_empty() {
        return recorded;
    }
    env_uri.map(super::state::target_key).into_iter().collect()
}

/// Delivers `dirs` (run directories) to their servers; one report line per (run, server).
/// Blocking: runs its own single-threaded runtime.
pub fn sync_runs(dirs: &[PathBuf], to: Option<&str>, dry_run: bool) -> Vec<RunSync> {
    let env_uri = std::env::var(pulse_api::sections::TrackerSection::URI_ENV).ok();
    let mut by_uri: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut out = Vec::new();
    for dir in dirs {
        let uris = targets_of(dir, to, env_uri.as_deref());
        if uris.is_empty() {
            out.push(line(
                dir,
                "",
                SyncOutcome::Failed(
                    "no MLflow server recorded for this run: pass --to URI or set \
                     MLFLOW_TRACKING_URI"
                        .into(),
                ),
            ));
        }
        for u in uris {
            by_uri.entry(u).or_default().push(dir.clone());
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            for (uri, dirs) in by_uri {
                for d in dirs {
                    out.push(line(&d, &uri, SyncOutcome::Failed(e.to_string())));
                }
            }
            return out;
        }
    };
    for (uri, dirs) in by_uri {
        out.extend(runtime.block_on(sync_to(&uri, &dirs, dry_run)));
    }
    out
}

fn line(dir: &Path, uri: &str, outcome: SyncOutcome) -> RunSync {
    let (run_id, label) = match read_head(dir) {
        Ok((i, _)) => (
            i.run_id.clone(),
            format!("{} on {} (trial {})", i.model, i.dataset, i.trial_id),
        ),
        Err(_) => (
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            String::new(),
        ),
    };
    RunSync {
        dir: dir.to_path_buf(),
        run_id,
        label,
        uri: uri.to_string(),
        outcome,
    }
}

async fn sync_to(uri: &str, dirs: &[PathBuf], dry_run: bool) -> Vec<RunSync> {
    let client = match Client::new(&ClientConfig::from_env(uri)) {
        Ok(c) => c,
        Err(e) => {
            return dirs
                .iter()
                .map(|d| line(d, uri, SyncOutcome::Failed(e.to_string())))
                .collect()
        }
    };
    let mut target = Target::new(client);
    let mut out = Vec::new();
    let mut down: Option<MlflowError> = None;
    for dir in dirs {
        let outcome = match &down {
            Some(e) => SyncOutcome::Failed(e.to_string()),
            None => match sync_one(&mut target, dir, uri, dry_run).await {
                Ok(o) => o,
                Err(e) => {
                    if matches!(e, MlflowError::Unreachable { .. }) || e.is_auth() {
                        down = Some(e.clone());
                    }
                    SyncOutcome::Failed(e.to_string())
                }
            },
        };
        out.push(line(dir, uri, outcome));
    }
    if down.is_none() && !dry_run {
        finish_parents(&target, dirs, uri).await;
    }
    out
}

async fn sync_one(
    target: &mut Target,
    dir: &Path,
    uri: &str,
    dry_run: bool,
) -> Result<SyncOutcome, MlflowError> {
    let mut job = RunJob::open(dir, uri, Mode::Sync)?;
    if job.state.complete {
        return Ok(SyncOutcome::AlreadySynced);
    }
    if dry_run {
        return Ok(SyncOutcome::Pending(pending(&job)));
    }
    let _lock = match RunLock::acquire(dir).map_err(|e| MlflowError::Local(e.to_string()))? {
        Ok(l) => l,
        Err(pid) => return Ok(SyncOutcome::Busy(pid)),
    };
    let mut delay = Duration::from_millis(500);
    let mut attempt = 0;
    loop {
        match job.deliver(target).await {
            Ok(Progress::Done) => return Ok(SyncOutcome::Delivered(job.sent)),
            Ok(Progress::Waiting) => return Ok(SyncOutcome::StillRunning(job.sent)),
            // A refused connection will not heal in seconds; a slow or failing server might.
            Err(e)
                if e.is_transient()
                    && !matches!(e, MlflowError::Unreachable { .. })
                    && attempt < 3 =>
            {
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What delivery would still send, in words.
fn pending(job: &RunJob) -> String {
    let s = &job.state;
    let mut parts = Vec::new();
    if s.run_id.is_none() {
        parts.push("the run itself".to_string());
    }
    if !s.params_sent {
        parts.push(format!("{} param(s)", job.info.params.len()));
    }
    let metrics = all_metrics(&job.dir)
        .map(|m| m.iter().filter(|m| m.seq >= s.metrics_acked).count())
        .unwrap_or(0);
    if metrics > 0 || s.in_flight.is_some() {
        let doubt = if s.in_flight.is_some() {
            " (some possibly delivered: checked first)"
        } else {
            ""
        };
        parts.push(format!("{metrics} metric point(s){doubt}"));
    }
    let artifacts = artifact_files(&job.dir)
        .map(|a| {
            a.iter()
                .filter(|(n, size)| s.artifacts.get(n).is_none_or(|x| x.size != *size))
                .count()
        })
        .unwrap_or(0);
    if artifacts > 0 {
        parts.push(format!("{artifacts} artifact(s)"));
    }
    if job.status.status != RunStatus::Running {
        parts.push("the final status".into());
    }
    parts.join(", ")
}

/// Ends the parent run of every sweep touched whose local runs are all delivered.
async fn finish_parents(target: &Target, dirs: &[PathBuf], uri: &str) {
    let mut sweeps: BTreeMap<(PathBuf, String), ()> = BTreeMap::new();
    for d in dirs {
        if let (Some(exp_dir), Ok((info, _))) = (d.parent(), read_head(d)) {
            sweeps.insert((exp_dir.to_path_buf(), info.sweep_id), ());
        }
    }
    for (exp_dir, sweep) in sweeps.into_keys() {
        let Ok(entries) = std::fs::read_dir(&exp_dir) else {
            continue;
        };
        let mut statuses = Vec::new();
        let mut parent = None;
        let mut end = 0;
        let mut all_done = true;
        for e in entries.flatten() {
            let dir = e.path();
            let Ok((info, status)) = read_head(&dir) else {
                continue;
            };
            if info.sweep_id != sweep {
                continue;
            }
            let state = SyncFile::load(&dir).unwrap_or_default().target(uri);
            all_done &= state.complete;
            parent = parent.or(state.parent_run_id);
            end = end.max(status.end_ms.unwrap_or(0));
            statuses.push(status.status);
        }
        let (Some(parent), true, Some(status)) = (parent, all_done, sweep_status(statuses)) else {
            continue;
        };
        if let Err(e) = target.finish_parent(&parent, status, end).await {
            tracing::warn!("mlflow: ending sweep run {parent}: {e}");
        }
    }
}
