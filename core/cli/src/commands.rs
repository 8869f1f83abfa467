//! The subcommands' implementations: each turns parsed arguments into library calls and output.

use crate::aggregate;
use crate::cli::{Cli, Command, PlanFormat, Source, SpecArgs, StatsArgs, TableFormat};
use crate::exit;
use crate::plugin_cmd;
use crate::table::{self, Row};
use anyhow::{bail, Context, Result};
use pulse_api::{Family, RunStatus, Tracker};
use pulse_registry::{default_registry, Registry};
use pulse_spec::{Plan, SpecOptions};
use pulse_track::{LocalStore, RunRecord, StoreReader};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub fn dispatch(cli: &Cli) -> Result<u8> {
    let mut registry = default_registry();
    // Commands that name plugins also see the PULSE_PLUGIN_PATH libraries (spec commands load
    // those with the spec's own, in `load_plan`).
    if matches!(cli.command, Command::List { .. } | Command::Example { .. }) {
        if let Err(d) = plugin_cmd::load::for_env(&mut registry) {
            report(&d);
            return Ok(exit::INVALID);
        }
    }
    match &cli.command {
        Command::Run {
            spec,
            trial,
            no_progress,
        } => run(
            cli,
            &mut registry,
            spec,
            trial.clone(),
            !*no_progress && !cli.quiet,
        ),
        Command::Validate { spec } => {
            let Some(plan) = load_plan(&mut registry, spec)? else {
                return Ok(exit::INVALID);
            };
            if crate::rationales::validate(&mut registry, spec, &plan)? {
                return Ok(exit::INVALID);
            }
            println!(
                "{}: ok — {} trial(s), {} data set(s) × {} model(s) each",
                spec.spec.display(),
                plan.trials.len(),
                plan.trials
                    .first()
                    .map_or(0, |t| t.resolved.experiment.datasets.len()),
                plan.trials
                    .first()
                    .map_or(0, |t| t.resolved.experiment.models.len()),
            );
            Ok(exit::OK)
        }
        Command::Plan { spec, format } => {
            let Some(plan) = load_plan(&mut registry, spec)? else {
                return Ok(exit::INVALID);
            };
            print_plan(&plan, *format);
            Ok(exit::OK)
        }
        Command::List { family } => list(&registry, family.as_deref()),
        Command::Example { family, type_name } => {
            let fam = parse_family(family)?;
            match registry.example(fam, type_name) {
                Some(text) => {
                    print!("{text}");
                    Ok(exit::OK)
                }
                None => {
                    let known = registry
                        .infos(Some(fam))
                        .iter()
                        .map(|i| i.type_name.clone())
                        .collect::<Vec<_>>()
                        .join(", ");
                    eprintln!("error: no {fam} plugin '{type_name}'; known: {known}");
                    Ok(exit::INVALID)
                }
            }
        }
        Command::Runs { experiment } => runs(&store_root(cli, None), experiment.as_deref()),
        Command::Compare {
            experiment,
            format,
            all,
            from: Source::Local,
            stats,
            ..
        } => compare(
            &store_root(cli, None),
            experiment.as_deref(),
            *format,
            *all,
            stats,
        ),
        Command::Compare {
            experiment,
            format,
            all,
            uri,
            stats,
            ..
        } => {
            let runs = crate::sync::mlflow_runs(uri.as_deref(), experiment.as_deref())?;
            compare_table(&runs, *format, *all, stats)
        }
        Command::Plugin { action } => plugin_cmd::run(action, &mut registry),
        Command::Assets { action } => crate::assets_cmd::run(action),
        Command::Rationales { action } => crate::rationales::run(action, &mut registry, cli.quiet),
        Command::Sync {
            runs,
            all,
            experiment,
            to,
            dry_run,
        } => crate::sync::sync(
            &store_root(cli, None),
            runs,
            *all,
            experiment.as_deref(),
            to.as_deref(),
            *dry_run,
        ),
    }
}

