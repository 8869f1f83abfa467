//! `openai`: a client for any OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, …)
//! speaking `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`, with bounded
//! concurrency, timeouts, and retries with exponential backoff and jitter. The API key is read
//! from an environment variable named in the config, never from the spec itself.
//!
//! ```no_run
//! use pulse_backbones::openai::{BlockingClient, ChatMessage, RequestParams, OpenAiConfig};
//! let client = BlockingClient::new(OpenAiConfig::new("http://127.0.0.1:8000/v1", "smollm2"))?;
//! let reply = client.chat(&[ChatMessage::user("Say hi")], &RequestParams::greedy(16))?;
//! println!("{}", reply.text);
//! # Ok::<(), pulse_backbones::openai::OpenAiError>(())
//! ```
//!
//! Token-level embeddings (what llama.cpp returns for generative models) are mean-pooled.
//!
//! Tests run against a real server: `eval "$(.ci/llama-server.sh start)"` exports
//! `PULSE_OPENAI_TEST_URL` (llama-cpp-python serving SmolLM2-135M on loopback).

mod blocking;
mod client;
mod config;
mod error;
mod retry;
mod types;

pub use blocking::BlockingClient;
pub use client::OpenAiClient;
pub use config::OpenAiConfig;
pub use error::OpenAiError;
pub use retry::{backoff, parse_retry_after, retryable_status};
pub use types::{ChatMessage, Completion, RequestParams, Usage};

#[cfg(test)]
mod tests;
