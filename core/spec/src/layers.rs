//! Loading a spec: reads the file and its `extends` chain (recursively, cycles and missing files
//! reported), adds `PULSE_…` environment variables and `--set` arguments, and layers them with
//! figment (built-in defaults < extends < file < env < --set; tables merge deeply, arrays
//! replace). Each layer keeps its own tree and span index so [`Spec::locate`] can say which
//! file, line and column (or which variable / argument) supplied any key.

use crate::diag::{Diagnostic, Diagnostics, Location};
use crate::source::{dotted, parse_file, parse_key_path, scalar_to_json, SpanIndex};
use figment::providers::{Env, Serialized};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// How a spec is loaded besides its file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecOptions {
    /// `key.path=value` overrides (value in TOML syntax; a bare word is a string), applied last.
    pub sets: Vec<String>,
    /// Apply `PULSE_SECTION__NAME__KEY=value` environment variables (above the files, below
    /// `--set`). Only variables whose name contains `__` are read.
    pub use_env: bool,
}

/// A loaded, layered spec (not yet validated: see [`crate::plan`]).
#[derive(Debug, Clone)]
pub struct Spec {
    path: PathBuf,
    value: Value,
    /// Lowest priority first.
    layers: Vec<Layer>,
    figment: Figment,
}

/// Which position of a key a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// The key itself (unknown keys).
    Key,
    /// Its value (wrong values).
    Value,
    /// The table header that opens it (missing keys).
    Header,
}

#[derive(Debug, Clone)]
struct Layer {
    kind: LayerKind,
    value: Value,
    metadata: Metadata,
}

#[derive(Debug, Clone)]
enum LayerKind {
    File {
        path: PathBuf,
        spans: SpanIndex,
    },
    /// Key path → the variable that set it.
    Env {
        vars: Vec<(Vec<String>, String)>,
    },
    Set {
        arg: String,
    },
}

/// A figment provider for a tree we parsed ourselves, so that spans and values come from the
/// same TOML 1.1 parse and each layer carries metadata that names its origin.
struct TreeProvider<'a> {
    value: &'a Value,
    metadata: Metadata,
}

impl Provider for TreeProvider<'_> {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(self.value).data()
    }
}

/// Reads `path`, its `extends` chain, the environment (if asked) and `--set`s, and merges them.
pub fn load(path: &Path, opts: &SpecOptions) -> Result<Spec, Diagnostics> {
    let path = normalize(path);
    let mut loader = Loader::default();
    loader.visit(&path, &mut Vec::new(), None);
    let mut layers = loader.layers;
    let mut diags = loader.diags;

    if opts.use_env {
        let env = pulse_env();
        let metadata = env.metadata();
        match Figment::from(env).extract::<Value>() {
            Ok(value) => {
                let vars = env_vars();
                if !vars.is_empty() {
                    layers.push(Layer {
                        kind: LayerKind::Env { vars },
                        value,
                        metadata,
                    });
                }
            }
            Err(e) => diags.push(Diagnostic::new(
                Location::env("PULSE_*"),
                format!("cannot read environment overrides: {e}"),
            )),
        }
    }

    for (i, arg) in opts.sets.iter().enumerate() {
        match parse_set(arg) {
            Ok((key, v)) => {
                let mut value = v;
                for seg in key.iter().rev() {
                    let mut m = serde_json::Map::new();
                    m.insert(seg.clone(), value);
                    value = Value::Object(m);
                }
                layers.push(Layer {
                    kind: LayerKind::Set { arg: arg.clone() },
                    value,
                    // invariant: the index makes each --set's metadata distinct, so
                    // `find_metadata` maps back to exactly one layer.
                    metadata: Metadata::from(format!("--set {arg}"), Source::Custom(i.to_string())),
                });
            }
            Err(d) => diags.push(d),
        }
    }

    if !diags.is_empty() {
        return Err(Diagnostics(diags).sorted());
    }

    let mut figment = Figment::new();
    for layer in &layers {
        figment = figment.merge(TreeProvider {
            value: &layer.value,
            metadata: layer.metadata.clone(),
        });
    }
    let value = figment.extract::<Value>().map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            Location::whole_file(&path),
            format!("cannot merge the spec layers: {e}"),
        )])
    })?;
    Ok(Spec {
        path,
        value,
        layers,
        figment,
    })
}

