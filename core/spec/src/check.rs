//! Validation of one fully resolved spec tree (a trial): the top-level keys, the core sections
//! through their typed forms in `pulse_api::sections`, and every dataset / model section through
//! the [`Catalog`] — without knowing any plugin. Problems come back as [`Issue`]s (key path +
//! message + fix); the caller turns key paths into file positions.

use crate::flat::toml_inline;
use crate::layers::{kind_of, value_at, Want};
use crate::source::dotted;
use pulse_api::config::did_you_mean;
use pulse_api::sections::{EvalConfig, ExperimentSection, MetricName, SplitConfig, TrackerSection};
use pulse_api::stages::{RationaleSection, ThoughtSpaceSection};
use pulse_api::{decode, Catalog, ConfigError, ConfigErrorKind, Family, Reference};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Every top-level key a spec may have.
pub(crate) const TOP_LEVEL: &[&str] = &[
    "experiment",
    "datasets",
    "models",
    "split",
    "eval",
    "tracker",
    "sweep",
    "ablation",
    "plugins",
    "backbones",
    "prompts",
    "rationales",
    "thought_space",
];

/// One problem at a key path of the resolved tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Issue {
    pub path: Vec<String>,
    pub want: Want,
    pub message: String,
    pub help: Option<String>,
}

impl Issue {
    pub fn new(path: Vec<String>, want: Want, message: impl Into<String>) -> Self {
        Self {
            path,
            want,
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

pub(crate) fn strings(path: &[&str]) -> Vec<String> {
    path.iter().map(|s| s.to_string()).collect()
}

/// Validates trees against a catalog, remembering plugin-section results (a sweep repeats the
/// same sections in many trials).
pub(crate) struct Checker<'a> {
    catalog: &'a dyn Catalog,
    cache: HashMap<(Family, String), Result<Vec<Reference>, Vec<ConfigError>>>,
}

impl<'a> Checker<'a> {
    pub fn new(catalog: &'a dyn Catalog) -> Self {
        Self {
            catalog,
            cache: HashMap::new(),
        }
    }

    /// Every problem in `tree`. `[sweep]` and `[[ablation]]` are checked by the expansion.
    pub fn check_tree(&mut self, tree: &Value) -> Vec<Issue> {
        let mut issues = Vec::new();
        let Some(root) = tree.as_object() else {
            return vec![Issue::new(
                Vec::new(),
                Want::Value,
                "a spec must be a TOML table",
            )];
        };
        for key in root.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                let err = ConfigError::new(
                    vec![key.clone()],
                    ConfigErrorKind::UnknownField {
                        field: key.clone(),
                        expected: strings(TOP_LEVEL),
                    },
                );
                issues.push(
                    Issue::new(
                        vec![key.clone()],
                        Want::Key,
                        format!("unknown top-level key '{key}'"),
                    )
                    .help(err.help().unwrap_or_default()),
                );
            }
        }

        let experiment =
            core_section::<ExperimentSection>(tree, "experiment", |s| s.validate(), &mut issues);
        core_section::<SplitConfig>(tree, "split", |s| s.validate(), &mut issues);
        core_section::<EvalConfig>(tree, "eval", |s| s.validate(), &mut issues);
        core_section::<TrackerSection>(tree, "tracker", |s| s.validate(), &mut issues);
        check_plugins_table(tree, &mut issues);

        let mut refs = Vec::new();
        for family in [Family::Dataset, Family::Recommender] {
            refs.extend(self.components(tree, family, &mut issues));
        }
        // Text stages: backbones and prompts are optional, but `[rationales]` must name them.
        for family in [Family::Backbone, Family::Prompt] {
            if tree.get(family.table().unwrap_or_default()).is_some() {
                refs.extend(self.components(tree, family, &mut issues));
            }
        }
        if tree.get("rationales").is_some() {
            if let Some(r) =
                core_section::<RationaleSection>(tree, "rationales", |s| s.validate(), &mut issues)
            {
                let section = vec!["rationales".to_string()];
                refs.push((
                    section.clone(),
                    Reference {
                        key: "backbone".into(),
                        family: Family::Backbone,
                        name: r.backbone,
                    },
                ));
                refs.push((
                    section,
                    Reference {
                        key: "prompt".into(),
                        family: Family::Prompt,
                        name: r.prompt,
                    },
                ));
            }
        }
        if tree.get("thought_space").is_some() {
            if let Some(t) = core_section::<ThoughtSpaceSection>(
                tree,
                "thought_space",
                |s| s.validate(),
                &mut issues,
            ) {
                if tree.get("rationales").is_none() {
                    issues.push(
                        Issue::new(
                            vec!["thought_space".into()],
                            Want::Header,
                            "[thought_space] learns from rationales, but the spec has no [rationales] section",
                        )
                        .help("add [rationales] naming a generating backbone and a prompt"),
                    );
                }
                refs.push((
                    vec!["thought_space".to_string()],
                    Reference {
                        key: "encoder".into(),
                        family: Family::Backbone,
                        name: t.encoder,
                    },
                ));
            }
        }
        for (section, r) in refs {
            let Some(table) = r.family.table() else {
                continue;
            };
            let known = declared(tree, table);
            if !known.contains(&r.name) {
                let mut path = section.clone();
                path.extend(r.key.split('.').map(str::to_string));
                let err = ConfigError::new(
                    Vec::new(),
                    ConfigErrorKind::DanglingReference {
                        family: r.family.to_string(),
                        found: r.name.clone(),
                        known,
                    },
                );
                issues.push(config_issue(&path, None, tree, err));
            }
        }

        if let Some(exp) = experiment {
            check_selection(tree, &exp, &mut issues);
        }
        issues
    }

