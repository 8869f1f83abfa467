//! Prompt templates for pulse (family `prompt`), rendered with minijinja in strict mode so that a
//! template reading something the data set does not have fails loudly instead of printing "".
//!
//! - `pulse-rationale`: the PULSE paper's prompt — an analyst infers the user's latent
//!   preferences from the history, deconstructs the choice of the next item, and answers with
//!   JSON `{"rationale": "…"}` under 100 words — written against the fields every data set has.
//! - `template`: a user's own template, inline (`text = "…"`) or from a file (`file = "…"`).
//!
//! # Template variables
//!
//! | variable | what |
//! |---|---|
//! | `domain` | the data set's name (`ml-100k`), or the prompt's `domain` setting |
//! | `history` | the last `history_len` items before the chosen one, oldest first |
//! | `item` | the chosen item |
//! | `n_history` | the whole history's length (before the cap) |
//!
//! Each item has `id`, every text field of the data set under its own name (ml-100k:
//! `movie_title`, `release_year`, `class`), the aliases `title`, `year` and `genres` when the
//! data set has a field they map to (see [`ALIASES`]), and `label`: a one-line description built
//! from whichever of title / year / genres exist (the id when none does). Ratings are not
//! available: pulse's split data does not keep them.

mod template;

pub use template::{item_value, Compiled, ALIASES};

use pulse_api::config::{check_range, ConfigError, PluginConfig};
use pulse_api::serde::{Deserialize, Serialize};
use pulse_api::{CompiledPrompt, Prompt, Registrar, TemplateIssue};
use std::path::{Path, PathBuf};

/// Registers `pulse-rationale` and `template`.
pub fn register(r: &mut Registrar) {
    r.prompt::<RationalePrompt>(|c| Ok(Box::new(c)));
    r.prompt::<TemplatePrompt>(|c| Ok(Box::new(c)));
}

/// The built-in system message.
pub const RATIONALE_SYSTEM: &str = "You are an expert analyst of user behaviour in recommender systems. You explain choices concisely and answer only with JSON.";

/// The built-in user message (see the crate docs for the variables).
pub const RATIONALE_USER: &str = r#"A user of a {{ domain }} service interacted with these items, oldest first{% if n_history > history|length %} (the last {{ history|length }} of {{ n_history }}){% endif %}:
{% for it in history %}{{ it.label }}; {% endfor %}


Next, the user chose: {{ item.label }}

First infer the user's latent preferences from the history. Then deconstruct the choice: which of those preferences does the chosen item satisfy, and why this item now? Answer only with JSON of the form {"rationale": "<why the user chose this item, under 100 words>"}"#;

/// The start of the answer the built-in prompt puts in the model's mouth, so that even small
/// models answer in the asked-for JSON.
pub const RATIONALE_PREFILL: &str = r#"{"rationale": ""#;

/// `[prompts.NAME]` with `type = "pulse-rationale"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "pulse_api::serde", deny_unknown_fields, default)]
pub struct RationalePrompt {
    /// Most recent history items shown.
    pub history_len: usize,
    /// Name of the domain in the prompt (default: the data set's name).
    pub domain: Option<String>,
    /// Start the answer with `{"rationale": "` (the model continues the string).
    pub prefill: bool,
}

impl Default for RationalePrompt {
    fn default() -> Self {
        Self {
            history_len: 20,
            domain: None,
            prefill: true,
        }
    }
}

impl PluginConfig for RationalePrompt {
    const TYPE: &'static str = "pulse-rationale";
    const SUMMARY: &'static str =
        "The PULSE paper's rationale prompt: infer latent preferences, deconstruct the choice, answer {\"rationale\": …} under 100 words";
    const EXAMPLE: &'static str = r#"history_len = 20      # most recent history items shown
# domain = "movie"    # default: the data set's name
prefill = true        # the answer starts with {"rationale": " and the model continues it
"#;

    fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        check_range(&mut e, "history_len", self.history_len, 1, 10_000);
        e
    }
}

impl Prompt for RationalePrompt {
    fn describe(&self) -> String {
        format!("pulse-rationale (last {} items)", self.history_len)
    }

    fn compile(&self, _base_dir: &Path) -> Result<Box<dyn CompiledPrompt>, TemplateIssue> {
        Ok(Box::new(Compiled::new(
            Some(("system", RATIONALE_SYSTEM.to_string())),
            ("text", RATIONALE_USER.to_string(), None),
            self.prefill.then(|| RATIONALE_PREFILL.to_string()),
            self.history_len,
            self.domain.clone(),
        )?))
    }
}

/// `[prompts.NAME]` with `type = "template"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(crate = "pulse_api::serde", deny_unknown_fields, default)]
pub struct TemplatePrompt {
    /// The user message, inline.
    pub text: Option<String>,
    /// The user message from a file (relative to the spec).
    pub file: Option<PathBuf>,
    /// An optional system message (a template too).
    pub system: Option<String>,
    /// The start of the answer (an assistant turn the model continues), e.g. `{"rationale": "`.
    pub prefill: Option<String>,
    pub history_len: Option<usize>,
    pub domain: Option<String>,
}

impl PluginConfig for TemplatePrompt {
    const TYPE: &'static str = "template";
    const SUMMARY: &'static str =
        "Your own minijinja template, inline (text = \"…\") or from a file (file = \"…\")";
    const EXAMPLE: &'static str = r#"# Exactly one of text / file. Variables: domain, history, item, n_history; items have id,
# label, title, year, genres and the data set's own fields (`pulse example prompt template`).
text = "The user watched {% for it in history %}{{ it.title }}; {% endfor %}then {{ item.title }}. Why?"
# file = "prompts/why.j2"
# system = "You are a helpful analyst."
# prefill = '{"rationale": "'
# history_len = 20
# domain = "movie"
"#;

    fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        match (&self.text, &self.file) {
            (None, None) => e.push(ConfigError::message(
                "text",
                "missing: give text = \"…\" (an inline template) or file = \"…\"",
            )),
            (Some(_), Some(_)) => e.push(ConfigError::message(
                "file",
                "give either text or file, not both",
            )),
            _ => {}
        }
        if let Some(n) = self.history_len {
            check_range(&mut e, "history_len", n, 1, 10_000);
        }
        e
    }
}

impl Prompt for TemplatePrompt {
    fn describe(&self) -> String {
        match &self.file {
            Some(f) => format!("template {}", f.display()),
            None => "inline template".into(),
        }
    }

    fn compile(&self, base_dir: &Path) -> Result<Box<dyn CompiledPrompt>, TemplateIssue> {
        let user = match (&self.text, &self.file) {
            (Some(t), _) => ("text", t.clone(), None),
            (None, Some(f)) => {
                let path = if f.is_absolute() {
                    f.clone()
                } else {
                    base_dir.join(f)
                };
                let text = std::fs::read_to_string(&path).map_err(|e| TemplateIssue {
                    key: "file".into(),
                    file: Some(path.clone()),
                    line: None,
                    message: format!("cannot read the template: {e}"),
                    help: Some("file paths are relative to the spec file".into()),
                })?;
                ("file", text, Some(path))
            }
            (None, None) => ("text", String::new(), None),
        };
        Ok(Box::new(Compiled::new(
            self.system.clone().map(|s| ("system", s)),
            user,
            self.prefill.clone(),
            self.history_len.unwrap_or(20),
            self.domain.clone(),
        )?))
    }
}

#[cfg(test)]
mod tests;
