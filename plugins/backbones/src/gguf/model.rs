//! The forward pass shared by the supported architectures (Llama/SmolLM2, Qwen2, Gemma 3), for
//! a batch of sequences at once.
//!
//! candle-transformers' quantized models decode one sequence with a private cache; batched
//! generation needs per-row positions, padding masks and a cache whose rows can leave and join
//! (see [`KvCache`]), so the pass is written here, following llama.cpp's graphs for these
//! architectures (which define what the GGUF tensors mean). Grouped-query attention folds the
//! query heads that share a key/value head into the matrix product instead of copying keys and
//! values per head.

use super::cache::KvCache;
use super::config::{Activation, Config, RopeStyle};
use super::weights::{output_is_tied, projection_params, Linear, Loader, WeightFormat};
use crate::BackboneError;
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use std::io::{Read, Seek};
use std::sync::Arc;

struct Layer {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: Option<Tensor>,
    /// Sliding-window layer (Gemma 3's local layers).
    local: bool,
}

/// Rotary tables for positions `0..max_pos`, `[max_pos, head_dim / 2]`.
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(
        base: f32,
        head_dim: usize,
        max_pos: usize,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / base.powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(max_pos * half);
        let mut sin = Vec::with_capacity(max_pos * half);
        for p in 0..max_pos {
            for f in &inv {
                // f64 for the angle: at positions in the thousands f32 loses the phase.
                let a = p as f64 * *f as f64;
                cos.push(a.cos() as f32);
                sin.push(a.sin() as f32);
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (max_pos, half), device)?,
            sin: Tensor::from_vec(sin, (max_pos, half), device)?,
        })
    }

    /// `(cos, sin)` for positions `pos` (`[rows * len]`), shaped `[rows, len, head_dim / 2]`.
    fn select(
        &self,
        pos: &Tensor,
        rows: usize,
        len: usize,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let half = self.cos.dim(1)?;
        let cos = self.cos.index_select(pos, 0)?.reshape((rows, len, half))?;
        let sin = self.sin.index_select(pos, 0)?.reshape((rows, len, half))?;
        Ok((cos, sin))
    }
}

/// A loaded model.
pub(crate) struct Model {
    pub(crate) cfg: Config,
    pub(crate) format: WeightFormat,
    embed: Arc<QTensor>,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    rope: Rope,
    rope_local: Option<Rope>,
    max_pos: usize,
    device: Device,
}

/// Longest context the rotary tables are built for (memory: `max_pos × head_dim` floats × 2).
const MAX_POSITIONS: usize = 32_768;

