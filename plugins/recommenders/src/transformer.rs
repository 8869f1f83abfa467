//! The transformer encoder shared by `sasrec` and `bert4rec`: item + learned position
//! embeddings, a stack of post-norm transformer blocks (multi-head self-attention, GELU
//! feed-forward) as in RecBole's `TransformerEncoder`, and batches of left-padded sequences to
//! run it on, with causal attention (SASRec) or bidirectional attention (BERT4Rec).
//!
//! Layout choices for speed on a CPU: activations stay 2-D `[batch · len, hidden]` so every
//! projection is one matrix product; the heads are moved into the batch dimension by one copy
//! (`split_heads`, whose gradient is one copy back, unlike narrow/cat whose gradients pad to
//! full size) so attention is one batched product and one softmax per layer; the causal and
//! padding masks are one additive `[batch, len, len]` tensor per batch, shared by all heads and
//! layers; biases and position embeddings are added with `add_rows`, whose gradient is one pass.

use crate::common::{self, DEVICE};
use crate::ops;
use candle_core::{Tensor, Var};
use pulse_api::config::{check_range, ConfigError};
use pulse_api::rng::Rng;
use pulse_api::PluginError;

/// RecBole's `layer_norm_eps`.
const LN_EPS: f32 = 1e-12;
/// RecBole's `initializer_range`: every weight matrix starts N(0, 0.02²).
const INIT_STD: f64 = 0.02;
/// Added to masked attention scores (RecBole's value; `exp` of it underflows to exactly 0).
const MASKED: f32 = -10_000.0;

/// Range checks shared by the transformer models' configs; `heads` must divide `hidden_size`.
pub(crate) fn check_dims(
    errors: &mut Vec<ConfigError>,
    hidden_size: usize,
    inner_size: usize,
    layers: usize,
    heads: usize,
) {
    check_range(errors, "hidden_size", hidden_size, 1, 4096);
    check_range(errors, "inner_size", inner_size, 1, 16384);
    check_range(errors, "layers", layers, 1, 32);
    check_range(errors, "heads", heads, 1, 64);
    if heads > 0 && !hidden_size.is_multiple_of(heads) {
        errors.push(ConfigError::invalid_value(
            "heads",
            format!("a divisor of hidden_size ({hidden_size})"),
            heads,
        ));
    }
}

/// Sizes of the network.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dims {
    pub n_items: usize,
    pub hidden: usize,
    pub inner: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_len: usize,
}

struct Block {
    q_w: Var,
    q_b: Var,
    k_w: Var,
    k_b: Var,
    v_w: Var,
    v_b: Var,
    out_w: Var,
    out_b: Var,
    ln1_g: Var,
    ln1_b: Var,
    ff1_w: Var,
    ff1_b: Var,
    ff2_w: Var,
    ff2_b: Var,
    ln2_g: Var,
    ln2_b: Var,
}

/// The trainable network. `item` has `n_items + 1` rows; the last is padding.
pub(crate) struct Net {
    pub dims: Dims,
    pub item: Var,
    pos: Var,
    ln_g: Var,
    ln_b: Var,
    blocks: Vec<Block>,
}

/// A batch of sequences, each left-padded to `max_len` with the padding id `n_items`.
pub(crate) struct Batch {
    pub rows: usize,
    /// `[rows · max_len]` item ids.
    ids: Tensor,
    /// `[rows, max_len, max_len]`: 0 where a position may attend, [`MASKED`] elsewhere.
    mask: Tensor,
}

impl Batch {
    /// A causal batch from sequences of at most `max_len` items each (longer ones keep their
    /// last `max_len` items): a position attends to real items at or before itself.
    pub fn new<S: AsRef<[u32]>>(seqs: &[S], dims: &Dims) -> Result<Self, PluginError> {
        Self::build(seqs, dims, true)
    }

    /// Like [`Batch::new`], but every position attends to every real item of its row.
    pub fn bidirectional<S: AsRef<[u32]>>(seqs: &[S], dims: &Dims) -> Result<Self, PluginError> {
        Self::build(seqs, dims, false)
    }

    fn build<S: AsRef<[u32]>>(seqs: &[S], dims: &Dims, causal: bool) -> Result<Self, PluginError> {
        let l = dims.max_len;
        let pad = dims.n_items as u32;
        let rows = seqs.len();
        let mut ids = Vec::with_capacity(rows * l);
        let mut mask = Vec::with_capacity(rows * l * l);
        for s in seqs {
            let s = s.as_ref();
            let s = &s[s.len().saturating_sub(l)..];
            let first = l - s.len();
            ids.extend(std::iter::repeat_n(pad, first));
            ids.extend_from_slice(s);
            for i in 0..l {
                // A query attends to real items (at or before itself when causal); a causal
                // padding query (never read) sees only masked keys, which softmax turns into a
                // harmless average.
                let last = if causal { i } else { l - 1 };
                mask.extend((0..l).map(|j| if j >= first && j <= last { 0.0 } else { MASKED }));
            }
        }
        Ok(Self {
            rows,
            ids: Tensor::from_vec(ids, rows * l, &DEVICE)?,
            mask: Tensor::from_vec(mask, (rows, l, l), &DEVICE)?,
        })
    }
}