    /// Checks each `[datasets.X]` / `[models.X]`; returns the references of valid ones.
    fn components(
        &mut self,
        tree: &Value,
        family: Family,
        issues: &mut Vec<Issue>,
    ) -> Vec<(Vec<String>, Reference)> {
        let Some(table) = family.table() else {
            return Vec::new();
        };
        let types = self.catalog.types(family);
        let mut refs = Vec::new();
        match tree.get(table) {
            None => {}
            Some(Value::Object(m)) => {
                for (name, section) in m {
                    let path = strings(&[table, name]);
                    if let Some(r) = self.component(family, &path, section, &types, tree, issues) {
                        refs.extend(r.into_iter().map(|r| (path.clone(), r)));
                    }
                }
            }
            Some(other) => issues.push(
                Issue::new(
                    vec![table.into()],
                    Want::Value,
                    format!(
                        "invalid type for {table}: expected a table of named {family} sections, found {}",
                        kind_of(other)
                    ),
                )
                .help(format!("declare each one as [{table}.NAME] with type = \"…\"")),
            ),
        }
        // A table of the wrong type was reported above; only an absent or empty one here.
        let empty = tree
            .get(table)
            .is_none_or(|t| t.as_object().is_some_and(|m| m.is_empty()));
        if empty {
            let example = types.first().map(String::as_str).unwrap_or("…");
            issues.push(
                Issue::new(
                    vec![table.into()],
                    Want::Header,
                    format!("no {table} declared: a spec needs at least one {family}"),
                )
                .help(format!(
                    "add a [{table}.NAME] table with type = \"{example}\" (known {family} types: {})",
                    list(&types)
                )),
            );
        }
        refs
    }

    fn component(
        &mut self,
        family: Family,
        path: &[String],
        section: &Value,
        types: &[String],
        tree: &Value,
        issues: &mut Vec<Issue>,
    ) -> Option<Vec<Reference>> {
        let shown = dotted(path);
        let Some(body) = section.as_object() else {
            issues.push(
                Issue::new(
                    path.to_vec(),
                    Want::Value,
                    format!(
                        "invalid type for {shown}: expected a {family} table with a `type`, found {}",
                        kind_of(section)
                    ),
                )
                .help(format!("write [{shown}] followed by type = \"…\"")),
            );
            return None;
        };
        let mut type_path = path.to_vec();
        type_path.push("type".into());
        let type_name = match body.get("type") {
            None => {
                issues.push(
                    Issue::new(
                        path.to_vec(),
                        Want::Header,
                        format!("missing field 'type' in {shown}"),
                    )
                    .help(format!(
                        "add type = \"…\" naming a {family} type (known: {})",
                        list(types)
                    )),
                );
                return None;
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                issues.push(
                    Issue::new(
                        type_path,
                        Want::Value,
                        format!(
                            "invalid type for {shown}.type: expected a string naming a {family} type, found {}",
                            kind_of(other)
                        ),
                    )
                    .help(format!("known {family} types: {}", list(types))),
                );
                return None;
            }
        };
        if !types.contains(&type_name) {
            let err = ConfigError::new(
                vec!["type".into()],
                ConfigErrorKind::UnknownType {
                    family: family.to_string(),
                    found: type_name,
                    known: types.to_vec(),
                },
            );
            issues.push(config_issue(path, None, tree, err));
            return None;
        }
        let key = (family, section.to_string());
        let result = match self.cache.get(&key) {
            Some(r) => r.clone(),
            None => {
                let catalog = self.catalog;
                let (refs, errors) =
                    check_repeatedly(section, plugin_removable, |v| catalog.check(family, v));
                let r = match refs {
                    Some(refs) if errors.is_empty() => Ok(refs),
                    _ => Err(errors),
                };
                self.cache.insert(key, r.clone());
                r
            }
        };
        match result {
            Ok(refs) => Some(refs),
            Err(errors) => {
                let ctx = format!(" (type {type_name})");
                for e in errors {
                    issues.push(config_issue(path, Some(&ctx), tree, e));
                }
                None
            }
        }
    }
}

