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
use super::kernels::{Add, DecodeAttention, Gate, GatedActivation, MaskedSoftmax, Visibility};
use super::weights::{output_is_tied, projection_params, Linear, Loader, WeightFormat};
use crate::BackboneError;
use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use std::io::{Read, Seek};
use std::sync::Arc;

struct Layer {
    attn_norm: Tensor,
    qkv: Projections,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    /// `gate` and `up`.
    gate_up: Projections,
    down: Linear,
    post_ffn_norm: Option<Tensor>,
    /// Sliding-window layer (Gemma 3's local layers).
    local: bool,
}

/// Projections of the same input: one product when the weights are dense (fewer, larger
/// matrix products), separate ones when quantized (their block types may differ).
enum Projections {
    Fused(Linear, Vec<usize>),
    Split(Vec<Linear>),
}

impl Projections {
    fn new(
        parts: Vec<Linear>,
        widths: Vec<usize>,
        format: WeightFormat,
    ) -> candle_core::Result<Self> {
        let refs: Vec<&Linear> = parts.iter().collect();
        Ok(match Linear::fuse(&refs)? {
            Some(f) => Projections::Fused(f.finish(format)?, widths),
            None => Projections::Split(
                parts
                    .into_iter()
                    .map(|p| p.finish(format))
                    .collect::<candle_core::Result<_>>()?,
            ),
        })
    }

    /// The outputs, contiguous, in the order the parts were given.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        match self {
            Projections::Split(parts) => parts.iter().map(|p| p.forward(x)).collect(),
            Projections::Fused(f, widths) => {
                let y = f.forward(x)?;
                let last = y.rank() - 1;
                let mut at = 0;
                widths
                    .iter()
                    .map(|&w| {
                        let part = y.narrow(last, at, w)?.contiguous();
                        at += w;
                        part
                    })
                    .collect()
            }
        }
    }
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

