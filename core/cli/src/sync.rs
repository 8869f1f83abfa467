//! MLflow in the CLI: the live tracker `pulse run` adds for `[tracker] type = "mlflow"`,
//! `pulse sync` (delivering what a run left unsynced), and `pulse compare --from mlflow`
//! (the comparison table read back from the server). The HTTP side lives in
//! `pulse_track::mlflow`; this file only selects runs and prints.

use crate::exit;
use anyhow::{bail, Context, Result};
use pulse_api::sections::TrackerSection;
use pulse_api::Tracker;
use pulse_spec::Plan;
use pulse_track::mlflow::{self, LiveConfig, MlflowTracker, SyncOutcome};
use pulse_track::{RunRecord, StoreReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The trackers `pulse run` adds beside the local store (which always comes first, so every
/// event is in the store before a remote tracker hears of it).
pub fn remote_trackers(plan: &Plan, root: &Path) -> Result<Vec<Box<dyn Tracker>>> {
    let Some(section) = plan.trials.first().map(|t| &t.resolved.tracker) else {
        return Ok(Vec::new());
    };
    let Some(uri) = section.mlflow_uri() else {
        return Ok(Vec::new());
    };
    let mut cfg = LiveConfig::new(&uri, root);
    cfg.flush_timeout = Duration::from_secs_f64(
        section
            .flush_timeout
            .unwrap_or(TrackerSection::DEFAULT_FLUSH_TIMEOUT),
    );
    let tracker = MlflowTracker::start(cfg).context("starting the MLflow tracker")?;
    tracing::info!(
        "mlflow: logging to {uri}, experiment '{}' (the local store stays the source of truth)",
        plan.experiment.name
    );
    Ok(vec![Box::new(tracker)])
}

/// Finds the runs named by id prefix, or every run (of `experiment`) for `--all`.
fn select(
    root: &Path,
    ids: &[String],
    all: bool,
    experiment: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<PathBuf>> {
    let (runs, problems) = StoreReader::new(root)
        .runs(experiment)
        .with_context(|| format!("reading the run store at {}", root.display()))?;
    for p in problems {
        tracing::warn!("skipping an unreadable run: {p}");
    }
    if all {
        // Without --to, only runs that were logged to a server have somewhere to go.
        return Ok(runs
            .into_iter()
            .filter(|r| to.is_some() || mlflow::SyncFile::exists(&r.dir))
            .map(|r| r.dir)
            .collect());
    }
    if ids.is_empty() {
        bail!("name the runs to deliver (ids from `pulse runs`), or pass --all");
    }
    let mut out = Vec::new();
    for id in ids {
        let hits: Vec<&RunRecord> = runs
            .iter()
            .filter(|r| r.info.run_id.starts_with(id.as_str()))
            .collect();
        match hits.as_slice() {
            [one] => out.push(one.dir.clone()),
            [] => bail!("no run id starts with '{id}' in {}", root.display()),
            many => bail!(
                "run id prefix '{id}' is ambiguous: {}",
                many.iter()
                    .map(|r| r.info.run_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(out)
}

/// `pulse sync`.
pub fn sync(
    root: &Path,
    ids: &[String],
    all: bool,
    experiment: Option<&str>,
    to: Option<&str>,
    dry_run: bool,
) -> Result<u8> {
    let dirs = select(root, ids, all, experiment, to)?;
    if dirs.is_empty() {
        println!(
            "nothing to deliver: no run in {} was logged to an MLflow server (pass --to URI to \
             deliver local runs)",
            root.display()
        );
        return Ok(exit::OK);
    }
    let report = mlflow::sync_runs(&dirs, to, dry_run);
    let (mut delivered, mut already, mut left) = (0, 0, 0);
    for r in &report {
        let what = match &r.outcome {
            SyncOutcome::AlreadySynced => {
                already += 1;
                continue;
            }
            SyncOutcome::Delivered(s) => {
                delivered += 1;
                format!(
                    "delivered ({} metric point(s), {} param(s), {} artifact(s){})",
                    s.metrics,
                    s.params,
                    s.artifacts,
                    if s.skipped_artifacts > 0 {
                        format!(", {} skipped", s.skipped_artifacts)
                    } else {
                        String::new()
                    }
                )
            }
            SyncOutcome::StillRunning(s) => {
                left += 1;
                format!(
                    "{} metric point(s) delivered; the run has not ended (still running, or its \
                     process died)",
                    s.metrics
                )
            }
            SyncOutcome::Pending(what) => {
                left += 1;
                format!("would send {what}")
            }
            SyncOutcome::Busy(pid) => {
                left += 1;
                format!("skipped: process {pid} is delivering it")
            }
            SyncOutcome::Failed(e) => {
                left += 1;
                format!("NOT delivered: {e}")
            }
        };
        println!("{} {:<40} → {}: {what}", r.run_id, r.label, r.uri);
    }
    let verb = if dry_run {
        "to deliver"
    } else {
        "left unsynced"
    };
    println!("{delivered} run(s) delivered, {already} already in sync, {left} {verb}.");
    Ok(if left > 0 && !dry_run {
        exit::RUN_FAILED
    } else {
        exit::OK
    })
}

/// The runs of `pulse compare --from mlflow`.
pub fn mlflow_runs(uri: Option<&str>, experiment: Option<&str>) -> Result<Vec<RunRecord>> {
    let Some(uri) = uri.map(str::trim).filter(|u| !u.is_empty()) else {
        bail!("--from mlflow needs a server: pass --uri URL or set MLFLOW_TRACKING_URI");
    };
    let Some(experiment) = experiment else {
        bail!("--from mlflow needs --experiment NAME");
    };
    match mlflow::fetch_runs(uri, experiment).context("reading runs from MLflow")? {
        Some(runs) if !runs.is_empty() => Ok(runs),
        Some(_) => bail!("experiment '{experiment}' on {uri} has no pulse runs"),
        None => bail!("{uri} has no experiment named '{experiment}'"),
    }
}
