//! The shape of a decoder-only transformer, read from GGUF metadata (`<arch>.block_count`, …)
//! for the architectures implemented here. One [`Config`] drives one forward pass for all of
//! them: they differ only in the switches below (rotary layout, biases, extra norms, sliding
//! window, activation), which is why one batched implementation can serve the three.

use super::meta::Meta;
use crate::BackboneError;

/// A supported `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Llama and its relatives (SmolLM2).
    Llama,
    Qwen2,
    Gemma3,
}

impl Arch {
    pub const SUPPORTED: &'static str = "llama, qwen2, gemma3";

    fn parse(s: &str) -> Result<Self, BackboneError> {
        match s {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "gemma3" => Ok(Arch::Gemma3),
            other => Err(BackboneError::UnsupportedArchitecture {
                arch: other.to_string(),
                supported: Self::SUPPORTED.to_string(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// How rotary embeddings pair dimensions. llama.cpp's converter permutes Llama's q/k weights so
/// that pairs are adjacent (`(0,1), (2,3)…`); NeoX-style models pair dimension `i` with
/// `i + d/2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    Neox,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU, tanh approximation (Gemma).
    GeluTanh,
}

/// Hyper-parameters of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub context_length: usize,
    pub rms_eps: f64,
    pub rope_base: f32,
    pub rope_style: RopeStyle,
    /// Sliding-window attention: window length, the rope base its layers use, and the layer
    /// pattern (layer `i` is global when `(i + 1) % pattern == 0`).
    pub sliding_window: Option<SlidingWindow>,
    /// Multiplies the token embeddings (Gemma: `sqrt(n_embd)`).
    pub embed_scale: Option<f32>,
    /// Multiplies queries before the dot product.
    pub attn_scale: f32,
    pub activation: Activation,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingWindow {
    pub window: usize,
    pub rope_base: f32,
    pub pattern: usize,
}

impl Config {
    pub(crate) fn from_meta(meta: &Meta<'_>) -> Result<Self, BackboneError> {
        let arch = Arch::parse(meta.str("general.architecture")?)?;
        let a = arch.as_str();
        let key = |k: &str| format!("{a}.{k}");
        let usize_of =
            |k: &str| -> Result<usize, BackboneError> { meta.uint(&key(k)).map(|v| v as usize) };
        let n_embd = usize_of("embedding_length")?;
        let n_head = usize_of("attention.head_count")?;
        let n_head_kv = meta
            .opt_uint(&key("attention.head_count_kv"))?
            .map_or(n_head, |v| v as usize);
        let head_dim = match meta.opt_uint(&key("attention.key_length"))? {
            Some(d) => d as usize,
            None => n_embd / n_head.max(1),
        };
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 || head_dim % 2 != 0 {
            return Err(BackboneError::Metadata {
                key: key("attention.head_count"),
                reason: format!(
                    "{n_head} heads over {n_head_kv} key/value heads of size {head_dim} is not a \
                     valid grouped-query layout"
                ),
            });
        }
        let rms_eps = meta
            .opt_f32(&key("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-6) as f64;
        let rope_base = meta.opt_f32(&key("rope.freq_base"))?.unwrap_or(10_000.0);
        let (rope_style, sliding_window, embed_scale, activation) = match arch {
            Arch::Llama => (RopeStyle::Interleaved, None, None, Activation::Silu),
            Arch::Qwen2 => (RopeStyle::Neox, None, None, Activation::Silu),
            Arch::Gemma3 => (
                RopeStyle::Neox,
                meta.opt_uint(&key("attention.sliding_window"))?
                    .map(|w| SlidingWindow {
                        window: w as usize,
                        // Fixed by the architecture, as in llama.cpp (not stored in GGUF).
                        rope_base: 10_000.0,
                        pattern: 6,
                    }),
                Some((n_embd as f32).sqrt()),
                Activation::GeluTanh,
            ),
        };
        Ok(Config {
            arch,
            n_layer: usize_of("block_count")?,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff: usize_of("feed_forward_length")?,
            context_length: usize_of("context_length")?,
            rms_eps,
            rope_base,
            rope_style,
            sliding_window,
            embed_scale,
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            activation,
        })
    }

    /// Whether layer `i` attends within the sliding window only.
    pub fn is_local_layer(&self, i: usize) -> bool {
        self.sliding_window
            .is_some_and(|s| s.pattern > 0 && !(i + 1).is_multiple_of(s.pattern))
    }
}
