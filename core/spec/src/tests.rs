//! End-to-end tests of `load` + `plan` on spec files written to a temporary directory, against
//! a small catalog defined here (two dataset / model types with serde-decoded configs).

use crate::{flatten, load, plan, Diagnostics, Location, Plan, SpecOptions};
use pulse_api::config::{check_positive, check_range};
use pulse_api::{decode, Catalog, ConfigError, ConfigErrorKind, Family, Reference};
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ToyData {
    source: String,
    #[serde(default)]
    users: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ToyModel {
    hidden_size: u32,
    dropout: f64,
    loss: Option<ToyLoss>,
    encoder: Option<String>,
}

impl Default for ToyModel {
    fn default() -> Self {
        Self {
            hidden_size: 64,
            dropout: 0.1,
            loss: None,
            encoder: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ToyLoss {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    negatives: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Nothing {}

/// Knows datasets `toy-data`, models `pop` and `toy` (whose `encoder` names another model).
struct Fake;

impl Catalog for Fake {
    fn types(&self, family: Family) -> Vec<String> {
        let names: &[&str] = match family {
            Family::Dataset => &["toy-data"],
            Family::Recommender => &["pop", "toy"],
            Family::Backbone => &["gguf"],
            Family::Prompt => &["pulse-rationale"],
            _ => &["bce", "ce"],
        };
        names.iter().map(|s| s.to_string()).collect()
    }

    fn check(&self, family: Family, section: &Value) -> Result<Vec<Reference>, Vec<ConfigError>> {
        let mut body = section.clone();
        let kind = body["type"].as_str().unwrap_or_default().to_string();
        body.as_object_mut().unwrap().remove("type");
        let one = |e| vec![e];
        match (family, kind.as_str()) {
            (Family::Dataset, "toy-data") => decode::<ToyData>(&body).map(|_| vec![]).map_err(one),
            (Family::Recommender, "pop") => decode::<Nothing>(&body).map(|_| vec![]).map_err(one),
            (Family::Backbone, "gguf") | (Family::Prompt, "pulse-rationale") => {
                decode::<Nothing>(&body).map(|_| vec![]).map_err(one)
            }
            (Family::Recommender, "toy") => {
                let m: ToyModel = decode(&body).map_err(one)?;
                let mut errors = Vec::new();
                check_positive(&mut errors, "hidden_size", m.hidden_size);
                check_range(&mut errors, "dropout", m.dropout, 0.0, 1.0);
                if let Some(l) = &m.loss {
                    if !["bce", "ce"].contains(&l.kind.as_str()) {
                        errors.push(ConfigError::new(
                            vec!["loss".into(), "type".into()],
                            ConfigErrorKind::UnknownType {
                                family: "loss".into(),
                                found: l.kind.clone(),
                                known: self.types(Family::Loss),
                            },
                        ));
                    }
                }
                if !errors.is_empty() {
                    return Err(errors);
                }
                Ok(m.encoder
                    .into_iter()
                    .map(|name| Reference {
                        key: "encoder".into(),
                        family: Family::Recommender,
                        name,
                    })
                    .collect())
            }
            _ => panic!("unexpected {family} {kind}"),
        }
    }
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Self {
        let d = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let p = d.path().join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        Dir(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn run(&self, name: &str, opts: &SpecOptions) -> Result<Plan, Diagnostics> {
        let spec = load(&self.path(name), opts)?;
        plan(&spec, &Fake)
    }
}

const GOOD: &str = r#"[experiment]
name = "toy"
seed = 7

[datasets.d]
type = "toy-data"
source = "ml-100k"

[models.m]
type = "toy"
hidden_size = 32
"#;

/// Plans the first file and checks that the diagnostics are exactly `expected` (substrings of
/// the rendered diagnostics, in order; file paths relative to the temporary directory).
#[track_caller]
fn check(files: &[(&str, &str)], sets: &[&str], expected: &[&str]) {
    let dir = Dir::new(files);
    let opts = SpecOptions {
        sets: sets.iter().map(|s| s.to_string()).collect(),
        use_env: false,
    };
    let result = dir.run(files[0].0, &opts);
    let prefix = format!("{}/", dir.0.path().display());
    match result {
        Ok(p) if expected.is_empty() => assert!(!p.trials.is_empty()),
        Ok(_) => panic!("expected diagnostics {expected:?}, planned fine"),
        Err(ds) => {
            let shown: Vec<String> = ds
                .iter()
                .map(|d| d.to_string().replace(&prefix, ""))
                .collect();
            assert_eq!(shown.len(), expected.len(), "{shown:#?}");
            for (got, want) in shown.iter().zip(expected) {
                assert!(
                    got.contains(want),
                    "got:\n{got}\nwant: {want}\nall: {shown:#?}"
                );
            }
        }
    }
}

#[test]
fn good_spec_plans_one_trial() {
    check(&[("s.toml", GOOD)], &[], &[]);
    let dir = Dir::new(&[("s.toml", GOOD)]);
    let p = dir.run("s.toml", &SpecOptions::default()).unwrap();
    assert_eq!(p.trials.len(), 1);
    let t = &p.trials[0];
    assert_eq!((t.label.as_str(), t.seed), ("base", 7));
    assert_eq!(p.experiment.datasets, ["d"]);
    assert_eq!(p.experiment.models, ["m"]);
    assert_eq!(p.base_dir, dir.0.path());
    // Defaults of the core sections are written into the resolved tree.
    assert_eq!(t.resolved.value["split"]["type"], "leave-one-out");
    assert_eq!(t.resolved.value["experiment"]["models"], json!(["m"]));
    assert_eq!(t.resolved.models["m"]["hidden_size"], 32);
    assert_eq!(flatten(&t.resolved.value)["models.m.type"], "toy");
}

#[test]
fn layering_order_extends_file_set() {
    let base = r#"[experiment]
name = "base"
[datasets.d]
type = "toy-data"
source = "a"
[models.m]
type = "toy"
hidden_size = 1
dropout = 0.5
[eval]
metrics = ["hr@10", "ndcg@10", "mrr@10"]
"#;
    let mid = "[experiment]\nextends = [\"base.toml\"]\n[models.m]\nhidden_size = 2\n";
    let spec = "[experiment]\nname = \"top\"\nextends = [\"inc/mid.toml\"]\n[models.m]\nhidden_size = 3\n[eval]\nmetrics = [\"hr@5\"]\n";
    let dir = Dir::new(&[
        ("s.toml", spec),
        ("inc/mid.toml", mid),
        ("inc/base.toml", base),
    ]);
    let loaded = load(&dir.path("s.toml"), &SpecOptions::default()).unwrap();
    let v = loaded.value();
    assert_eq!(v["models"]["m"]["hidden_size"], 3);
    assert_eq!(v["models"]["m"]["dropout"], 0.5, "tables merge deeply");
    assert_eq!(v["eval"]["metrics"], json!(["hr@5"]), "arrays replace");
    assert_eq!(v["experiment"]["name"], "top");
    let files: Vec<String> = loaded
        .files()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["base.toml", "mid.toml", "s.toml"]);
    let key = |k: &str| -> Vec<String> { k.split('.').map(str::to_string).collect() };
    let at = |k: &str| {
        loaded
            .locate(&key(k))
            .to_string()
            .replace(&format!("{}/", dir.0.path().display()), "")
    };
    assert_eq!(at("models.m.hidden_size"), "s.toml:5:15");
    assert_eq!(at("models.m.dropout"), "inc/base.toml:9:11");
    assert_eq!(at("models.m"), "s.toml:4:1");
    assert_eq!(at("split.type"), "built-in default");

    let opts = SpecOptions {
        sets: vec!["models.m.hidden_size=4".into()],
        use_env: false,
    };
    let loaded = load(&dir.path("s.toml"), &opts).unwrap();
    assert_eq!(loaded.value()["models"]["m"]["hidden_size"], 4);
    assert_eq!(
        loaded.locate(&key("models.m.hidden_size")),
        Location::set("models.m.hidden_size=4")
    );
}

/// The only test that reads the environment, so the variables it sets touch no other test.
#[test]
fn environment_sits_between_file_and_set() {
    let spec = GOOD.replace("[models.m]", "[models.envtest]");
    let dir = Dir::new(&[("s.toml", &spec)]);
    std::env::set_var("PULSE_MODELS__ENVTEST__HIDDEN_SIZE", "128");
    std::env::set_var("PULSE_MODELS__ENVTEST__DROPOUT", "0.25");
    std::env::set_var("PULSE_MODELS__ENVTEST__HIDEN", "1");
    let env_only = SpecOptions {
        sets: vec![],
        use_env: true,
    };
    let with_set = SpecOptions {
        sets: vec!["models.envtest.hidden_size=256".into()],
        use_env: true,
    };
    let spec_env = load(&dir.path("s.toml"), &env_only);
    let spec_set = load(&dir.path("s.toml"), &with_set);
    let no_env = load(&dir.path("s.toml"), &SpecOptions::default());
    std::env::remove_var("PULSE_MODELS__ENVTEST__HIDDEN_SIZE");
    std::env::remove_var("PULSE_MODELS__ENVTEST__DROPOUT");
    std::env::remove_var("PULSE_MODELS__ENVTEST__HIDEN");
    let (spec_env, spec_set, no_env) = (spec_env.unwrap(), spec_set.unwrap(), no_env.unwrap());
    assert_eq!(no_env.value()["models"]["envtest"]["hidden_size"], 32);
    assert_eq!(spec_env.value()["models"]["envtest"]["hidden_size"], 128);
    assert_eq!(spec_env.value()["models"]["envtest"]["dropout"], 0.25);
    assert_eq!(spec_set.value()["models"]["envtest"]["hidden_size"], 256);
    let key: Vec<String> = ["models", "envtest", "dropout"].map(String::from).to_vec();
    assert_eq!(
        spec_env.locate(&key),
        Location::env("PULSE_MODELS__ENVTEST__DROPOUT")
    );
    let err = plan(&spec_env, &Fake).unwrap_err().to_string();
    assert!(
        err.contains("environment variable PULSE_MODELS__ENVTEST__HIDEN: error: unknown field 'hiden' in models.envtest (type toy)"),
        "{err}"
    );
}

#[test]
fn extends_problems() {
    check(
        &[
            ("a.toml", "[experiment]\nextends = [\"b.toml\"]\n"),
            ("b.toml", "# b\n[experiment]\nextends = [\"a.toml\"]\n"),
        ],
        &[],
        &["b.toml:3:12: error: extends cycle: a.toml -> b.toml -> a.toml"],
    );
    check(
        &[("a.toml", "[experiment]\nextends = [\"a.toml\"]\n")],
        &[],
        &["a.toml:2:12: error: extends cycle: a.toml -> a.toml"],
    );
    check(
        &[("a.toml", "[experiment]\nextends = [\"gone.toml\", 3]\n")],
        &[],
        &[
            "a.toml:2:12: error: extended file 'gone.toml' not found",
            "a.toml:2:25: error: invalid type for experiment.extends.1: expected a file path string, found integer 3",
        ],
    );
    check(
        &[
            ("a.toml", "[experiment]\nextends = [\"b.toml\"]\n"),
            ("b.toml", "[models\n"),
        ],
        &[],
        &["b.toml:1:8: error: invalid TOML"],
    );
    // A diamond layers the shared file once.
    let dir = Dir::new(&[
        (
            "a.toml",
            "[experiment]\nextends = [\"b.toml\", \"c.toml\"]\n",
        ),
        ("b.toml", "[experiment]\nextends = [\"d.toml\"]\n"),
        ("c.toml", "[experiment]\nextends = [\"d.toml\"]\n"),
        ("d.toml", "[experiment]\nname = \"d\"\n"),
    ]);
    let spec = load(&dir.path("a.toml"), &SpecOptions::default()).unwrap();
    assert_eq!(spec.files().len(), 4);
}

#[test]
fn problems_point_at_keys_values_and_headers() {
    let spec = r#"[experiment]
name = "toy"
sed = 1

[datasets.d]
type = "toy-data"

[models.m]
type = "toy"
hiden_size = 32
dropout = 2.0
hidden_size = "big"

[models.p]
type = "pop"
[models.q]
type = "sasrek"
[models.t]
type = "toy"
encoder = "nope"

[split]
type = "leave-one-ot"
ratios = [0.5, 0.2, 0.2]

[eval]
metrics = ["hr@0", "ndgc@10"]

[modles]
x = 1
"#;
    check(
        &[("s.toml", spec)],
        &[],
        &[
            "s.toml:3:1: error: unknown field 'sed' in experiment\n  help: did you mean 'seed'?",
            "s.toml:5:1: error: missing field 'source' in datasets.d (type toy-data)",
            "s.toml:10:1: error: unknown field 'hiden_size' in models.m (type toy)\n  help: did you mean 'hidden_size'?",
            "s.toml:11:11: error: models.m.dropout = 2.0 is out of range: allowed 0 to 1",
            "s.toml:12:15: error: invalid type for models.m.hidden_size: expected a non-negative integer, found string \"big\"",
            "s.toml:17:8: error: unknown recommender type 'sasrek' in models.q\n  help: known: pop, toy",
            "s.toml:20:11: error: models.t.encoder refers to recommender 'nope', which is not declared\n  help: known: m, p, q, t",
            "s.toml:23:8: error: invalid value 'leave-one-ot' for split.type: expected one of 'leave-one-out', 'ratio', 'temporal'\n  help: did you mean 'leave-one-out'?",
            "s.toml:24:10: error: invalid value [0.5, 0.2, 0.2] for split.ratios",
            "s.toml:27:12: error: eval.metrics.0: cut-off K must be at least 1 (found 'hr@0')",
            "s.toml:27:20: error: eval.metrics.1: unknown metric 'ndgc'",
            "s.toml:29:2: error: unknown top-level key 'modles'\n  help: did you mean 'models'?",
        ],
    );
}

#[test]
fn missing_pieces() {
    check(
        &[("s.toml", "[experiment]\nname = \"x\"\n\n[models.m]\nhidden_size = 3\n")],
        &[],
        &[
            "s.toml:1:1: error: no datasets declared: a spec needs at least one dataset",
            "s.toml:4:1: error: missing field 'type' in models.m\n  help: add type = \"…\" naming a recommender type (known: pop, toy)",
        ],
    );
    check(
        &[("s.toml", &format!("{GOOD}[experiment2]\n"))],
        &[],
        &["s.toml:12:2: error: unknown top-level key 'experiment2'\n  help: did you mean 'experiment'?"],
    );
    check(
        &[("s.toml", &GOOD.replace("seed = 7", "seed = 7\nmodels = [\"m\", \"mm\"]"))],
        &[],
        &["s.toml:4:16: error: experiment.models.1 refers to recommender 'mm', which is not declared"],
    );
}

#[test]
fn set_problems_point_at_the_argument() {
    check(
        &[("s.toml", GOOD)],
        &["models.m.hidden_size=0", "models.m.dropout=[1, 2", "models.zz.type=toy"],
        &[
            "--set models.m.dropout=[1, 2: error: malformed --set: value '[1, 2' for models.m.dropout is not a TOML value",
        ],
    );
    check(
        &[("s.toml", GOOD)],
        &["models.m.hidden_size=0", "models.zz.type=toy"],
        &[
            "--set models.m.hidden_size=0: error: models.m.hidden_size = 0 is out of range: allowed > 0",
        ],
    );
    check(&[("s.toml", GOOD)], &["models.m.loss={type=\"ce\"}"], &[]);
}

const SWEEP: &str = r#"
[sweep]
"models.m.hidden_size" = [16, 32]
"models.m.dropout" = [0.0, 0.2, 0.4]

[[ablation]]
name = "no-loss"
set = { "models.m.loss" = { type = "bce", negatives = 2 } }

[[ablation]]
name = "big"
set = { "models.m.hidden_size" = 512 }
"#;

#[test]
fn sweep_and_ablation_expansion() {
    let spec = GOOD.replace("seed = 7", "seeds = [1, 2]") + SWEEP;
    let dir = Dir::new(&[("s.toml", &spec)]);
    let p = dir.run("s.toml", &SpecOptions::default()).unwrap();
    // 2 × 3 points × (base + 2 ablations) × 2 seeds
    assert_eq!(p.trials.len(), 36);
    assert_eq!(p.experiment.seeds, [1, 2]);
    let labels: Vec<&str> = p.trials.iter().take(6).map(|t| t.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "models.m.dropout=0.0 models.m.hidden_size=16 seed=1",
            "models.m.dropout=0.0 models.m.hidden_size=16 seed=2",
            "ablation=no-loss models.m.dropout=0.0 models.m.hidden_size=16 seed=1",
            "ablation=no-loss models.m.dropout=0.0 models.m.hidden_size=16 seed=2",
            "ablation=big models.m.dropout=0.0 models.m.hidden_size=16 seed=1",
            "ablation=big models.m.dropout=0.0 models.m.hidden_size=16 seed=2",
        ]
    );
    let big = &p.trials[4];
    assert_eq!(big.ablation.as_deref(), Some("big"));
    assert_eq!(big.resolved.models["m"]["hidden_size"], 512);
    assert_eq!(
        big.changes.last().unwrap(),
        &("models.m.hidden_size".to_string(), json!(512))
    );
    assert_eq!(big.resolved.experiment.seed, 1);
    assert!(big.resolved.value.get("sweep").is_none());
    assert!(big.resolved.value["experiment"].get("seeds").is_none());
    // Ids: stable across runs; equal exactly when the resolved trees are: "big" pins
    // hidden_size, so its two hidden_size points coincide (3 dropouts × 2 seeds = 6 repeats).
    let again = dir.run("s.toml", &SpecOptions::default()).unwrap();
    let ids: Vec<&str> = p.trials.iter().map(|t| t.id.as_str()).collect();
    let ids_again: Vec<&str> = again.trials.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ids_again);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 30);
    assert_eq!(p.trials[4].id, p.trials[10].id);
    assert_ne!(p.trials[4].label, p.trials[10].label);
    assert!(ids
        .iter()
        .all(|id| id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit())));
    // The same trial from a spec that writes a default explicitly has the same id.
    let explicit = GOOD.replace(
        "[models.m]",
        "[split]\ntype = \"leave-one-out\"\n\n[models.m]",
    );
    let a = Dir::new(&[("s.toml", GOOD)])
        .run("s.toml", &SpecOptions::default())
        .unwrap();
    let b = Dir::new(&[("s.toml", &explicit)])
        .run("s.toml", &SpecOptions::default())
        .unwrap();
    assert_eq!(a.trials[0].id, b.trials[0].id);
    let c = Dir::new(&[("s.toml", &GOOD.replace("32", "33"))])
        .run("s.toml", &SpecOptions::default())
        .unwrap();
    assert_ne!(a.trials[0].id, c.trials[0].id);
}

#[test]
fn random_sweep_is_deterministic() {
    let spec = format!(
        "{GOOD}[sweep]\nmode = \"random\"\nsamples = 4\n\"models.m.hidden_size\" = [1, 2, 3, 4, 5]\n\"models.m.dropout\" = [0.0, 0.1, 0.2]\n"
    );
    let dir = Dir::new(&[("s.toml", &spec)]);
    let labels = |p: &Plan| p.trials.iter().map(|t| t.label.clone()).collect::<Vec<_>>();
    let a = dir.run("s.toml", &SpecOptions::default()).unwrap();
    let b = dir.run("s.toml", &SpecOptions::default()).unwrap();
    assert_eq!(a.trials.len(), 4);
    assert_eq!(labels(&a), labels(&b));
    let reseeded = Dir::new(&[(
        "s.toml",
        &spec.replace("samples = 4", "samples = 4\nseed = 99"),
    )]);
    let c = reseeded.run("s.toml", &SpecOptions::default()).unwrap();
    assert_ne!(labels(&a), labels(&c));
}

#[test]
fn sweep_and_ablation_problems() {
    let spec = format!(
        r#"{GOOD}
[sweep]
"models.m.hiden" = [1]
"models.m.hidden_size" = [8, 0]
"models.nope.x" = [1]
"models.m.dropout" = []
"modles.m.x" = [1]
"eval.metrics" = [["hr@10"], ["hr@10"]]
models.m.loss = [1]

[[ablation]]
name = "a"
set = {{ "models.m.dropout" = 7.0 }}

[[ablation]]
name = "a"
set = {{ "split.type" = "ratio" }}

[[ablation]]
set = {{ "split.type" = "ratio" }}
"#
    );
    check(
        &[("s.toml", &spec)],
        &[],
        &[
            "s.toml:14:1: error: unknown field 'hiden' in models.m (type toy)",
            "s.toml:15:30: error: models.m.hidden_size = 0 is out of range: allowed > 0",
            "s.toml:16:1: error: sweep key \"models.nope.x\" refers to recommender 'nope', which is not declared",
            "s.toml:17:22: error: sweep list for \"models.m.dropout\" is empty",
            "s.toml:18:1: error: sweep key \"modles.m.x\" starts with unknown top-level key 'modles'\n  help: did you mean 'models'?",
            "s.toml:19:30: error: duplicate value [\"hr@10\"] in sweep list for \"eval.metrics\"",
            "s.toml:20:1: error: sweep key \"models\" must name a key inside a recommender, not the whole table\n  help: write the whole dotted key in quotes",
            "s.toml:24:30: error: models.m.dropout = 7.0 is out of range",
            "s.toml:27:8: error: duplicate ablation name 'a'",
            "s.toml:30:1: error: missing field 'name' in ablation #3",
        ],
    );
    check(
        &[(
            "s.toml",
            &format!(
                "{GOOD}[sweep]\nmode = \"random\"\nseed = 1\n\"models.m.hidden_size\" = [1]\n"
            ),
        )],
        &[],
        &["s.toml:12:1: error: missing field 'samples' in sweep"],
    );
    check(
        &[(
            "s.toml",
            &format!(
                "{GOOD}[[ablation]]\nname = \"same\"\nset = {{ \"models.m.hidden_size\" = 32 }}\n"
            ),
        )],
        &[],
        &["s.toml:13:8: error: ablation 'same' changes nothing"],
    );
}

#[test]
fn problems_inside_a_swept_table_point_into_it() {
    let spec = format!(
        "{GOOD}[sweep]\n\"models.m.loss\" = [{{ type = \"ce\" }}, {{ type = \"bpx\" }}, {{ type = \"ce\", negs = 1 }}]\n"
    );
    check(
        &[("s.toml", &spec)],
        &[],
        &[
            "s.toml:13:46: error: unknown loss type 'bpx' in models.m.loss",
            "s.toml:13:70: error: unknown field 'negs' in models.m.loss",
        ],
    );
}

#[test]
fn unreadable_spec() {
    let err = load(Path::new("/nonexistent/x.toml"), &SpecOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/x.toml: error: cannot read spec file"),
        "{err}"
    );
}

#[test]
fn spec_and_plan_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<crate::Spec>();
    send_sync::<Plan>();
    send_sync::<Diagnostics>();
}

/// Specs of the wrong shape everywhere still yield diagnostics, never a panic.
#[test]
fn odd_shapes_never_panic() {
    let cases: &[(&str, &[&str])] = &[
        ("experiment = []\ndatasets = 3\nmodels = []\n", &[]),
        ("[[models]]\ntype = \"toy\"\n[[datasets]]\n", &[]),
        ("sweep = 3\nablation = [1, \"x\"]\n", &[]),
        ("[[ablation]]\nname = 3\nset = 3\n[[ablation]]\nname = \"\"\nset = { \"\" = 1 }\n", &[]),
        ("[sweep]\nmode = 3\nsamples = -1\nseed = \"x\"\n\"\" = [1]\n\"a..b\" = [1]\n", &[]),
        ("[sweep]\n\"experiment.extends\" = [[\"x.toml\"]]\n\"split\" = [1]\n\"models.m\" = [1]\n", &[]),
        ("[models.m]\ntype = \"toy\"\nloss = \"ce\"\n[models.n]\ntype = \"toy\"\nloss = { type = 3 }\n", &[]),
        ("[experiment]\nseeds = [\"a\"]\ndatasets = \"all\"\n[eval]\nmetrics = [\"@\", \"hr@-1\", 3]\n", &[]),
        ("plugins = 1\n[tracker]\ntype = 3\nstore = 4\n", &[]),
        ("", &["a.b.c=1", "x=", "'unterminated=1", "k=\"a\"\"b\""]),
        ("[split]\nratios = [1.0]\ncut = \"x\"\n", &["split.cut=[0.9, 0.1]"]),
    ];
    for (text, sets) in cases {
        let dir = Dir::new(&[("s.toml", text)]);
        let opts = SpecOptions {
            sets: sets.iter().map(|s| s.to_string()).collect(),
            use_env: false,
        };
        let err = dir.run("s.toml", &opts).unwrap_err();
        assert!(!err.is_empty(), "{text}");
        assert!(err.iter().all(|d| !d.message.is_empty()), "{text}: {err}");
    }
}

const TEXT_STAGE: &str = r#"
[backbones.slm]
type = "gguf"

[prompts.why]
type = "pulse-rationale"
"#;

#[test]
fn rationale_sections_are_checked() {
    let spec = |rationales: &str| format!("{GOOD}{TEXT_STAGE}\n[rationales]\n{rationales}");
    check(
        &[("s.toml", &spec("backbone = \"slm\"\nprompt = \"why\"\n"))],
        &[],
        &[],
    );
    check(
        &[("s.toml", &spec("backbone = \"slim\"\nprompt = \"how\"\n"))],
        &[],
        &[
            "s.toml:20:12: error: rationales.backbone refers to backbone 'slim', which is not declared\n  help: did you mean 'slm'?",
            "s.toml:21:10: error: rationales.prompt refers to prompt 'how', which is not declared",
        ],
    );
    check(
        &[(
            "s.toml",
            &spec("backbone = \"slm\"\nprompt = \"why\"\nmax_new_tokens = 0\ntemprature = 0.5\n"),
        )],
        &[],
        &[
            "s.toml:22:18: error: rationales.max_new_tokens = 0 is out of range: allowed 1 to 8192",
            "s.toml:23:1: error: unknown field 'temprature' in rationales\n  help: did you mean 'temperature'?",
        ],
    );
    check(
        &[(
            "s.toml",
            &format!("{GOOD}{TEXT_STAGE}[prompts.other]\ntype = \"templat\"\n"),
        )],
        &[],
        &["unknown prompt type 'templat'"],
    );
}

#[test]
fn thought_space_and_stage_ablations_are_checked() {
    let base = format!(
        "{GOOD}{TEXT_STAGE}[backbones.enc]\ntype = \"gguf\"\n\n[rationales]\nbackbone = \"slm\"\nprompt = \"why\"\n\n[thought_space]\n"
    );
    check(
        &[("s.toml", &format!("{base}encoder = \"enc\"\n"))],
        &[],
        &[],
    );
    check(
        &[(
            "s.toml",
            &format!("{base}encoder = \"enc\"\ntrain = \"heads\"\nbatch_size = 1\n"),
        )],
        &[],
        &[
            "s.toml:27:9: error: thought_space.train: \"heads\" trains only the projection heads",
            "s.toml:28:14: error: thought_space.batch_size = 1 is out of range: allowed 2 to 4096",
        ],
    );
    check(
        &[("s.toml", &format!("{base}encoder = \"encc\"\n"))],
        &[],
        &["s.toml:26:11: error: thought_space.encoder refers to backbone 'encc', which is not declared\n  help: did you mean 'enc'?"],
    );
    // Ablations may change the text stages and their components.
    let ok = format!(
        "{base}encoder = \"enc\"\n\n[[ablation]]\nname = \"frozen\"\nset = {{ \"thought_space.epochs\" = 0, \"rationales.prompt\" = \"why\" }}\n"
    );
    check(&[("s.toml", &ok)], &[], &[]);
    // A changed backbone key is checked against its plugin like a written one.
    check(
        &[(
            "s.toml",
            &ok.replace(
                "\"rationales.prompt\" = \"why\"",
                "\"backbones.slm.device\" = \"cpu\"",
            ),
        )],
        &[],
        &["unknown field 'device' in backbones.slm (type gguf)"],
    );
    check(
        &[(
            "s.toml",
            &format!("{base}encoder = \"enc\"\n\n[[ablation]]\nname = \"x\"\nset = {{ \"backbones.nope.device\" = \"cpu\" }}\n"),
        )],
        &[],
        &["ablation 'x' key \"backbones.nope.device\" refers to backbone 'nope', which is not declared"],
    );
}