fn parse_family(s: &str) -> Result<Family> {
    Family::parse(s).with_context(|| {
        format!(
            "unknown plugin family '{s}'; known: {}",
            Family::ALL.map(|f| f.name()).join(", ")
        )
    })
}

/// Loads a spec and the plugin libraries it needs, and validates it; prints diagnostics and
/// returns `None` when it is invalid.
fn load_plan(registry: &mut Registry, args: &SpecArgs) -> Result<Option<Plan>> {
    let opts = SpecOptions {
        sets: args.sets.clone(),
        use_env: !args.no_env,
    };
    let spec = match pulse_spec::load(&args.spec, &opts) {
        Ok(s) => s,
        Err(d) => {
            report(&d);
            return Ok(None);
        }
    };
    // Before validation, so that the types the libraries add resolve.
    if let Err(d) = plugin_cmd::load::for_spec(registry, &spec) {
        report(&d);
        return Ok(None);
    }
    match pulse_spec::plan(&spec, &*registry) {
        Ok(p) => Ok(Some(p)),
        Err(d) => {
            report(&d);
            Ok(None)
        }
    }
}

/// Prints every diagnostic, then how many there were.
fn report(d: &pulse_spec::Diagnostics) {
    let text = d.to_string();
    eprint!("{text}");
    if !text.ends_with('\n') {
        eprintln!();
    }
    eprintln!("{} problem(s) found; nothing was run.", d.0.len());
}

fn print_plan(plan: &Plan, format: PlanFormat) {
    match format {
        PlanFormat::Json => {
            let arr: Vec<serde_json::Value> = plan
                .trials
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "id": t.id, "label": t.label, "ablation": t.ablation, "seed": t.seed,
                        "changes": t.changes.iter().map(|(k, v)| serde_json::json!({"key": k, "value": v})).collect::<Vec<_>>(),
                        "datasets": t.resolved.experiment.datasets, "models": t.resolved.experiment.models,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&arr).unwrap_or_default());
        }
        PlanFormat::Text => {
            println!(
                "experiment '{}' ({}): {} trial(s)",
                plan.experiment.name,
                plan.spec_path.display(),
                plan.trials.len()
            );
            for t in &plan.trials {
                let r = &t.resolved.experiment;
                println!(
                    "  {}  {:<40} seed {:<6} data {:?} models {:?}",
                    t.id, t.label, t.seed, r.datasets, r.models
                );
            }
        }
    }
}

fn list(registry: &Registry, family: Option<&str>) -> Result<u8> {
    let fam = family.map(parse_family).transpose()?;
    let mut current = None;
    for info in registry.infos(fam) {
        if current != Some(info.family) {
            println!("{}:", info.family);
            current = Some(info.family);
        }
        println!(
            "  {:<16} {}  [{}]",
            info.type_name, info.summary, info.origin
        );
    }
    println!("\n`pulse example FAMILY TYPE` prints a section with every default.");
    Ok(exit::OK)
}

/// `--store` / `PULSE_STORE`, else the spec's `[tracker] store` (relative to the spec), else
/// `./pulse-runs`.
fn store_root(cli: &Cli, plan: Option<&Plan>) -> PathBuf {
    if let Some(s) = &cli.store {
        return s.clone();
    }
    if let Some(p) = plan {
        if let Some(s) = p
            .trials
            .first()
            .and_then(|t| t.resolved.tracker.store.clone())
        {
            return p.base_dir.join(s);
        }
    }
    PathBuf::from("pulse-runs")
}

fn cache_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("PULSE_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("pulse")
}

