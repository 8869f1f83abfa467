//! Which plugin libraries a command loads, and their failures as diagnostics: the spec's
//! `[plugins] load = [paths]` (relative to the file that names them) and every `lib*.so` in the
//! `PULSE_PLUGIN_PATH` directories. Loading happens before the spec is validated, so that the
//! types the libraries add resolve like built-in ones; a library that cannot be loaded is a
//! spec error at the position that names it (or at the environment variable).

use pulse_registry::{scan_plugin_path, LoadError, LoadedLibrary, Registry, PLUGIN_PATH_VAR};
use pulse_spec::{Diagnostic, Diagnostics, Location, Spec};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A library to load and where it was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: PathBuf,
    pub location: Location,
}

/// Libraries named by `[plugins] load`. A value of the wrong shape yields none here; the spec
/// check reports it.
pub fn from_spec(spec: &Spec) -> Vec<Request> {
    let Some(list) = spec
        .value()
        .pointer("/plugins/load")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let raw = Path::new(v.as_str()?);
            let key = ["plugins".to_string(), "load".to_string(), i.to_string()];
            let location = spec.locate(&key);
            // Relative to the file that says it; a --set / environment value, to the cwd.
            let base = location
                .path()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            Some(Request {
                path: base.join(raw),
                location,
            })
        })
        .collect()
}

/// Libraries in the `PULSE_PLUGIN_PATH` directories, and a warning per unreadable directory.
pub fn from_env() -> (Vec<Request>, Vec<String>) {
    let Some(list) = std::env::var_os(PLUGIN_PATH_VAR) else {
        return (Vec::new(), Vec::new());
    };
    let (libs, warnings) = scan_plugin_path(&list);
    let requests = libs
        .into_iter()
        .map(|path| Request {
            path,
            location: Location::env(PLUGIN_PATH_VAR),
        })
        .collect();
    (requests, warnings)
}

/// What loading a list of requests gave.
#[derive(Debug, Default)]
pub struct Outcome {
    pub loaded: Vec<LoadedLibrary>,
    pub failed: Vec<(Request, LoadError)>,
}

impl Outcome {
    /// Every failure as a diagnostic at the place that asked for the library.
    pub fn diagnostics(&self) -> Diagnostics {
        Diagnostics(
            self.failed
                .iter()
                .map(|(r, e)| {
                    Diagnostic::new(r.location.clone(), e.to_string()).with_help(e.help())
                })
                .collect(),
        )
    }
}

/// Loads each requested library once (the same file named twice, or by two routes, is loaded
/// once) into `registry`.
pub fn load(registry: &mut Registry, requests: Vec<Request>) -> Outcome {
    let mut seen = Vec::new();
    let mut out = Outcome::default();
    for r in requests {
        let key = std::fs::canonicalize(&r.path).unwrap_or_else(|_| r.path.clone());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        match registry.load_library(&r.path) {
            Ok(lib) => {
                tracing::info!(
                    "plugin library {} ({} {}): {} in {:.1} ms",
                    lib.path.display(),
                    lib.name,
                    lib.version,
                    names(&lib),
                    lib.load_ms
                );
                out.loaded.push(lib);
            }
            Err(e) => out.failed.push((r, e)),
        }
    }
    out
}

/// `loss hinge, recommender markov`.
pub fn names(lib: &LoadedLibrary) -> String {
    if lib.plugins.is_empty() {
        return "no plugins".into();
    }
    lib.plugins
        .iter()
        .map(|(f, n)| format!("{f} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loads the `PULSE_PLUGIN_PATH` libraries and the spec's, for `run` / `validate` / `plan`.
pub fn for_spec(registry: &mut Registry, spec: &Spec) -> Result<(), Diagnostics> {
    let (mut requests, warnings) = from_env();
    for w in warnings {
        tracing::warn!("{w}");
    }
    requests.extend(from_spec(spec));
    let outcome = load(registry, requests);
    if outcome.failed.is_empty() {
        Ok(())
    } else {
        Err(outcome.diagnostics())
    }
}

/// Loads the `PULSE_PLUGIN_PATH` libraries, for commands without a spec (`list`, `example`).
pub fn for_env(registry: &mut Registry) -> Result<(), Diagnostics> {
    let (requests, warnings) = from_env();
    for w in warnings {
        tracing::warn!("{w}");
    }
    let outcome = load(registry, requests);
    if outcome.failed.is_empty() {
        Ok(())
    } else {
        Err(outcome.diagnostics())
    }
}