/// Decodes and validates one core section (absent = defaults); returns it when valid.
fn core_section<T: DeserializeOwned>(
    tree: &Value,
    name: &str,
    validate: impl Fn(&T) -> Vec<ConfigError>,
    issues: &mut Vec<Issue>,
) -> Option<T> {
    let section = tree.get(name).cloned().unwrap_or_else(|| json!({}));
    let path = vec![name.to_string()];
    if !section.is_object() {
        issues.push(
            Issue::new(
                path,
                Want::Value,
                format!(
                    "invalid type for {name}: expected a table, found {}",
                    kind_of(&section)
                ),
            )
            .help(format!("write it as a [{name}] table")),
        );
        return None;
    }
    // Decoding first, then `validate` on what decoded, so that every serde problem is found
    // and none of `validate`'s is caused by a key removed along the way.
    let (decoded, mut errors) = check_repeatedly(&section, serde_removable, |v| {
        decode::<T>(v).map_err(|e| vec![e])
    });
    if let Some(t) = &decoded {
        errors.extend(validate(t));
    }
    if errors.is_empty() {
        return decoded;
    }
    for e in errors {
        issues.push(config_issue(&path, None, tree, e));
    }
    None
}

/// Runs `check` and, while it fails with a single error at a key `removable` accepts, records
/// it, removes that key and runs again: serde stops at the first problem, users want them all.
/// Returns the result of the last run, if it passed, and every problem found.
fn check_repeatedly<T>(
    section: &Value,
    removable: fn(&ConfigError) -> bool,
    mut check: impl FnMut(&Value) -> Result<T, Vec<ConfigError>>,
) -> (Option<T>, Vec<ConfigError>) {
    let mut work = section.clone();
    let mut found: Vec<ConfigError> = Vec::new();
    let mut removed: Vec<Vec<String>> = Vec::new();
    // Bounded: each round removes one key, and sections have few keys.
    for _ in 0..64 {
        match check(&work) {
            Ok(t) => return (Some(t), found),
            Err(errors) => {
                if let [single] = errors.as_slice() {
                    // Removing a list element would shift the indices of later problems.
                    let at_key = single
                        .path
                        .last()
                        .is_some_and(|s| s.parse::<usize>().is_err());
                    if at_key && removable(single) && remove_at(&mut work, &single.path) {
                        found.push(single.clone());
                        removed.push(single.path.clone());
                        continue;
                    }
                }
                found.extend(
                    errors
                        .into_iter()
                        .filter(|e| !caused_by_removal(e, &removed)),
                );
                return (None, found);
            }
        }
    }
    (None, found)
}

/// The errors serde raises while decoding a core section.
fn serde_removable(e: &ConfigError) -> bool {
    matches!(
        e.kind,
        ConfigErrorKind::UnknownField { .. }
            | ConfigErrorKind::InvalidType { .. }
            | ConfigErrorKind::InvalidValue { .. }
    )
}

/// A plugin check mixes decoding and `validate`; removing a key `validate` complained about
/// would make it complain about the absence instead (e.g. "name the data"). So only errors
/// that serde raises: unknown keys, wrong types and unknown enum variants (which `decode`
/// words as "one of '…'").
fn plugin_removable(e: &ConfigError) -> bool {
    match &e.kind {
        ConfigErrorKind::UnknownField { .. } | ConfigErrorKind::InvalidType { .. } => true,
        ConfigErrorKind::InvalidValue { expected, .. } => expected.starts_with("one of '"),
        _ => false,
    }
}

