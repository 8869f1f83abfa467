//! The `backbone` family: language models that turn text into text (capability `generate`) or
//! into vectors (capability `embed`). A configured [`Backbone`] is cheap (it only holds its
//! config); [`Backbone::open`] loads the weights or connects, and [`Backbone::id`] names the
//! exact model (asset + checksum, file + size, or server + model) without loading it, so that a
//! cached stage can be recognised as complete before any weights are read.

use crate::dataset::LoadContext;
use crate::error::PluginError;
use serde::{Deserialize, Serialize};

/// What a backbone can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Generate,
    Embed,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::Generate => "generate",
            Capability::Embed => "embed",
        }
    }
}

/// One turn of a conversation (`system`, `user` or `assistant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTurn {
    pub role: String,
    pub content: String,
}

impl ChatTurn {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Decoding settings every generating backbone accepts (`temperature = 0` is greedy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenSettings {
    pub max_new_tokens: usize,
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: f32,
    pub seed: u64,
    pub stop: Vec<String>,
    /// Most sequences decoded together.
    pub batch_size: usize,
}

impl Default for GenSettings {
    fn default() -> Self {
        Self {
            max_new_tokens: 96,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            seed: 0,
            stop: Vec::new(),
            batch_size: 64,
        }
    }
}

/// One conversation's generated answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenOutput {
    pub text: String,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    /// `eos`, `stop` or `length`.
    pub finish_reason: String,
}

/// Called as generation advances: (conversations finished, tokens generated so far).
pub type GenProgressFn<'a> = dyn FnMut(usize, usize) + 'a;

/// A configured backbone.
pub trait Backbone: Send + Sync {
    /// One line for logs: which model, where.
    fn describe(&self) -> String;
    fn capabilities(&self) -> Vec<Capability>;
    /// A stable identity of the exact weights (part of stage cache keys); must not load them.
    fn id(&self, ctx: &LoadContext) -> Result<String, PluginError>;
    /// Loads the model (fetching a named asset first if needed) or connects to the server.
    fn open(&self, ctx: &LoadContext) -> Result<Box<dyn LoadedBackbone>, PluginError>;
}

/// A backbone ready to run.
pub trait LoadedBackbone: Send + Sync {
    /// Answers each conversation (the model's chat template applied), in input order. A
    /// final `assistant` turn is a prefill: local backbones continue its text (the output
    /// holds only the continuation); remote ones send it as is.
    fn generate(
        &self,
        conversations: &[Vec<ChatTurn>],
        settings: &GenSettings,
        progress: &mut GenProgressFn<'_>,
    ) -> Result<Vec<GenOutput>, PluginError> {
        let _ = (conversations, settings, progress);
        Err(PluginError::Other(
            "this backbone cannot generate text".into(),
        ))
    }

    /// One vector per text, in input order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PluginError> {
        let _ = texts;
        Err(PluginError::Other("this backbone cannot embed text".into()))
    }
}
