//! Dynamic plugins through the binary: an experiment that uses an external loss and an
//! external recommender by type name, `PULSE_PLUGIN_PATH`, `pulse plugin list|new`, and every
//! library pulse must refuse — each with its message and exit code 2, never a crash (the
//! `pulse` helper fails on any panic; here the exit status must also be a code, not a signal).
//!
//! The libraries are dev-dependencies of pulse-cli, so the `cargo test` that builds this test
//! builds them too, with the same profile and dependencies (`target/<profile>/deps/lib*.so`);
//! the `pulse` binary itself never links them.

use crate::{compare_json, metric, pulse, pulse_with, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Output;

/// A plugin library built alongside this test.
fn lib(crate_name: &str) -> PathBuf {
    let deps = Path::new(env!("CARGO_BIN_EXE_pulse"))
        .parent()
        .unwrap()
        .join("deps");
    let p = deps.join(format!("lib{}.so", crate_name.replace('-', "_")));
    assert!(
        p.is_file(),
        "{} is missing: it is built as a dev-dependency of pulse-cli",
        p.display()
    );
    p
}

/// Copies libraries into `dir/plugins/` (as a user would ship them next to a spec).
fn ship(dir: &Path, crates: &[&str]) -> Vec<PathBuf> {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    crates
        .iter()
        .map(|c| {
            let src = lib(c);
            let dst = plugins.join(src.file_name().unwrap());
            std::fs::copy(&src, &dst).unwrap();
            dst
        })
        .collect()
}

const EXPERIMENT: &str = r#"
[experiment]
name = "e2e-plugins"
seed = 7

[plugins]
load = ["plugins/libloss_hinge.so", "plugins/librec_markov.so"]

[datasets.synth]
type = "synthetic"

[split]
type = "leave-one-out"

[eval]
metrics = ["hr@10", "ndcg@10"]

[models.pop]
type = "pop"

[models.markov]
type = "markov"

[models.mf-hinge]
type = "bpr-mf"
epochs = 20
patience = 5
batch_size = 256
learning_rate = 0.01
loss = { type = "hinge", margin = 1.0, negatives = 4 }
"#;

#[test]
fn an_experiment_uses_an_external_loss_and_recommender() {
    let dir = tempfile::tempdir().unwrap();
    ship(dir.path(), &["loss-hinge", "rec-markov"]);
    let spec = dir.path().join("spec.toml");
    std::fs::write(&spec, EXPERIMENT).unwrap();
    let store = dir.path().join("runs");
    let spec = spec.to_str().unwrap();

    let out = pulse(&store, &["validate", spec]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pulse(&store, &["run", spec, "--no-progress"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("librec_markov.so (rec-markov 0.1.0): recommender markov"),
        "{log}"
    );

    let rows = compare_json(&store, "e2e-plugins");
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(rows.iter().all(|r| r["status"] == "FINISHED"), "{rows:#?}");
    let pop = metric(&rows, "pop", "ndcg@10");
    let markov = metric(&rows, "markov", "ndcg@10");
    let hinge = metric(&rows, "mf-hinge", "ndcg@10");
    // The synthetic data's sequential habits are what the Markov chain models; the hinge loss
    // trains BPR-MF past popularity on the cluster tastes.
    assert!(markov > 1.5 * pop, "markov {markov} vs pop {pop}");
    assert!(
        hinge > pop,
        "bpr-mf with the hinge loss {hinge} vs pop {pop}"
    );
    let run = rows.iter().find(|r| r["model"] == "mf-hinge").unwrap();
    let metrics = std::fs::read_to_string(
        store
            .join("e2e-plugins")
            .join(run["run_id"].as_str().unwrap())
            .join("metrics.jsonl"),
    )
    .unwrap();
    assert!(metrics.contains("\"train/loss\""), "{metrics}");
}

#[test]
fn plugin_path_libraries_are_listed_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let libs = ship(dir.path(), &["loss-hinge", "rec-markov", "dataset-csv"]);
    let plugins = dir.path().join("plugins");
    let env = [("PULSE_PLUGIN_PATH", plugins.as_os_str())];

    let out = pulse_with(dir.path(), &["plugin", "list"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for (lib, line) in libs.iter().zip([
        "loss-hinge 0.1.0  loaded in",
        "rec-markov 0.1.0  loaded in",
        "dataset-csv 0.1.0  loaded in",
    ]) {
        assert!(
            text.contains(&format!("{}  {line}", lib.display())),
            "{text}"
        );
    }
    assert!(
        text.contains(&format!("  hinge            {}", libs[0].display())),
        "{text}"
    );
    assert!(text.contains("  bpr              built-in"), "{text}");

    let out = pulse_with(dir.path(), &["list", "dataset"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("[{}]", libs[2].display())),
        "{}",
        stdout(&out)
    );
    let out = pulse_with(dir.path(), &["example", "recommender", "markov"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("window = 3"), "{}", stdout(&out));
}

/// Runs `pulse validate` on a spec loading `libs` and checks the refusal.
#[track_caller]
fn check_refused(dir: &Path, libs: &[&Path], expected: &[&str]) -> String {
    let list: Vec<String> = libs
        .iter()
        .map(|l| format!("{:?}", l.display().to_string()))
        .collect();
    let spec = dir.join("refused.toml");
    std::fs::write(
        &spec,
        format!(
            "[experiment]\nname = \"refused\"\n\n[plugins]\nload = [{}]\n\n[datasets.synth]\ntype = \"synthetic\"\n\n[models.pop]\ntype = \"pop\"\n",
            list.join(", ")
        ),
    )
    .unwrap();
    let out: Output = pulse(&dir.join("runs"), &["validate", spec.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:5:", spec.display())),
        "located at the load entry: {err}"
    );
    for e in expected {
        assert!(err.contains(e), "expected '{e}' in:\n{err}");
    }
    err
}

#[test]
fn unusable_libraries_are_refused_with_a_reason_and_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // Built against a pulse-api with one more field in a public struct: both fingerprints are
    // shown, they differ in the source hash only, and the library's register function (which
    // aborts the process) is never called.
    let err = check_refused(
        d,
        &[&lib("fixture-stale-api")],
        &[
            "(fixture-stale-api 0.1.0) was built for a different pulse ABI and is refused",
            "  plugin: rustc ",
            "  pulse:  rustc ",
            "differs in: pulse-api version or source",
            "help: rebuild the plugin against this pulse with `pulse plugin build PLUGIN_CRATE_DIR`",
        ],
    );
    let plugin_fp = err.lines().find(|l| l.starts_with("  plugin: ")).unwrap();
    let host_fp = err.lines().find(|l| l.starts_with("  pulse:  ")).unwrap();
    assert_ne!(plugin_fp[10..], host_fp[10..]);
    assert!(!err.contains("register was called"), "{err}");

    // Cut in half, as by an interrupted copy: refused before dlopen (which would die of SIGBUS).
    let whole = std::fs::read(lib("loss-hinge")).unwrap();
    let half = d.join("libtruncated.so");
    std::fs::write(&half, &whole[..whole.len() / 2]).unwrap();
    check_refused(
        d,
        &[&half],
        &[
            "refusing to load",
            "the file is truncated: segment",
            "rebuild the plugin",
        ],
    );
    // Cut to a few bytes: dlopen's own message.
    let stub = d.join("libstub.so");
    std::fs::write(&stub, &whole[..40]).unwrap();
    check_refused(d, &[&stub], &["cannot load", "file too short"]);

    // A shared library without the entry point: the real dlerror text.
    check_refused(
        d,
        &[&lib("fixture-no-entry")],
        &[
            "is not a pulse plugin:",
            "undefined symbol: pulse_plugin_declaration",
            "pulse_api::export_plugin!(register)",
        ],
    );

    // A loss named like a built-in one.
    check_refused(
        d,
        &[&lib("fixture-clash-bpr")],
        &[
            "loss plugin 'bpr' from",
            "clashes with the one from built-in",
            "rename",
        ],
    );
    // The same plugin from two libraries.
    let copy = d.join("libhinge_copy.so");
    std::fs::copy(lib("loss-hinge"), &copy).unwrap();
    check_refused(
        d,
        &[&lib("loss-hinge"), &copy],
        &[&format!(
            "loss plugin 'hinge' from {} clashes with the one from {}",
            copy.display(),
            lib("loss-hinge").display()
        )],
    );

    check_refused(
        d,
        &[&d.join("libnothere.so")],
        &["does not exist", "pulse plugin build"],
    );
}

#[test]
fn a_bad_library_on_the_plugin_path_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(lib("fixture-stale-api"), plugins.join("libstale.so")).unwrap();
    let env = [("PULSE_PLUGIN_PATH", plugins.as_os_str())];
    let out = pulse_with(dir.path(), &["list"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("environment variable PULSE_PLUGIN_PATH: error:"),
        "{}",
        stderr(&out)
    );
    let out = pulse_with(dir.path(), &["plugin", "list"], &env);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("libstale.so  REFUSED (environment variable PULSE_PLUGIN_PATH)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn plugin_new_scaffolds_each_family() {
    let dir = tempfile::tempdir().unwrap();
    for (family, name) in [
        ("loss", "my-loss"),
        ("recommender", "my-rec"),
        ("dataset", "my-data"),
    ] {
        let path = dir.path().join(name);
        let out = pulse(
            dir.path(),
            &[
                "plugin",
                "new",
                name,
                "--family",
                family,
                "--path",
                path.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains(&format!("pulse plugin build {}", path.display())));
        let lib_rs = std::fs::read_to_string(path.join("src/lib.rs")).unwrap();
        assert!(
            lib_rs.contains(&format!("const TYPE: &'static str = \"{name}\";")),
            "{lib_rs}"
        );
        let toml = std::fs::read_to_string(path.join("Cargo.toml")).unwrap();
        assert!(toml.contains("core/api\" }"), "{toml}");
    }
    let out = pulse(
        dir.path(),
        &["plugin", "new", "Bad_Name", "--family", "loss"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = pulse(
        dir.path(),
        &[
            "plugin",
            "build",
            dir.path().join("nowhere").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has no Cargo.toml"),
        "{}",
        stderr(&out)
    );
}
