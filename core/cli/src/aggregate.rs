//! `pulse compare` over seeds and against a reference model: runs that differ only by seed are
//! grouped (same trial label without its `seed=` part, data set and model) and shown as
//! mean ± sample sd (runs are seeds of one configuration only when their params agree, see
//! [`config_of`]; otherwise each configuration is its own row, labelled by what differs); with
//! `--vs MODEL` each group is also tested against that model's group on
//! the same data set and trial, by paired tests over per-user test metrics (each user's value
//! averaged over the group's seeds, users matched by id): the paired t-test and the Wilcoxon
//! signed-rank test, each Holm-corrected across every comparison in the table. With `--ci` each
//! group also gets the 95% confidence interval of its mean over test users, the yardstick for
//! comparing against a figure published elsewhere (no per-user values to pair with).

use crate::cli::TableFormat;
use crate::table::Row;
use pulse_api::RunInfo;
use pulse_eval::stats::{holm, mean_sd, paired_t, wilcoxon};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Significance level of the marks.
const ALPHA: f64 = 0.05;

/// Runs of one (trial without seed, data set, model).
#[derive(Debug)]
struct Group<'a> {
    trial: String,
    dataset: String,
    model: String,
    rows: Vec<&'a Row>,
}

/// A paired comparison of one group against the reference.
#[derive(Debug, Default, Clone)]
struct Paired {
    users: usize,
    delta_rel: f64,
    p_t: f64,
    p_w: f64,
}

/// Whether the rows hold more than one seed of the same configuration.
pub fn has_seed_groups(rows: &[Row]) -> bool {
    groups(rows).iter().any(|g| g.rows.len() > 1)
}

/// A trial label without its `seed=N` part.
fn base_label(label: &str) -> String {
    let kept: Vec<&str> = label
        .split(' ')
        .filter(|p| !p.starts_with("seed="))
        .collect();
    if kept.is_empty() {
        "base".into()
    } else {
        kept.join(" ")
    }
}

/// The params a run's result depends on besides its seed: the flattened spec without the
/// `experiment.*` keys (name, seeds, which models ran; the training budget stays), the
/// tracker, and the sections of the other models and data sets.
pub fn config_of(info: &RunInfo) -> BTreeMap<String, String> {
    let own_model = format!("models.{}.", info.model);
    let own_data = format!("datasets.{}.", info.dataset);
    info.params
        .iter()
        .filter(|(k, _)| {
            !((k.starts_with("experiment.") && k.as_str() != "experiment.train_budget_minutes")
                || k.starts_with("tracker.")
                || (k.starts_with("models.") && !k.starts_with(&own_model))
                || (k.starts_with("datasets.") && !k.starts_with(&own_data)))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Sections written by the user and read by plugins: a key only one run has is a setting the
/// other left at its default, so it is a difference.
fn plugin_key(k: &str) -> bool {
    ["models.", "datasets.", "backbones.", "prompts."]
        .iter()
        .any(|p| k.starts_with(p))
}

/// Keys whose values differ between two configurations. In the core sections (split, eval, …)
/// every key is written with its default, so a key only one run has was added by a later pulse
/// version and does not count: old and new runs of one spec stay seeds.
fn differing<'a>(a: &'a BTreeMap<String, String>, b: &'a BTreeMap<String, String>) -> Vec<&'a str> {
    let keys: BTreeSet<&'a String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| match (a.get(*k), b.get(*k)) {
            (Some(v), Some(w)) => v != w,
            _ => plugin_key(k),
        })
        .map(String::as_str)
        .collect()
}

fn groups(rows: &[Row]) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    for r in rows.iter().filter(|r| r.status == "FINISHED") {
        let trial = base_label(&r.trial);
        match out.iter_mut().find(|g| {
            g.trial == trial
                && g.dataset == r.dataset
                && g.model == r.model
                && differing(&g.rows[0].config, &r.config).is_empty()
        }) {
            Some(g) => g.rows.push(r),
            None => out.push(Group {
                trial,
                dataset: r.dataset.clone(),
                model: r.model.clone(),
                rows: vec![r],
            }),
        }
    }
    // Configurations that share a label get what sets them apart appended to it.
    let labels: Vec<Option<String>> = out
        .iter()
        .map(|g| {
            let config = &g.rows[0].config;
            let keys: BTreeSet<&str> = out
                .iter()
                .filter(|h| !std::ptr::eq(*h, g) && h.trial == g.trial)
                .filter(|h| h.dataset == g.dataset && h.model == g.model)
                .flat_map(|h| differing(config, &h.rows[0].config))
                .collect();
            let prefix = format!("models.{}.", g.model);
            let parts: Vec<String> = keys
                .iter()
                .map(|k| {
                    let v = config.get(*k).map_or("default", String::as_str);
                    format!("{}={v}", k.strip_prefix(&prefix).unwrap_or(k))
                })
                .collect();
            (!parts.is_empty()).then(|| format!("{} ({})", g.trial, parts.join(", ")))
        })
        .collect();
    for (g, label) in out.iter_mut().zip(labels) {
        if let Some(l) = label {
            g.trial = l;
        }
    }
    out
}

