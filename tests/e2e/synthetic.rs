//! The whole pipeline on the `synthetic` data set: learning, determinism, failure isolation.

use crate::{compare_json, metric, pulse, stderr, stdout};

const SPEC: &str = "tests/e2e/specs/synthetic.toml";

#[test]
fn trains_evaluates_and_records() {
    let store = tempfile::tempdir().unwrap();
    let out = pulse(store.path(), &["run", SPEC, "--no-progress"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    for model in ["pop", "bpr-mf", "sasrec"] {
        assert!(table.contains(model), "{table}");
    }
    assert!(table.contains("run(s) stored in"), "{table}");

    let rows = compare_json(store.path(), "e2e-synthetic");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    for r in &rows {
        assert_eq!(r["status"], "FINISHED", "{r:#}");
        assert!(r["run_id"].as_str().is_some_and(|s| !s.is_empty()));
    }
    let pop = metric(&rows, "pop", "ndcg@10");
    let sasrec = metric(&rows, "sasrec", "ndcg@10");
    let bpr = metric(&rows, "bpr-mf", "ndcg@10");
    assert!(sasrec > 1.5 * pop, "sasrec {sasrec} vs pop {pop}");
    assert!(bpr > pop, "bpr-mf {bpr} vs pop {pop}");

    // Each run directory holds the record the issue promises.
    let exp = store.path().join("e2e-synthetic");
    let run_dir = exp.join(rows[2]["run_id"].as_str().unwrap());
    for f in [
        "run.json",
        "spec.json",
        "params.json",
        "env.json",
        "metrics.jsonl",
        "status.json",
    ] {
        assert!(
            run_dir.join(f).is_file(),
            "missing {f} in {}",
            run_dir.display()
        );
    }
    let trained = rows.iter().find(|r| r["model"] == "sasrec").unwrap();
    let dir = exp.join(trained["run_id"].as_str().unwrap());
    assert!(dir.join("artifacts/best.safetensors").is_file());
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"train/loss\""), "{metrics}");
    assert!(metrics.contains("\"valid/ndcg@10\""), "{metrics}");
    let params = std::fs::read_to_string(dir.join("params.json")).unwrap();
    assert!(params.contains("models.sasrec.max_len"), "{params}");
}

