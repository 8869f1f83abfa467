//! `pulse-runtime` runs a [`pulse_spec::Plan`]: for every trial, every data set is loaded and
//! prepared (memoised within the process), every model is built from the registry, trained by the
//! core's loop ([`train::fit`]), evaluated on validation and test data, and recorded. A failing
//! run is recorded FAILED with its error and the sweep goes on; the summary says what failed.

pub mod progress;
pub mod record;
pub mod train;

use pulse_api::sections::Mask;
use pulse_api::{ConfigError, LoadContext, Phase, RunInfo, RunStatus, SplitData, Tracker};
use pulse_registry::Registry;
use pulse_spec::{Plan, Trial};
use record::Recorders;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Why a run (or the whole plan) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    #[error("no trial id starts with '{0}'; trials: {1}")]
    NoSuchTrial(String, String),
    #[error("{0}")]
    Plugin(#[from] pulse_api::PluginError),
    #[error("data preparation failed: {0}")]
    Data(#[from] pulse_data::DataError),
    #[error("evaluation failed: {0}")]
    Eval(#[from] pulse_eval::EvalError),
    #[error("invalid component: {}", join_config_errors(.0))]
    Config(Vec<ConfigError>),
    #[error(
        "training diverged: loss {loss} at epoch {epoch}; lower learning_rate or check the data"
    )]
    Diverged { epoch: usize, loss: f64 },
    #[error("{0}")]
    Invalid(String),
    #[error("panicked: {0}")]
    Panic(String),
    #[error("interrupted")]
    Interrupted,
}

fn join_config_errors(errs: &[ConfigError]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Root of the local run store.
    pub store_root: PathBuf,
    /// `$PULSE_HOME`: downloads and caches.
    pub cache_dir: PathBuf,
    /// Run only trials whose id starts with this.
    pub trial: Option<String>,
    pub show_progress: bool,
    /// Set (e.g. by Ctrl-C) to stop: the current run ends KILLED after its epoch (its best
    /// epoch so far still tested and stored), the rest are skipped.
    pub cancel: Arc<AtomicBool>,
}

/// One (trial, data set, model) run's outcome.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: String,
    pub trial_id: String,
    pub trial_label: String,
    pub dataset: String,
    pub model: String,
    pub seed: u64,
    pub status: RunStatus,
    pub error: Option<String>,
    /// Test metrics keyed like `ndcg@10`.
    pub test: BTreeMap<String, f64>,
    pub best_epoch: Option<usize>,
    pub epochs: usize,
    pub seconds: f64,
    pub epoch_seconds: Option<f64>,
}

/// What `run_plan` did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub experiment: String,
    pub sweep_id: String,
    pub store_root: PathBuf,
    pub rows: Vec<RunRow>,
}

impl RunSummary {
    pub fn failed(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.status != RunStatus::Finished)
            .count()
    }
}

