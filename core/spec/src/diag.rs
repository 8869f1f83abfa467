//! Where a spec problem is and how it is shown: [`Location`] (a file position, or the command
//! line / environment / built-in default that supplied a value), [`Diagnostic`] and the
//! collection [`Diagnostics`] that `load` and `plan` return, rendered like compiler errors.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a value (or a problem with it) comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    origin: Origin,
}

/// The kinds of places a spec value can come from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// A position in a TOML file (1-based); `None` when only the file is known (e.g. unreadable).
    File {
        path: PathBuf,
        position: Option<(usize, usize)>,
    },
    /// A `--set key=value` argument, as typed.
    Set(String),
    /// A `PULSE_…` environment variable, by name.
    Env(String),
    /// The built-in default of a field nobody set.
    Default,
}

impl Location {
    pub fn file(path: impl Into<PathBuf>, line: usize, column: usize) -> Self {
        Self {
            origin: Origin::File {
                path: path.into(),
                position: Some((line, column)),
            },
        }
    }

    /// A whole file, when no position inside it applies.
    pub fn whole_file(path: impl Into<PathBuf>) -> Self {
        Self {
            origin: Origin::File {
                path: path.into(),
                position: None,
            },
        }
    }

    pub fn set(arg: impl Into<String>) -> Self {
        Self {
            origin: Origin::Set(arg.into()),
        }
    }

    pub fn env(var: impl Into<String>) -> Self {
        Self {
            origin: Origin::Env(var.into()),
        }
    }

    pub fn default_value() -> Self {
        Self {
            origin: Origin::Default,
        }
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The file, when the location is in one.
    pub fn path(&self) -> Option<&Path> {
        match &self.origin {
            Origin::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// 1-based line and column, when known.
    pub fn line_col(&self) -> Option<(usize, usize)> {
        match &self.origin {
            Origin::File { position, .. } => *position,
            _ => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File {
                path,
                position: Some((line, col)),
            } => write!(f, "{}:{line}:{col}", path.display()),
            Origin::File {
                path,
                position: None,
            } => write!(f, "{}", path.display()),
            Origin::Set(arg) => write!(f, "--set {arg}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Default => f.write_str("built-in default"),
        }
    }
}

/// One problem with a spec: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        Self {
            location,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: error: {}", self.location, self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in a spec, reported together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    /// Adds `d` unless an identical diagnostic is already present (the same base problem is
    /// found again in every trial of a sweep).
    pub(crate) fn push_unique(&mut self, d: Diagnostic) {
        if !self.0.contains(&d) {
            self.0.push(d);
        }
    }

    /// File positions first in file order, then command-line and environment origins; the sort
    /// is stable so problems at one position keep their discovery order.
    pub(crate) fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| a.location.cmp(&b.location));
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(ds: Vec<Diagnostic>) -> Self {
        Self(ds)
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(d: Diagnostic, expected: &str) {
        assert_eq!(d.to_string(), expected);
    }

    #[test]
    fn renders_like_a_compiler() {
        check(
            Diagnostic::new(
                Location::file("x.toml", 14, 1),
                "unknown field 'hiden_size'",
            )
            .with_help("did you mean 'hidden_size'?"),
            "x.toml:14:1: error: unknown field 'hiden_size'\n  help: did you mean 'hidden_size'?",
        );
        check(
            Diagnostic::new(Location::set("models.x.y=1"), "bad"),
            "--set models.x.y=1: error: bad",
        );
        check(
            Diagnostic::new(Location::env("PULSE_MODELS__X__Y"), "bad"),
            "environment variable PULSE_MODELS__X__Y: error: bad",
        );
        check(
            Diagnostic::new(Location::default_value(), "bad"),
            "built-in default: error: bad",
        );
        check(
            Diagnostic::new(Location::whole_file("a.toml"), "cannot read"),
            "a.toml: error: cannot read",
        );
    }

    #[test]
    fn sorted_by_file_position_then_other_origins() {
        let ds = Diagnostics(vec![
            Diagnostic::new(Location::set("a=1"), "s"),
            Diagnostic::new(Location::file("a.toml", 9, 1), "late"),
            Diagnostic::new(Location::file("a.toml", 2, 5), "early"),
        ])
        .sorted();
        let order: Vec<_> = ds.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(order, ["early", "late", "s"]);
    }
}
