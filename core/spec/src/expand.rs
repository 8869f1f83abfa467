//! `[sweep]` and `[[ablation]]`: checks their structure and expands them into variants — one
//! per sweep point and per (base + each ablation) — each a list of key changes applied to the
//! merged tree. Every change remembers which sweep entry or ablation `set` key produced it, so
//! a problem in a changed value is reported there.

use crate::check::{declared, strings, Issue, TOP_LEVEL};
use crate::layers::{kind_of, Want};
use crate::source::parse_key_path;
use pulse_api::{ConfigError, ConfigErrorKind, Family};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::HashSet;

/// One swept key and the values it takes.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    /// The key as written in `[sweep]`.
    pub raw: String,
    pub path: Vec<String>,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Grid,
    Random { samples: usize, seed: u64 },
}

#[derive(Debug, Clone)]
pub(crate) struct Sweep {
    pub axes: Vec<Axis>,
    pub mode: Mode,
}

#[derive(Debug, Clone)]
pub(crate) struct Ablation {
    /// Position in the `[[ablation]]` array.
    pub index: usize,
    pub name: String,
    /// (key as written, key path, value).
    pub sets: Vec<(String, Vec<String>, Value)>,
}

/// One key set by a sweep point or an ablation.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub path: Vec<String>,
    pub value: Value,
    /// Spec key path of the entry that made this change (its key).
    pub origin_key: Vec<String>,
    /// Spec key path of the value that was applied (a sweep list element, or the set value).
    pub origin_value: Vec<String>,
}

/// A trial without its seed.
#[derive(Debug, Clone)]
pub(crate) struct Variant {
    pub ablation: Option<usize>,
    pub changes: Vec<Change>,
}

/// Reads `[sweep]`; broken entries are reported and left out.
pub(crate) fn parse_sweep(tree: &Value, default_seed: u64, issues: &mut Vec<Issue>) -> Sweep {
    let mut sweep = Sweep {
        axes: Vec::new(),
        mode: Mode::Grid,
    };
    let Some(raw) = tree.get("sweep") else {
        return sweep;
    };
    let Some(map) = raw.as_object() else {
        issues.push(
            Issue::new(
                strings(&["sweep"]),
                Want::Value,
                format!(
                    "invalid type for sweep: expected a table, found {}",
                    kind_of(raw)
                ),
            )
            .help("write [sweep] followed by \"section.name.key\" = [values, …]"),
        );
        return sweep;
    };
    let mut random = false;
    let mut mode_ok = true;
    let mut samples: Option<usize> = None;
    let mut seed: Option<u64> = None;
    for (k, v) in map {
        let at = strings(&["sweep", k]);
        match k.as_str() {
            "mode" => match v.as_str() {
                Some("grid") => {}
                Some("random") => random = true,
                _ => {
                    mode_ok = false;
                    issues.push(
                    Issue::new(
                        at,
                        Want::Value,
                        format!("invalid value {} for sweep.mode: expected 'grid' or 'random'", shown(v)),
                    )
                    .help("write mode = \"grid\" (every combination) or mode = \"random\" with samples = N"),
                    )
                }
            },
            "samples" => match v.as_u64() {
                Some(n) if n >= 1 => samples = Some(usize::try_from(n).unwrap_or(usize::MAX)),
                _ => issues.push(
                    Issue::new(
                        at,
                        Want::Value,
                        format!("sweep.samples = {} is out of range: allowed an integer >= 1", shown(v)),
                    )
                    .help("set samples to the number of random points to run, e.g. samples = 10"),
                ),
            },
            "seed" => match v.as_u64() {
                Some(s) => seed = Some(s),
                None => issues.push(
                    Issue::new(
                        at,
                        Want::Value,
                        format!(
                            "invalid type for sweep.seed: expected a non-negative integer, found {}",
                            kind_of(v)
                        ),
                    )
                    .help("write seed = 42"),
                ),
            },
            _ => {
                if let Some(axis) = parse_axis(tree, k, v, issues) {
                    sweep.axes.push(axis);
                }
            }
        }
    }
    if random {
        match samples {
            Some(samples) => {
                sweep.mode = Mode::Random {
                    samples,
                    seed: seed.unwrap_or(default_seed),
                }
            }
            // A bad value was reported above.
            None if map.contains_key("samples") => {}
            None => issues.push(
                Issue::new(
                    strings(&["sweep"]),
                    Want::Header,
                    "missing field 'samples' in sweep: mode = \"random\" needs a number of points",
                )
                .help("add samples = N"),
            ),
        }
    } else if mode_ok {
        for opt in ["samples", "seed"] {
            if map.contains_key(opt) {
                issues.push(
                    Issue::new(
                        strings(&["sweep", opt]),
                        Want::Key,
                        format!("sweep.{opt} only applies to mode = \"random\""),
                    )
                    .help(format!(
                        "add mode = \"random\" to sample points, or remove {opt}"
                    )),
                );
            }
        }
    }
    sweep
}

