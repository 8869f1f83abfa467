//! `bert`: sentence encoders from BERT checkpoints (all-MiniLM-L6-v2 and anything laid out like
//! a sentence-transformers model): safetensors weights, the model's own `tokenizer.json`,
//! pooling from `1_Pooling/config.json` (mean by default) and L2 normalisation, batched in
//! length buckets.
//!
//! - [`Encoder`]: inference; `encode(&[&str])` gives one vector per text in input order.
//! - [`TrainableEncoder`]: the same model with its weights as candle `Var`s, for fine-tuning
//!   through the encoder, optionally with the embeddings and lower layers frozen.
//!
//! ```no_run
//! use pulse_backbones::bert::{Encoder, EncoderSource};
//! let enc = Encoder::load(&EncoderSource::asset("all-minilm-l6-v2"), &candle_core::Device::Cpu)?;
//! let v = enc.encode(&["Toy Story (1995)", "Heat (1995)"])?;
//! assert_eq!(v[0].len(), 384);
//! # Ok::<(), pulse_backbones::bert::BertError>(())
//! ```

mod config;
mod encoder;
mod error;
mod files;
mod gelu;
mod model;
mod tokenize;
mod train;

pub use config::{BertConfig, Pooling};
pub use encoder::{Encoder, EncoderOptions};
pub use error::BertError;
pub use files::{encoder_asset_names, EncoderFiles, EncoderSource};
pub use model::TokenBatch;
pub use tokenize::{length_buckets, TextTokenizer};
pub use train::{Freeze, TrainableEncoder};

/// The built-in sentence encoder.
pub const MINILM: &str = "all-minilm-l6-v2";

#[cfg(test)]
mod tests;