fn run(
    cli: &Cli,
    registry: &mut Registry,
    spec: &SpecArgs,
    trial: Option<String>,
    progress: bool,
) -> Result<u8> {
    let Some(plan) = load_plan(registry, spec)? else {
        return Ok(exit::INVALID);
    };
    let root = store_root(cli, Some(&plan));
    std::fs::create_dir_all(&root)
        .with_context(|| format!("cannot create the run store at {}", root.display()))?;
    let mut trackers: Vec<Box<dyn Tracker>> = vec![Box::new(LocalStore::new(&root))];
    trackers.extend(crate::sync::remote_trackers(&plan, &root)?);
    // First Ctrl-C (or SIGTERM/SIGHUP, as schedulers send): finish the current epoch, test the
    // best epoch so far, record the run KILLED, skip the rest. A second one: leave at once.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let handler = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted: stopping after this epoch, then testing the best epoch so far \
             (Ctrl-C again to quit now)"
        );
    });
    if let Err(e) = handler {
        tracing::warn!("Ctrl-C will not be handled gracefully: {e}");
    }
    let opts = pulse_runtime::RunOptions {
        store_root: root.clone(),
        cache_dir: cache_dir(),
        trial,
        show_progress: progress,
        cancel: cancel.clone(),
    };
    let summary = match pulse_runtime::run_plan(&plan, registry, &mut trackers, &opts) {
        Ok(s) => s,
        Err(pulse_runtime::RuntimeError::NoSuchTrial(id, known)) => {
            eprintln!("error: no trial id starts with '{id}'; trials: {known}");
            return Ok(exit::INVALID);
        }
        Err(e) => return Err(e).context("running the experiment"),
    };
    let rows: Vec<Row> = summary
        .rows
        .iter()
        .map(|r| Row {
            run_id: r.run_id.clone(),
            trial_id: r.trial_id.clone(),
            trial: r.trial_label.clone(),
            dataset: r.dataset.clone(),
            model: r.model.clone(),
            seed: r.seed,
            status: status_name(r.status),
            error: r.error.clone(),
            metrics: r.test.clone(),
            best_epoch: r.best_epoch.map(|e| e as f64),
            seconds: Some(r.seconds),
            config: BTreeMap::new(),
        })
        .collect();
    println!("\nTest results ({}):\n", plan.experiment.name);
    print!("{}", table::render(&rows, TableFormat::Md));
    let dir = abs(&root.join(&summary.experiment));
    println!(
        "\n{} run(s) stored in {} (sweep {}). Compare them with: pulse compare --experiment {}",
        rows.len(),
        dir.display(),
        summary.sweep_id,
        summary.experiment
    );
    if cancel.load(Ordering::SeqCst) {
        eprintln!(
            "interrupted: the current run is recorded KILLED (with the test metrics of its best \
             epoch, if it finished one); later runs were not started."
        );
        return Ok(exit::INTERRUPTED);
    }
    let failed = summary.failed();
    if failed > 0 {
        eprintln!(
            "{failed} of {} run(s) failed; see the status column and the run store.",
            rows.len()
        );
        return Ok(exit::RUN_FAILED);
    }
    Ok(exit::OK)
}