/// Dropout settings for a training forward pass.
pub(crate) struct Dropout<'a> {
    pub p: f32,
    pub rng: &'a mut Rng,
}

impl Dropout<'_> {
    fn apply(&mut self, x: &Tensor) -> Result<Tensor, PluginError> {
        Ok(ops::dropout(x, self.p, self.rng)?)
    }
}

fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    ops::add_rows(&x.matmul(w)?, b)
}

impl Net {
    /// Fresh weights from `rng`, laid out like RecBole's initialisation.
    pub fn new(dims: Dims, rng: &mut Rng) -> Result<Self, PluginError> {
        let (d, inner) = (dims.hidden, dims.inner);
        let item = common::normal_var(rng, dims.n_items + 1, d, INIT_STD)?;
        let pos = common::normal_var(rng, dims.max_len, d, INIT_STD)?;
        let mut blocks = Vec::with_capacity(dims.layers);
        for _ in 0..dims.layers {
            blocks.push(Block {
                q_w: common::normal_var(rng, d, d, INIT_STD)?,
                q_b: common::const_var(d, 0.0)?,
                k_w: common::normal_var(rng, d, d, INIT_STD)?,
                k_b: common::const_var(d, 0.0)?,
                v_w: common::normal_var(rng, d, d, INIT_STD)?,
                v_b: common::const_var(d, 0.0)?,
                out_w: common::normal_var(rng, d, d, INIT_STD)?,
                out_b: common::const_var(d, 0.0)?,
                ln1_g: common::const_var(d, 1.0)?,
                ln1_b: common::const_var(d, 0.0)?,
                ff1_w: common::normal_var(rng, d, inner, INIT_STD)?,
                ff1_b: common::const_var(inner, 0.0)?,
                ff2_w: common::normal_var(rng, inner, d, INIT_STD)?,
                ff2_b: common::const_var(d, 0.0)?,
                ln2_g: common::const_var(d, 1.0)?,
                ln2_b: common::const_var(d, 0.0)?,
            });
        }
        Ok(Self {
            dims,
            item,
            pos,
            ln_g: common::const_var(d, 1.0)?,
            ln_b: common::const_var(d, 0.0)?,
            blocks,
        })
    }

    /// Every parameter with a stable name (snapshots, the optimiser).
    pub fn named(&self) -> Vec<(String, Var)> {
        let mut out = vec![
            ("item_embedding".to_string(), self.item.clone()),
            ("position_embedding".to_string(), self.pos.clone()),
            ("embedding_norm.weight".to_string(), self.ln_g.clone()),
            ("embedding_norm.bias".to_string(), self.ln_b.clone()),
        ];
        for (i, b) in self.blocks.iter().enumerate() {
            let parts = [
                ("query.weight", &b.q_w),
                ("query.bias", &b.q_b),
                ("key.weight", &b.k_w),
                ("key.bias", &b.k_b),
                ("value.weight", &b.v_w),
                ("value.bias", &b.v_b),
                ("attention_out.weight", &b.out_w),
                ("attention_out.bias", &b.out_b),
                ("attention_norm.weight", &b.ln1_g),
                ("attention_norm.bias", &b.ln1_b),
                ("ffn_in.weight", &b.ff1_w),
                ("ffn_in.bias", &b.ff1_b),
                ("ffn_out.weight", &b.ff2_w),
                ("ffn_out.bias", &b.ff2_b),
                ("ffn_norm.weight", &b.ln2_g),
                ("ffn_norm.bias", &b.ln2_b),
            ];
            out.extend(parts.map(|(n, v)| (format!("layers.{i}.{n}"), v.clone())));
        }
        out
    }

    /// Hidden states `[rows · max_len, hidden]` of a batch. With `dropout` the pass is recorded
    /// for backpropagation; without it the weights are detached (scoring keeps no graph).
    pub fn forward(
        &self,
        batch: &Batch,
        dropout: Option<Dropout<'_>>,
    ) -> Result<Tensor, PluginError> {
        let item = if dropout.is_some() {
            self.item.as_tensor().clone()
        } else {
            self.item.as_detached_tensor()
        };
        let x = item.index_select(&batch.ids, 0)?;
        self.encode(x, batch, dropout)
    }