fn pulse_env() -> Env {
    Env::prefixed("PULSE_")
        .filter(|k| k.as_str().contains("__"))
        .split("__")
}

/// The variables `pulse_env` reads, with the key path each maps to (figment does not keep the
/// variable name, and diagnostics should name it).
fn env_vars() -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().trim().to_string();
        let Some(prefix) = name.get(..6) else {
            continue;
        };
        if !prefix.eq_ignore_ascii_case("PULSE_") {
            continue;
        }
        let rest = &name[6..];
        if !rest.contains("__") {
            continue;
        }
        let mapped = rest.replace("__", ".").to_ascii_lowercase();
        if mapped.split('.').any(str::is_empty) {
            continue;
        }
        out.push((mapped.split('.').map(str::to_string).collect(), name));
    }
    out.sort();
    out
}

/// Parses one `--set key.path=value`.
fn parse_set(arg: &str) -> Result<(Vec<String>, Value), Diagnostic> {
    let loc = Location::set(arg);
    let bad = |msg: String| {
        Diagnostic::new(loc.clone(), format!("malformed --set: {msg}"))
            .with_help("write --set key.path=value, e.g. --set models.sasrec.hidden_size=128")
    };
    let Some(eq) = split_at_equals(arg) else {
        return Err(bad(format!("'{arg}' has no '='")));
    };
    let (key_text, value_text) = (&arg[..eq], arg[eq + 1..].trim());
    let key = parse_key_path(key_text).map_err(|why| {
        bad(format!(
            "key '{}' is not a dotted key: {why}",
            key_text.trim()
        ))
    })?;
    if value_text.is_empty() {
        return Err(bad(format!("no value after '{}='", key_text.trim())));
    }
    let value =
        match value_text.parse::<toml_edit::Value>() {
            Ok(v) => scalar_to_json(&v).map_err(bad)?,
            Err(_) if is_bare_word(value_text) => Value::String(value_text.to_string()),
            Err(e) => return Err(Diagnostic::new(
                loc,
                format!(
                    "malformed --set: value '{value_text}' for {} is not a TOML value: {}",
                    dotted(&key),
                    e.message().trim_end()
                ),
            )
            .with_help(
                "write a TOML value (42, 0.5, true, [1, 2], { type = \"ce\" }) or a bare word; \
                 quote other strings: --set 'key=\"some text\"'",
            )),
        };
    Ok((key, value))
}

/// The first `=` outside quotes (keys may be quoted and contain `=`).
fn split_at_equals(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '=') => return Some(i),
            _ => {}
        }
    }
    None
}

fn is_bare_word(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_alphanumeric() || "-_./:@+~%".contains(c))
}

/// Resolves `a/./b/../c` to `a/c` without touching the file system, for readable locations.
fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

#[derive(Default)]
struct Loader {
    layers: Vec<Layer>,
    seen: HashSet<PathBuf>,
    diags: Vec<Diagnostic>,
}

