//! `pulse rationales generate|show` and the validate-time check of the prompt `[rationales]`
//! names against the data sets' item fields (a template reading a field the data set lacks is
//! a diagnostic at the template's line, in the spec or in the template file).

use crate::cli::SpecArgs;
use crate::exit;
use anyhow::{Context, Result};
use clap::Subcommand;
use pulse_registry::Registry;
use pulse_spec::{Diagnostic, Diagnostics, Location, Plan, Spec, SpecOptions};
use pulse_stages::{load_rationales, ParseStatus, StageOptions};
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum RationalesAction {
    /// Run the `[rationales]` stage of a spec (cached: only missing rows are generated).
    Generate {
        #[command(flatten)]
        spec: SpecArgs,
        /// Only the trial whose id starts with this (default: every trial with distinct inputs).
        #[arg(long)]
        trial: Option<String>,
        /// Hide the progress bar.
        #[arg(long)]
        no_progress: bool,
        /// Stop after writing this many chunks (rerun to resume).
        #[arg(long)]
        max_chunks: Option<usize>,
    },
    /// Print sample rationales and the parse success rate of a spec's stage or a stage directory.
    Show {
        /// A spec (TOML) or a stage directory under $PULSE_HOME/cache/stages/rationales/.
        target: PathBuf,
        /// Examples printed.
        #[arg(long, default_value_t = 5)]
        sample: usize,
        /// Spec overrides, as for `pulse run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

pub fn run(action: &RationalesAction, registry: &mut Registry, quiet: bool) -> Result<u8> {
    match action {
        RationalesAction::Generate {
            spec,
            trial,
            no_progress,
            max_chunks,
        } => {
            let Some((spec_file, plan)) = load(registry, &spec.spec, &spec.sets, !spec.no_env)?
            else {
                return Ok(exit::INVALID);
            };
            if report_field_issues(registry, &spec_file, &plan)? {
                return Ok(exit::INVALID);
            }
            let cache = pulse_assets::cache_dir();
            let opts = StageOptions {
                root: pulse_stages::stages_root(&cache),
                show_progress: !no_progress && !quiet,
                max_chunks: *max_chunks,
                cancel: None,
            };
            let mut seen = std::collections::HashSet::new();
            for t in &plan.trials {
                if trial
                    .as_ref()
                    .is_some_and(|p| !t.id.starts_with(p.as_str()))
                {
                    continue;
                }
                if pulse_stages::spec::rationale_section(t)?.is_none() {
                    anyhow::bail!("{} has no [rationales] section", spec.spec.display());
                }
                for ds in &t.resolved.experiment.datasets {
                    let data =
                        pulse_stages::spec::prepare_data(registry, t, &plan.base_dir, &cache, ds)?;
                    let r = pulse_stages::spec::run_for_trial(
                        registry,
                        t,
                        &plan.base_dir,
                        &cache,
                        ds,
                        &data,
                        &opts,
                    )?
                    .context("no [rationales] section")?;
                    if !seen.insert(r.key.clone()) {
                        continue;
                    }
                    println!(
                        "{ds}: {} selected, {} cached, {} generated ({} tokens, {:.1} tok/s){}\n  {}",
                        r.selected,
                        r.cached,
                        r.generated,
                        r.new_tokens,
                        r.tokens_per_second(),
                        if r.complete { "" } else { " — incomplete, rerun to resume" },
                        r.dir.display()
                    );
                }
            }
            Ok(exit::OK)
        }
        RationalesAction::Show {
            target,
            sample,
            sets,
        } => {
            let dirs = if target.is_dir() {
                vec![target.clone()]
            } else {
                let Some((_, plan)) = load(registry, target, sets, true)? else {
                    return Ok(exit::INVALID);
                };
                stage_dirs(registry, &plan)?
            };
            for d in dirs {
                show(&d, *sample)?;
            }
            Ok(exit::OK)
        }
    }
}

/// The stage directory of every (trial, data set) of a plan (without loading any model).
fn stage_dirs(registry: &Registry, plan: &Plan) -> Result<Vec<PathBuf>> {
    let cache = pulse_assets::cache_dir();
    let mut out = Vec::new();
    for t in &plan.trials {
        for ds in &t.resolved.experiment.datasets {
            let dir = pulse_stages::spec::stage_dir(registry, t, &plan.base_dir, &cache, ds)?
                .context("the spec has no [rationales] section")?;
            if !out.contains(&dir) {
                out.push(dir);
            }
        }
    }
    Ok(out)
}

fn show(dir: &Path, sample: usize) -> Result<()> {
    let rows = load_rationales(dir)?;
    println!("{} — {} rows", dir.display(), rows.len());
    if rows.is_empty() {
        println!("  (nothing generated yet: run `pulse rationales generate SPEC`)");
        return Ok(());
    }
    // Evenly spread examples rather than the first few users.
    let step = (rows.len() / sample.max(1)).max(1);
    for r in rows.iter().step_by(step).take(sample) {
        println!();
        println!(
            "user {} · position {} · parse {}",
            r.user,
            r.position,
            r.parse.as_str()
        );
        println!("  history: {}", r.history);
        println!("  chose:   {} [{}]", r.item_label, r.item);
        println!("  rationale: {}", r.rationale);
        if r.parse != ParseStatus::Ok {
            println!("  raw: {:?}", r.raw);
        }
    }
    let count = |s: ParseStatus| rows.iter().filter(|r| r.parse == s).count();
    let (ok, lenient, failed) = (
        count(ParseStatus::Ok),
        count(ParseStatus::Lenient),
        count(ParseStatus::Failed),
    );
    let n = rows.len() as f64;
    let tokens: u64 = rows.iter().map(|r| r.completion_tokens as u64).sum();
    println!();
    println!(
        "parse: ok {ok} ({:.0}%), lenient {lenient} ({:.0}%), failed {failed} ({:.0}%); success (ok + lenient) {:.0}%; mean completion {:.1} tokens",
        100.0 * ok as f64 / n,
        100.0 * lenient as f64 / n,
        100.0 * failed as f64 / n,
        100.0 * (ok + lenient) as f64 / n,
        tokens as f64 / n
    );
    Ok(())
}

fn load(
    registry: &mut Registry,
    path: &Path,
    sets: &[String],
    use_env: bool,
) -> Result<Option<(Spec, Plan)>> {
    let opts = SpecOptions {
        sets: sets.to_vec(),
        use_env,
    };
    let spec = match pulse_spec::load(path, &opts) {
        Ok(s) => s,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(None);
        }
    };
    if let Err(d) = crate::plugin_cmd::load::for_spec(registry, &spec) {
        print_diagnostics(&d);
        return Ok(None);
    }
    match pulse_spec::plan(&spec, &*registry) {
        Ok(p) => Ok(Some((spec, p))),
        Err(d) => {
            print_diagnostics(&d);
            Ok(None)
        }
    }
}

fn print_diagnostics(d: &Diagnostics) {
    let text = d.to_string();
    eprint!("{text}");
    if !text.ends_with('\n') {
        eprintln!();
    }
    eprintln!("{} problem(s) found; nothing was run.", d.0.len());
}

/// For `pulse validate`: reloads the spec to locate problems, then checks the prompt's fields.
pub fn validate(registry: &mut Registry, args: &SpecArgs, plan: &Plan) -> Result<bool> {
    let opts = SpecOptions {
        sets: args.sets.clone(),
        use_env: !args.no_env,
    };
    let Ok(spec) = pulse_spec::load(&args.spec, &opts) else {
        return Ok(false);
    };
    report_field_issues(registry, &spec, plan)
}

/// Prints a diagnostic per template problem; true when there was one.
fn report_field_issues(registry: &Registry, spec: &Spec, plan: &Plan) -> Result<bool> {
    let Some(trial) = plan.trials.first() else {
        return Ok(false);
    };
    let cache = pulse_assets::cache_dir();
    let issues = pulse_stages::spec::check_prompt_fields(registry, trial, &plan.base_dir, &cache)?;
    if issues.is_empty() {
        return Ok(false);
    }
    let mut diags = Diagnostics::default();
    for i in issues {
        let key = vec!["prompts".to_string(), i.prompt.clone(), i.issue.key.clone()];
        let location = match (&i.issue.file, i.issue.line) {
            (Some(f), line) => Location::file(f.clone(), line.unwrap_or(1), 1),
            (None, Some(line)) => inline_location(spec, &key, line),
            (None, None) => spec.locate(&key),
        };
        let on = if i.dataset.is_empty() {
            String::new()
        } else {
            format!(" for data set '{}'", i.dataset)
        };
        diags.0.push(
            Diagnostic::new(
                location,
                format!(
                    "prompts.{}.{}{on}: {}",
                    i.prompt, i.issue.key, i.issue.message
                ),
            )
            .with_help_opt(i.issue.help.clone()),
        );
    }
    print_diagnostics(&diags);
    Ok(true)
}

/// The spec line of template line `line` of the inline template at `key`: a `"""` string
/// starting its own line puts template line 1 on the next one.
fn inline_location(spec: &Spec, key: &[String], line: usize) -> Location {
    let at = spec.locate(key);
    let (Some(path), Some((l, _))) = (at.path().map(Path::to_path_buf), at.line_col()) else {
        return at;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let opens_block = text
        .lines()
        .nth(l.saturating_sub(1))
        .map(|s| {
            let t = s.trim_end();
            t.ends_with("\"\"\"") || t.ends_with("'''")
        })
        .unwrap_or(false);
    let offset = if opens_block { line } else { line - 1 };
    Location::file(path, l + offset, 1)
}
