//! Backbones for pulse: the models that turn text into text (generation) or into vectors
//! (embeddings).
//!
//! - [`gguf`]: small language models from GGUF files (llama / SmolLM2, qwen2, gemma3) run with
//!   candle on CPU or CUDA, with their tokenizer and chat template read from the GGUF itself,
//!   a batched generation engine ([`gguf::GgufBackbone::generate`]) and mean-pooled final
//!   hidden states as text vectors ([`gguf::GgufBackbone::embed`]).
//! - [`bert`]: sentence encoders (all-MiniLM-L6-v2) from safetensors + `tokenizer.json`, for
//!   inference ([`bert::Encoder`]) and fine-tuning ([`bert::TrainableEncoder`]).
//! - [`openai`]: any OpenAI-compatible server (chat, completions, embeddings) with bounded
//!   concurrency, timeouts and retries.
//! - [`echo`]: no model — answers with the prompt (fixed-template rationales for ablations).
//! - Shared vocabulary for every generating backbone: [`GenParams`] in, [`Generation`] out,
//!   [`FinishReason`]; [`DeviceSpec`] for `device = "cpu" | "cuda:N"`.
//!
//! Each backbone lives in its own module; a new one is added with one `pub mod` line below.

mod device;
mod error;
mod params;

pub mod bert;
pub mod chat;
pub mod echo;
pub mod gguf;
pub mod openai;
mod plugin;
pub mod tokenizer;

pub use device::DeviceSpec;
pub use error::BackboneError;
pub use params::{FinishReason, GenParams, Generation};
pub use plugin::{register, BertConfigSection, GgufConfig, OpenAiSection};

#[cfg(test)]
mod testing;