/// `a + b`, with the CPU kernel on CPU tensors.
fn add(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    if a.device().is_cpu() && a.dtype() == candle_core::DType::F32 {
        a.contiguous()?.apply_op2_no_bwd(&b.contiguous()?, &Add)
    } else {
        a + b
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
        }
        .finish(format)?;
        let norm = loader.dense("output_norm.weight")?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("blk.{i}");
            let q = loader.linear(&format!("{p}.attn_q"))?;
            let k = loader.linear(&format!("{p}.attn_k"))?;
            let v = loader.linear(&format!("{p}.attn_v"))?;
            let gate = loader.linear(&format!("{p}.ffn_gate"))?;
            let up = loader.linear(&format!("{p}.ffn_up"))?;
            let (qd, kvd) = (cfg.n_head * cfg.head_dim, cfg.n_head_kv * cfg.head_dim);
            layers.push(Layer {
                attn_norm: loader.dense(&format!("{p}.attn_norm.weight"))?,
                qkv: Projections::new(vec![q, k, v], vec![qd, kvd, kvd], format)?,
                o: loader.linear(&format!("{p}.attn_output"))?.finish(format)?,
                q_norm: loader.opt_dense(&format!("{p}.attn_q_norm.weight"))?,
                k_norm: loader.opt_dense(&format!("{p}.attn_k_norm.weight"))?,
                post_attn_norm: loader.opt_dense(&format!("{p}.post_attention_norm.weight"))?,
                ffn_norm: loader.dense(&format!("{p}.ffn_norm.weight"))?,
                gate_up: Projections::new(vec![gate, up], vec![cfg.n_ff, cfg.n_ff], format)?,
                down: loader.linear(&format!("{p}.ffn_down"))?.finish(format)?,
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
        let x = self.layers_forward(tokens, cache)?;
        let len = x.dim(1)?;
        let last = x.narrow(1, len - 1, 1)?.squeeze(1)?.contiguous()?;
        let h = candle_nn::ops::rms_norm(&last, &self.norm, self.cfg.rms_eps as f32)?;
        self.lm_head.forward(&h)
    }

    /// The final hidden states (after the output norm, before the LM head) of `rows` sequences
    /// of `tokens.len() / rows` tokens each (row-major), run from an empty cache:
    /// `[rows, len, n_embd]`. Attention is causal, so a token's state depends only on the
    /// tokens before it in its row: whatever follows a sequence's end (right padding) leaves
    /// its states unchanged.
    pub(crate) fn hidden_states(&self, tokens: &[u32], rows: usize) -> candle_core::Result<Tensor> {
        if rows == 0 || !tokens.len().is_multiple_of(rows) || tokens.is_empty() {
            candle_core::bail!("{} tokens for {rows} rows", tokens.len());
        }
        let mut cache = self.new_cache(rows, tokens.len() / rows)?;
        let x = self.layers_forward(tokens, &mut cache)?;
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.norm, self.cfg.rms_eps as f32)
    }

    /// The transformer blocks over the new tokens: the residual stream `[rows, len, n_embd]`
    /// before the output norm; the cache gains the tokens' keys and values.
    fn layers_forward(&self, tokens: &[u32], cache: &mut KvCache) -> candle_core::Result<Tensor> {
        let rows = cache.rows();
        if rows == 0 || !tokens.len().is_multiple_of(rows) || tokens.is_empty() {
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
        // Slots relative to the live view the cache hands out.
        let vis = Visibility {
            starts: starts.iter().map(|s| s.saturating_sub(from)).collect(),
            base: base - from,
            len,
            window: None,
        };
        let local_vis = self.cfg.sliding_window.map(|s| Visibility {
            window: Some(s.window),
            ..vis.clone()
        });

        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self
            .embed
            .embedding(&ids)?
            .reshape((rows, len, self.cfg.n_embd))?;
        if let Some(s) = self.cfg.embed_scale {
            x = (x * s as f64)?;
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let (cos, sin, vis) = match (&local_rope, &local_vis, layer.local) {
                (Some((c, s)), Some(v), true) => (c, s, v),
                _ => (&cos, &sin, &vis),
            };
            x = self.block(i, layer, &x, cos, sin, vis, cache)?;
        }
        cache.advance(len);
        Ok(x)
    }

    /// Additive attention mask `[rows, 1, 1, len, live]` for the generic (non-CPU) path.
    fn mask_tensor(&self, vis: &Visibility, live: usize) -> candle_core::Result<Tensor> {
        let (rows, len) = (vis.starts.len(), vis.len);
        let mut m = vec![f32::NEG_INFINITY; rows * len * live];
        for r in 0..rows {
            for l in 0..len {
                let row = &mut m[(r * len + l) * live..(r * len + l + 1) * live];
                let vr = vis.range(r, l);
                row[vr.start.min(live)..vr.end.min(live)].fill(0.0);
            }
        }
        Tensor::from_vec(m, (rows, 1, 1, len, live), &self.device)
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        index: usize,
        layer: &Layer,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        vis: &Visibility,
        cache: &mut KvCache,
    ) -> candle_core::Result<Tensor> {
        let cfg = &self.cfg;
        let eps = cfg.rms_eps as f32;
        let (rows, len, _) = x.dims3()?;
        let (h, hkv, d) = (cfg.n_head, cfg.n_head_kv, cfg.head_dim);
        let cpu = self.device.is_cpu();

        let xn = candle_nn::ops::rms_norm(x, &layer.attn_norm, eps)?;
        let mut qkv = layer.qkv.forward(&xn)?.into_iter();
        let (Some(q), Some(k), Some(v)) = (qkv.next(), qkv.next(), qkv.next()) else {
            candle_core::bail!("attention projections must give q, k and v");
        };
        let mut q = q.reshape((rows, len, h, d))?;
        let mut k = k.reshape((rows, len, hkv, d))?;
        let v = v.reshape((rows, len, hkv, d))?;
        if let Some(w) = &layer.q_norm {
            q = candle_nn::ops::rms_norm(&q, w, eps)?;
        }
        if let Some(w) = &layer.k_norm {
            k = candle_nn::ops::rms_norm(&k, w, eps)?;
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
        let scale = cfg.attn_scale;
        let y = if cpu && len == 1 {
            q.apply_op3_no_bwd(&kc, &vc, &DecodeAttention { vis, scale })?
        } else {
            // The CPU softmax applies the scale itself.
            let q = if cpu { q } else { (q * scale as f64)? };
            let rep = h / hkv;
            // Query heads sharing a key/value head become extra rows of one product.
            let att = q.reshape((rows, hkv, rep * len, d))?.matmul(&kc.t()?)?;
            let att = if cpu {
                att.inplace_op1(&MaskedSoftmax { vis, scale })?;
                att
            } else {
                let att = if vis.masks_anything() {
                    att.reshape((rows, hkv, rep, len, live))?
                        .broadcast_add(&self.mask_tensor(vis, live)?)?
                        .reshape((rows, hkv, rep * len, live))?
                } else {
                    att
                };
                candle_nn::ops::softmax_last_dim(&att)?
            };
            att.matmul(&vc)?
                .reshape((rows, h, len, d))?
                .transpose(1, 2)?
                .reshape((rows, len, h * d))?
        };
        let mut y = layer.o.forward(&y)?;
        if let Some(w) = &layer.post_attn_norm {
            y = candle_nn::ops::rms_norm(&y, w, eps)?;
        }
        let x = add(x, &y)?;

        let xn = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
        let gate = match cfg.activation {
            Activation::Silu => Gate::Silu,
            Activation::GeluTanh => Gate::GeluTanh,
        };
        let mut gu = layer.gate_up.forward(&xn)?.into_iter();
        let (Some(g), Some(u)) = (gu.next(), gu.next()) else {
            candle_core::bail!("MLP projections must give gate and up");
        };
        let a = if cpu {
            g.apply_op2_no_bwd(&u, &GatedActivation(gate))?
        } else {
            let g = match gate {
                Gate::Silu => candle_nn::ops::silu(&g)?,
                Gate::GeluTanh => g.gelu()?,
            };
            (g * u)?
        };
        let mut y = layer.down.forward(&a)?;
        if let Some(w) = &layer.post_ffn_norm {
            y = candle_nn::ops::rms_norm(&y, w, eps)?;
        }
        add(&x, &y)
    }

    /// The embedding table's dtype as stored (for reports).
    pub(crate) fn embedding_dtype(&self) -> String {
        format!("{:?}", self.embed.dtype())
    }
}