fn remove_at(v: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = v;
    for seg in parents {
        cur = match cur {
            Value::Object(m) => match m.get_mut(seg) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        Value::Object(m) => m.remove(last).is_some(),
        _ => false,
    }
}

/// A required key we removed ourselves is reported missing; its real problem is already known.
fn caused_by_removal(e: &ConfigError, removed: &[Vec<String>]) -> bool {
    match &e.kind {
        ConfigErrorKind::MissingField { field } => removed.iter().any(|r| {
            r.len() == e.path.len() + 1 && r.starts_with(&e.path) && r.last() == Some(field)
        }),
        _ => false,
    }
}

/// `[plugins]` is reserved for dynamic plugins: a table with `load = [paths]`.
fn check_plugins_table(tree: &Value, issues: &mut Vec<Issue>) {
    let Some(p) = tree.get("plugins") else {
        return;
    };
    let Some(m) = p.as_object() else {
        issues.push(Issue::new(
            strings(&["plugins"]),
            Want::Value,
            format!(
                "invalid type for plugins: expected a table, found {}",
                kind_of(p)
            ),
        ));
        return;
    };
    for (k, v) in m {
        if k != "load" {
            issues.push(
                Issue::new(
                    strings(&["plugins", k]),
                    Want::Key,
                    format!("unknown field '{k}' in plugins"),
                )
                .help("the only field of [plugins] is load = [\"path/to/plugin.so\"]"),
            );
        } else if !v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            issues.push(
                Issue::new(
                    strings(&["plugins", "load"]),
                    Want::Value,
                    format!(
                        "invalid type for plugins.load: expected a list of library paths, found {}",
                        kind_of(v)
                    ),
                )
                .help("write load = [\"path/to/plugin.so\"]"),
            );
        }
    }
}

/// `experiment.datasets` / `experiment.models` must name declared components; seeds must differ.
fn check_selection(tree: &Value, exp: &ExperimentSection, issues: &mut Vec<Issue>) {
    for (field, table, family, names) in [
        ("datasets", "datasets", Family::Dataset, &exp.datasets),
        ("models", "models", Family::Recommender, &exp.models),
    ] {
        let known = declared(tree, table);
        for (i, name) in names.iter().enumerate() {
            if !known.contains(name) {
                let err = ConfigError::new(
                    Vec::new(),
                    ConfigErrorKind::DanglingReference {
                        family: family.to_string(),
                        found: name.clone(),
                        known: known.clone(),
                    },
                );
                let path = strings(&["experiment", field, &i.to_string()]);
                issues.push(config_issue(&path, None, tree, err));
            }
        }
    }
    for (i, s) in exp.seeds.iter().enumerate() {
        if exp.seeds[..i].contains(s) {
            issues.push(
                Issue::new(
                    strings(&["experiment", "seeds", &i.to_string()]),
                    Want::Value,
                    format!("duplicate seed {s} in experiment.seeds"),
                )
                .help("each seed runs every trial once; list each seed once"),
            );
        }
    }
}