fn parse_axis(tree: &Value, raw: &str, v: &Value, issues: &mut Vec<Issue>) -> Option<Axis> {
    let origin = strings(&["sweep", raw]);
    let path = check_target(tree, raw, &origin, "sweep", v.is_object(), issues)?;
    let Some(values) = v.as_array() else {
        let mut issue = Issue::new(
            origin,
            Want::Value,
            format!(
                "invalid type for sweep entry \"{raw}\": expected a list of values to try, found {}",
                kind_of(v)
            ),
        );
        issue = issue.help(format!("write \"{raw}\" = [{}]", shown(v)));
        issues.push(issue);
        return None;
    };
    if values.is_empty() {
        issues.push(
            Issue::new(
                origin,
                Want::Value,
                format!("sweep list for \"{raw}\" is empty"),
            )
            .help("give at least one value, e.g. [32, 64], or remove the entry"),
        );
        return None;
    }
    let mut ok = true;
    for (i, x) in values.iter().enumerate() {
        if values[..i].contains(x) {
            ok = false;
            issues.push(
                Issue::new(
                    strings(&["sweep", raw, &i.to_string()]),
                    Want::Value,
                    format!("duplicate value {} in sweep list for \"{raw}\"", shown(x)),
                )
                .help("list each value once; duplicates would run identical trials"),
            );
        }
    }
    ok.then(|| Axis {
        raw: raw.to_string(),
        path,
        values: values.clone(),
    })
}