    /// Like [`Net::forward`], from a table of input item vectors `[n_items + 1, hidden]` (the
    /// last row is padding) instead of the net's own item embedding: the text models build
    /// theirs from item text. The graph through `items` is kept when training.
    pub fn forward_with(
        &self,
        items: &Tensor,
        batch: &Batch,
        dropout: Option<Dropout<'_>>,
    ) -> Result<Tensor, PluginError> {
        let x = items.index_select(&batch.ids, 0)?;
        self.encode(x, batch, dropout)
    }

    /// The blocks over gathered input vectors `[rows · max_len, hidden]`.
    fn encode(
        &self,
        x: Tensor,
        batch: &Batch,
        mut dropout: Option<Dropout<'_>>,
    ) -> Result<Tensor, PluginError> {
        let train = dropout.is_some();
        let w = |v: &Var| {
            if train {
                v.as_tensor().clone()
            } else {
                v.as_detached_tensor()
            }
        };
        let Dims {
            hidden: d, heads, ..
        } = self.dims;
        let b = batch.rows;
        let dh = d / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let x = ops::add_rows(&x, &w(&self.pos))?;
        let mut x = ops::layer_norm(&x, &w(&self.ln_g), &w(&self.ln_b), LN_EPS)?;
        if let Some(dr) = dropout.as_mut() {
            x = dr.apply(&x)?;
        }
        for blk in &self.blocks {
            // [heads · b, l, dh]: head h of row r is batch entry h·b + r.
            let heads_of = |wt: &Var, bias: &Var| -> candle_core::Result<Tensor> {
                ops::split_heads(&linear(&x, &w(wt), &w(bias))?, b, heads)
            };
            let q = heads_of(&blk.q_w, &blk.q_b)?;
            let k = heads_of(&blk.k_w, &blk.k_b)?;
            let v = heads_of(&blk.v_w, &blk.v_b)?;
            let scores = q.matmul(&k.t()?)?;
            let mut probs = ops::masked_softmax(&scores, &batch.mask, scale)?;
            if let Some(dr) = dropout.as_mut() {
                probs = dr.apply(&probs)?;
            }
            let ctx = ops::merge_heads(&probs.matmul(&v)?, b, heads)?;
            let mut att = linear(&ctx, &w(&blk.out_w), &w(&blk.out_b))?;
            if let Some(dr) = dropout.as_mut() {
                att = dr.apply(&att)?;
            }
            x = ops::layer_norm(&(att + &x)?, &w(&blk.ln1_g), &w(&blk.ln1_b), LN_EPS)?;

            let ff = ops::gelu(&linear(&x, &w(&blk.ff1_w), &w(&blk.ff1_b))?)?;
            let mut ff = linear(&ff, &w(&blk.ff2_w), &w(&blk.ff2_b))?;
            if let Some(dr) = dropout.as_mut() {
                ff = dr.apply(&ff)?;
            }
            x = ops::layer_norm(&(ff + &x)?, &w(&blk.ln2_g), &w(&blk.ln2_b), LN_EPS)?;
        }
        Ok(x)
    }
}

/// Users scored per forward pass.
pub(crate) const SCORE_CHUNK: usize = 256;

/// `r · max_len + max_len − 1` for r < [`SCORE_CHUNK`]: the last position of each scored row.
pub(crate) fn last_positions(max_len: usize) -> Result<Tensor, PluginError> {
    let last: Vec<u32> = (0..SCORE_CHUNK)
        .map(|r| (r * max_len + max_len - 1) as u32)
        .collect();
    Ok(Tensor::from_vec(last, SCORE_CHUNK, &DEVICE)?)
}

/// Scores of every item for each user (row-major `users × n_items`): the last position's
/// hidden state of the causal net over the user's history, dotted with the first `n_items`
/// rows of `items` (`[n_items + 1, hidden]`, detached), in chunks of [`SCORE_CHUNK`] users.
pub(crate) fn score_last(
    net: &Net,
    items: &Tensor,
    last: &Tensor,
    data: &pulse_api::SplitData,
    phase: pulse_api::Phase,
    users: &[u32],
) -> Result<Vec<f32>, PluginError> {
    let dims = net.dims;
    let items_t = items.narrow(0, 0, dims.n_items)?.t()?;
    let mut out = Vec::with_capacity(users.len() * dims.n_items);
    for chunk in users.chunks(SCORE_CHUNK) {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|&u| data.history(u, phase)).collect();
        let batch = Batch::new(&seqs, &dims)?;
        let hidden = net.forward_with(items, &batch, None)?;
        let h = hidden.index_select(&last.narrow(0, 0, chunk.len())?, 0)?;
        out.extend(h.matmul(&items_t)?.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}
