//! Plugin families and the catalog interface through which the spec layer validates plugin
//! sections without knowing any concrete plugin (the registry implements [`Catalog`]).

use crate::config::ConfigError;
use std::fmt;

/// A kind of plugin. Each has its own table in a spec (`[datasets.NAME]`, `[models.NAME]`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Family {
    Dataset,
    Loss,
    Recommender,
    /// Language models that generate text or embed it (`[backbones.NAME]`).
    Backbone,
    /// Prompt templates for generating backbones (`[prompts.NAME]`).
    Prompt,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::Dataset,
        Family::Loss,
        Family::Recommender,
        Family::Backbone,
        Family::Prompt,
    ];

    /// Singular name used on the command line (`pulse list recommender`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Dataset => "dataset",
            Family::Loss => "loss",
            Family::Recommender => "recommender",
            Family::Backbone => "backbone",
            Family::Prompt => "prompt",
        }
    }

    /// The spec table that holds components of this family, if they are declared at top level.
    /// Losses live inside models (`loss = { type = … }`).
    pub fn table(self) -> Option<&'static str> {
        match self {
            Family::Dataset => Some("datasets"),
            Family::Recommender => Some("models"),
            Family::Backbone => Some("backbones"),
            Family::Prompt => Some("prompts"),
            Family::Loss => None,
        }
    }

    pub fn parse(s: &str) -> Option<Family> {
        let s = s.trim_end_matches('s');
        Family::ALL
            .into_iter()
            .find(|f| f.name() == s || (s == "model" && *f == Family::Recommender))
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the registry knows about one plugin, for `pulse list` and `pulse example`.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    pub family: Family,
    pub type_name: String,
    pub summary: String,
    /// Commented TOML section body (no header, no `type`) with every default.
    pub example: String,
    /// Where it came from: `built-in` or a library path.
    pub origin: String,
}

/// A config key that names another component of the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Dotted key inside the section, e.g. `encoder`.
    pub key: String,
    pub family: Family,
    pub name: String,
}

/// Validation of plugin sections by type; implemented by the registry.
pub trait Catalog {
    /// Known `type` names of a family, sorted.
    fn types(&self, family: Family) -> Vec<String>;

    /// Decodes and validates a section (with its `type` key) and returns its references, or
    /// every problem found (paths relative to the section).
    fn check(
        &self,
        family: Family,
        section: &serde_json::Value,
    ) -> Result<Vec<Reference>, Vec<ConfigError>>;
}
