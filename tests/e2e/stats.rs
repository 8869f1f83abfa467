//! Seeds and significance: a spec with `seeds = [...]` runs every trial per seed, and
//! `pulse compare --vs MODEL` reports mean ± sd and Holm-corrected paired tests over per-user
//! NDCG@10, read back from the run store.

use crate::{pulse, stderr, stdout};

#[test]
fn compare_vs_aggregates_seeds_and_tests_per_user() {
    let store = tempfile::tempdir().unwrap();
    let out = pulse(
        store.path(),
        &[
            "run",
            "tests/e2e/specs/synthetic.toml",
            "-q",
            "--set",
            "experiment.seeds=[1, 2]",
            "--set",
            "models.sasrec.epochs=6",
            "--set",
            "models.bpr-mf.epochs=6",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let out = pulse(
        store.path(),
        &[
            "compare",
            "--experiment",
            "e2e-synthetic",
            "--vs",
            "pop",
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        rows.len(),
        3,
        "one row per model, seeds aggregated: {rows:#?}"
    );
    for r in &rows {
        assert_eq!(r["seeds"], serde_json::json!([1, 2]), "{r:#}");
        let ndcg = &r["metrics"]["ndcg@10"];
        assert_eq!(ndcg["n"], 2, "{r:#}");
        assert!(ndcg["sd"].as_f64().unwrap() >= 0.0, "{r:#}");
    }
    let sasrec = rows.iter().find(|r| r["model"] == "sasrec").unwrap();
    let vs = &sasrec["vs"];
    assert!(vs["users"].as_u64().unwrap() > 100, "{vs:#}");
    assert!(vs["relative_difference"].as_f64().unwrap() > 0.5, "{vs:#}");
    assert!(vs["p_t_holm"].as_f64().unwrap() < 0.05, "{vs:#}");
    assert!(vs["p_wilcoxon_holm"].as_f64().unwrap() < 0.05, "{vs:#}");
    assert!(vs["p_t_holm"].as_f64() >= vs["p_t"].as_f64(), "{vs:#}");
    assert_eq!(vs["significant"], true);
    let pop = rows.iter().find(|r| r["model"] == "pop").unwrap();
    assert!(
        pop["vs"].is_null(),
        "the reference has no test against itself"
    );

    // The Markdown table marks significance and says how it was computed.
    let out = pulse(store.path(), &["compare", "--vs", "pop"]);
    let md = stdout(&out);
    assert!(
        md.contains(" ± ") && md.contains(" *") && md.contains("Holm"),
        "{md}"
    );
    // --ci: each model's interval over users contains its mean.
    let out = pulse(store.path(), &["compare", "--ci", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    for r in &rows {
        let mean = r["metrics"]["ndcg@10"]["mean"].as_f64().unwrap();
        let ci = r["ci95"]
            .as_array()
            .unwrap_or_else(|| panic!("no interval: {r:#}"));
        let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
        assert!(lo < mean && mean < hi && hi - lo < 0.5, "{r:#}");
    }
    // --per-seed keeps one row per run; an unknown reference is a clear error.
    let out = pulse(store.path(), &["compare", "--per-seed", "--format", "json"]);
    let per_run: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(per_run.len(), 6);
    let out = pulse(store.path(), &["compare", "--vs", "gru4rec"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("models here: bpr-mf, pop, sasrec"),
        "{}",
        stderr(&out)
    );
}