fn abs(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

fn status_name(s: RunStatus) -> String {
    match s {
        RunStatus::Running => "RUNNING",
        RunStatus::Finished => "FINISHED",
        RunStatus::Failed => "FAILED",
        RunStatus::Killed => "KILLED",
    }
    .to_string()
}

fn read_runs(root: &Path, experiment: Option<&str>) -> Result<Vec<RunRecord>> {
    let (runs, problems) = StoreReader::new(root)
        .runs(experiment)
        .with_context(|| format!("reading the run store at {}", root.display()))?;
    for p in problems {
        tracing::warn!("skipping an unreadable run: {p}");
    }
    Ok(runs)
}

fn runs(root: &Path, experiment: Option<&str>) -> Result<u8> {
    let runs = read_runs(root, experiment)?;
    if runs.is_empty() {
        println!("no runs in {}", root.display());
        return Ok(exit::OK);
    }
    println!(
        "{:<16} {:<20} {:<12} {:<14} {:<12} {:<9} {:>8}",
        "run", "experiment", "trial", "dataset", "model", "status", "seconds"
    );
    for r in runs {
        let secs = r
            .status
            .end_ms
            .map(|e| format!("{:.1}", (e - r.status.start_ms) as f64 / 1000.0))
            .unwrap_or_else(|| "—".into());
        println!(
            "{:<16} {:<20} {:<12} {:<14} {:<12} {:<9} {:>8}",
            r.info.run_id,
            r.info.experiment,
            r.info.trial_id,
            r.info.dataset,
            r.info.model,
            status_name(r.status.status),
            secs
        );
    }
    Ok(exit::OK)
}

fn compare(
    root: &Path,
    experiment: Option<&str>,
    format: TableFormat,
    all: bool,
    stats: &StatsArgs,
) -> Result<u8> {
    let name = match experiment {
        Some(e) => e.to_string(),
        None => {
            // The experiment of the most recent run.
            let runs = read_runs(root, None)?;
            match runs.last() {
                Some(r) => r.info.experiment.clone(),
                None => bail!("no runs in {}; run an experiment first", root.display()),
            }
        }
    };
    let runs = read_runs(root, Some(&name))?;
    if runs.is_empty() {
        let known = StoreReader::new(root)
            .experiments()
            .unwrap_or_default()
            .join(", ");
        bail!(
            "no runs of experiment '{name}' in {}; experiments there: {known}",
            root.display()
        );
    }
    compare_table(&runs, format, all, stats)
}

/// Prints the comparison table of `runs` (from the store or a tracking server).
fn compare_table(
    runs: &[RunRecord],
    format: TableFormat,
    all: bool,
    stats: &StatsArgs,
) -> Result<u8> {
    // Latest run per (trial, data set, model) unless --all.
    let mut picked: BTreeMap<(String, String, String), &RunRecord> = BTreeMap::new();
    let mut rows_all = Vec::new();
    for r in runs {
        if all {
            rows_all.push(r);
        } else {
            picked.insert(
                (
                    r.info.trial_id.clone(),
                    r.info.dataset.clone(),
                    r.info.model.clone(),
                ),
                r,
            );
        }
    }
    let chosen: Vec<&RunRecord> = if all {
        rows_all
    } else {
        let mut v: Vec<&RunRecord> = picked.into_values().collect();
        v.sort_by_key(|r| (r.status.start_ms, r.info.run_id.clone()));
        v
    };
    let rows: Vec<Row> = chosen
        .into_iter()
        .map(|r| {
            let latest = r.latest();
            Row {
                run_id: r.info.run_id.clone(),
                trial_id: r.info.trial_id.clone(),
                trial: r.info.trial_label.clone(),
                dataset: r.info.dataset.clone(),
                model: r.info.model.clone(),
                seed: r.info.seed,
                status: status_name(r.status.status),
                error: r.status.error.clone(),
                metrics: r.test_metrics(),
                best_epoch: latest.get("best_epoch").copied(),
                seconds: latest.get("run_seconds").copied(),
                config: aggregate::config_of(&r.info),
            }
        })
        .collect();
    if !all
        && !stats.per_seed
        && (stats.vs.is_some() || stats.ci || aggregate::has_seed_groups(&rows))
    {
        let dirs: BTreeMap<&str, &Path> = runs
            .iter()
            .map(|r| (r.info.run_id.as_str(), r.dir.as_path()))
            .collect();
        let per_user = |row: &Row| {
            dirs.get(row.run_id.as_str())
                .and_then(|d| aggregate::read_per_user(d, &stats.metric))
        };
        let want = aggregate::Columns {
            vs: stats.vs.as_deref(),
            metric: &stats.metric,
            ci: stats.ci,
        };
        let out =
            aggregate::render(&rows, &want, &per_user, format).map_err(|e| anyhow::anyhow!(e))?;
        print!("{out}");
        return Ok(exit::OK);
    }
    print!("{}", table::render(&rows, format));
    if format == TableFormat::Json {
        println!();
    }
    Ok(exit::OK)
}