/// Runs every selected trial of `plan`, recording into `trackers` (the local store first).
pub fn run_plan(
    plan: &Plan,
    registry: &Registry,
    trackers: &mut [Box<dyn Tracker>],
    opts: &RunOptions,
) -> Result<RunSummary, RuntimeError> {
    let trials: Vec<&Trial> = match &opts.trial {
        Some(prefix) => {
            let t: Vec<&Trial> = plan
                .trials
                .iter()
                .filter(|t| t.id.starts_with(prefix.as_str()))
                .collect();
            if t.is_empty() {
                let known = plan
                    .trials
                    .iter()
                    .map(|t| t.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(RuntimeError::NoSuchTrial(prefix.clone(), known));
            }
            t
        }
        None => plan.trials.iter().collect(),
    };
    let sweep_id = record::new_id(&plan.experiment.name);
    let mut cache: HashMap<String, Result<Arc<SplitData>, String>> = HashMap::new();
    let mut rows = Vec::new();
    let total: usize = trials
        .iter()
        .map(|t| t.resolved.experiment.datasets.len() * t.resolved.experiment.models.len())
        .sum();
    for trial in trials {
        let r = &trial.resolved;
        let reads_rationales = trial_reads_rationales(registry, trial);
        for ds_name in &r.experiment.datasets {
            if opts.cancel.load(Ordering::Relaxed) {
                break;
            }
            let data = load_data(plan, registry, trial, ds_name, opts, &mut cache);
            if let Ok(d) = &data {
                if reads_rationales {
                    run_text_stages(plan, registry, trial, ds_name, d, opts);
                }
            }
            for model_name in &r.experiment.models {
                if opts.cancel.load(Ordering::Relaxed) {
                    break;
                }
                tracing::info!(
                    "[{}/{total}] trial {} ({}) · {ds_name} · {model_name}",
                    rows.len() + 1,
                    trial.id,
                    trial.label
                );
                let row = run_one(
                    plan, registry, trackers, opts, &sweep_id, trial, ds_name, model_name, &data,
                );
                match &row.error {
                    Some(e) => tracing::error!("{model_name} on {ds_name} failed: {e}"),
                    None => tracing::info!(
                        "{model_name} on {ds_name}: {} ({:.1} s)",
                        fmt_metrics(&row.test),
                        row.seconds
                    ),
                }
                rows.push(row);
            }
        }
    }
    Ok(RunSummary {
        experiment: plan.experiment.name.clone(),
        sweep_id,
        store_root: opts.store_root.clone(),
        rows,
    })
}

/// Computes a model's side inputs (item / rationale vectors) through the cached stages.
type SideFn<'a> =
    dyn Fn(&[pulse_api::InputRequest]) -> Result<pulse_stages::side::SideReport, RuntimeError> + 'a;

fn stage_options(opts: &RunOptions) -> pulse_stages::StageOptions {
    pulse_stages::StageOptions {
        root: pulse_stages::stages_root(&opts.cache_dir),
        show_progress: opts.show_progress,
        max_chunks: None,
        cancel: Some(opts.cancel.clone()),
    }
}

/// Whether a model of the trial reads rationale rows, directly or through the thought space.
/// A spec that carries `[rationales]` for its `pulse` arm should not make a `sasrec`-only run
/// (`--set experiment.models=...`) pay for SLM generation. A model whose section does not
/// build counts as a reader: its own run reports the error, and guessing "no" would skip a
/// stage the user asked for.
fn trial_reads_rationales(registry: &Registry, trial: &Trial) -> bool {
    let r = &trial.resolved;
    r.experiment.models.iter().any(|m| {
        let section = r.models.get(m).cloned().unwrap_or_default();
        match registry.build_recommender(&section) {
            Ok(model) => model.inputs().iter().any(|q| {
                matches!(q, pulse_api::InputRequest::RationaleVectors(_))
                    || q.source() == pulse_api::THOUGHT_SPACE
            }),
            Err(_) => true,
        }
    })
}

/// `[rationales]` (when the trial has it) before the models: cached, so only the first trial
/// that needs a row generates it. A failure is logged and the models still run; those that
/// need the rows report their absence themselves.
fn run_text_stages(
    plan: &Plan,
    registry: &Registry,
    trial: &Trial,
    ds_name: &str,
    data: &SplitData,
    opts: &RunOptions,
) {
    let stage_opts = stage_options(opts);
    match pulse_stages::spec::run_for_trial(
        registry,
        trial,
        &plan.base_dir,
        &opts.cache_dir,
        ds_name,
        data,
        &stage_opts,
    ) {
        Ok(Some(r)) => tracing::info!(
            "rationales for {ds_name}: {} rows ({} cached, {} generated) in {}",
            r.cached + r.generated,
            r.cached,
            r.generated,
            r.dir.display()
        ),
        Ok(None) => {}
        Err(e) => tracing::error!("rationale stage on {ds_name} failed: {e}"),
    }
}

fn fmt_metrics(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads and prepares a data set once per (section, split, seed) within the process.
fn load_data(
    plan: &Plan,
    registry: &Registry,
    trial: &Trial,
    name: &str,
    opts: &RunOptions,
    cache: &mut HashMap<String, Result<Arc<SplitData>, String>>,
) -> Result<Arc<SplitData>, String> {
    let r = &trial.resolved;
    let section = r.datasets.get(name).cloned().unwrap_or_default();
    let key = serde_json::json!([section, r.split, trial.seed]).to_string();
    if let Some(hit) = cache.get(&key) {
        return hit.clone();
    }
    let started = Instant::now();
    let result = (|| -> Result<Arc<SplitData>, RuntimeError> {
        let ds = registry.build_dataset(&section).map_err(RuntimeError::Config)?;
        tracing::info!("loading {name}: {}", ds.describe());
        let ctx = LoadContext {
            cache_dir: opts.cache_dir.clone(),
            base_dir: plan.base_dir.clone(),
            seed: trial.seed,
        };
        let raw = ds.load(&ctx)?;
        let mut data = pulse_data::prepare(&raw, &r.split)?;
        data.dataset = name.to_string();
        let s = &data.stats;
        tracing::info!(
            "{name}: {} users, {} items, {} interactions after filtering ({} raw); train/valid/test {}/{}/{} ({:.1} s)",
            s.users, s.items, s.interactions, s.raw_interactions, s.train, s.valid, s.test,
            started.elapsed().as_secs_f64()
        );
        Ok(Arc::new(data))
    })()
    .map_err(|e| e.to_string());
    cache.insert(key, result.clone());
    result
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    plan: &Plan,
    registry: &Registry,
    trackers: &mut [Box<dyn Tracker>],
    opts: &RunOptions,
    sweep_id: &str,
    trial: &Trial,
    ds_name: &str,
    model_name: &str,
    data: &Result<Arc<SplitData>, String>,
) -> RunRow {
    let r = &trial.resolved;
    let section = r.models.get(model_name).cloned().unwrap_or_default();
    let model_type = section
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("?")
        .to_string();
    let run_id = record::new_id(&format!("{}/{ds_name}/{model_name}", trial.id));
    let info = RunInfo {
        run_id: run_id.clone(),
        experiment: plan.experiment.name.clone(),
        sweep_id: sweep_id.to_string(),
        trial_id: trial.id.clone(),
        trial_label: trial.label.clone(),
        ablation: trial.ablation.clone(),
        model: model_name.to_string(),
        model_type,
        dataset: ds_name.to_string(),
        seed: trial.seed,
        resolved_spec: r.value.clone(),
        params: pulse_spec::flatten(&r.value),
        environment: record::environment(&plan.base_dir, trial.seed),
    };
    let mut rec = Recorders::start(trackers, &info);
    let started = Instant::now();
    let mut row = RunRow {
        run_id,
        trial_id: trial.id.clone(),
        trial_label: trial.label.clone(),
        dataset: ds_name.to_string(),
        model: model_name.to_string(),
        seed: trial.seed,
        status: RunStatus::Finished,
        error: None,
        test: BTreeMap::new(),
        best_epoch: None,
        epochs: 0,
        seconds: 0.0,
        epoch_seconds: None,
    };
    // A panic inside a plugin must not take the sweep down: record it like any failure.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let data = data
            .as_ref()
            .map_err(|e| RuntimeError::Invalid(e.clone()))?;
        let side = |requests: &[pulse_api::InputRequest]| {
            let stage_opts = stage_options(opts);
            let cx = pulse_stages::side::SideContext {
                registry,
                trial,
                base_dir: &plan.base_dir,
                cache_dir: &opts.cache_dir,
                ds_name,
                data,
                opts: &stage_opts,
            };
            pulse_stages::side::side_inputs(&cx, requests)
                .map_err(|e| RuntimeError::Invalid(format!("side inputs: {e}")))
        };
        fit_and_evaluate(
            registry, r, &section, data, trial.seed, model_name, opts, &side, &mut rec, &mut row,
        )
    }))
    .unwrap_or_else(|p| Err(RuntimeError::Panic(panic_message(&p))));
    row.seconds = started.elapsed().as_secs_f64();
    rec.metric("run_seconds", row.seconds, 0);
    match outcome {
        Ok(()) => rec.finish(RunStatus::Finished, None),
        Err(RuntimeError::Interrupted) => {
            row.status = RunStatus::Killed;
            row.error = Some(if row.test.is_empty() {
                "interrupted by the user".into()
            } else {
                "interrupted by the user; the test metrics are the best epoch's before the stop"
                    .into()
            });
            rec.finish(RunStatus::Killed, row.error.as_deref());
        }
        Err(e) => {
            let msg = e.to_string();
            row.status = RunStatus::Failed;
            row.error = Some(msg.clone());
            rec.finish(RunStatus::Failed, Some(&msg));
        }
    }
    row
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

