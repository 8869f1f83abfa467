//! The inference-side sentence encoder: texts in, one normalised vector per text out, in input
//! order. Texts are tokenized together, grouped into length buckets (sorted by length, cut
//! every `batch_size`), each bucket padded to its own longest member and run through BERT.

use super::config::{max_seq_length_from_json, BertConfig, Pooling};
use super::files::{EncoderFiles, EncoderSource};
use super::model::{Bert, TokenBatch};
use super::tokenize::{length_buckets, TextTokenizer};
use super::BertError;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;

/// How an encoder batches and what it returns.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderOptions {
    /// Texts per forward pass.
    pub batch_size: usize,
    /// Token limit per text (specials included); `None`: the model's `max_seq_length`
    /// (sentence-transformers' file), else its position table size.
    pub max_len: Option<usize>,
    /// L2-normalise the pooled vectors (sentence-transformers' `Normalize` module).
    pub normalize: bool,
    /// Float type of weights and activations. F32 on CPU (candle's CPU half-precision matmul
    /// is slower); F16/BF16 halve memory on CUDA.
    pub dtype: DType,
}

impl Default for EncoderOptions {
    fn default() -> Self {
        Self {
            batch_size: 64,
            max_len: None,
            normalize: true,
            dtype: DType::F32,
        }
    }
}

/// A loaded BERT sentence encoder (e.g. all-MiniLM-L6-v2).
#[derive(Debug)]
pub struct Encoder {
    pub(crate) bert: Bert,
    tokenizer: TextTokenizer,
    pooling: Pooling,
    opts: EncoderOptions,
    device: Device,
    dim: usize,
    origin: String,
}

/// The checkpoint's tensors by their unprefixed names (`embeddings.…`, `encoder.layer.N.…`);
/// BERT-for-pretraining checkpoints prefix everything with `bert.`.
pub(crate) fn load_tensors(
    weights: &[u8],
    device: &Device,
) -> Result<HashMap<String, Tensor>, BertError> {
    let raw = candle_core::safetensors::load_buffer(weights, device)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| match k.strip_prefix("bert.") {
            Some(rest) => (rest.to_string(), v),
            None => (k, v),
        })
        .collect())
}

/// Parsed side files shared by the inference and the trainable encoder.
pub(crate) struct Parts {
    pub cfg: BertConfig,
    pub tokenizer: TextTokenizer,
    pub pooling: Pooling,
    pub origin: String,
}

pub(crate) fn parse_parts(files: &EncoderFiles, opts: &EncoderOptions) -> Result<Parts, BertError> {
    if opts.batch_size == 0 {
        return Err(BertError::Invalid("batch_size must be at least 1".into()));
    }
    let cfg = BertConfig::from_json(&files.config)?;
    let file_len = match &files.sentence_config {
        Some(b) => max_seq_length_from_json(b)?,
        None => None,
    };
    let max_len = opts
        .max_len
        .or(file_len)
        .unwrap_or(cfg.max_position_embeddings);
    if max_len == 0 || max_len > cfg.max_position_embeddings {
        return Err(BertError::Invalid(format!(
            "max_len {max_len} is outside 1..={} (the model's position table)",
            cfg.max_position_embeddings
        )));
    }
    let tokenizer = TextTokenizer::from_json(&files.tokenizer, max_len)?;
    let pooling = match &files.pooling {
        Some(b) => Pooling::from_json(b)?,
        None => Pooling::Mean,
    };
    Ok(Parts {
        cfg,
        tokenizer,
        pooling,
        origin: files.origin.clone(),
    })
}

impl Encoder {
    /// Loads an encoder from a named asset or a directory, with default options.
    pub fn load(source: &EncoderSource, device: &Device) -> Result<Self, BertError> {
        Self::load_with(source, device, EncoderOptions::default())
    }

    /// Loads an encoder from a named asset or a directory.
    pub fn load_with(
        source: &EncoderSource,
        device: &Device,
        opts: EncoderOptions,
    ) -> Result<Self, BertError> {
        Self::from_files(&source.files()?, device, opts)
    }