/// Checks that a sweep / ablation key names a key inside a declared section; returns its path.
fn check_target(
    tree: &Value,
    raw: &str,
    origin: &[String],
    what: &str,
    value_is_table: bool,
    issues: &mut Vec<Issue>,
) -> Option<Vec<String>> {
    let issue = |message: String| Issue::new(origin.to_vec(), Want::Key, message);
    let quote_help = |example: &str| {
        if value_is_table {
            format!("write the whole dotted key in quotes, e.g. \"{example}\" = …; unquoted, TOML reads it as nested tables")
        } else {
            format!("write a quoted dotted key, e.g. \"{example}\"")
        }
    };
    let path = match parse_key_path(raw) {
        Ok(p) => p,
        Err(why) => {
            issues.push(
                issue(format!("malformed key \"{raw}\" in {what}: {why}"))
                    .help(quote_help("models.NAME.KEY")),
            );
            return None;
        }
    };
    // invariant: `parse_key_path` returns at least one segment or an error.
    let top = path[0].as_str();
    match top {
        "datasets" | "models" | "backbones" | "prompts" => {
            let family = match top {
                "datasets" => Family::Dataset,
                "backbones" => Family::Backbone,
                "prompts" => Family::Prompt,
                _ => Family::Recommender,
            };
            let known = declared(tree, top);
            if let Some(name) = path.get(1) {
                if !known.contains(name) {
                    let err = ConfigError::new(
                        Vec::new(),
                        ConfigErrorKind::DanglingReference {
                            family: family.to_string(),
                            found: name.clone(),
                            known,
                        },
                    );
                    issues.push(
                        issue(format!(
                            "{what} key \"{raw}\" refers to {family} '{name}', which is not declared"
                        ))
                        .help(err.help().unwrap_or_default()),
                    );
                    return None;
                }
            }
            if path.len() < 3 {
                let name = path.get(1).map_or("NAME", String::as_str);
                issues.push(
                    issue(format!(
                        "{what} key \"{raw}\" must name a key inside a {family}, not the whole {}",
                        if path.len() == 1 {
                            "table"
                        } else {
                            "component"
                        }
                    ))
                    .help(quote_help(&format!("{top}.{name}.KEY"))),
                );
                return None;
            }
        }
        "experiment" | "split" | "eval" | "tracker" | "rationales" | "thought_space" => {
            if path.len() < 2 {
                issues.push(
                    issue(format!(
                        "{what} key \"{raw}\" must name a key inside [{top}]"
                    ))
                    .help(quote_help(&format!("{top}.KEY"))),
                );
                return None;
            }
            if path[..2] == ["experiment", "extends"] {
                issues.push(
                    issue(format!("{what} cannot change experiment.extends"))
                        .help("layer files with extends in the spec itself"),
                );
                return None;
            }
        }
        "sweep" | "ablation" | "plugins" => {
            issues.push(
                issue(format!("{what} cannot change [{top}]"))
                    .help("sweeps and ablations change experiment, split, eval, tracker, rationales, thought_space, datasets, models, backbones or prompts keys"),
            );
            return None;
        }
        _ => {
            let err = ConfigError::new(
                Vec::new(),
                ConfigErrorKind::UnknownField {
                    field: top.to_string(),
                    expected: strings(TOP_LEVEL),
                },
            );
            issues.push(
                issue(format!(
                    "{what} key \"{raw}\" starts with unknown top-level key '{top}'"
                ))
                .help(err.help().unwrap_or_default()),
            );
            return None;
        }
    }
    Some(path)
}