/// Per-user values of `metric` from a run's `per_user_test.json`, keyed by user id.
pub fn read_per_user(run_dir: &Path, metric: &str) -> Option<BTreeMap<String, f64>> {
    let path = run_dir.join("artifacts").join("per_user_test.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let users = v.get("users")?.as_array()?;
    let values = v.get("metrics")?.get(metric)?.as_array()?;
    users
        .iter()
        .zip(values)
        .map(|(u, x)| Some((u.as_str()?.to_string(), x.as_f64()?)))
        .collect()
}

/// Each user's mean over the group's runs (users present in every run).
fn user_means(
    g: &Group<'_>,
    per_user: &dyn Fn(&Row) -> Option<BTreeMap<String, f64>>,
) -> Option<BTreeMap<String, f64>> {
    let maps: Vec<BTreeMap<String, f64>> =
        g.rows.iter().map(|r| per_user(r)).collect::<Option<_>>()?;
    let first = maps.first()?;
    let n = maps.len() as f64;
    Some(
        first
            .keys()
            .filter_map(|u| {
                let s: Option<f64> = maps.iter().map(|m| m.get(u).copied()).sum();
                s.map(|s| (u.clone(), s / n))
            })
            .collect(),
    )
}

fn paired(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> Paired {
    let (xs, ys): (Vec<f64>, Vec<f64>) = a
        .iter()
        .filter_map(|(u, x)| b.get(u).map(|y| (*x, *y)))
        .unzip();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (ma, mb) = (mean(&xs), mean(&ys));
    Paired {
        users: xs.len(),
        delta_rel: if mb != 0.0 { ma / mb - 1.0 } else { f64::NAN },
        p_t: paired_t(&xs, &ys).map_or(f64::NAN, |t| t.p_value),
        p_w: wilcoxon(&xs, &ys).map_or(f64::NAN, |w| w.p_value),
    }
}

/// The optional columns of the aggregated table.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// Paired tests against this model.
    pub vs: Option<&'a str>,
    /// The per-user metric of the tests and the interval.
    pub metric: &'a str,
    /// The 95% confidence interval of the mean over users.
    pub ci: bool,
}

/// 95% normal-approximation interval of the mean of `xs` (None under two values).
fn ci95(xs: &[f64]) -> Option<(f64, f64)> {
    if xs.len() < 2 {
        return None;
    }
    let (m, sd) = mean_sd(xs);
    let half = 1.96 * sd / (xs.len() as f64).sqrt();
    Some((m - half, m + half))
}

/// Renders the seed-aggregated table, with paired tests against `vs` and the per-user
/// confidence interval when asked. `per_user` loads a run's per-user metric (None when the run
/// has none, e.g. read from a server).
pub fn render(
    rows: &[Row],
    want: &Columns<'_>,
    per_user: &dyn Fn(&Row) -> Option<BTreeMap<String, f64>>,
    format: TableFormat,
) -> Result<String, String> {
    let (vs, metric) = (want.vs, want.metric);
    let groups = groups(rows);
    if let Some(v) = vs {
        if !groups.iter().any(|g| g.model == v) {
            let known: BTreeSet<&str> = groups.iter().map(|g| g.model.as_str()).collect();
            return Err(format!(
                "--vs {v}: no finished runs of model '{v}'; models here: {}",
                known.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    // Paired tests, then Holm across the whole table (each test separately).
    let means: Vec<Option<BTreeMap<String, f64>>> = if vs.is_some() || want.ci {
        groups.iter().map(|g| user_means(g, per_user)).collect()
    } else {
        vec![None; groups.len()]
    };
    let mut tests: Vec<Option<Paired>> = vec![None; groups.len()];
    if let Some(v) = vs {
        for (i, g) in groups.iter().enumerate() {
            if g.model == v {
                continue;
            }
            let reference = groups
                .iter()
                .position(|h| h.model == v && h.dataset == g.dataset && h.trial == g.trial);
            if let (Some(j), Some(a)) = (reference, &means[i]) {
                if let Some(b) = &means[j] {
                    tests[i] = Some(paired(a, b));
                }
            }
        }
    }
    let p_t: Vec<f64> = tests
        .iter()
        .map(|t| t.as_ref().map_or(f64::NAN, |t| t.p_t))
        .collect();
    let p_w: Vec<f64> = tests
        .iter()
        .map(|t| t.as_ref().map_or(f64::NAN, |t| t.p_w))
        .collect();
    let (adj_t, adj_w) = (holm(&p_t), holm(&p_w));

    let metrics: BTreeSet<&String> = groups
        .iter()
        .flat_map(|g| g.rows.iter().flat_map(|r| r.metrics.keys()))
        .collect();
    let cols = crate::table::order_metrics(metrics.into_iter().cloned().collect());
    let multi_trial = groups
        .iter()
        .map(|g| &g.trial)
        .collect::<BTreeSet<_>>()
        .len()
        > 1;
    let multi_ds = groups
        .iter()
        .map(|g| &g.dataset)
        .collect::<BTreeSet<_>>()
        .len()
        > 1;

    let mut json_rows = Vec::new();
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut header = Vec::new();
    if multi_trial {
        header.push("trial".to_string());
    }
    if multi_ds {
        header.push("dataset".to_string());
    }
    header.push("model".into());
    header.push("seeds".into());
    header.extend(cols.iter().cloned());
    if want.ci {
        header.push(format!("95% CI {metric} (users)"));
    }
    if let Some(v) = vs {
        header.push(format!("Δ{metric} vs {v}"));
        header.push("p (t-test, Holm)".into());
        header.push("p (Wilcoxon, Holm)".into());
    }
    lines.push(header);
    for (i, g) in groups.iter().enumerate() {
        let mut l = Vec::new();
        if multi_trial {
            l.push(g.trial.clone());
        }
        if multi_ds {
            l.push(g.dataset.clone());
        }
        l.push(g.model.clone());
        l.push(g.rows.len().to_string());
        let mut stats = serde_json::Map::new();
        for c in &cols {
            let xs: Vec<f64> = g
                .rows
                .iter()
                .filter_map(|r| r.metrics.get(c).copied())
                .collect();
            if xs.is_empty() {
                l.push("—".into());
                continue;
            }
            let (m, sd) = mean_sd(&xs);
            l.push(if xs.len() > 1 {
                format!("{m:.4} ± {sd:.4}")
            } else {
                format!("{m:.4}")
            });
            stats.insert(
                c.clone(),
                serde_json::json!({"mean": m, "sd": sd, "n": xs.len()}),
            );
        }
        let interval = means[i]
            .as_ref()
            .and_then(|m| ci95(&m.values().copied().collect::<Vec<_>>()));
        if want.ci {
            l.push(interval.map_or("n/a".into(), |(lo, hi)| format!("[{lo:.4}, {hi:.4}]")));
        }
        let mut jt = serde_json::Value::Null;
        if vs.is_some() {
            match &tests[i] {
                Some(t) => {
                    let mark = |p: f64| match p {
                        p if p.is_nan() => "n/a".to_string(),
                        p if p < 1e-16 => "<1e-16 *".to_string(),
                        p if p < ALPHA => format!("{p:.1e} *"),
                        p => format!("{p:.3}"),
                    };
                    l.push(format!("{:+.1}%", t.delta_rel * 100.0));
                    l.push(mark(adj_t[i]));
                    l.push(mark(adj_w[i]));
                    jt = serde_json::json!({
                        "users": t.users, "relative_difference": t.delta_rel,
                        "p_t": t.p_t, "p_t_holm": adj_t[i], "p_wilcoxon": t.p_w,
                        "p_wilcoxon_holm": adj_w[i],
                        "significant": adj_t[i] < ALPHA && adj_w[i] < ALPHA,
                    });
                }
                None if Some(g.model.as_str()) == vs => {
                    l.extend(["ref".into(), "—".into(), "—".into()])
                }
                None => l.extend(["—".into(), "n/a".into(), "n/a".into()]),
            }
        }
        json_rows.push(serde_json::json!({
            "trial": g.trial, "dataset": g.dataset, "model": g.model,
            "seeds": g.rows.iter().map(|r| r.seed).collect::<Vec<_>>(),
            "metrics": stats, "vs": jt,
            "ci95": interval.map(|(lo, hi)| [lo, hi]),
        }));
        lines.push(l);
    }
    Ok(match format {
        TableFormat::Json => serde_json::to_string_pretty(&json_rows).unwrap_or_default() + "\n",
        TableFormat::Csv => {
            lines
                .iter()
                .map(|l| {
                    l.iter()
                        .map(|c| crate::table::csv_field(c))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        }
        TableFormat::Md => {
            let mut out = crate::table::markdown(&lines);
            if let Some(v) = vs {
                out.push_str(&format!(
                    "\nPaired tests over per-user test {metric} (each user's mean over seeds) \
                     against {v}; p-values Holm-corrected across the table, * = p < {ALPHA}.\n"
                ));
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, seed: u64, ndcg: f64) -> Row {
        Row {
            run_id: format!("{model}-{seed}"),
            trial_id: format!("t{seed}"),
            trial: format!("seed={seed}"),
            dataset: "d".into(),
            model: model.into(),
            seed,
            status: "FINISHED".into(),
            error: None,
            metrics: [("ndcg@10".to_string(), ndcg)].into(),
            best_epoch: None,
            seconds: None,
            config: [("models.m.layers".to_string(), "2".to_string())].into(),
        }
    }

    #[track_caller]
    fn check(rows: &[Row], vs: Option<&str>, ci: bool, expected: &[&str]) {
        // Model "good" beats "base" for every user; "same" equals "base".
        let per_user = |r: &Row| -> Option<BTreeMap<String, f64>> {
            let shift = match r.model.as_str() {
                "good" => 0.1,
                _ => 0.0,
            };
            Some(
                (0..50)
                    .map(|u| (format!("u{u}"), f64::from(u % 7) / 10.0 + shift))
                    .collect(),
            )
        };
        let want = Columns {
            vs,
            metric: "ndcg@10",
            ci,
        };
        let out = render(rows, &want, &per_user, TableFormat::Md).unwrap();
        for e in expected {
            assert!(out.contains(e), "missing {e:?} in\n{out}");
        }
    }

    #[test]
    fn aggregates_seeds_and_marks_significance() {
        let rows = vec![
            row("base", 1, 0.10),
            row("base", 2, 0.12),
            row("good", 1, 0.20),
            row("good", 2, 0.22),
            row("same", 1, 0.10),
            row("same", 2, 0.12),
        ];
        assert!(has_seed_groups(&rows));
        check(&rows, None, false, &["| base  | 2     | 0.1100 ± 0.0141 |"]);
        check(
            &rows,
            Some("base"),
            false,
            &[
                "| good  | 2     | 0.2100 ± 0.0141 | +34.0%",
                "<1e-16 *",
                "4.3e-10 *",
                "| same  | 2     | 0.1100 ± 0.0141 | +0.0%            | 1.000            | n/a",
                "| base  | 2     | 0.1100 ± 0.0141 | ref",
                "Holm",
            ],
        );
        let nope = Columns {
            vs: Some("nope"),
            metric: "ndcg@10",
            ci: false,
        };
        let err = render(&rows, &nope, &|_| None, TableFormat::Md).unwrap_err();
        assert!(err.contains("models here: base, good, same"), "{err}");
    }

    #[test]
    fn interval_is_over_users() {
        // Per-user values (u % 7) / 10 for 50 users: mean 0.294, sample sd 0.2045, so the
        // half-width is 1.96 · 0.2045 / √50 = 0.0567; "good" is the same shifted by 0.1.
        let rows = vec![row("base", 1, 0.10), row("good", 1, 0.20)];
        check(
            &rows,
            None,
            true,
            &[
                "95% CI ndcg@10 (users)",
                "[0.2373, 0.3507]",
                "[0.3373, 0.4507]",
            ],
        );
        assert_eq!(ci95(&[0.5]), None);
        let (lo, hi) = ci95(&[0.0, 1.0, 0.0, 1.0]).unwrap();
        // mean 0.5, sd 0.5774, n 4: ± 1.96 · 0.2887.
        assert!((lo - (0.5 - 0.565_8)).abs() < 1e-3 && (hi - 1.065_8).abs() < 1e-3);
    }

    #[test]
    fn seeds_group_only_within_one_configuration() {
        let with = |mut r: Row, k: &str, v: &str| {
            r.config.insert(k.into(), v.into());
            r
        };
        let rows = vec![
            row("m", 1, 0.10),
            row("m", 2, 0.12),
            // Same spec run by a later version that writes one more key: still a seed.
            with(row("m", 3, 0.14), "eval.new_key", "x"),
            // Another learning rate, run outside the spec with --set: its own row.
            with(row("m", 1, 0.30), "models.m.learning_rate", "0.003"),
            with(row("m", 2, 0.32), "models.m.learning_rate", "0.003"),
        ];
        let mut rows = rows;
        for r in rows.iter_mut().take(3) {
            r.config
                .insert("models.m.learning_rate".into(), "0.001".into());
        }
        let g = groups(&rows);
        assert_eq!(g.len(), 2, "{g:#?}");
        assert_eq!(g[0].rows.len(), 3);
        assert_eq!(g[0].trial, "base (learning_rate=0.001)");
        assert_eq!(g[1].trial, "base (learning_rate=0.003)");
        check(
            &rows,
            None,
            false,
            &[
                "| base (learning_rate=0.001) | m     | 3     | 0.1200 ± 0.0200 |",
                "| base (learning_rate=0.003) | m     | 2     | 0.3100 ± 0.0141 |",
            ],
        );
        // A setting only one run makes is a difference; the other keeps the default.
        let pair = [
            with(row("m", 1, 0.1), "models.m.batch_size", "32"),
            row("m", 2, 0.1),
        ];
        let labels: Vec<String> = groups(&pair).into_iter().map(|g| g.trial).collect();
        assert_eq!(
            labels,
            ["base (batch_size=32)", "base (batch_size=default)"]
        );
        // Differently configured runs with one seed each are not seed groups.
        assert!(!has_seed_groups(&[rows[0].clone(), rows[3].clone()]));
    }

    #[test]
    fn labels_group_without_their_seed() {
        assert_eq!(base_label("seed=3"), "base");
        assert_eq!(base_label("ablation=x seed=3"), "ablation=x");
        assert!(!has_seed_groups(&[row("a", 1, 0.1), row("b", 1, 0.1)]));
    }
}
