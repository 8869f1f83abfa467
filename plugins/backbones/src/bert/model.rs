//! The BERT forward pass (embeddings, post-norm transformer layers, pooling) on candle tensors.
//!
//! The weights come from a `VarBuilder`: plain tensors for inference, or the `Var`s of a
//! `VarMap` for fine-tuning. candle's fused layer-norm and soft-max kernels have no backward
//! pass, so a layer that must pass gradients uses the composed (differentiable) versions, and
//! every other layer the fused ones. Frozen lower layers run fused and their output is detached,
//! so backprop neither visits nor pays for them.

use super::config::{BertConfig, Pooling};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};

/// Whether a module's output must carry gradients back to its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Grad {
    No,
    Yes,
}

#[derive(Debug)]
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    fn load(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        // Early BERT checkpoints name the parameters gamma/beta.
        let (w, b) = if vb.contains_tensor("gamma") {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        Ok(Self {
            weight: vb.get(size, w)?,
            bias: vb.get(size, b)?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor, grad: Grad) -> candle_core::Result<Tensor> {
        match grad {
            Grad::No if x.is_contiguous() => {
                candle_nn::ops::layer_norm(x, &self.weight, &self.bias, self.eps as f32)
            }
            _ => candle_nn::ops::layer_norm_slow(x, &self.weight, &self.bias, self.eps as f32),
        }
    }
}

fn linear(inp: usize, out: usize, vb: VarBuilder) -> candle_core::Result<Linear> {
    candle_nn::linear(inp, out, vb)
}

/// The query/key/value projections. One `(3·h, h)` matmul beats three `(h, h)` ones (fewer
/// passes over the activations, better-shaped GEMM), so for inference the weights are stacked
/// once at load, with the attention scale 1/√d folded into the query rows. Trainable weights
/// are `Var`s that change under the optimizer, so they are stacked on every forward instead
/// (a differentiable copy of 3·h² floats, small next to the matmul itself).
#[derive(Debug)]
enum Qkv {
    Fused(Linear),
    Separate {
        q: Linear,
        k: Linear,
        v: Linear,
        scale: f64,
    },
}

impl Qkv {
    fn load(h: usize, heads: usize, vb: VarBuilder, fuse: bool) -> candle_core::Result<Self> {
        let scale = 1.0 / ((h / heads) as f64).sqrt();
        let (q, k, v) = (
            linear(h, h, vb.pp("query"))?,
            linear(h, h, vb.pp("key"))?,
            linear(h, h, vb.pp("value"))?,
        );
        if !fuse {
            return Ok(Qkv::Separate { q, k, v, scale });
        }
        let (w, b) = Self::stack(&q, &k, &v, scale)?;
        Ok(Qkv::Fused(Linear::new(w, Some(b))))
    }

    fn stack(
        q: &Linear,
        k: &Linear,
        v: &Linear,
        scale: f64,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let bias = |l: &Linear| -> candle_core::Result<Tensor> {
            match l.bias() {
                Some(b) => Ok(b.clone()),
                None => Tensor::zeros(l.weight().dim(0)?, l.weight().dtype(), l.weight().device()),
            }
        };
        let w = Tensor::cat(&[&(q.weight() * scale)?, k.weight(), v.weight()], 0)?;
        let b = Tensor::cat(&[&(bias(q)? * scale)?, &bias(k)?, &bias(v)?], 0)?;
        Ok((w, b))
    }

    /// `(rows, 3·h)`: scaled queries, keys, values side by side.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Qkv::Fused(l) => l.forward(x),
            Qkv::Separate { q, k, v, scale } => {
                let (w, b) = Self::stack(q, k, v, *scale)?;
                Linear::new(w, Some(b)).forward(x)
            }
        }
    }
}

#[derive(Debug)]
struct Layer {
    qkv: Qkv,
    attn_out: Linear,
    attn_norm: Norm,
    inter: Linear,
    out: Linear,
    out_norm: Norm,
}

impl Layer {
    fn load(cfg: &BertConfig, vb: VarBuilder, fuse: bool) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        Ok(Self {
            qkv: Qkv::load(h, cfg.num_attention_heads, att.pp("self"), fuse)?,
            attn_out: linear(h, h, att.pp("output").pp("dense"))?,
            attn_norm: Norm::load(h, cfg.layer_norm_eps, att.pp("output").pp("LayerNorm"))?,
            inter: linear(h, cfg.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            out: linear(cfg.intermediate_size, h, vb.pp("output").pp("dense"))?,
            out_norm: Norm::load(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
        })
    }
}

/// A BERT encoder with its weights.
#[derive(Debug)]
pub(crate) struct Bert {
    word: Tensor,
    position: Tensor,
    /// Row 0 of the token-type table: single sentences are all type 0.
    token_type0: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    tanh_gelu: bool,
}

/// Token ids of a padded batch and which positions are real tokens.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// `(batch, len)` u32 token ids, padded on the right.
    pub ids: Tensor,
    /// `(batch, len)` 1.0 for real tokens, 0.0 for padding, in the model's float type.
    pub mask: Tensor,
}

