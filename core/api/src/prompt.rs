//! The `prompt` family: templates that turn one training example (a user's history and the
//! item they chose next) into a conversation for a generating backbone. A configured
//! [`Prompt`] is compiled once per stage ([`Prompt::compile`]); the compiled form renders
//! [`PromptContext`]s and can check, before anything runs, that it only uses fields the data set
//! has ([`CompiledPrompt::check_fields`]).

use crate::backbone::ChatTurn;
use crate::error::PluginError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One item as a template sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PromptItem {
    /// Raw item id of the data set.
    pub id: String,
    /// Every text field of the data set, by its name there (`movie_title`, `release_year`, …).
    pub fields: BTreeMap<String, String>,
}

/// Everything a template may read for one example.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct PromptContext {
    /// Data set name (`ml-100k`).
    pub domain: String,
    /// The most recent history items, oldest first (capped by the prompt's history length).
    pub history: Vec<PromptItem>,
    /// The item the user chose next.
    pub item: PromptItem,
    /// Length of the whole history before the cap.
    pub n_history: usize,
}

/// Where a template problem is: the spec key holding it and the template's own line.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateIssue {
    /// Key inside the prompt section (`text`, `file`, `system`).
    pub key: String,
    /// The template file, when the template came from one.
    pub file: Option<PathBuf>,
    /// 1-based line inside the template.
    pub line: Option<usize>,
    pub message: String,
    pub help: Option<String>,
}

impl std::fmt::Display for TemplateIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.key)?;
        if let Some(p) = &self.file {
            write!(f, " ({}", p.display())?;
            if let Some(l) = self.line {
                write!(f, ":{l}")?;
            }
            write!(f, ")")?;
        } else if let Some(l) = self.line {
            write!(f, " (template line {l})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.help {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

/// A configured prompt.
pub trait Prompt: Send + Sync {
    fn describe(&self) -> String;
    /// Reads (`file` relative to `base_dir`) and compiles the template.
    fn compile(&self, base_dir: &Path) -> Result<Box<dyn CompiledPrompt>, TemplateIssue>;
}

/// A compiled prompt.
pub trait CompiledPrompt: Send + Sync {
    /// Most recent history items passed to the template.
    fn history_len(&self) -> usize;
    /// SHA-256 (hex) of everything that decides the rendered text (template sources, settings).
    fn source_hash(&self) -> String;
    /// Checks that rendering only reads variables a data set with item `fields` provides.
    fn check_fields(&self, fields: &[String]) -> Result<(), TemplateIssue>;
    fn render(&self, ctx: &PromptContext) -> Result<Vec<ChatTurn>, PluginError>;
}