impl Model {
    pub(crate) fn load<R: Read + Seek>(
        cfg: Config,
        mut loader: Loader<'_, R>,
    ) -> Result<Self, BackboneError> {
        let format = loader
            .format
            .resolve(projection_params(&cfg), loader.device);
        loader.format = format;
        let device = loader.device.clone();
        let embed = Arc::new(loader.qtensor("token_embd.weight")?);
        let lm_head = if output_is_tied(loader.content) {
            loader.linear_from(embed.clone(), None)?
        } else {
            loader.linear("output")?
        };
        let norm = loader.dense("output_norm.weight")?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            layers.push(Layer {
                attn_norm: loader.dense(&format!("{p}.attn_norm.weight"))?,
                q: loader.linear(&format!("{p}.attn_q"))?,
                k: loader.linear(&format!("{p}.attn_k"))?,
                v: loader.linear(&format!("{p}.attn_v"))?,
                o: loader.linear(&format!("{p}.attn_output"))?,
                q_norm: loader.opt_dense(&format!("{p}.attn_q_norm.weight"))?,
                k_norm: loader.opt_dense(&format!("{p}.attn_k_norm.weight"))?,
                post_attn_norm: loader.opt_dense(&format!("{p}.post_attention_norm.weight"))?,
                ffn_norm: loader.dense(&format!("{p}.ffn_norm.weight"))?,
                gate: loader.linear(&format!("{p}.ffn_gate"))?,
                up: loader.linear(&format!("{p}.ffn_up"))?,
                down: loader.linear(&format!("{p}.ffn_down"))?,
                post_ffn_norm: loader.opt_dense(&format!("{p}.post_ffw_norm.weight"))?,
                local: cfg.is_local_layer(i),
            });
        }
        let max_pos = cfg.context_length.clamp(1, MAX_POSITIONS);
        let rope = Rope::new(cfg.rope_base, cfg.head_dim, max_pos, &device)?;
        let rope_local = match cfg.sliding_window {
            Some(s) => Some(Rope::new(s.rope_base, cfg.head_dim, max_pos, &device)?),
            None => None,
        };
        Ok(Self {
            cfg,
            format,
            embed,
            layers,
            norm,
            lm_head,
            rope,
            rope_local,
            max_pos,
            device,
        })
    }

    /// Positions the model can attend over (the context, capped by the rotary tables).
    pub(crate) fn max_positions(&self) -> usize {
        self.max_pos
    }

    /// An empty cache for `rows` sequences with room for `capacity` slots.
    pub(crate) fn new_cache(&self, rows: usize, capacity: usize) -> candle_core::Result<KvCache> {
        KvCache::new(
            self.cfg.n_layer,
            rows,
            self.cfg.n_head_kv,
            self.cfg.head_dim,
            capacity,
            &self.device,
        )
    }

    /// Runs `len = tokens.len() / rows` new tokens of each of the cache's rows (row-major) and
    /// returns the logits after each row's last token, `[rows, vocab]`.
    pub(crate) fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let rows = cache.rows();
        if rows == 0 || tokens.len() % rows != 0 || tokens.is_empty() {
            candle_core::bail!("{} tokens for {rows} rows", tokens.len());
        }
        let len = tokens.len() / rows;
        cache.reserve(len)?;
        let base = cache.len();
        let from = cache.first_live_slot();
        let starts = cache.starts().to_vec();

        let mut pos = Vec::with_capacity(tokens.len());
        for &s in &starts {
            for l in 0..len {
                pos.push((base + l - s) as u32);
            }
        }
        if let Some(&p) = pos.iter().max() {
            if p as usize >= self.max_pos {
                candle_core::bail!("position {p} is beyond the context of {}", self.max_pos);
            }
        }
        let pos = Tensor::new(pos.as_slice(), &self.device)?;
        let (cos, sin) = self.rope.select(&pos, rows, len)?;
        let local_rope = match &self.rope_local {
            Some(r) => Some(r.select(&pos, rows, len)?),
            None => None,
        };
        let mask = self.mask(&starts, base, from, len, None)?;
        let local_mask = match self.cfg.sliding_window {
            Some(s) if base + len - from > s.window => {
                self.mask(&starts, base, from, len, Some(s.window))?
            }
            _ => mask.clone(),
        };

        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self
            .embed
            .embedding(&ids)?
            .reshape((rows, len, self.cfg.n_embd))?;
        if let Some(s) = self.cfg.embed_scale {
            x = (x * s as f64)?;
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let (cos, sin, mask) = match (&local_rope, layer.local) {
                (Some((c, s)), true) => (c, s, &local_mask),
                _ => (&cos, &sin, &mask),
            };
            x = self.block(i, layer, &x, cos, sin, mask.as_ref(), cache)?;
        }
        cache.advance(len);
        let last = x.narrow(1, len - 1, 1)?.squeeze(1)?.contiguous()?;
        let h = candle_nn::ops::rms_norm(&last, &self.norm, self.cfg.rms_eps as f32)?;
        self.lm_head.forward(&h)
    }

    /// Additive attention mask `[rows, 1, 1, len, live]` over the live slots `[from, base +
    /// len)`, or `None` when every query may see every live slot.
    fn mask(
        &self,
        starts: &[usize],
        base: usize,
        from: usize,
        len: usize,
        window: Option<usize>,
    ) -> candle_core::Result<Option<Tensor>> {
        let live = base + len - from;
        let mut m = vec![0f32; starts.len() * len * live];
        let mut any = false;
        for (r, &start) in starts.iter().enumerate() {
            for l in 0..len {
                let q = base + l;
                let row = &mut m[(r * len + l) * live..(r * len + l + 1) * live];
                for (j, v) in row.iter_mut().enumerate() {
                    let s = from + j;
                    let visible = s >= start && s <= q && window.is_none_or(|w| q - s < w);
                    if !visible {
                        *v = f32::NEG_INFINITY;
                        any = true;
                    }
                }
            }
        }
        if !any {
            return Ok(None);
        }
        Tensor::from_vec(m, (starts.len(), 1, 1, len, live), &self.device).map(Some)
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let eps = cfg.rms_eps as f32;
        let (rows, len, _) = x.dims3()?;
        let (h, hkv, d) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim);

        let xn = candle_nn::ops::rms_norm(x, &layer.attn_norm, eps)?;
        let mut q = layer.q.forward(&xn)?.reshape((rows, len, h, d))?;
        let mut k = layer.k.forward(&xn)?.reshape((rows, len, hkv, d))?;
        let v = layer.v.forward(&xn)?.reshape((rows, len, hkv, d))?;
        if let Some(w) = &layer.q_norm {
            q = candle_nn::ops::rms_norm(&q.contiguous()?, w, eps)?;
        }
        if let Some(w) = &layer.k_norm {
            k = candle_nn::ops::rms_norm(&k.contiguous()?, w, eps)?;
        }
        let q = q.transpose(1, 2)?.contiguous()?;
        let k = k.transpose(1, 2)?.contiguous()?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let (q, k) = match cfg.rope_style {
            RopeStyle::Interleaved => (
                candle_nn::rotary_emb::rope_i(&q, cos, sin)?,
                candle_nn::rotary_emb::rope_i(&k, cos, sin)?,
            ),
            RopeStyle::Neox => (
                candle_nn::rotary_emb::rope(&q, cos, sin)?,
                candle_nn::rotary_emb::rope(&k, cos, sin)?,
            ),
        };
        let (kc, vc) = cache.append(index, &k, &v)?;
        let live = kc.dim(2)?;
        let rep = h / hkv;
        // Query heads sharing a key/value head become extra rows of one product.
        let q = (q * cfg.attn_scale as f64)?.reshape((rows, hkv, rep * len, d))?;
        let mut att = q.matmul(&kc.t()?)?;
        if let Some(m) = mask {
            att = att
                .reshape((rows, hkv, rep, len, live))?
                .broadcast_add(m)?
                .reshape((rows, hkv, rep * len, live))?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att
            .matmul(&vc)?
            .reshape((rows, h, len, d))?
            .transpose(1, 2)?
            .reshape((rows, len, h * d))?;
        let mut y = layer.o.forward(&y)?;
        if let Some(w) = &layer.post_attn_norm {
            y = candle_nn::ops::rms_norm(&y, w, eps)?;
        }
        let x = (x + y)?;

        let xn = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
        let g = layer.gate.forward(&xn)?;
        let g = match cfg.activation {
            Activation::Silu => candle_nn::ops::silu(&g)?,
            Activation::GeluTanh => g.gelu()?,
        };
        let mut y = layer.down.forward(&(g * layer.up.forward(&xn)?)?)?;
        if let Some(w) = &layer.post_ffn_norm {
            y = candle_nn::ops::rms_norm(&y, w, eps)?;
        }
        x + y
    }

    /// The embedding table's dtype as stored (for reports).
    pub(crate) fn embedding_dtype(&self) -> String {
        format!("{:?}", self.embed.dtype())
    }
}
