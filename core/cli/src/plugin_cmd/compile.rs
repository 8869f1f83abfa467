//! `pulse plugin build`: compiles a plugin crate so that this pulse accepts it — with the
//! compiler this pulse was built with (through rustup when the default one differs), in the
//! same profile, and, for a crate without a lock file, with this pulse's `Cargo.lock`, so that
//! the libraries whose types cross the boundary (candle, polars, serde_json) resolve to the
//! same versions. The fingerprint check then never refuses a plugin built this way.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The compiler this pulse was built with, e.g. `rustc 1.95.0 (59807616e 2026-04-14)`.
pub const BUILD_RUSTC: &str = env!("PULSE_BUILD_RUSTC");
/// `release` or `debug`.
pub const BUILD_PROFILE: &str = env!("PULSE_BUILD_PROFILE");
/// The lock file this pulse was built with.
const BUILD_LOCK: &str = include_str!("../../../../Cargo.lock");

/// Why a build could not be done, and the exit code that goes with it.
#[derive(Debug)]
pub enum BuildError {
    /// Bad arguments (exit 2).
    Usage(String),
    /// The environment lacks what the build needs (exit 3).
    Environment(String),
    /// cargo ran and failed (exit 1); its messages are already on stderr.
    Failed(String),
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `rustc --version` as run from `dir` with `envs` (rustup reads `rust-toolchain.toml` there).
fn rustc_version(dir: &Path, envs: &[(String, String)]) -> Option<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("--version")
        .current_dir(dir)
        .envs(envs.iter().cloned())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `1.95.0` from `rustc 1.95.0 (59807616e 2026-04-14)`.
pub fn release(version: &str) -> Option<&str> {
    version.split_whitespace().nth(1)
}

/// Environment that makes cargo use [`BUILD_RUSTC`] in `dir`.
fn toolchain(dir: &Path) -> Result<Vec<(String, String)>, BuildError> {
    let have = rustc_version(dir, &[]);
    if have.as_deref() == Some(BUILD_RUSTC) {
        return Ok(Vec::new());
    }
    if let Some(rel) = release(BUILD_RUSTC) {
        let envs = vec![("RUSTUP_TOOLCHAIN".to_string(), rel.to_string())];
        if rustc_version(dir, &envs).as_deref() == Some(BUILD_RUSTC) {
            return Ok(envs);
        }
    }
    Err(BuildError::Environment(format!(
        "this pulse was built with {BUILD_RUSTC}, but `rustc` in {} is {}; a plugin built with \
         another compiler would be refused. Install the same one (`rustup toolchain install {}`) \
         or rebuild pulse with yours",
        dir.display(),
        have.as_deref().unwrap_or("missing"),
        release(BUILD_RUSTC).unwrap_or("?")
    )))
}

/// The root manifest of the workspace `manifest` belongs to (itself for a lone crate).
fn workspace_root(manifest: &Path, envs: &[(String, String)]) -> Option<PathBuf> {
    let out = Command::new(cargo())
        .args(["locate-project", "--workspace", "--message-format", "plain"])
        .arg("--manifest-path")
        .arg(manifest)
        .envs(envs.iter().cloned())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The shared libraries of the `cdylib` target of the package at `manifest`, from cargo's JSON
/// messages.
pub fn cdylib_outputs(messages: &str, manifest: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in messages.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_ours = msg["reason"] == "compiler-artifact"
            && msg["manifest_path"].as_str().map(Path::new) == Some(manifest)
            && msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if !is_ours {
            continue;
        }
        let files = msg["filenames"].as_array().into_iter().flatten();
        out.extend(
            files
                .filter_map(|f| f.as_str())
                .filter(|f| f.ends_with(std::env::consts::DLL_SUFFIX))
                .map(PathBuf::from),
        );
    }
    out
}

/// Builds the plugin crate in `dir` (extra arguments go to cargo) and returns its library.
pub fn build(dir: &Path, cargo_args: &[String]) -> Result<PathBuf, BuildError> {
    let manifest = dir.join("Cargo.toml");
    let manifest = std::fs::canonicalize(&manifest).map_err(|_| {
        BuildError::Usage(format!(
            "{} has no Cargo.toml: give the directory of a plugin crate (see `pulse plugin new`)",
            dir.display()
        ))
    })?;
    let crate_dir = manifest.parent().unwrap_or(dir).to_path_buf();
    let envs = toolchain(&crate_dir)?;
    let root = workspace_root(&manifest, &envs).ok_or_else(|| {
        BuildError::Environment(format!(
            "cargo cannot read {} (is cargo installed?)",
            manifest.display()
        ))
    })?;
    let lock = root.with_file_name("Cargo.lock");
    if !lock.exists() {
        std::fs::write(&lock, BUILD_LOCK).map_err(|e| {
            BuildError::Environment(format!("cannot write {}: {e}", lock.display()))
        })?;
        eprintln!(
            "note: wrote {} from this pulse's lock file, so shared libraries get the same versions",
            lock.display()
        );
    }
    let mut cmd = Command::new(cargo());
    cmd.args([
        "build",
        "--lib",
        "--message-format",
        "json-render-diagnostics",
    ])
    .arg("--manifest-path")
    .arg(&manifest)
    .envs(envs.iter().cloned())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if BUILD_PROFILE == "release" {
        cmd.arg("--release");
    }
    cmd.args(cargo_args);
    eprintln!(
        "building {} with {BUILD_RUSTC}, {BUILD_PROFILE} profile",
        crate_dir.display()
    );
    let out = cmd
        .output()
        .map_err(|e| BuildError::Environment(format!("cannot run {}: {e}", cargo())))?;
    if !out.status.success() {
        return Err(BuildError::Failed(format!(
            "cargo build failed for {} (its messages are above)",
            crate_dir.display()
        )));
    }
    let libs = cdylib_outputs(&String::from_utf8_lossy(&out.stdout), &manifest);
    libs.into_iter().next_back().ok_or_else(|| {
        BuildError::Usage(format!(
            "{} built no shared library: a plugin crate needs crate-type = [\"cdylib\"] in [lib]",
            crate_dir.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_facts_are_recorded() {
        assert!(BUILD_RUSTC.starts_with("rustc "), "{BUILD_RUSTC}");
        assert!(release(BUILD_RUSTC).is_some_and(|r| r.split('.').count() == 3));
        assert!(["release", "debug"].contains(&BUILD_PROFILE));
        assert!(BUILD_LOCK.contains("name = \"pulse-api\""));
    }

    #[track_caller]
    fn check(messages: &str, manifest: &str, expected: &[&str]) {
        let got = cdylib_outputs(messages, Path::new(manifest));
        let want: Vec<PathBuf> = expected.iter().map(PathBuf::from).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_library_is_found_in_cargo_messages() {
        let artifact = |manifest: &str, kinds: &str, files: &str| {
            format!(
                r#"{{"reason":"compiler-artifact","manifest_path":"{manifest}","target":{{"kind":{kinds}}},"filenames":{files}}}"#
            )
        };
        let ours = artifact(
            "/p/Cargo.toml",
            r#"["cdylib","rlib"]"#,
            r#"["/p/target/release/libp.so","/p/target/release/libp.rlib"]"#,
        );
        let dep = artifact("/d/Cargo.toml", r#"["cdylib"]"#, r#"["/t/libd.so"]"#);
        let rlib_only = artifact("/p/Cargo.toml", r#"["rlib"]"#, r#"["/t/libp.rlib"]"#);
        let text = format!("{dep}\nnot json\n{ours}\n{{\"reason\":\"build-finished\"}}\n");
        check(&text, "/p/Cargo.toml", &["/p/target/release/libp.so"]);
        check(&rlib_only, "/p/Cargo.toml", &[]);
        check(&text, "/q/Cargo.toml", &[]);
    }
}
