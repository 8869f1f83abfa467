//! From a planned trial to a stage run: decodes `[rationales]`, builds the backbone and the
//! prompt it names through the registry, prepares the data set, checks the template against
//! the data set's fields and runs [`run_rationales`]; and for `[thought_space]`, the rationale
//! stage followed by [`run_thought_space`] on its rows. Used by `pulse run` (before the
//! models) and by `pulse rationales generate`.

use crate::rationale::{
    data_key, load_rationales, run_rationales, RationaleJob, RationaleReport, StageOptions,
};
use crate::thought::{run_thought_space, ThoughtJob, ThoughtSpace};
use crate::StageError;
use pulse_api::stages::{RationaleSection, ThoughtSpaceSection};
use pulse_api::{decode, Backbone, ConfigError, LoadContext, Prompt, SplitData, TemplateIssue};
use pulse_registry::Registry;
use pulse_spec::Trial;
use serde_json::Value;
use std::path::Path;

fn config(errs: Vec<ConfigError>, what: &str) -> StageError {
    StageError::Invalid(format!(
        "{what}: {}",
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// `[rationales]` of a trial, if it has one.
pub fn rationale_section(trial: &Trial) -> Result<Option<RationaleSection>, StageError> {
    match trial.resolved.value.get("rationales") {
        None => Ok(None),
        Some(v) => decode(v)
            .map(Some)
            .map_err(|e| config(vec![e], "[rationales]")),
    }
}

pub(crate) fn section<'a>(
    trial: &'a Trial,
    table: &str,
    name: &str,
) -> Result<&'a Value, StageError> {
    trial
        .resolved
        .value
        .get(table)
        .and_then(|t| t.get(name))
        .ok_or_else(|| StageError::Invalid(format!("no [{table}.{name}] in the spec")))
}

/// Builds `[backbones.NAME]` of a trial through the registry.
pub(crate) fn backbone(
    registry: &Registry,
    trial: &Trial,
    name: &str,
) -> Result<Box<dyn Backbone>, StageError> {
    registry
        .build_backbone(section(trial, "backbones", name)?)
        .map_err(|e| config(e, &format!("[backbones.{name}]")))
}

fn prompt(registry: &Registry, trial: &Trial, name: &str) -> Result<Box<dyn Prompt>, StageError> {
    registry
        .build_prompt(section(trial, "prompts", name)?)
        .map_err(|e| config(e, &format!("[prompts.{name}]")))
}

pub(crate) fn load_context(trial: &Trial, base_dir: &Path, cache_dir: &Path) -> LoadContext {
    LoadContext {
        cache_dir: cache_dir.to_path_buf(),
        base_dir: base_dir.to_path_buf(),
        seed: trial.seed,
    }
}

/// Loads and prepares data set `name` of a trial, as the runtime does.
pub fn prepare_data(
    registry: &Registry,
    trial: &Trial,
    base_dir: &Path,
    cache_dir: &Path,
    name: &str,
) -> Result<SplitData, StageError> {
    let section = section(trial, "datasets", name)?;
    let ds = registry
        .build_dataset(section)
        .map_err(|e| config(e, &format!("[datasets.{name}]")))?;
    let raw = ds.load(&load_context(trial, base_dir, cache_dir))?;
    let mut data = pulse_data::prepare(&raw, &trial.resolved.split)?;
    data.dataset = name.to_string();
    Ok(data)
}

/// Runs the rationale stage of `trial` on prepared data set `ds_name` (`None`: the trial has
/// no `[rationales]`).
pub fn run_for_trial(
    registry: &Registry,
    trial: &Trial,
    base_dir: &Path,
    cache_dir: &Path,
    ds_name: &str,
    data: &SplitData,
    opts: &StageOptions,
) -> Result<Option<RationaleReport>, StageError> {
    let Some(s) = rationale_section(trial)? else {
        return Ok(None);
    };
    let backbone = backbone(registry, trial, &s.backbone)?;
    let prompt = prompt(registry, trial, &s.prompt)?;
    let compiled = prompt.compile(base_dir)?;
    let fields: Vec<String> = data.item_text.iter().map(|(f, _)| f.clone()).collect();
    compiled
        .check_fields(&fields)
        .map_err(|e| StageError::Template(format!("[prompts.{}] {e}", s.prompt)))?;
    let ctx = load_context(trial, base_dir, cache_dir);
    let job = RationaleJob {
        data,
        data_key: data_key(section(trial, "datasets", ds_name)?, &trial.resolved.split),
        section: &s,
        backbone: backbone.as_ref(),
        prompt: compiled.as_ref(),
        ctx: &ctx,
    };
    run_rationales(&job, opts).map(Some)
}

/// `[thought_space]` of a trial, if it has one (decoded and validated).
pub fn thought_space_section(trial: &Trial) -> Result<Option<ThoughtSpaceSection>, StageError> {
    let Some(v) = trial.resolved.value.get("thought_space") else {
        return Ok(None);
    };
    let s: ThoughtSpaceSection = decode(v).map_err(|e| config(vec![e], "[thought_space]"))?;
    let problems = s.validate();
    if !problems.is_empty() {
        return Err(config(problems, "[thought_space]"));
    }
    Ok(Some(s))
}

/// Runs the thought-space stage of `trial` on prepared data set `ds_name`: the trial's
/// rationale stage first (cached, so a complete one generates nothing), then the encoders
/// trained on its rows (or their cached tables). `None` when the trial has no
/// `[thought_space]`.
pub fn thought_space_for_trial(
    registry: &Registry,
    trial: &Trial,
    base_dir: &Path,
    cache_dir: &Path,
    ds_name: &str,
    data: &SplitData,
    opts: &StageOptions,
) -> Result<Option<ThoughtSpace>, StageError> {
    let Some(s) = thought_space_section(trial)? else {
        return Ok(None);
    };
    let Some(report) = run_for_trial(registry, trial, base_dir, cache_dir, ds_name, data, opts)?
    else {
        return Err(StageError::Invalid(
            "[thought_space] trains on rationales: the spec needs a [rationales] section".into(),
        ));
    };
    if !report.complete {
        return Err(StageError::Interrupted(format!(
            "rationale stage ({} of {} rows); rerun to resume it before the thought space",
            report.cached + report.generated,
            report.selected
        )));
    }
    let rows = load_rationales(&report.dir)?;
    let ctx = load_context(trial, base_dir, cache_dir);
    let job = ThoughtJob {
        data,
        data_key: data_key(section(trial, "datasets", ds_name)?, &trial.resolved.split),
        section: &s,
        rationales: &rows,
        encoder: section(trial, "backbones", &s.encoder)?,
        ctx: &ctx,
        losses: registry,
    };
    run_thought_space(&job, opts).map(Some)
}

/// The stage directory `[rationales]` of `trial` uses for data set `ds_name` (without loading
/// data or weights); `None` when the trial has no `[rationales]`.
pub fn stage_dir(
    registry: &Registry,
    trial: &Trial,
    base_dir: &Path,
    cache_dir: &Path,
    ds_name: &str,
) -> Result<Option<std::path::PathBuf>, StageError> {
    let Some(s) = rationale_section(trial)? else {
        return Ok(None);
    };
    let backbone = backbone(registry, trial, &s.backbone)?;
    let prompt = prompt(registry, trial, &s.prompt)?;
    let compiled = prompt.compile(base_dir)?;
    let ctx = load_context(trial, base_dir, cache_dir);
    let data = SplitData::default();
    let job = RationaleJob {
        data: &data,
        data_key: data_key(section(trial, "datasets", ds_name)?, &trial.resolved.split),
        section: &s,
        backbone: backbone.as_ref(),
        prompt: compiled.as_ref(),
        ctx: &ctx,
    };
    let key = crate::rationale::rationale_key(&job)?;
    Ok(Some(key.dir(&crate::stages_root(cache_dir))))
}

/// A template problem found at validate time: the prompt's name and the issue.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptFieldIssue {
    pub prompt: String,
    pub dataset: String,
    pub issue: TemplateIssue,
}