/// Names declared under a top-level table, sorted.
pub(crate) fn declared(tree: &Value, table: &str) -> Vec<String> {
    tree.get(table)
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Turns a [`ConfigError`] of the section at `section` into an issue with a message that says
/// what was found, what is allowed and how to fix it. `ctx` names the plugin type.
pub(crate) fn config_issue(
    section: &[String],
    ctx: Option<&str>,
    tree: &Value,
    e: ConfigError,
) -> Issue {
    let mut path = section.to_vec();
    path.extend(e.path.iter().cloned());
    let key = dotted(&path);
    let ctx_at = |p: &[String]| if p == section { ctx.unwrap_or("") } else { "" };
    match &e.kind {
        ConfigErrorKind::UnknownField { field, .. } => {
            let parent = &path[..path.len().saturating_sub(1)];
            let owner = format!("{}{}", dotted(parent), ctx_at(parent));
            let message = format!("unknown field '{field}' in {owner}");
            let help = match &e.kind {
                ConfigErrorKind::UnknownField { expected, .. } if expected.is_empty() => Some(
                    format!("{owner} takes no fields besides `type`; remove '{field}'"),
                ),
                _ => e.help(),
            };
            Issue::new(path.clone(), Want::Key, message).with_help_opt(help)
        }
        ConfigErrorKind::MissingField { field } => {
            let message = format!("missing field '{field}' in {key}{}", ctx_at(&path));
            Issue::new(path, Want::Header, message).with_help_opt(e.help())
        }
        ConfigErrorKind::InvalidType { expected, found } => {
            let expected = toml_words(expected);
            Issue::new(
                path.clone(),
                Want::Value,
                format!(
                    "invalid type for {key}: expected {expected}, found {}",
                    found.replace('`', "")
                ),
            )
            .help(format!("write {expected} for {key}"))
        }
        // `decode` words serde's "invalid length N, expected …" as this.
        ConfigErrorKind::InvalidValue { expected, found } if found == "a list" => {
            let (len, wanted) = expected
                .split_once(", expected ")
                .unwrap_or(("?", expected.as_str()));
            let wanted = toml_words(wanted);
            Issue::new(
                path.clone(),
                Want::Value,
                format!("invalid length for {key}: found a list of {len}, expected {wanted}"),
            )
            .help(format!("write {wanted} for {key}"))
        }
        ConfigErrorKind::InvalidValue { expected, found } => {
            let found = found.replace('`', "");
            let found = found.as_str();
            let help =
                enum_suggestion(found, expected).unwrap_or_else(|| format!("use {expected}"));
            Issue::new(
                path.clone(),
                Want::Value,
                format!("invalid value {found} for {key}: expected {expected}"),
            )
            .help(help)
        }
        ConfigErrorKind::OutOfRange { allowed, found } => Issue::new(
            path.clone(),
            Want::Value,
            format!(
                "{key} = {} is out of range: allowed {allowed}",
                // As the user wrote it (`1.0`, not the plugin's `1`).
                value_at(tree, &path).map_or_else(|| found.clone(), toml_inline)
            ),
        )
        .help(format!(
            "set {key} to a value in the allowed range ({allowed})"
        )),
        ConfigErrorKind::UnknownType { family, found, .. } => {
            let owner = if path.last().is_some_and(|s| s == "type") {
                &path[..path.len() - 1]
            } else {
                &path[..]
            };
            Issue::new(
                path.clone(),
                Want::Value,
                format!("unknown {family} type '{found}' in {}", dotted(owner)),
            )
            .with_help_opt(e.help())
        }
        ConfigErrorKind::DanglingReference { family, found, .. } => Issue::new(
            path.clone(),
            Want::Value,
            format!("{key} refers to {family} '{found}', which is not declared"),
        )
        .with_help_opt(e.help()),
        _ => {
            let text = e.describe();
            let found = value_at(tree, &path)
                .filter(|v| !v.is_object() && !v.is_array())
                .map(|v| match v {
                    Value::String(s) => format!("'{s}'"),
                    other => other.to_string(),
                })
                .filter(|f| !text.contains(f.trim_matches('\'')))
                .map(|f| format!(" (found {f})"))
                .unwrap_or_default();
            let help = e.help().or_else(|| metric_help(&path));
            let subject = if path.is_empty() {
                "spec".to_string()
            } else {
                key
            };
            Issue::new(path, Want::Value, format!("{subject}: {text}{found}")).with_help_opt(help)
        }
    }
}

impl Issue {
    fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// serde's words for shapes, in TOML's words.
fn toml_words(expected: &str) -> String {
    expected
        .replace("a sequence", "a list")
        .replace("an array", "a list")
        .replace("a map", "a table")
        .replace("path string", "a path string")
}

/// The metric syntax, for problems in `eval.metrics` / `eval.valid_metric`.
fn metric_help(path: &[String]) -> Option<String> {
    let in_eval = path.first().is_some_and(|s| s == "eval")
        && path
            .get(1)
            .is_some_and(|s| s == "metrics" || s == "valid_metric");
    in_eval.then(|| {
        let names: Vec<&str> = MetricName::ALL.iter().map(|m| m.name()).collect();
        format!(
            "write metrics as NAME@K, NAME one of {}, K >= 1, e.g. \"ndcg@10\"",
            names.join(", ")
        )
    })
}

/// For serde's "one of 'a', 'b'" messages: the closest accepted value.
fn enum_suggestion(found: &str, expected: &str) -> Option<String> {
    let rest = expected.strip_prefix("one of ")?;
    let names: Vec<&str> = rest.split(", ").map(|s| s.trim_matches('\'')).collect();
    let guess = did_you_mean(found.trim_matches('\''), names.iter().copied())?;
    Some(format!(
        "did you mean '{guess}'? allowed: {}",
        names.join(", ")
    ))
}