/// Reads `[[ablation]]`; broken entries are reported and left out.
pub(crate) fn parse_ablations(tree: &Value, issues: &mut Vec<Issue>) -> Vec<Ablation> {
    let entries = match tree.get("ablation") {
        None => return Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => {
            let help = if other.is_object() {
                "write each ablation as [[ablation]] (two brackets) with name = \"…\" and set = { … }"
            } else {
                "write [[ablation]] tables with name = \"…\" and set = { \"models.NAME.KEY\" = value }"
            };
            issues.push(
                Issue::new(
                    strings(&["ablation"]),
                    Want::Header,
                    format!(
                        "invalid type for ablation: expected an array of tables, found {}",
                        kind_of(other)
                    ),
                )
                .help(help),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut names: Vec<(String, usize)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let idx = i.to_string();
        let here = strings(&["ablation", &idx]);
        let Some(m) = entry.as_object() else {
            issues.push(Issue::new(
                here,
                Want::Value,
                format!(
                    "invalid type for ablation #{}: expected a table, found {}",
                    i + 1,
                    kind_of(entry)
                ),
            ));
            continue;
        };
        for k in m.keys() {
            if !["name", "description", "set"].contains(&k.as_str()) {
                let err = ConfigError::new(
                    Vec::new(),
                    ConfigErrorKind::UnknownField {
                        field: k.clone(),
                        expected: strings(&["name", "description", "set"]),
                    },
                );
                issues.push(
                    Issue::new(
                        strings(&["ablation", &idx, k]),
                        Want::Key,
                        format!("unknown field '{k}' in ablation #{}", i + 1),
                    )
                    .help(err.help().unwrap_or_default()),
                );
            }
        }
        let name = match m.get("name") {
            None => {
                issues.push(
                    Issue::new(
                        here.clone(),
                        Want::Header,
                        format!("missing field 'name' in ablation #{}", i + 1),
                    )
                    .help("add name = \"…\" (used in trial labels and run names)"),
                );
                None
            }
            Some(Value::String(s)) if valid_name(s) => Some(s.clone()),
            Some(other) => {
                issues.push(
                    Issue::new(
                        strings(&["ablation", &idx, "name"]),
                        Want::Value,
                        format!(
                            "invalid value {} for ablation name: expected a non-empty name of letters, digits, '-', '_' or '.'",
                            shown(other)
                        ),
                    )
                    .help("write name = \"no-dropout\""),
                );
                None
            }
        };
        if let Some(n) = &name {
            if let Some((_, first)) = names.iter().find(|(seen, _)| seen == n) {
                issues.push(
                    Issue::new(
                        strings(&["ablation", &idx, "name"]),
                        Want::Value,
                        format!("duplicate ablation name '{n}'"),
                    )
                    .help(format!(
                        "ablation #{} already uses this name; give each ablation a unique name",
                        first + 1
                    )),
                );
            } else {
                names.push((n.clone(), i));
            }
        }
        let label = name.clone().map_or_else(
            || format!("ablation #{}", i + 1),
            |n| format!("ablation '{n}'"),
        );
        let mut sets = Vec::new();
        match m.get("set") {
            None => issues.push(
                Issue::new(here.clone(), Want::Header, format!("missing field 'set' in {label}"))
                    .help("add set = { \"models.NAME.KEY\" = value }"),
            ),
            Some(Value::Object(s)) if s.is_empty() => issues.push(
                Issue::new(strings(&["ablation", &idx, "set"]), Want::Value, format!("{label} sets nothing"))
                    .help("add the keys it changes: set = { \"models.NAME.KEY\" = value }"),
            ),
            Some(Value::Object(s)) => {
                for (k, v) in s {
                    let origin = strings(&["ablation", &idx, "set", k]);
                    if let Some(path) = check_target(tree, k, &origin, &label, v.is_object(), issues) {
                        sets.push((k.clone(), path, v.clone()));
                    }
                }
            }
            Some(other) => issues.push(
                Issue::new(
                    strings(&["ablation", &idx, "set"]),
                    Want::Value,
                    format!(
                        "invalid type for {label} set: expected a table of \"dotted.key\" = value, found {}",
                        kind_of(other)
                    ),
                )
                .help("write set = { \"models.NAME.KEY\" = value }"),
            ),
        }
        if let Some(name) = name {
            out.push(Ablation {
                index: i,
                name,
                sets,
            });
        }
    }
    out
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A value as TOML would show it, for messages.
pub(crate) fn shown(v: &Value) -> String {
    crate::flat::toml_inline(v)
}

/// The sweep points in grid order (last key varies fastest); a random sweep draws `samples`
/// distinct points (all of them if there are fewer) and keeps them in grid order.
pub(crate) fn points(sweep: &Sweep) -> Vec<Vec<usize>> {
    let sizes: Vec<usize> = sweep.axes.iter().map(|a| a.values.len()).collect();
    let total = sizes.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n));
    match sweep.mode {
        Mode::Random { samples, seed } if total.is_none_or(|t| samples < t) => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut seen = HashSet::new();
            let mut picked = Vec::new();
            // Terminates: fewer points are wanted than exist, so new ones keep turning up.
            while picked.len() < samples {
                let p: Vec<usize> = sizes.iter().map(|&n| rng.random_range(0..n)).collect();
                if seen.insert(p.clone()) {
                    picked.push(p);
                }
            }
            picked.sort();
            picked
        }
        _ => {
            let mut out = vec![Vec::new()];
            for &n in &sizes {
                out = out
                    .into_iter()
                    .flat_map(|p| {
                        (0..n).map(move |i| {
                            let mut q = p.clone();
                            q.push(i);
                            q
                        })
                    })
                    .collect();
            }
            out
        }
    }
}

