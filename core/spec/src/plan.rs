//! From a loaded [`Spec`] to a [`Plan`]: checks `[sweep]` / `[[ablation]]`, expands them, checks
//! every resulting trial tree against the catalog, places each problem (in the changed value's
//! sweep or ablation entry when a change caused it) and, when all is well, resolves each trial:
//! typed core sections with their defaults, the trial seed, and a content-hash id.

use crate::check::{Checker, Issue};
use crate::diag::{Diagnostic, Diagnostics};
use crate::expand::{apply, parse_ablations, parse_sweep, variants, Ablation, Change, Variant};
use crate::flat::{toml_bare, trial_id};
use crate::layers::{Spec, Want};
use crate::source::dotted;
use pulse_api::sections::{EvalConfig, ExperimentSection, SplitConfig, TrackerSection};
use pulse_api::{decode, Catalog};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything to run: the trials of a validated spec, in a stable order.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub spec_path: PathBuf,
    /// The directory of the spec file (relative data paths resolve against it).
    pub base_dir: PathBuf,
    /// `[experiment]` of the spec, with `datasets` / `models` filled with every declared name
    /// when not given.
    pub experiment: ExperimentSection,
    pub trials: Vec<Trial>,
}

/// One run configuration: a sweep point, base or one ablation, one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// 12 hex digits of the SHA-256 of the canonical JSON of `resolved.value`.
    pub id: String,
    /// `base`, or e.g. `ablation=no-dropout models.sasrec.hidden_size=32 seed=1`.
    pub label: String,
    pub ablation: Option<String>,
    /// Keys the sweep point and the ablation set, in that order (dotted key, value).
    pub changes: Vec<(String, Value)>,
    pub seed: u64,
    pub resolved: ResolvedSpec,
}

/// The complete configuration of one trial.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSpec {
    /// The whole tree: layered, sweep / ablation applied (and removed), core sections with their
    /// defaults filled, `experiment.seed` = the trial seed, no `seeds` or `extends` left.
    pub value: Value,
    pub experiment: ExperimentSection,
    pub split: SplitConfig,
    pub eval: EvalConfig,
    pub tracker: TrackerSection,
    /// Every declared dataset section, with its `type`.
    pub datasets: BTreeMap<String, Value>,
    /// Every declared model section, with its `type`.
    pub models: BTreeMap<String, Value>,
}

/// Validates everything and expands the trials; all problems are reported at once.
pub fn plan(spec: &Spec, catalog: &dyn Catalog) -> Result<Plan, Diagnostics> {
    let base = spec.value();
    let mut diags = Diagnostics::default();
    let mut structural = Vec::new();
    let default_seed = base
        .pointer("/experiment/seed")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| ExperimentSection::default().seed);
    let sweep = parse_sweep(base, default_seed, &mut structural);
    let ablations = parse_ablations(base, &mut structural);
    for issue in structural {
        diags.push_unique(diagnostic(spec, issue, &[]));
    }

    let variants = variants(&sweep, &ablations);
    let trees: Vec<Value> = variants.iter().map(|v| apply(base, &v.changes)).collect();
    let mut checker = Checker::new(catalog);
    for (v, tree) in variants.iter().zip(&trees) {
        for issue in checker.check_tree(tree) {
            diags.push_unique(diagnostic(spec, issue, &v.changes));
        }
    }
    if diags.is_empty() {
        for d in noop_ablations(spec, &ablations, &variants, &trees) {
            diags.push_unique(d);
        }
    }
    if !diags.is_empty() {
        return Err(diags.sorted());
    }

    let fail = |e: String| Diagnostics(vec![Diagnostic::new(spec.locate(&[]), e)]);
    let mut trials = Vec::new();
    for (v, tree) in variants.iter().zip(&trees) {
        let (resolved, seeds) = resolve(tree, spec).map_err(fail)?;
        for &seed in &seeds {
            let mut r = resolved.clone();
            r.experiment.seed = seed;
            r.value["experiment"]["seed"] = json!(seed);
            trials.push(Trial {
                id: trial_id(&r.value),
                label: label(v, &ablations, seed, seeds.len() > 1),
                ablation: v.ablation.map(|a| ablations[a].name.clone()),
                changes: v
                    .changes
                    .iter()
                    .map(|c| (dotted(&c.path), c.value.clone()))
                    .collect(),
                seed,
                resolved: r,
            });
        }
    }
    // Only `[experiment]` of the unexpanded tree: other base sections may be invalid where
    // every sweep point overrides them.
    let mut experiment: ExperimentSection = section(base, "experiment").map_err(fail)?;
    fill_selection(&mut experiment, base, spec);
    let base_dir = match spec.path().parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(Plan {
        spec_path: spec.path().to_path_buf(),
        base_dir,
        experiment,
        trials,
    })
}

