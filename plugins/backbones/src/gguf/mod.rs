//! The `gguf` backbone: a small language model from a GGUF file, run with candle.
//!
//! [`GgufBackbone::load`] reads the file's metadata, picks the architecture from
//! `general.architecture` (llama / SmolLM2, qwen2, gemma3), builds the tokenizer and the chat
//! template from the metadata, and loads the weights on the requested device in the requested
//! [`WeightFormat`]. [`GgufBackbone::generate`] runs many prompts at once through the batched
//! engine (see `engine.rs` for how batches are formed and shrink). [`GgufBackbone::embed`]
//! turns texts into vectors: the mean of the final hidden states (after the output norm) over
//! each text's tokens, L2-normalised (see `embed.rs`).
//!
//! ```no_run
//! use pulse_backbones::gguf::{GgufBackbone, LoadOptions};
//! use pulse_backbones::chat::Message;
//! use pulse_backbones::GenParams;
//!
//! let cache = pulse_assets::cache_dir();
//! let model = GgufBackbone::load_named("smollm2-135m-instruct", &cache, &LoadOptions::default())?;
//! let prompt = model.apply_chat_template(&[Message::user("Why watch Star Wars?")], true)?;
//! let out = model.generate(&[prompt], &GenParams::greedy(64))?;
//! println!("{} ({} tokens, {})", out[0].text, out[0].new_tokens, out[0].finish_reason);
//! let vectors = model.embed(&["Toy Story (1995)", "Aladdin (1992)"])?;
//! assert_eq!(vectors[0].len(), model.config().n_embd);
//! # Ok::<(), pulse_backbones::BackboneError>(())
//! ```

mod cache;
mod config;
mod embed;
mod engine;
mod int8;
mod kernels;
pub(crate) mod meta;
mod model;
mod sampling;
mod simd;
mod weights;

pub use config::{Activation, Arch, Config, RopeStyle, SlidingWindow};
pub use embed::EmbedParams;
pub use engine::GenProgress;
pub use weights::{WeightFormat, AUTO_DENSE_MAX_PARAMS};

use crate::chat::{ChatTemplate, Message};
use crate::tokenizer::Tokenizer;
use crate::{BackboneError, DeviceSpec, GenParams, Generation};
use candle_core::quantized::gguf_file::Content;
use meta::Meta;
use std::path::{Path, PathBuf};

/// How to load a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    pub device: DeviceSpec,
    pub weights: WeightFormat,
}

/// A loaded GGUF language model with its tokenizer and chat template.
pub struct GgufBackbone {
    model: model::Model,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    name: String,
    path: PathBuf,
    device: DeviceSpec,
}

impl std::fmt::Debug for GgufBackbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufBackbone")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("arch", &self.model.cfg.arch)
            .field("weights", &self.model.format)
            .field("device", &self.device)
            .finish()
    }
}