/// Sweep points × (base + each ablation), in that order.
pub(crate) fn variants(sweep: &Sweep, ablations: &[Ablation]) -> Vec<Variant> {
    let mut out = Vec::new();
    for point in points(sweep) {
        let base: Vec<Change> = sweep
            .axes
            .iter()
            .zip(&point)
            .map(|(axis, &i)| Change {
                path: axis.path.clone(),
                value: axis.values[i].clone(),
                origin_key: strings(&["sweep", &axis.raw]),
                origin_value: strings(&["sweep", &axis.raw, &i.to_string()]),
            })
            .collect();
        out.push(Variant {
            ablation: None,
            changes: base.clone(),
        });
        for (a, ab) in ablations.iter().enumerate() {
            let mut changes = base.clone();
            for (raw, path, value) in &ab.sets {
                let origin = strings(&["ablation", &ab.index.to_string(), "set", raw]);
                changes.push(Change {
                    path: path.clone(),
                    value: value.clone(),
                    origin_key: origin.clone(),
                    origin_value: origin,
                });
            }
            out.push(Variant {
                ablation: Some(a),
                changes,
            });
        }
    }
    out
}

/// `base` with every change assigned (later changes win; a table value replaces, not merges).
pub(crate) fn apply(base: &Value, changes: &[Change]) -> Value {
    let mut tree = base.clone();
    for c in changes {
        set_at(&mut tree, &c.path, c.value.clone());
    }
    tree
}

fn set_at(root: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *root = value;
        return;
    };
    if let Value::Array(a) = root {
        if let Some(i) = first.parse::<usize>().ok().filter(|&i| i < a.len()) {
            return set_at(&mut a[i], rest, value);
        }
    }
    if !root.is_object() {
        *root = Value::Object(Default::default());
    }
    if let Value::Object(m) = root {
        set_at(m.entry(first.clone()).or_insert(Value::Null), rest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sweep(axes: &[(&str, usize)], mode: Mode) -> Sweep {
        Sweep {
            axes: axes
                .iter()
                .map(|(k, n)| Axis {
                    raw: k.to_string(),
                    path: parse_key_path(k).unwrap(),
                    values: (0..*n).map(|i| json!(i)).collect(),
                })
                .collect(),
            mode,
        }
    }

    #[track_caller]
    fn check_points(s: &Sweep, expected: &[&[usize]]) {
        let got = points(s);
        let want: Vec<Vec<usize>> = expected.iter().map(|p| p.to_vec()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn grid_points_vary_last_key_fastest() {
        check_points(&sweep(&[], Mode::Grid), &[&[]]);
        check_points(
            &sweep(&[("a.x", 2), ("b.y", 3)], Mode::Grid),
            &[&[0, 0], &[0, 1], &[0, 2], &[1, 0], &[1, 1], &[1, 2]],
        );
    }

    #[test]
    fn random_points_are_deterministic_distinct_and_bounded() {
        let s = sweep(
            &[("a.x", 10), ("b.y", 10)],
            Mode::Random {
                samples: 7,
                seed: 3,
            },
        );
        let first = points(&s);
        assert_eq!(first, points(&s));
        assert_eq!(first.len(), 7);
        assert_eq!(first.iter().collect::<HashSet<_>>().len(), 7);
        let other = points(&sweep(
            &[("a.x", 10), ("b.y", 10)],
            Mode::Random {
                samples: 7,
                seed: 4,
            },
        ));
        assert_ne!(first, other);
        // More samples than points: the whole grid.
        let all = points(&sweep(
            &[("a.x", 2)],
            Mode::Random {
                samples: 5,
                seed: 1,
            },
        ));
        assert_eq!(all, vec![vec![0], vec![1]]);
    }

    #[test]
    fn set_at_replaces_and_creates() {
        let mut v = json!({"models": {"m": {"loss": {"type": "bce", "negatives": 4}}}});
        set_at(
            &mut v,
            &strings(&["models", "m", "loss"]),
            json!({"type": "ce"}),
        );
        assert_eq!(v["models"]["m"]["loss"], json!({"type": "ce"}));
        set_at(&mut v, &strings(&["split", "type"]), json!("ratio"));
        assert_eq!(v["split"]["type"], "ratio");
        let mut a = json!({"eval": {"metrics": ["hr@10", "ndcg@10"]}});
        set_at(&mut a, &strings(&["eval", "metrics", "1"]), json!("mrr@5"));
        assert_eq!(a["eval"]["metrics"], json!(["hr@10", "mrr@5"]));
    }
}