#[test]
fn same_seed_gives_identical_metrics() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for store in [&a, &b] {
        let out = pulse(
            store.path(),
            &[
                "run",
                SPEC,
                "-q",
                "--set",
                "models.sasrec.epochs=4",
                "--set",
                "models.bpr-mf.epochs=4",
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let ra = compare_json(a.path(), "e2e-synthetic");
    let rb = compare_json(b.path(), "e2e-synthetic");
    for model in ["pop", "bpr-mf", "sasrec"] {
        let ma = &ra.iter().find(|r| r["model"] == model).unwrap()["metrics"];
        let mb = &rb.iter().find(|r| r["model"] == model).unwrap()["metrics"];
        assert_eq!(
            ma, mb,
            "{model} differs between two runs with the same seed"
        );
    }
    // A different seed changes a trained model's numbers.
    let c = tempfile::tempdir().unwrap();
    let out = pulse(
        c.path(),
        &[
            "run",
            SPEC,
            "-q",
            "--set",
            "models.sasrec.epochs=4",
            "--set",
            "models.bpr-mf.epochs=4",
            "--set",
            "experiment.seed=8",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rc = compare_json(c.path(), "e2e-synthetic");
    assert_ne!(
        ra.iter().find(|r| r["model"] == "sasrec").unwrap()["metrics"],
        rc.iter().find(|r| r["model"] == "sasrec").unwrap()["metrics"]
    );
}

#[test]
fn a_failing_run_is_recorded_and_the_rest_goes_on() {
    let store = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("partly-broken.toml");
    std::fs::write(
        &spec,
        r#"
[experiment]
name = "e2e-failure"
seed = 3

[datasets.synth]
type = "synthetic"

[datasets.missing]
type = "recbole-atomic"
path = "no-such-directory"

[models.pop]
type = "pop"
"#,
    )
    .unwrap();
    let out = pulse(
        store.path(),
        &["run", spec.to_str().unwrap(), "--no-progress"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let rows = compare_json(store.path(), "e2e-failure");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let ok = rows.iter().find(|r| r["dataset"] == "synth").unwrap();
    let bad = rows.iter().find(|r| r["dataset"] == "missing").unwrap();
    assert_eq!(ok["status"], "FINISHED");
    assert_eq!(bad["status"], "FAILED");
    assert!(
        bad["error"].as_str().unwrap().contains("no-such-directory"),
        "{bad:#}"
    );
}

#[test]
fn sweep_and_ablations_expand_into_trials() {
    let store = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("sweep.toml");
    std::fs::write(
        &spec,
        r#"
[experiment]
name = "e2e-sweep"
seeds = [1, 2]

[datasets.synth]
type = "synthetic"

[models.sasrec]
type = "sasrec"
epochs = 2

[sweep]
"models.sasrec.hidden_size" = [16, 32]

[[ablation]]
name = "one-layer"
set = { "models.sasrec.layers" = 1 }
"#,
    )
    .unwrap();
    let out = pulse(
        store.path(),
        &["plan", spec.to_str().unwrap(), "--format", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let trials: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).unwrap();
    // 2 sweep points × (base + 1 ablation) × 2 seeds.
    assert_eq!(trials.len(), 8, "{trials:#?}");
    let ids: std::collections::BTreeSet<&str> =
        trials.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 8, "trial ids are distinct");
    assert_eq!(
        trials
            .iter()
            .filter(|t| t["ablation"] == "one-layer")
            .count(),
        4
    );

    // Running one trial by id prefix runs exactly that trial.
    let id = trials[3]["id"].as_str().unwrap();
    let out = pulse(
        store.path(),
        &["run", spec.to_str().unwrap(), "-q", "--trial", &id[..8]],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = compare_json(store.path(), "e2e-sweep");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["trial"], id);
}

#[test]
fn ctrl_c_records_the_run_as_killed() {
    check_interrupt("-INT");
}

/// A batch scheduler (Slurm, Kubernetes) stops a job with SIGTERM: it counts as an interrupt.
#[test]
fn sigterm_records_the_run_as_killed() {
    check_interrupt("-TERM");
}

#[track_caller]
fn check_interrupt(signal: &str) {
    let store = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args([
            "run",
            SPEC,
            "-q",
            "--set",
            "experiment.models=[\"sasrec\"]",
            "--set",
            "models.sasrec.epochs=1000",
            "--set",
            "models.sasrec.patience=0",
        ])
        .current_dir(crate::root())
        .env("PULSE_STORE", store.path())
        .env("PULSE_HOME", crate::pulse_home())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let training start, then interrupt as a user at the terminal would.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let killed = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{signal}: {}", stderr(&out));
    let rows = compare_json(store.path(), "e2e-synthetic");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["status"], "KILLED", "{rows:#?}");
    // The epochs trained before the stop are not lost: the best one was tested.
    let ndcg = metric(&rows, "sasrec", "ndcg@10");
    assert!((0.0..=1.0).contains(&ndcg), "{ndcg}");
}

/// `[experiment] train_budget_minutes`: a spent budget ends training after the epoch in flight,
/// and the run is still tested (best validation epoch) and says why it stopped.
#[test]
fn a_training_budget_stops_a_run_and_is_recorded() {
    let store = tempfile::tempdir().unwrap();
    let out = pulse(
        store.path(),
        &[
            "run",
            SPEC,
            "--no-progress",
            "--set",
            "experiment.models=[\"sasrec\"]",
            "--set",
            "experiment.train_budget_minutes=0.00001",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("training budget of 0.0 min spent after epoch 1"),
        "{}",
        stderr(&out)
    );
    let rows = compare_json(store.path(), "e2e-synthetic");
    assert_eq!(rows[0]["status"], "FINISHED", "{rows:#?}");
    assert!(metric(&rows, "sasrec", "ndcg@10") > 0.0);
    let dir = store
        .path()
        .join("e2e-synthetic")
        .join(rows[0]["run_id"].as_str().unwrap());
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let last = |key: &str| {
        metrics
            .lines()
            .rev()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|m| m["key"] == key)
            .map(|m| m["value"].as_f64().unwrap())
    };
    assert_eq!(last("epochs"), Some(1.0), "{metrics}");
    assert_eq!(last("stopped_by_budget"), Some(1.0), "{metrics}");
}