impl TokenBatch {
    /// Pads `seqs` on the right with `pad_id` to the longest one.
    pub fn new(
        seqs: &[&[u32]],
        pad_id: u32,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * len);
        let mut mask = Vec::with_capacity(seqs.len() * len);
        for s in seqs {
            ids.extend_from_slice(s);
            ids.extend(std::iter::repeat_n(pad_id, len - s.len()));
            mask.extend(std::iter::repeat_n(1f32, s.len()));
            mask.extend(std::iter::repeat_n(0f32, len - s.len()));
        }
        let shape = (seqs.len(), len);
        Ok(Self {
            ids: Tensor::from_vec(ids, shape, device)?,
            mask: Tensor::from_vec(mask, shape, device)?.to_dtype(dtype)?,
        })
    }
}

impl Bert {
    /// `fuse`: stack the attention projections once (fixed weights only, see [`Qkv`]).
    pub(crate) fn load(cfg: &BertConfig, vb: VarBuilder, fuse: bool) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let types = emb.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(cfg, vb.pp(format!("encoder.layer.{i}")), fuse))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            word: emb.get((cfg.vocab_size, h), "word_embeddings.weight")?,
            position: emb.get(
                (cfg.max_position_embeddings, h),
                "position_embeddings.weight",
            )?,
            token_type0: types.get(0)?,
            emb_norm: Norm::load(h, cfg.layer_norm_eps, emb.pp("LayerNorm"))?,
            layers,
            heads: cfg.num_attention_heads,
            tanh_gelu: cfg.tanh_gelu(),
        })
    }

    /// Last hidden states `(batch·len, hidden)`. Layers below `first_trainable` (and the
    /// embeddings, when it is above 0 or `train_embeddings` is false) run without gradients.
    fn hidden(
        &self,
        batch: &TokenBatch,
        first_trainable: usize,
        train_embeddings: bool,
    ) -> candle_core::Result<Tensor> {
        let (b, n) = batch.ids.dims2()?;
        let hsize = self.word.dim(1)?;
        let emb_grad = if train_embeddings && first_trainable == 0 {
            Grad::Yes
        } else {
            Grad::No
        };
        let words = self.word.index_select(&batch.ids.flatten_all()?, 0)?;
        let pos = self
            .position
            .narrow(0, 0, n)?
            .broadcast_add(&self.token_type0)?;
        let x = words.reshape((b, n, hsize))?.broadcast_add(&pos)?;
        let mut x = self
            .emb_norm
            .forward(&x.reshape((b * n, hsize))?, emb_grad)?;
        if emb_grad == Grad::No {
            x = x.detach();
        }
        // Additive attention bias: 0 where a key is a real token, a large negative elsewhere,
        // so padded keys get zero weight after the soft-max.
        let bias = ((batch.mask.ones_like()? - &batch.mask)? * -1e9f64)?
            .reshape((b, 1, 1, n))?
            .to_dtype(x.dtype())?;
        for (i, layer) in self.layers.iter().enumerate() {
            let grad = if i >= first_trainable {
                Grad::Yes
            } else {
                Grad::No
            };
            x = self.layer(layer, &x, &bias, (b, n), grad)?;
            if grad == Grad::No {
                x = x.detach();
            }
        }
        Ok(x)
    }

    fn layer(
        &self,
        l: &Layer,
        x: &Tensor,
        bias: &Tensor,
        (b, n): (usize, usize),
        grad: Grad,
    ) -> candle_core::Result<Tensor> {
        let hsize = x.dim(1)?;
        let hd = hsize / self.heads;
        // (b·n, 3h) → (3, b, heads, n, hd) in one copy; q arrives already scaled.
        let qkv = l
            .qkv
            .forward(x)?
            .reshape((b, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let scores = q.matmul(&k.t()?)?.broadcast_add(bias)?;
        let probs = match grad {
            Grad::No => candle_nn::ops::softmax_last_dim(&scores)?,
            Grad::Yes => candle_nn::ops::softmax(&scores, D::Minus1)?,
        };
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * n, hsize))?;
        let x = l
            .attn_norm
            .forward(&(l.attn_out.forward(&ctx)? + x)?, grad)?;
        let inter = l.inter.forward(&x)?;
        let inter = if self.tanh_gelu {
            inter.gelu()?
        } else {
            super::gelu::gelu_erf(&inter, grad == Grad::Yes)?
        };
        l.out_norm.forward(&(l.out.forward(&inter)? + x)?, grad)
    }

    /// Pooled sentence vectors `(batch, hidden)`, L2-normalised when `normalize`.
    pub(crate) fn embed(
        &self,
        batch: &TokenBatch,
        pooling: Pooling,
        normalize: bool,
        first_trainable: usize,
        train_embeddings: bool,
    ) -> candle_core::Result<Tensor> {
        let (b, n) = batch.ids.dims2()?;
        let x = self.hidden(batch, first_trainable, train_embeddings)?;
        let x = x.reshape((b, n, ()))?;
        let pooled = match pooling {
            Pooling::Cls => x.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = batch.mask.unsqueeze(2)?;
                let sum = x.broadcast_mul(&m)?.sum(1)?;
                // Every row has at least [CLS]; the clamp only guards an empty input row.
                let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
                sum.broadcast_div(&count)?
            }
            Pooling::Max => {
                let m = batch.mask.unsqueeze(2)?;
                let penalty = ((m.ones_like()? - &m)? * -1e9f64)?;
                x.broadcast_add(&penalty)?.max(1)?
            }
        };
        if !normalize {
            return Ok(pooled);
        }
        let norm = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::INFINITY)?;
        pooled.broadcast_div(&norm)
    }
}
