//! Typed plugin configuration: decoding a merged config tree into a plugin's serde struct and
//! turning every failure into a structured [`ConfigError`] (key path + kind + fix), so that the
//! spec layer can locate it in the user's file and print it like a compiler diagnostic.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

/// What is wrong with one configuration key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A key the plugin does not know; `expected` lists the keys it does.
    UnknownField {
        field: String,
        expected: Vec<String>,
    },
    /// A required key is absent.
    MissingField { field: String },
    /// The value has the wrong type (`expected` in words, `found` as written).
    InvalidType { expected: String, found: String },
    /// The value has the right type but is not one of the accepted values.
    InvalidValue { expected: String, found: String },
    /// A number outside its allowed range.
    OutOfRange { allowed: String, found: String },
    /// A `type = "…"` no registered plugin of the family provides.
    UnknownType {
        family: String,
        found: String,
        known: Vec<String>,
    },
    /// A reference to a component name that the spec does not declare.
    DanglingReference {
        family: String,
        found: String,
        known: Vec<String>,
    },
    /// Two components that cannot work together (e.g. a model and a loss).
    Incompatible(String),
    /// Anything else, in words.
    Message(String),
}

/// One configuration problem: where (key path relative to the section being decoded) and what.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Key path from the root of the decoded value, e.g. `["loss", "margin"]`.
    pub path: Vec<String>,
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    pub fn new(path: Vec<String>, kind: ConfigErrorKind) -> Self {
        Self { path, kind }
    }

    /// A value outside `allowed` (e.g. `"1..=512"` or `"> 0"`).
    pub fn out_of_range(key: &str, allowed: impl Into<String>, found: impl fmt::Display) -> Self {
        Self::new(
            split_path(key),
            ConfigErrorKind::OutOfRange {
                allowed: allowed.into(),
                found: found.to_string(),
            },
        )
    }

    pub fn invalid_value(key: &str, expected: impl Into<String>, found: impl fmt::Display) -> Self {
        Self::new(
            split_path(key),
            ConfigErrorKind::InvalidValue {
                expected: expected.into(),
                found: found.to_string(),
            },
        )
    }

    pub fn message(key: &str, msg: impl Into<String>) -> Self {
        Self::new(split_path(key), ConfigErrorKind::Message(msg.into()))
    }

    /// The same error seen from one level up (`loss` + `margin` → `loss.margin`).
    pub fn prefixed(mut self, prefix: &[String]) -> Self {
        let mut p = prefix.to_vec();
        p.append(&mut self.path);
        self.path = p;
        self
    }

    /// The dotted key this error is about (`""` for the section itself).
    pub fn dotted(&self) -> String {
        self.path.join(".")
    }

    /// The problem in words, without location.
    pub fn describe(&self) -> String {
        match &self.kind {
            ConfigErrorKind::UnknownField { field, .. } => format!("unknown field '{field}'"),
            ConfigErrorKind::MissingField { field } => format!("missing field '{field}'"),
            ConfigErrorKind::InvalidType { expected, found } => {
                format!("invalid type: expected {expected}, found {found}")
            }
            ConfigErrorKind::InvalidValue { expected, found } => {
                format!("invalid value {found}: expected {expected}")
            }
            ConfigErrorKind::OutOfRange { allowed, found } => {
                format!("value {found} is out of range: allowed {allowed}")
            }
            ConfigErrorKind::UnknownType { family, found, .. } => {
                format!("unknown {family} type '{found}'")
            }
            ConfigErrorKind::DanglingReference { family, found, .. } => {
                format!("no {family} named '{found}' is declared")
            }
            ConfigErrorKind::Incompatible(m) | ConfigErrorKind::Message(m) => m.clone(),
        }
    }

    /// A suggested fix, when one can be computed.
    pub fn help(&self) -> Option<String> {
        match &self.kind {
            ConfigErrorKind::UnknownField { field, expected } => Some(
                match did_you_mean(field, expected.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean '{s}'?"),
                    None => format!("known fields: {}", expected.join(", ")),
                },
            ),
            ConfigErrorKind::UnknownType { found, known, .. }
            | ConfigErrorKind::DanglingReference { found, known, .. } => {
                let list = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                Some(
                    match did_you_mean(found, known.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean '{s}'? known: {list}"),
                        None => format!("known: {list}"),
                    },
                )
            }
            ConfigErrorKind::MissingField { field } => Some(format!("add `{field} = …`")),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.describe())?;
        } else {
            write!(f, "{}: {}", self.dotted(), self.describe())?;
        }
        if let Some(h) = self.help() {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

fn split_path(key: &str) -> Vec<String> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').map(str::to_string).collect()
    }
}

/// The closest candidate by edit distance, if it is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    found: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(found, c);
        if score > 0.8 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// Decodes a config tree into `T`, mapping serde's failure into a located [`ConfigError`].
///
/// Structs should use `#[serde(deny_unknown_fields)]` so typos are caught.
pub fn decode<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ConfigError> {
    let de = value.clone();
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        // serde_path_to_error already ends the path with an unknown key; a missing field is
        // reported at its enclosing table.
        ConfigError::new(path, classify(&e.inner().to_string()))
    })
}

