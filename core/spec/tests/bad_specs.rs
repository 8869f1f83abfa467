//! The spec corpus under `tests/specs/`, checked against the real plugin registry: every
//! `bad/*.toml` must fail with a diagnostic containing its `# expect:` line (a `\n` in it stands
//! for the line break before `help:`), extra `# set:` lines are passed as `--set` arguments;
//! every `good/*.toml` must plan without diagnostics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use pulse_spec::{load, plan, Plan, SpecOptions};
use std::path::{Path, PathBuf};

fn corpus(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/specs")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// `# key: value` lines at the top of a case file.
fn directives(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("# {key}: ");
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
        .collect()
}

fn run(path: &Path, sets: Vec<String>) -> Result<Plan, pulse_spec::Diagnostics> {
    let registry = pulse_registry::default_registry();
    let spec = load(
        path,
        &SpecOptions {
            sets,
            use_env: false,
        },
    )?;
    plan(&spec, &registry)
}

#[track_caller]
fn check_bad(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).unwrap();
    let expect = directives(&text, "expect");
    let [expect] = expect.as_slice() else {
        return Err(format!(
            "{}: needs exactly one `# expect:` line",
            path.display()
        ));
    };
    let expect = expect.replace("\\n", "\n");
    match run(path, directives(&text, "set")) {
        Ok(_) => Err(format!(
            "{}: planned without diagnostics, expected {expect}",
            path.display()
        )),
        Err(ds) if ds.iter().any(|d| d.to_string().contains(&expect)) => Ok(()),
        Err(ds) => Err(format!(
            "{}:\n  expected: {expect}\n  got:\n{ds}",
            path.display()
        )),
    }
}

#[test]
fn bad_specs_report_the_expected_diagnostic() {
    let files = corpus("bad");
    assert!(files.len() >= 30, "only {} bad specs", files.len());
    let failures: Vec<String> = files.iter().filter_map(|p| check_bad(p).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn good_specs_plan() {
    let files = corpus("good");
    assert!(!files.is_empty());
    for path in files {
        match run(&path, Vec::new()) {
            Ok(p) => assert!(!p.trials.is_empty(), "{}", path.display()),
            Err(ds) => panic!("{}:\n{ds}", path.display()),
        }
    }
}

#[test]
fn good_spec_trial_counts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/specs/good");
    let quick = run(&dir.join("quickstart.toml"), Vec::new()).unwrap();
    // 2 sweep points × (base + 1 ablation) × 1 seed
    let labels: Vec<&str> = quick.trials.iter().map(|t| t.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "models.sasrec.hidden_size=32",
            "ablation=no-dropout models.sasrec.hidden_size=32",
            "models.sasrec.hidden_size=64",
            "ablation=no-dropout models.sasrec.hidden_size=64",
        ]
    );
    let synth = run(&dir.join("synthetic_models.toml"), Vec::new()).unwrap();
    // 3 random points × (base + 1 ablation) × 3 seeds
    assert_eq!(synth.trials.len(), 18);
    // Declaration order, as written in the spec.
    assert_eq!(synth.experiment.models, ["pop", "mf", "seq"]);
    assert_eq!(synth.trials[0].resolved.split.ratios, [0.8, 0.1, 0.1]);
    let subset = run(&dir.join("temporal_subset.toml"), Vec::new()).unwrap();
    assert_eq!(subset.experiment.datasets, ["ml1m"]);
    assert_eq!(subset.trials[0].resolved.datasets.len(), 2);
}