#[allow(clippy::too_many_arguments)]
fn fit_and_evaluate(
    registry: &Registry,
    r: &pulse_spec::ResolvedSpec,
    section: &serde_json::Value,
    data: &SplitData,
    seed: u64,
    model_name: &str,
    opts: &RunOptions,
    side: &SideFn<'_>,
    rec: &mut Recorders,
    row: &mut RunRow,
) -> Result<(), RuntimeError> {
    let mut model = registry
        .build_recommender(section)
        .map_err(RuntimeError::Config)?;
    let requests = model.inputs();
    if !requests.is_empty() {
        let t = Instant::now();
        let report = side(&requests)?;
        model.attach(&report.inputs)?;
        rec.metrics(&report.metrics, 0);
        rec.metric("side_inputs_seconds", t.elapsed().as_secs_f64(), 0);
    }
    let mask: Mask = r.eval.mask;
    let settings = train::FitSettings {
        eval: &r.eval,
        mask,
        seed,
        label: model_name.to_string(),
        show_progress: opts.show_progress,
        cancel: &opts.cancel,
        budget: r
            .experiment
            .train_budget_minutes
            .map(|m| std::time::Duration::from_secs_f64(m * 60.0)),
    };
    let fit = train::fit(model.as_mut(), data, &settings, rec)?;
    row.best_epoch = fit.best_epoch;
    row.epochs = fit.epochs;
    row.epoch_seconds = fit.epoch_seconds;
    let mut summary = vec![("fit_seconds".to_string(), fit.seconds)];
    if let Some(e) = fit.best_epoch {
        summary.push(("best_epoch".into(), e as f64));
    }
    if let Some(s) = fit.epoch_seconds {
        summary.push(("epoch_seconds".into(), s));
    }
    summary.push(("epochs".into(), fit.epochs as f64));
    if fit.budget_stop {
        summary.push(("stopped_by_budget".into(), 1.0));
    }
    if fit.interrupted {
        summary.push(("stopped_by_interrupt".into(), 1.0));
    }
    rec.metrics(&summary, 0);

    let has_valid = data.valid.iter().any(|v| !v.is_empty());
    if has_valid {
        let v = pulse_eval::evaluate(&*model, data, Phase::Valid, &r.eval, mask, seed)?;
        let batch: Vec<(String, f64)> = v
            .metrics
            .iter()
            .map(|(k, x)| (format!("best_valid/{k}"), *x))
            .collect();
        rec.metrics(&batch, 0);
    }
    let t = Instant::now();
    let test = pulse_eval::evaluate(&*model, data, Phase::Test, &r.eval, mask, seed)?;
    let batch: Vec<(String, f64)> = test
        .metrics
        .iter()
        .map(|(k, x)| (format!("test/{k}"), *x))
        .collect();
    rec.metrics(&batch, 0);
    rec.metric("eval_seconds", t.elapsed().as_secs_f64(), 0);
    row.test = test.metrics.clone();

    // Per-user test metrics, for paired significance tests across models.
    let per_user = serde_json::json!({
        "users": test.users.iter().map(|&u| data.user_ids[u as usize].clone()).collect::<Vec<_>>(),
        "metrics": test.per_user,
    });
    rec.artifact("per_user_test.json", per_user.to_string().as_bytes());
    let weights = model.snapshot()?;
    if !weights.is_empty() {
        match safetensors_bytes(&weights) {
            Ok(bytes) => rec.artifact("best.safetensors", &bytes),
            Err(e) => tracing::warn!("could not serialise weights of {model_name}: {e}"),
        }
    }
    if fit.interrupted {
        // Tested and stored, but not a finished run: comparisons must not average it in.
        return Err(RuntimeError::Interrupted);
    }
    Ok(())
}

/// Serialises named tensors in the safetensors format.
fn safetensors_bytes(weights: &[(String, candle_core::Tensor)]) -> Result<Vec<u8>, RuntimeError> {
    let map: HashMap<String, candle_core::Tensor> = weights.iter().cloned().collect();
    let dir = std::env::temp_dir().join(format!("pulse-st-{}", record::new_id("st")));
    std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    let path = dir.join("w.safetensors");
    let res = candle_core::safetensors::save(&map, &path)
        .map_err(|e| RuntimeError::Invalid(e.to_string()))
        .and_then(|_| std::fs::read(&path).map_err(|e| RuntimeError::Invalid(e.to_string())));
    let _ = std::fs::remove_dir_all(&dir);
    res
}
