//! Result tables for `pulse run` and `pulse compare`: one row per (trial, data set, model),
//! rendered as Markdown, CSV or JSON (an array of objects with `run_id`, `trial`, `model` and
//! `metrics` keyed like `ndcg@10`).

use crate::cli::TableFormat;
use std::collections::{BTreeMap, BTreeSet};

/// One row of a result table.
#[derive(Debug, Clone)]
pub struct Row {
    pub run_id: String,
    pub trial_id: String,
    pub trial: String,
    pub dataset: String,
    pub model: String,
    pub seed: u64,
    pub status: String,
    pub error: Option<String>,
    pub metrics: BTreeMap<String, f64>,
    pub best_epoch: Option<f64>,
    pub seconds: Option<f64>,
    /// What the run's result depends on besides its seed (see [`crate::aggregate::config_of`]);
    /// runs are seeds of one configuration only when these are equal.
    pub config: BTreeMap<String, String>,
}

/// Metric columns in a readable order: by cut-off, then hr, ndcg, mrr, recall, precision.
fn metric_columns(rows: &[Row]) -> Vec<String> {
    let keys: BTreeSet<&String> = rows.iter().flat_map(|r| r.metrics.keys()).collect();
    order_metrics(keys.into_iter().cloned().collect())
}

/// Sorts metric names by cut-off, then hr, ndcg, mrr, recall, precision.
pub fn order_metrics(mut cols: Vec<String>) -> Vec<String> {
    let order = ["hr", "ndcg", "mrr", "recall", "precision"];
    cols.sort_by_key(|k| {
        let (name, kk) = k.split_once('@').unwrap_or((k.as_str(), "0"));
        let pos = order.iter().position(|o| *o == name).unwrap_or(order.len());
        (kk.parse::<usize>().unwrap_or(0), pos, k.clone())
    });
    cols
}

pub fn render(rows: &[Row], format: TableFormat) -> String {
    match format {
        TableFormat::Json => render_json(rows),
        TableFormat::Csv => render_csv(rows),
        TableFormat::Md => render_md(rows),
    }
}

fn render_json(rows: &[Row]) -> String {
    let arr: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "run_id": r.run_id,
                "trial": r.trial_id,
                "trial_label": r.trial,
                "dataset": r.dataset,
                "model": r.model,
                "seed": r.seed,
                "status": r.status,
                "error": r.error,
                "metrics": r.metrics,
                "best_epoch": r.best_epoch,
                "seconds": r.seconds,
            })
        })
        .collect();
    serde_json::to_string_pretty(&arr).unwrap_or_else(|_| "[]".into())
}

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn render_csv(rows: &[Row]) -> String {
    let cols = metric_columns(rows);
    let mut out = String::from("run_id,trial,trial_label,dataset,model,seed,status");
    for c in &cols {
        out.push(',');
        out.push_str(c);
    }
    out.push_str(",best_epoch,seconds\n");
    for r in rows {
        let mut f = vec![
            r.run_id.clone(),
            r.trial_id.clone(),
            csv_field(&r.trial),
            csv_field(&r.dataset),
            csv_field(&r.model),
            r.seed.to_string(),
            r.status.clone(),
        ];
        for c in &cols {
            f.push(
                r.metrics
                    .get(c)
                    .map(|v| format!("{v:.6}"))
                    .unwrap_or_default(),
            );
        }
        f.push(r.best_epoch.map(|e| e.to_string()).unwrap_or_default());
        f.push(r.seconds.map(|s| format!("{s:.1}")).unwrap_or_default());
        out.push_str(&f.join(","));
        out.push('\n');
    }
    out
}

fn render_md(rows: &[Row]) -> String {
    let cols = metric_columns(rows);
    let multi_trial = rows
        .iter()
        .map(|r| &r.trial_id)
        .collect::<BTreeSet<_>>()
        .len()
        > 1;
    let multi_ds = rows
        .iter()
        .map(|r| &r.dataset)
        .collect::<BTreeSet<_>>()
        .len()
        > 1;
    let mut header: Vec<String> = Vec::new();
    if multi_trial {
        header.push("trial".into());
    }
    if multi_ds {
        header.push("dataset".into());
    }
    header.push("model".into());
    header.extend(cols.iter().cloned());
    header.extend([
        "best epoch".to_string(),
        "time (s)".to_string(),
        "status".to_string(),
    ]);
    let mut lines = vec![header];
    for r in rows {
        let mut l = Vec::new();
        if multi_trial {
            l.push(format!(
                "{} {}",
                &r.trial_id[..r.trial_id.len().min(8)],
                r.trial
            ));
        }
        if multi_ds {
            l.push(r.dataset.clone());
        }
        l.push(r.model.clone());
        for c in &cols {
            l.push(
                r.metrics
                    .get(c)
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "—".into()),
            );
        }
        l.push(
            r.best_epoch
                .map(|e| format!("{e}"))
                .unwrap_or_else(|| "—".into()),
        );
        l.push(
            r.seconds
                .map(|s| format!("{s:.1}"))
                .unwrap_or_else(|| "—".into()),
        );
        l.push(match &r.error {
            Some(e) => format!("{}: {}", r.status, e.chars().take(80).collect::<String>()),
            None => r.status.clone(),
        });
        lines.push(l);
    }
    markdown(&lines)
}

/// A Markdown table from a header line and rows, columns padded to their widest cell.
pub fn markdown(lines: &[Vec<String>]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let fmt_line = |l: &[String]| {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("| {} |", cells.join(" | "))
    };
    let mut out = fmt_line(&lines[0]);
    out.push('\n');
    let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", sep.join("-|-")));
    for l in &lines[1..] {
        out.push_str(&fmt_line(l));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, ndcg: f64) -> Row {
        Row {
            run_id: "r".into(),
            trial_id: "abcdef123456".into(),
            trial: "base".into(),
            dataset: "d".into(),
            model: model.into(),
            seed: 1,
            status: "FINISHED".into(),
            error: None,
            metrics: [("ndcg@10".to_string(), ndcg), ("hr@10".to_string(), 0.5)].into(),
            best_epoch: None,
            seconds: Some(1.0),
            config: BTreeMap::new(),
        }
    }

    #[test]
    fn formats() {
        let rows = vec![row("pop", 0.1), row("sasrec, v2", 0.2)];
        let md = render(&rows, TableFormat::Md);
        assert!(md.starts_with("| model "), "{md}");
        assert!(md.contains("| hr@10  | ndcg@10 |"), "{md}");
        assert!(md.contains("0.2000"), "{md}");
        let csv = render(&rows, TableFormat::Csv);
        assert!(csv.contains("\"sasrec, v2\""), "{csv}");
        let json: serde_json::Value =
            serde_json::from_str(&render(&rows, TableFormat::Json)).unwrap();
        assert_eq!(json[1]["metrics"]["ndcg@10"], 0.2);
        assert_eq!(json[0]["model"], "pop");
        assert_eq!(json[0]["trial"], "abcdef123456");
    }
}
