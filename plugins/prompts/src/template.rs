//! Compiled prompt templates: strict minijinja rendering of a [`PromptContext`], the item
//! aliases (`title`, `year`, `genres`, `label`) that let one template serve data sets with
//! different field names, and the probe render that finds variables a data set lacks.

use pulse_api::{ChatTurn, CompiledPrompt, PluginError, PromptContext, PromptItem, TemplateIssue};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Alias → data-set field names it may come from, first present wins.
pub const ALIASES: &[(&str, &[&str])] = &[
    (
        "title",
        &["title", "movie_title", "name", "item_name", "book_title"],
    ),
    ("year", &["year", "release_year"]),
    (
        "genres",
        &["genres", "genre", "class", "categories", "category"],
    ),
];

/// An item as templates see it: its fields, the aliases, `id` and `label`.
pub fn item_value(item: &PromptItem) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = item.fields.clone();
    for (alias, sources) in ALIASES {
        if let Some(v) = sources.iter().find_map(|s| item.fields.get(*s)) {
            m.insert((*alias).to_string(), v.clone());
        }
    }
    let nonempty = |k: &str| m.get(k).filter(|v| !v.trim().is_empty()).cloned();
    let mut label = nonempty("title").unwrap_or_else(|| item.id.clone());
    if let Some(y) = nonempty("year") {
        // ml-100k titles often carry the year already.
        if !label.contains(&format!("({y})")) {
            label.push_str(&format!(" ({y})"));
        }
    }
    if let Some(g) = nonempty("genres") {
        label.push_str(&format!(" — {g}"));
    }
    m.insert("label".into(), label);
    m.insert("id".into(), item.id.clone());
    m
}

/// One part of a prompt: the section key it came from, its source and its file.
struct Part {
    key: &'static str,
    file: Option<PathBuf>,
}

/// A compiled prompt: optional system message and the user message.
pub struct Compiled {
    env: minijinja::Environment<'static>,
    system: Option<Part>,
    user: Part,
    prefill: Option<String>,
    history_len: usize,
    domain: Option<String>,
    hash: String,
}

fn issue(part: &Part, e: &minijinja::Error, help: Option<String>) -> TemplateIssue {
    let mut message = e.kind().to_string();
    if let Some(d) = e.detail() {
        message.push_str(": ");
        message.push_str(d);
    }
    TemplateIssue {
        key: part.key.to_string(),
        file: part.file.clone(),
        line: e.line(),
        message,
        help,
    }
}

impl Compiled {
    /// Compiles `system` (key, source) and `user` (key, source, file).
    pub fn new(
        system: Option<(&'static str, String)>,
        user: (&'static str, String, Option<PathBuf>),
        prefill: Option<String>,
        history_len: usize,
        domain: Option<String>,
    ) -> Result<Self, TemplateIssue> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        // `{% for %}` lines leave no blank line behind, as in Jinja with trim_blocks.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .build()
            .map_err(|e| TemplateIssue {
                key: "text".into(),
                file: None,
                line: None,
                message: e.to_string(),
                help: None,
            })?;
        env.set_syntax(syntax);
        let mut hasher = Sha256::new();
        let sys_part = system.as_ref().map(|(key, _)| Part { key, file: None });
        if let Some((_, src)) = &system {
            hasher.update(b"system\0");
            hasher.update(src.as_bytes());
            env.add_template_owned("system", src.clone())
                .map_err(|e| issue(sys_part.as_ref().unwrap_or(&USER_FALLBACK), &e, None))?;
        }
        let user_part = Part {
            key: user.0,
            file: user.2.clone(),
        };
        hasher.update(b"\0user\0");
        hasher.update(user.1.as_bytes());
        hasher.update(format!("\0{history_len}\0{domain:?}\0{prefill:?}").as_bytes());
        env.add_template_owned("user", user.1)
            .map_err(|e| issue(&user_part, &e, None))?;
        Ok(Self {
            env,
            system: sys_part,
            user: user_part,
            prefill,
            history_len,
            domain,
            hash: hex::encode(hasher.finalize()),
        })
    }

    fn context(&self, ctx: &PromptContext) -> minijinja::Value {
        let history: Vec<_> = ctx.history.iter().map(item_value).collect();
        minijinja::context! {
            domain => self.domain.clone().unwrap_or_else(|| ctx.domain.clone()),
            history => history,
            item => item_value(&ctx.item),
            n_history => ctx.n_history,
        }
    }

    fn render_part(
        &self,
        name: &str,
        part: &Part,
        value: &minijinja::Value,
    ) -> Result<String, TemplateIssue> {
        let t = self
            .env
            .get_template(name)
            .map_err(|e| issue(part, &e, None))?;
        t.render(value).map_err(|e| issue(part, &e, None))
    }

    fn render_all(&self, ctx: &PromptContext) -> Result<Vec<ChatTurn>, TemplateIssue> {
        let value = self.context(ctx);
        let mut turns = Vec::new();
        if let Some(p) = &self.system {
            turns.push(ChatTurn::new(
                "system",
                self.render_part("system", p, &value)?,
            ));
        }
        turns.push(ChatTurn::new(
            "user",
            self.render_part("user", &self.user, &value)?
                .trim()
                .to_string(),
        ));
        if let Some(p) = &self.prefill {
            turns.push(ChatTurn::new("assistant", p.clone()));
        }
        Ok(turns)
    }
}

/// Only used if a system template fails to compile before its part exists (cannot happen:
/// the part is built first); keeps `issue` total without an `expect`.
static USER_FALLBACK: Part = Part {
    key: "system",
    file: None,
};

impl CompiledPrompt for Compiled {
    fn history_len(&self) -> usize {
        self.history_len
    }

    fn source_hash(&self) -> String {
        self.hash.clone()
    }

    fn check_fields(&self, fields: &[String]) -> Result<(), TemplateIssue> {
        let probe_item = |id: &str| PromptItem {
            id: id.into(),
            fields: fields
                .iter()
                .map(|f| (f.clone(), format!("{f} of {id}")))
                .collect(),
        };
        let ctx = PromptContext {
            domain: "probe".into(),
            history: vec![probe_item("h1"), probe_item("h2")],
            item: probe_item("i"),
            n_history: 2,
        };
        self.render_all(&ctx).map(|_| ()).map_err(|mut e| {
            if e.message.contains("undefined") {
                let mut names: Vec<String> = item_value(&probe_item("i")).into_keys().collect();
                names.sort();
                e.help = Some(format!(
                    "the data set's items have: {}; top-level variables: domain, history, item, n_history (test optional ones with `is defined`)",
                    names.join(", ")
                ));
            }
            e
        })
    }

    fn render(&self, ctx: &PromptContext) -> Result<Vec<ChatTurn>, PluginError> {
        self.render_all(ctx)
            .map_err(|e| PluginError::Other(format!("prompt template {e}")))
    }
}