    /// Builds an encoder from files already in memory.
    pub fn from_files(
        files: &EncoderFiles,
        device: &Device,
        opts: EncoderOptions,
    ) -> Result<Self, BertError> {
        let parts = parse_parts(files, &opts)?;
        let tensors = load_tensors(&files.weights, device)?;
        let vb = VarBuilder::from_tensors(tensors, opts.dtype, device);
        let bert = Bert::load(&parts.cfg, vb, true)?;
        Ok(Self::assemble(bert, parts, opts, device))
    }

    pub(crate) fn assemble(
        bert: Bert,
        parts: Parts,
        opts: EncoderOptions,
        device: &Device,
    ) -> Self {
        Self {
            bert,
            dim: parts.cfg.hidden_size,
            tokenizer: parts.tokenizer,
            pooling: parts.pooling,
            opts,
            device: device.clone(),
            origin: parts.origin,
        }
    }

    /// Length of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The tokenizer (for counting tokens or inspecting ids).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// The pooling read from the model's files (or set by [`Encoder::set_pooling`]).
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Pools with `pooling` instead of the model's own (e.g. CLS for a model fine-tuned so).
    pub fn set_pooling(&mut self, pooling: Pooling) {
        self.pooling = pooling;
    }

    /// The options in force.
    pub fn options(&self) -> &EncoderOptions {
        &self.opts
    }

    /// Where the weights came from (asset name or directory), for logs and run records.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A padded batch of `texts` in the given order (no bucketing).
    pub fn batch(&self, texts: &[&str]) -> Result<TokenBatch, BertError> {
        let ids = self.tokenizer.encode(texts)?;
        let refs: Vec<&[u32]> = ids.iter().map(Vec::as_slice).collect();
        Ok(TokenBatch::new(
            &refs,
            self.tokenizer.pad_id(),
            self.opts.dtype,
            &self.device,
        )?)
    }

    /// Embeddings of `texts`, one row each in input order: `(texts.len(), dim)`, F32.
    pub fn encode_tensor(&self, texts: &[&str]) -> Result<Tensor, BertError> {
        if texts.is_empty() {
            return Ok(Tensor::zeros((0, self.dim), DType::F32, &self.device)?);
        }
        self.encode_ids(&self.tokenizer.encode(texts)?)
    }

    /// Embeddings of already tokenized texts (ids with the special tokens, as
    /// [`TextTokenizer::encode`] gives them), one row each in input order: `(ids.len(), dim)`,
    /// F32. For callers that shape the token sequences themselves (e.g. cut a text to fit).
    pub fn encode_ids(&self, ids: &[Vec<u32>]) -> Result<Tensor, BertError> {
        if ids.is_empty() {
            return Ok(Tensor::zeros((0, self.dim), DType::F32, &self.device)?);
        }
        let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
        let buckets = length_buckets(&lengths, self.opts.batch_size);
        let mut parts = Vec::with_capacity(buckets.len());
        let mut order = Vec::with_capacity(ids.len());
        for bucket in &buckets {
            let refs: Vec<&[u32]> = bucket.iter().map(|&i| ids[i].as_slice()).collect();
            let batch = TokenBatch::new(
                &refs,
                self.tokenizer.pad_id(),
                self.opts.dtype,
                &self.device,
            )?;
            let out =
                self.bert
                    .embed(&batch, self.pooling, self.opts.normalize, usize::MAX, false)?;
            parts.push(out.to_dtype(DType::F32)?);
            order.extend_from_slice(bucket);
        }
        let sorted = Tensor::cat(&parts, 0)?;
        // `order[k]` is the input index of sorted row k; invert it to put rows back.
        let mut inverse = vec![0u32; order.len()];
        for (row, &input) in order.iter().enumerate() {
            // invariant: rows < ids.len(), which fits u32 for any tensor candle can hold.
            inverse[input] = row as u32;
        }
        let inverse = Tensor::from_vec(inverse, order.len(), &self.device)?;
        Ok(sorted.index_select(&inverse, 0)?)
    }

    /// Embeddings of `texts` as plain vectors, in input order.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, BertError> {
        Ok(self.encode_tensor(texts)?.to_vec2::<f32>()?)
    }
}