impl Loader {
    /// Loads `path` after everything it extends; `chain` holds the files being loaded (canonical
    /// path, shown path) to detect cycles; `from` is the `extends` entry that named this file.
    fn visit(&mut self, path: &Path, chain: &mut Vec<(PathBuf, PathBuf)>, from: Option<Location>) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                let loc = from.unwrap_or_else(|| Location::whole_file(path));
                self.diags.push(Diagnostic::new(
                    loc,
                    format!("cannot read spec file {}: {e}", path.display()),
                ));
                return;
            }
        };
        let parsed = match parse_file(path, &text) {
            Ok(p) => p,
            Err(ds) => {
                self.diags.extend(ds);
                return;
            }
        };
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let at = |key: &[String]| -> Location {
            let (line, col) = parsed
                .spans
                .get(key)
                .and_then(|s| s.value.or(s.key))
                .unwrap_or((1, 1));
            Location::file(path, line, col)
        };
        let ext_key = ["experiment".to_string(), "extends".to_string()];
        let mut extends = Vec::new();
        match parsed.value.get("experiment").and_then(|e| e.get("extends")) {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let key = [ext_key[0].clone(), ext_key[1].clone(), i.to_string()];
                    match item.as_str() {
                        Some(s) => extends.push((s.to_string(), at(&key))),
                        None => self.diags.push(
                            Diagnostic::new(
                                at(&key),
                                format!(
                                    "invalid type for experiment.extends.{i}: expected a file path string, found {}",
                                    kind_of(item)
                                ),
                            )
                            .with_help("write extends = [\"base.toml\"]"),
                        ),
                    }
                }
            }
            Some(other) => self.diags.push(
                Diagnostic::new(
                    at(&ext_key),
                    format!(
                        "invalid type for experiment.extends: expected a list of file paths, found {}",
                        kind_of(other)
                    ),
                )
                .with_help("write extends = [\"base.toml\"] (paths relative to this file)"),
            ),
        }
        chain.push((canonical.clone(), path.to_path_buf()));
        let dir = path.parent().unwrap_or(Path::new(""));
        for (rel, loc) in extends {
            let target = normalize(&dir.join(&rel));
            if !target.is_file() {
                self.diags.push(
                    Diagnostic::new(
                        loc,
                        format!(
                            "extended file '{rel}' not found: {} does not exist",
                            target.display()
                        ),
                    )
                    .with_help(format!(
                        "paths in `extends` are relative to the file that lists them ({})",
                        if dir.as_os_str().is_empty() {
                            ".".to_string()
                        } else {
                            dir.display().to_string()
                        }
                    )),
                );
                continue;
            }
            let target_canon = std::fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
            if let Some(start) = chain.iter().position(|(c, _)| *c == target_canon) {
                let mut names: Vec<String> = chain[start..]
                    .iter()
                    .map(|(_, shown)| shown.display().to_string())
                    .collect();
                names.push(target.display().to_string());
                self.diags.push(
                    Diagnostic::new(loc, format!("extends cycle: {}", names.join(" -> ")))
                        .with_help("remove the `extends` entry that closes the loop"),
                );
                continue;
            }
            if self.seen.contains(&target_canon) {
                // Already layered through another branch; layering it again would let it
                // override files that were meant to override it.
                continue;
            }
            self.visit(&target, chain, Some(loc));
        }
        chain.pop();
        self.seen.insert(canonical);
        self.layers.push(Layer {
            metadata: Metadata::from("TOML file", Source::File(path.to_path_buf())),
            kind: LayerKind::File {
                path: path.to_path_buf(),
                spans: parsed.spans,
            },
            value: parsed.value,
        });
    }
}

/// What kind of TOML value `v` is, in words.
pub(crate) fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("floating point {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a table".into(),
    }
}