/// Turns serde's standard messages (stable since serde 1.0) into structured kinds.
fn classify(msg: &str) -> ConfigErrorKind {
    let ticked = |s: &str| -> Vec<String> {
        s.split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, t)| t.to_string())
            .collect()
    };
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let names = ticked(rest);
        if let Some((field, expected)) = names.split_first() {
            return ConfigErrorKind::UnknownField {
                field: field.clone(),
                expected: expected.to_vec(),
            };
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let names = ticked(rest);
        if let Some((found, expected)) = names.split_first() {
            return ConfigErrorKind::InvalidValue {
                expected: format!("one of {}", quote_list(expected)),
                found: format!("'{found}'"),
            };
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field ") {
        if let Some(field) = ticked(rest).into_iter().next() {
            return ConfigErrorKind::MissingField { field };
        }
    }
    for (prefix, is_type) in [("invalid type: ", true), ("invalid value: ", false)] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            if let Some((found, expected)) = rest.rsplit_once(", expected ") {
                let found = found.to_string();
                let expected = plain_type(expected);
                return if is_type {
                    ConfigErrorKind::InvalidType { expected, found }
                } else {
                    ConfigErrorKind::InvalidValue { expected, found }
                };
            }
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid length ") {
        return ConfigErrorKind::InvalidValue {
            expected: rest.to_string(),
            found: "a list".into(),
        };
    }
    ConfigErrorKind::Message(msg.to_string())
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// serde names Rust types (`u32`, `f64`); users write TOML, so say it in TOML words.
fn plain_type(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "a boolean (true or false)".into(),
        other => other.to_string(),
    }
}

/// A plugin's configuration struct: it is the plugin's factory input, carries its defaults, its
/// one-line summary and a commented TOML example with every default (see `pulse example`).
pub trait PluginConfig: DeserializeOwned + Serialize + Default {
    /// The `type = "…"` name.
    const TYPE: &'static str;
    /// One line for `pulse list`.
    const SUMMARY: &'static str;
    /// The body of a TOML section (without the `[family.name]` header and without `type`),
    /// commented, listing every field with its default. A test checks it decodes to `Default`.
    const EXAMPLE: &'static str;

    /// Range and consistency checks beyond what serde's types express. Collect every problem.
    fn validate(&self) -> Vec<ConfigError> {
        Vec::new()
    }

    /// Names of other components this config refers to, with the key that holds each.
    fn references(&self) -> Vec<crate::Reference> {
        Vec::new()
    }
}

/// Pushes an out-of-range error when `value` is not within `[lo, hi]`.
pub fn check_range<T: PartialOrd + fmt::Display>(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: T,
    lo: T,
    hi: T,
) {
    if value < lo || value > hi {
        errors.push(ConfigError::out_of_range(
            key,
            format!("{lo} to {hi}"),
            value,
        ));
    }
}

/// Pushes an out-of-range error when `value` is not strictly positive.
pub fn check_positive<T: PartialOrd + fmt::Display + Default>(
    errors: &mut Vec<ConfigError>,
    key: &str,
    value: T,
) {
    if value <= T::default() {
        errors.push(ConfigError::out_of_range(key, "> 0", value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        margin: f64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        hidden_size: u32,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        mode: Option<Mode>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Mode {
        Full,
        Sampled,
    }

    #[track_caller]
    fn check(json: &str, path: &str, kind: ConfigErrorKind) {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let e = decode::<Cfg>(&v).unwrap_err();
        assert_eq!(e.dotted(), path, "{e}");
        assert_eq!(e.kind, kind, "{e}");
    }

    #[test]
    fn serde_failures_become_structured() {
        check(
            r#"{"hidden_size": 4, "hiden": 1}"#,
            "hiden",
            ConfigErrorKind::UnknownField {
                field: "hiden".into(),
                expected: vec!["hidden_size".into(), "inner".into(), "mode".into()],
            },
        );
        check(
            r#"{"hidden_size": "big"}"#,
            "hidden_size",
            ConfigErrorKind::InvalidType {
                expected: "a non-negative integer".into(),
                found: "string \"big\"".into(),
            },
        );
        check(
            r#"{}"#,
            "",
            ConfigErrorKind::MissingField {
                field: "hidden_size".into(),
            },
        );
        check(
            r#"{"hidden_size": 1, "inner": {"margn": 1.0}}"#,
            "inner.margn",
            ConfigErrorKind::UnknownField {
                field: "margn".into(),
                expected: vec!["margin".into()],
            },
        );
        check(
            r#"{"hidden_size": 1, "mode": "ful"}"#,
            "mode",
            ConfigErrorKind::InvalidValue {
                expected: "one of 'full', 'sampled'".into(),
                found: "'ful'".into(),
            },
        );
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("hiden_size", ["hidden_size", "layers"]),
            Some("hidden_size".into())
        );
        assert_eq!(did_you_mean("zzz", ["hidden_size"]), None);
    }
}