/// Checks the prompt `[rationales]` names against the item fields of every data set of the
/// first trial (reading the raw tables, which fetches them if needed). Other failures (a data
/// set that cannot load) are left to the run.
pub fn check_prompt_fields(
    registry: &Registry,
    trial: &Trial,
    base_dir: &Path,
    cache_dir: &Path,
) -> Result<Vec<PromptFieldIssue>, StageError> {
    let Some(s) = rationale_section(trial)? else {
        return Ok(Vec::new());
    };
    let prompt = prompt(registry, trial, &s.prompt)?;
    let compiled = match prompt.compile(base_dir) {
        Ok(c) => c,
        Err(issue) => {
            return Ok(vec![PromptFieldIssue {
                prompt: s.prompt.clone(),
                dataset: String::new(),
                issue,
            }])
        }
    };
    let mut out = Vec::new();
    for name in &trial.resolved.experiment.datasets {
        let ds = registry
            .build_dataset(section(trial, "datasets", name)?)
            .map_err(|e| config(e, &format!("[datasets.{name}]")))?;
        let raw = ds.load(&load_context(trial, base_dir, cache_dir))?;
        let fields: Vec<String> = raw
            .items
            .as_ref()
            .map(|t| {
                t.get_column_names()
                    .into_iter()
                    .map(|c| c.to_string())
                    .filter(|c| c != pulse_api::data::columns::ITEM)
                    .collect()
            })
            .unwrap_or_default();
        if let Err(issue) = compiled.check_fields(&fields) {
            out.push(PromptFieldIssue {
                prompt: s.prompt.clone(),
                dataset: name.clone(),
                issue,
            });
        }
    }
    Ok(out)
}