/// The value at a key path (object keys and array indices).
pub(crate) fn value_at<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut v = root;
    for seg in path {
        v = match v {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

impl Layer {
    fn contains(&self, path: &[String]) -> bool {
        value_at(&self.value, path).is_some()
    }

    fn is_file(&self) -> bool {
        matches!(self.kind, LayerKind::File { .. })
    }

    /// Where in this layer `path` is; `None` for a file that lacks a position for it.
    fn location(&self, path: &[String], want: Want) -> Option<Location> {
        match &self.kind {
            LayerKind::File { path: file, spans } => {
                let s = spans.get(path)?;
                let pos = match want {
                    Want::Key => s.key.or(s.value).or(s.header),
                    Want::Value => s.value.or(s.key).or(s.header),
                    Want::Header => s.header.or(s.key).or(s.value),
                }?;
                Some(Location::file(file, pos.0, pos.1))
            }
            LayerKind::Env { vars } => vars
                .iter()
                .find(|(k, _)| k.as_slice() == path)
                .or_else(|| {
                    vars.iter()
                        .find(|(k, _)| k.starts_with(path) || path.starts_with(k))
                })
                .map(|(_, name)| Location::env(name)),
            LayerKind::Set { arg } => Some(Location::set(arg)),
        }
    }
}

impl Spec {
    /// The spec file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The merged tree of every layer.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Every file that contributed, lowest priority first (extends before the spec itself).
    pub fn files(&self) -> Vec<&Path> {
        self.layers
            .iter()
            .filter_map(|l| match &l.kind {
                LayerKind::File { path, .. } => Some(path.as_path()),
                _ => None,
            })
            .collect()
    }

    /// Where the value at `key` was set: the file position of the highest-priority layer that
    /// supplied it (the table header for a table), or the variable / argument that did;
    /// `built-in default` for a key no layer sets.
    pub fn locate(&self, key: &[String]) -> Location {
        let want = match value_at(&self.value, key) {
            Some(Value::Object(_)) => Want::Header,
            _ => Want::Value,
        };
        self.locate_as(key, want)
    }

    /// Like [`Spec::locate`], choosing which position of the key to report. A key no layer
    /// sets is reported at its nearest enclosing table, except for a value (that one comes from
    /// a built-in default).
    pub(crate) fn locate_as(&self, key: &[String], want: Want) -> Location {
        if let Some(loc) = self.exact(key, want) {
            return loc;
        }
        if want == Want::Value && !key.is_empty() {
            return Location::default_value();
        }
        for depth in (0..key.len()).rev() {
            if let Some(loc) = self.exact(&key[..depth], Want::Header) {
                return loc;
            }
        }
        Location::whole_file(&self.path)
    }

    /// The position of `key` in the layer that supplied it, if any layer did.
    pub(crate) fn exact(&self, key: &[String], want: Want) -> Option<Location> {
        if key.is_empty() {
            return Some(Location::file(&self.path, 1, 1));
        }
        // figment knows which provider supplied a leaf; its dotted lookup cannot address
        // keys that contain dots or array elements, which the layer scan below handles.
        let plain = key
            .iter()
            .all(|s| !s.contains('.') && s.parse::<usize>().is_err());
        if want != Want::Header && plain {
            if let Some(md) = self.figment.find_metadata(&key.join(".")) {
                if let Some(loc) = self
                    .layers
                    .iter()
                    .rev()
                    .filter(|l| l.metadata == *md && l.contains(key))
                    .find_map(|l| l.location(key, want))
                {
                    return Some(loc);
                }
            }
        }
        let mut candidates: Vec<&Layer> = self
            .layers
            .iter()
            .rev()
            .filter(|l| l.contains(key))
            .collect();
        if want == Want::Header {
            // A table extended by env / --set still opens where a file declares it.
            candidates.sort_by_key(|l| !l.is_file());
        }
        candidates.iter().find_map(|l| l.location(key, want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_set(arg: &str, expected: Result<(&str, Value), &str>) {
        match (parse_set(arg), expected) {
            (Ok((k, v)), Ok((want_k, want_v))) => {
                assert_eq!(dotted(&k), want_k);
                assert_eq!(v, want_v);
            }
            (Err(d), Err(want)) => assert!(d.to_string().contains(want), "{d}"),
            (got, want) => panic!("{arg}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn set_arguments() {
        use serde_json::json;
        check_set(
            "models.sasrec.hidden_size=128",
            Ok(("models.sasrec.hidden_size", json!(128))),
        );
        check_set(
            "models.sasrec.loss.type=bce",
            Ok(("models.sasrec.loss.type", json!("bce"))),
        );
        check_set(
            "eval.metrics=[\"hr@5\"]",
            Ok(("eval.metrics", json!(["hr@5"]))),
        );
        check_set(
            "models.sasrec.loss={type=\"ce\"}",
            Ok(("models.sasrec.loss", json!({"type": "ce"}))),
        );
        check_set(
            "split.ratios = [0.8, 0.1, 0.1]",
            Ok(("split.ratios", json!([0.8, 0.1, 0.1]))),
        );
        check_set("sweep.\"a=b.c\"=[1]", Ok(("sweep.\"a=b.c\"", json!([1]))));
        check_set(
            "datasets.d.path=data/ml-100k",
            Ok(("datasets.d.path", json!("data/ml-100k"))),
        );
        check_set(
            "models.x.hidden_size",
            Err("--set models.x.hidden_size: error: malformed --set: 'models.x.hidden_size' has no '='"),
        );
        check_set(
            "models..x=1",
            Err("malformed --set: key 'models..x' is not a dotted key"),
        );
        check_set("=1", Err("malformed --set: key '' is not a dotted key"));
        check_set("models.x.y=", Err("no value after 'models.x.y='"));
        check_set(
            "models.x.y=[1, 2",
            Err("value '[1, 2' for models.x.y is not a TOML value"),
        );
        check_set("models.x.y=two words", Err("is not a TOML value"));
    }

    #[test]
    fn paths_are_normalized_for_display() {
        assert_eq!(
            normalize(Path::new("a/./b/../c.toml")),
            PathBuf::from("a/c.toml")
        );
        assert_eq!(
            normalize(Path::new("../x/../y.toml")),
            PathBuf::from("../y.toml")
        );
    }
}
