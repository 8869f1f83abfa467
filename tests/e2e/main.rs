//! End-to-end tests of the `pulse` binary: real specs, real data (synthetic, and MovieLens-100K
//! fetched from its registry package), real training, the run store read back through
//! `pulse compare`. Each test uses its own run store in a temp dir; downloads are shared in
//! `$PULSE_HOME` (default `target/tmp/pulse-home`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod assets;
mod cli;
mod mlflow;
mod mlflow_server;
mod movielens;
mod plugins;
mod pulse_model;
mod rationales;
mod stats;
mod synthetic;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (specs are addressed relative to it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn pulse_home() -> PathBuf {
    std::env::var_os("PULSE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("pulse-home"))
}

/// Runs `pulse ARGS` from the workspace root with its run store in `store`.
pub fn pulse(store: &Path, args: &[&str]) -> Output {
    pulse_with(store, args, &[])
}

/// [`pulse`] with extra environment variables.
pub fn pulse_with(store: &Path, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_pulse"))
        .args(args)
        .current_dir(root())
        .env("PULSE_STORE", store)
        .env("PULSE_HOME", pulse_home())
        .env_remove("PULSE_LOG")
        .env_remove("PULSE_PLUGIN_PATH")
        .envs(env.iter().copied())
        .output()
        .expect("the pulse binary runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    // Never a panic, whatever the input.
    assert!(
        !text(&out.stderr).contains("panicked at"),
        "pulse {args:?} panicked:\n{}",
        text(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `pulse compare --format json` for an experiment, parsed.
pub fn compare_json(store: &Path, experiment: &str) -> Vec<serde_json::Value> {
    let out = pulse(
        store,
        &["compare", "--experiment", experiment, "--format", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("compare --format json prints JSON")
}

/// The test metric `key` of `model` in a compare table.
pub fn metric(rows: &[serde_json::Value], model: &str, key: &str) -> f64 {
    rows.iter()
        .find(|r| r["model"] == model)
        .and_then(|r| r["metrics"][key].as_f64())
        .unwrap_or_else(|| panic!("no {key} for {model} in {rows:#?}"))
}