fn open_content(
    path: &Path,
) -> Result<(Content, std::io::BufReader<std::fs::File>), BackboneError> {
    let file = std::fs::File::open(path).map_err(|source| BackboneError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = std::io::BufReader::new(file);
    let content = Content::read(&mut reader).map_err(|e| BackboneError::Gguf {
        path: path.to_path_buf(),
        reason: format!("not a readable GGUF file: {e}"),
    })?;
    Ok((content, reader))
}

impl GgufBackbone {
    /// Loads the GGUF file at `path`.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Self, BackboneError> {
        let device = opts.device.open()?;
        let (content, mut reader) = open_content(path)?;
        let meta = Meta::new(&content);
        let cfg = Config::from_meta(&meta)?;
        let tokenizer = Tokenizer::from_gguf(&content)?;
        let name = meta
            .opt_str("general.name")?
            .map(str::to_string)
            .unwrap_or_else(|| path.display().to_string());
        let template = match meta.opt_str("tokenizer.chat_template")? {
            Some(src) => {
                let text = |id: Option<u32>| {
                    id.and_then(|i| tokenizer.token_text(i))
                        .unwrap_or_default()
                        .to_string()
                };
                Some(ChatTemplate::new(
                    src,
                    &text(tokenizer.bos_id()),
                    &text(tokenizer.eos_id()),
                )?)
            }
            None => None,
        };
        let loader = weights::Loader {
            content: &content,
            reader: &mut reader,
            device: &device,
            format: opts.weights,
            path,
        };
        let model = model::Model::load(cfg, loader)?;
        tracing::info!(
            model = %name,
            arch = model.cfg.arch.as_str(),
            weights = ?model.format,
            embeddings = model.embedding_dtype(),
            device = %opts.device,
            "loaded GGUF model"
        );
        Ok(Self {
            model,
            tokenizer,
            template,
            name,
            path: path.to_path_buf(),
            device: opts.device,
        })
    }

    /// Loads a named model of the asset catalog (`smollm2-135m-instruct`, `gemma3-270m`,
    /// `qwen2.5-coder-0.5b-instruct`), fetching it into `cache_dir` first if needed.
    pub fn load_named(
        name: &str,
        cache_dir: &Path,
        opts: &LoadOptions,
    ) -> Result<Self, BackboneError> {
        let asset = pulse_assets::named_asset(name)?;
        let file = asset
            .file("model.gguf")
            .ok_or_else(|| BackboneError::Gguf {
                path: asset.dir(cache_dir),
                reason: format!("asset `{name}` is not a GGUF model"),
            })?;
        let path = pulse_assets::fetch_file(cache_dir, asset, file)?;
        Self::load(&path, opts)
    }

    /// `general.name` of the file.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config(&self) -> &Config {
        &self.model.cfg
    }

    /// The weight format in use (`Auto` resolved).
    pub fn weight_format(&self) -> WeightFormat {
        self.model.format
    }

    pub fn device(&self) -> DeviceSpec {
        self.device
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The model's chat template, if the file has one (base models often do not).
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// Replaces the chat template (for base models, or to override the shipped one).
    pub fn set_chat_template(&mut self, source: &str) -> Result<(), BackboneError> {
        let text = |id: Option<u32>| {
            id.and_then(|i| self.tokenizer.token_text(i))
                .unwrap_or_default()
                .to_string()
        };
        self.template = Some(ChatTemplate::new(
            source,
            &text(self.tokenizer.bos_id()),
            &text(self.tokenizer.eos_id()),
        )?);
        Ok(())
    }

    /// Renders `messages` with the chat template into the text of one prompt.
    pub fn apply_chat_template(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, BackboneError> {
        match &self.template {
            Some(t) => t.render(messages, add_generation_prompt),
            None => Err(BackboneError::NoChatTemplate {
                model: self.name.clone(),
            }),
        }
    }

    /// Tokens of a prompt as [`Self::generate`] feeds it (beginning-of-sequence token added
    /// where the model wants one).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, BackboneError> {
        self.tokenizer.encode_prompt(prompt)
    }

    /// Continues every prompt (raw text: apply the chat template first for chat models);
    /// results are in prompt order.
    pub fn generate(
        &self,
        prompts: &[String],
        params: &GenParams,
    ) -> Result<Vec<Generation>, BackboneError> {
        let mut out: Vec<Option<Generation>> = vec![None; prompts.len()];
        self.generate_with(prompts, params, &mut |i, g| out[i] = Some(g), &mut |_| {})?;
        // invariant: the engine reports every prompt exactly once before returning Ok.
        Ok(out.into_iter().flatten().collect())
    }

    /// [`Self::generate`], handing each result to `on_done(prompt_index, generation)` as soon
    /// as it is finished (so a caller can store results while others still run) and reporting
    /// progress after every decoding step.
    pub fn generate_with(
        &self,
        prompts: &[String],
        params: &GenParams,
        on_done: &mut dyn FnMut(usize, Generation),
        on_progress: &mut dyn FnMut(GenProgress),
    ) -> Result<(), BackboneError> {
        let ids = prompts
            .iter()
            .map(|p| self.tokenizer.encode_prompt(p))
            .collect::<Result<Vec<_>, _>>()?;
        self.generate_ids(&ids, params, on_done, on_progress)
    }

    /// Generation from token ids.
    pub fn generate_ids(
        &self,
        prompts: &[Vec<u32>],
        params: &GenParams,
        on_done: &mut dyn FnMut(usize, Generation),
        on_progress: &mut dyn FnMut(GenProgress),
    ) -> Result<(), BackboneError> {
        engine::Engine {
            model: &self.model,
            tokenizer: &self.tokenizer,
            params,
        }
        .run(prompts, on_done, on_progress)
    }

    /// One vector per text, in input order, with the default [`EmbedParams`]: the mean of the
    /// final hidden states (after the output norm, before the LM head) over the text's tokens,
    /// L2-normalised, `config().n_embd` wide. Texts are plain text (no chat template); ones
    /// longer than 512 tokens are cut.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BackboneError> {
        self.embed_with(texts, &EmbedParams::default())
    }

    /// [`Self::embed`] with explicit parameters.
    pub fn embed_with(
        &self,
        texts: &[&str],
        params: &EmbedParams,
    ) -> Result<Vec<Vec<f32>>, BackboneError> {
        embed::embed(&self.model, &self.tokenizer, texts, params)
    }
}

#[cfg(test)]
mod tests;
