// Build-time half of the dynamic-plugin ABI fingerprint, `include!`d by pulse-api's build
// script (and by the test fixture that simulates a plugin built against a changed pulse-api).
// It hashes pulse-api's source — any edit to the contract, such as a field added to a public
// struct, gives another hash — and reads the compiler version and the locked versions of the
// libraries whose types appear in the contract. Plain std only: build scripts have no deps.

/// The source files of a crate's `src/`, as (relative path, text), sorted by path. Line endings
/// are normalised so a checkout with CRLF hashes like one with LF.
#[allow(dead_code)]
fn read_sources(src: &std::path::Path) -> std::io::Result<Vec<(String, String)>> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut Vec<(String, String)>,
    ) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let text = std::fs::read_to_string(&path)?.replace("\r\n", "\n");
                out.push((rel.to_string_lossy().replace('\\', "/"), text));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(src, src, &mut out)?;
    out.sort();
    Ok(out)
}

/// FNV-1a (64 bit) over every (path, text) pair; 16 hex digits.
#[allow(dead_code)]
fn surface_hash(files: &[(String, String)]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (path, text) in files {
        for b in path.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// `rustc --version` of the compiler cargo uses (`$RUSTC`), e.g. `rustc 1.95.0 (59807616e 2026-04-14)`.
#[allow(dead_code)]
fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "rustc unknown".into())
}

/// The Cargo.lock of the build in progress: the first one above the target directory (where
/// `OUT_DIR` lives), else the first one above pulse-api's own manifest.
#[allow(dead_code)]
fn find_lockfile() -> Option<std::path::PathBuf> {
    let starts = [std::env::var_os("OUT_DIR"), std::env::var_os("CARGO_MANIFEST_DIR")];
    starts.into_iter().flatten().find_map(|start| {
        std::path::Path::new(&start)
            .ancestors()
            .map(|d| d.join("Cargo.lock"))
            .find(|p| p.is_file())
    })
}

/// `name version` of each package in `names` as locked in `lock` (several versions joined by
/// `/`, `?` when absent), joined by `, `.
#[allow(dead_code)]
fn locked_versions(lock: &str, names: &[&str]) -> String {
    let mut found: Vec<(String, String)> = Vec::new();
    let mut name = None::<String>;
    for line in lock.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            name = None;
        } else if let Some(v) = line.strip_prefix("name = ") {
            name = Some(v.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), &name) {
            found.push((n.clone(), v.trim_matches('"').to_string()));
        }
    }
    names
        .iter()
        .map(|n| {
            let vs: Vec<&str> = found
                .iter()
                .filter(|(f, _)| f == n)
                .map(|(_, v)| v.as_str())
                .collect();
            let v = if vs.is_empty() { "?".to_string() } else { vs.join("/") };
            format!("{n} {v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The libraries whose types cross the plugin boundary (tensors, frames, JSON configs).
#[allow(dead_code)]
const BOUNDARY_CRATES: &[&str] = &["candle-core", "polars", "serde_json"];

/// The fingerprint text: compiler, contract version and source hash, target, boundary crates.
#[allow(dead_code)]
fn compose(rustc: &str, api_version: &str, surface: &str, target: &str, deps: &str) -> String {
    format!("{rustc} | pulse-api {api_version} surface {surface} | {target} | {deps}")
}