/// Places an issue: in the sweep / ablation entry whose change covers its key, else wherever the
/// key was set.
fn diagnostic(spec: &Spec, issue: Issue, changes: &[Change]) -> Diagnostic {
    let by_change = changes
        .iter()
        .rev()
        .find(|c| issue.path.starts_with(&c.path))
        .map(|c| {
            let suffix = &issue.path[c.path.len()..];
            if suffix.is_empty() && issue.want == Want::Key {
                return spec.locate_as(&c.origin_key, Want::Key);
            }
            let mut inner = c.origin_value.clone();
            inner.extend(suffix.iter().cloned());
            spec.exact(&inner, issue.want)
                .unwrap_or_else(|| spec.locate_as(&c.origin_value, Want::Value))
        });
    let location = by_change.unwrap_or_else(|| spec.locate_as(&issue.path, issue.want));
    Diagnostic::new(location, issue.message).with_help_opt(issue.help)
}

/// An ablation that leaves every sweep point unchanged is almost certainly a mistake (and would
/// run trials identical to the base).
fn noop_ablations(
    spec: &Spec,
    ablations: &[Ablation],
    variants: &[Variant],
    trees: &[Value],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (a, ab) in ablations.iter().enumerate() {
        if ab.sets.is_empty() {
            continue;
        }
        let noop = variants.iter().enumerate().all(|(i, v)| {
            // Variants are laid out per point as [base, ablation 0, ablation 1, …].
            v.ablation != Some(a) || trees.get(i - (a + 1)) == Some(&trees[i])
        });
        if noop {
            let at = vec![
                "ablation".to_string(),
                ab.index.to_string(),
                "name".to_string(),
            ];
            out.push(
                Diagnostic::new(
                    spec.locate_as(&at, Want::Value),
                    format!(
                        "ablation '{}' changes nothing: every key it sets already has that value",
                        ab.name
                    ),
                )
                .with_help("set a value that differs from the base spec, or remove the ablation"),
            );
        }
    }
    out
}

fn label(v: &Variant, ablations: &[Ablation], seed: u64, many_seeds: bool) -> String {
    let mut parts = Vec::new();
    let sweep_changes = v.changes.len() - v.ablation.map_or(0, |a| ablations[a].sets.len());
    if let Some(a) = v.ablation {
        parts.push(format!("ablation={}", ablations[a].name));
    }
    for c in &v.changes[..sweep_changes] {
        parts.push(format!("{}={}", dotted(&c.path), toml_bare(&c.value)));
    }
    if many_seeds {
        parts.push(format!("seed={seed}"));
    }
    if parts.is_empty() {
        "base".into()
    } else {
        parts.join(" ")
    }
}

fn section<T: DeserializeOwned>(tree: &Value, name: &str) -> Result<T, String> {
    let v = tree.get(name).cloned().unwrap_or_else(|| json!({}));
    decode(&v).map_err(|e| format!("{name}: {e}"))
}

fn components(tree: &Value, table: &str) -> BTreeMap<String, Value> {
    tree.get(table)
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn to_value<T: Serialize>(t: &T) -> Result<Value, String> {
    serde_json::to_value(t).map_err(|e| e.to_string())
}

/// Decodes a (validated) trial tree and writes the typed core sections back, defaults included,
/// so the tree alone reproduces the trial.
/// Also returns the seeds the trial runs with.
fn resolve(tree: &Value, spec: &Spec) -> Result<(ResolvedSpec, Vec<u64>), String> {
    let mut value = tree.clone();
    if let Value::Object(m) = &mut value {
        m.remove("sweep");
        m.remove("ablation");
    }
    let mut experiment: ExperimentSection = section(&value, "experiment")?;
    fill_selection(&mut experiment, &value, spec);
    let seeds = experiment.all_seeds();
    let datasets = components(&value, "datasets");
    let models = components(&value, "models");
    experiment.seeds.clear();
    experiment.extends.clear();
    let split: SplitConfig = section(&value, "split")?;
    let eval: EvalConfig = section(&value, "eval")?;
    let tracker: TrackerSection = section(&value, "tracker")?;
    value["experiment"] = to_value(&experiment)?;
    if let Some(m) = value["experiment"].as_object_mut() {
        m.remove("seeds");
        m.remove("extends");
    }
    value["split"] = to_value(&split)?;
    value["eval"] = to_value(&eval)?;
    value["tracker"] = to_value(&tracker)?;
    strip_nulls(&mut value);
    let resolved = ResolvedSpec {
        value,
        experiment,
        split,
        eval,
        tracker,
        datasets,
        models,
    };
    Ok((resolved, seeds))
}

/// `experiment.datasets` / `models` default to every declared name, in declaration order
/// (the order a reader of the spec expects in result tables).
fn fill_selection(experiment: &mut ExperimentSection, tree: &Value, spec: &Spec) {
    let declared = |table: &str| -> Vec<String> {
        let mut names: Vec<String> = components(tree, table).into_keys().collect();
        // Extended files first, then the spec; names only set by --set or the environment last.
        names.sort_by_key(|n| {
            let loc = spec.locate(&[table.to_string(), n.clone()]);
            let file = loc
                .path()
                .and_then(|p| spec.files().iter().position(|f| *f == p))
                .unwrap_or(usize::MAX);
            (file, loc.line_col().unwrap_or((usize::MAX, 0)), n.clone())
        });
        names
    };
    if experiment.datasets.is_empty() {
        experiment.datasets = declared("datasets");
    }
    if experiment.models.is_empty() {
        experiment.models = declared("models");
    }
}

/// `None` fields serialize as null, which TOML cannot hold; absent means the same to serde.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}
