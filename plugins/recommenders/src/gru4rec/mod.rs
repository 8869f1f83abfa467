//! `gru4rec`: a GRU over the item history (Hidasi et al. 2016, in the form of Tan et al. 2016
//! that RecBole 1.2.1 implements): item embedding → dropout → `layers` GRU layers without
//! biases → a dense layer back to the embedding size, whose output is dotted with the item
//! embeddings (shared between input and output) to score every item. Defaults are RecBole's
//! (`embedding_size` 64, `hidden_size` 128, one layer, dropout 0.3, CE, Adam lr 1e-3), and so
//! is the initialisation: Xavier-normal item embeddings, Xavier-uniform GRU weights in the
//! first layer, PyTorch's default uniform ranges elsewhere. The loss is a plugin (`ce` over full
//! logits by default; a sampled loss gets uniform negatives).
//!
//! **Training examples.** One example per run of up to `max_len` consecutive targets (`targets`
//! sets a shorter run; 1 gives RecBole's one example per prefix), with the
//! loss at every one of them (SASRec-style), instead of RecBole's one example per prefix: each
//! training sequence is cut from its end into such runs, so every training interaction except
//! the user's first is a target exactly once per epoch, and each example also reads up to
//! `max_len` items before its first target as context only. A GRU reads left to right, so each
//! target is predicted from at least the `max_len` items before it (fewer only at the start of a
//! sequence) — the context a prefix example would give it — while the GRU runs once over the
//! example instead of once per prefix. (Without the context part, targets early in a run would
//! see only a few items, which cost about 0.01 NDCG@10 on ml-100k.) Sequences are right-padded
//! (the padding comes after the real items and never reaches them); a batch runs only as many
//! steps as its longest input. `batch_size` counts examples.
//!
//! **Scoring.** The user's history as of the phase (last `max_len` items, no dropout); the
//! output at its last item scores every item.

mod gru;

use crate::common::{self, ids};
use crate::ops;
use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use pulse_api::config::check_range;
use pulse_api::rng::Rng;
use pulse_api::{
    ConfigError, EpochContext, Loss, LossBuilder, LossSpec, ModelKind, Phase, PluginConfig,
    PluginError, Recommender, SplitData, TrainConfig,
};
use pulse_data::NegativeSampler;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Configuration of `gru4rec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gru4RecConfig {
    /// Size of the item embeddings (input and output).
    pub embedding_size: usize,
    /// Size of the GRU hidden state.
    pub hidden_size: usize,
    /// Number of stacked GRU layers.
    pub layers: usize,
    /// Dropout probability on the input item embeddings, in [0, 1).
    pub dropout: f64,
    /// Longest history the model reads (older items are dropped).
    pub max_len: usize,
    /// Targets per training example: 0 = up to `max_len` (the loss at every position of a
    /// run), 1 = RecBole's one example per prefix (about `max_len` times the work per epoch).
    pub targets: usize,
    /// Training objective: over full logits (`ce`) or sampled negatives (`bpr`, …).
    pub loss: LossSpec,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Examples (each up to `max_len` targets) per optimiser step.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// AdamW decoupled weight decay (0 = plain Adam).
    pub weight_decay: f64,
    /// Validation rounds without improvement before stopping early (0 = never).
    pub patience: usize,
    /// Evaluate on validation data every this many epochs.
    pub eval_every: usize,
}

impl Default for Gru4RecConfig {
    fn default() -> Self {
        Self {
            embedding_size: 64,
            hidden_size: 128,
            layers: 1,
            dropout: 0.3,
            max_len: 50,
            targets: 0,
            loss: LossSpec::of("ce"),
            epochs: 200,
            batch_size: 64,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            patience: 10,
            eval_every: 1,
        }
    }
}

impl Gru4RecConfig {
    fn train_config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            patience: self.patience,
            eval_every: self.eval_every,
        }
    }
}

impl PluginConfig for Gru4RecConfig {
    const TYPE: &'static str = "gru4rec";
    const SUMMARY: &'static str =
        "GRU4Rec: a GRU over the item history (Hidasi et al. 2016; RecBole's variant)";
    const EXAMPLE: &'static str = r#"# Size of the item embeddings (input and output).
embedding_size = 64
# Size of the GRU hidden state.
hidden_size = 128
# Number of stacked GRU layers.
layers = 1
# Dropout on the input item embeddings, in [0, 1).
dropout = 0.3
# Longest history the model reads (older items are dropped).
max_len = 50
# Targets per training example: 0 = up to max_len (loss at every position), 1 = one example
# per prefix as RecBole trains it (about max_len times the work per epoch).
targets = 0
# Training objective: full logits (ce) or sampled negatives (bpr, ...).
loss = { type = "ce" }
# Maximum number of epochs (validation decides when to stop).
epochs = 200
# Examples (each up to max_len targets) per optimiser step.
batch_size = 64
# AdamW learning rate.
learning_rate = 0.001
# AdamW decoupled weight decay; 0 is plain Adam.
weight_decay = 0.0
# Validation rounds without improvement before stopping early (0 = never).
patience = 10
# Evaluate on validation data every this many epochs.
eval_every = 1
"#;

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        check_range(&mut errors, "embedding_size", self.embedding_size, 1, 4096);
        check_range(&mut errors, "hidden_size", self.hidden_size, 1, 4096);
        check_range(&mut errors, "layers", self.layers, 1, 16);
        common::check_dropout(&mut errors, self.dropout);
        check_range(&mut errors, "max_len", self.max_len, 1, 1024);
        check_range(&mut errors, "targets", self.targets, 0, 1024);
        self.train_config().validate(&mut errors);
        errors
    }
}

/// Builds an untrained `gru4rec` (parameters are allocated in `prepare`).
pub fn build(
    cfg: Gru4RecConfig,
    losses: &dyn LossBuilder,
) -> Result<Box<dyn Recommender>, Vec<ConfigError>> {
    let loss = cfg.loss.build(losses)?;
    common::check_loss(Gru4RecConfig::TYPE, loss.as_ref())?;
    Ok(Box::new(Gru4Rec {
        cfg,
        loss,
        state: None,
    }))
}

/// A `gru4rec` model.
pub struct Gru4Rec {
    cfg: Gru4RecConfig,
    loss: Arc<dyn Loss>,
    state: Option<State>,
}

struct State {
    net: Net,
    opt: AdamW,
    examples: Vec<Example>,
    sampler: NegativeSampler,
}

/// A training example: the last `targets` items are each predicted from the items before them.
#[derive(Debug, Clone, PartialEq)]
struct Example {
    items: Vec<u32>,
    targets: usize,
}

/// Cuts training sequences from their ends into runs of at most `len` targets, each preceded
/// by up to `len` earlier items as context; a sequence's first item is never a target.
fn examples(train: &[Vec<u32>], len: usize, targets: usize) -> Vec<Example> {
    let per_example = if targets == 0 { len } else { targets };
    let mut out = Vec::new();
    for seq in train {
        let mut end = seq.len();
        while end >= 2 {
            let first = end.saturating_sub(per_example).max(1);
            out.push(Example {
                items: seq[first.saturating_sub(len)..end].to_vec(),
                targets: end - first,
            });
            end = first;
        }
    }
    out
}

/// Users scored per forward pass.
const SCORE_CHUNK: usize = 256;

/// The trainable network. `item` has `n_items + 1` rows; the last is padding.
struct Net {
    n_items: usize,
    item: Var,
    /// Per layer: input weights `[in, 3·hidden]` and recurrent weights `[hidden, 3·hidden]`.
    layers: Vec<(Var, Var)>,
    dense_w: Var,
    dense_b: Var,
}

/// Right-padded sequences, `steps` positions each (the longest sequence of the batch).
struct Batch {
    rows: usize,
    steps: usize,
    ids: Tensor,
}

impl Batch {
    /// Sequences of at least one item each.
    fn new<S: AsRef<[u32]>>(seqs: &[S], pad: u32) -> Result<Self, PluginError> {
        let steps = seqs.iter().map(|s| s.as_ref().len()).max().unwrap_or(0);
        let mut v = Vec::with_capacity(seqs.len() * steps);
        for s in seqs {
            let s = s.as_ref();
            v.extend_from_slice(s);
            v.extend(std::iter::repeat_n(pad, steps - s.len()));
        }
        Ok(Self {
            rows: seqs.len(),
            steps,
            ids: ids(v)?,
        })
    }
}

impl Net {
    fn new(cfg: &Gru4RecConfig, n_items: usize, rng: &mut Rng) -> Result<Self, PluginError> {
        let (e, h) = (cfg.embedding_size, cfg.hidden_size);
        let item = common::normal_var(rng, n_items + 1, e, common::xavier_std(n_items + 1, e))?;
        let xavier_uniform =
            |fan_in: usize, fan_out: usize| (6.0 / (fan_in + fan_out) as f64).sqrt();
        // PyTorch's default for GRU weights beyond the first layer and for linear layers.
        let default = 1.0 / (h as f64).sqrt();
        let mut layers = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let input = if l == 0 { e } else { h };
            let (bi, bh) = if l == 0 {
                (xavier_uniform(input, 3 * h), xavier_uniform(h, 3 * h))
            } else {
                (default, default)
            };
            let w_ih = common::uniform_var(rng, input, 3 * h, bi)?;
            let w_hh = common::uniform_var(rng, h, 3 * h, bh)?;
            layers.push((w_ih, w_hh));
        }
        let dense_w = common::uniform_var(rng, h, e, default)?;
        // A [1, e] draw kept as the [e] bias vector.
        let dense_b = Var::from_tensor(&common::uniform_var(rng, 1, e, default)?.flatten_all()?)?;
        Ok(Self {
            n_items,
            item,
            layers,
            dense_w,
            dense_b,
        })
    }

    fn named(&self) -> Vec<(String, Var)> {
        let mut out = vec![("item_embedding".to_string(), self.item.clone())];
        for (l, (w_ih, w_hh)) in self.layers.iter().enumerate() {
            out.push((format!("gru.{l}.weight_ih"), w_ih.clone()));
            out.push((format!("gru.{l}.weight_hh"), w_hh.clone()));
        }
        out.push(("dense.weight".to_string(), self.dense_w.clone()));
        out.push(("dense.bias".to_string(), self.dense_b.clone()));
        out
    }

    /// Query vectors `[positions.len(), embedding]` at the given flat positions
    /// (`row · steps + step`) of a batch. With a generator the pass applies dropout and is
    /// recorded for backpropagation; without, the weights are detached.
    fn forward(
        &self,
        batch: &Batch,
        positions: Vec<u32>,
        dropout: Option<(f32, &mut Rng)>,
    ) -> Result<Tensor, PluginError> {
        let train = dropout.is_some();
        let w = |v: &Var| {
            if train {
                v.as_tensor().clone()
            } else {
                v.as_detached_tensor()
            }
        };
        let mut x = w(&self.item).index_select(&batch.ids, 0)?;
        if let Some((p, rng)) = dropout {
            x = ops::dropout(&x, p, rng)?;
        }
        for (w_ih, w_hh) in &self.layers {
            let gi = x.matmul(&w(w_ih))?.reshape((batch.rows, batch.steps, ()))?;
            let h = gru::gru(&gi, &w(w_hh))?;
            x = h.reshape((batch.rows * batch.steps, ()))?;
        }
        let x = x.index_select(&ids(positions)?, 0)?;
        Ok(ops::add_rows(
            &x.matmul(&w(&self.dense_w))?,
            &w(&self.dense_b),
        )?)
    }
}

impl Gru4Rec {
    fn run_epoch(&self, st: &mut State, ctx: &mut EpochContext<'_>) -> Result<f64, PluginError> {
        let n_items = st.net.n_items;
        let mut order: Vec<usize> = (0..st.examples.len()).collect();
        order.shuffle(ctx.rng);
        let bs = self.cfg.batch_size;
        ctx.progress.start(order.len().div_ceil(bs) as u64);
        let (mut total, mut count) = (0.0, 0usize);
        for chunk in order.chunks(bs) {
            let inputs: Vec<&[u32]> = chunk
                .iter()
                .map(|&e| &st.examples[e].items[..st.examples[e].items.len() - 1])
                .collect();
            let batch = Batch::new(&inputs, n_items as u32)?;
            let mut targets = Vec::new();
            let mut positions = Vec::new();
            for (r, &e) in chunk.iter().enumerate() {
                let Example { items, targets: k } = &st.examples[e];
                targets.extend_from_slice(&items[items.len() - k..]);
                // The output after item p predicts item p + 1.
                let last = r * batch.steps + items.len() - 1;
                positions.extend((last - k..last).map(|p| p as u32));
            }
            let q = st.net.forward(
                &batch,
                positions,
                Some((self.cfg.dropout as f32, &mut *ctx.rng)),
            )?;
            let m = targets.len();
            let loss = common::item_loss_with(
                self.loss.as_ref(),
                &st.sampler,
                None,
                &q,
                st.net.item.as_tensor(),
                n_items,
                targets,
                ctx.rng,
            )?;
            st.opt.backward_step(&loss)?;
            let value = common::loss_value(&loss, Gru4RecConfig::TYPE)?;
            total += value * m as f64;
            count += m;
            ctx.progress.advance(1, value);
        }
        Ok(total / count.max(1) as f64)
    }
}

impl Recommender for Gru4Rec {
    fn kind(&self) -> ModelKind {
        ModelKind::Sequential
    }

    fn prepare(&mut self, data: &SplitData, seed: u64) -> Result<(), PluginError> {
        let n_items = data.n_items();
        common::check_items(Gru4RecConfig::TYPE, self.loss.as_ref(), n_items)?;
        let examples = examples(&data.train, self.cfg.max_len, self.cfg.targets);
        if examples.is_empty() {
            return Err(PluginError::Data(
                "gru4rec: no user has two training interactions to learn a transition from".into(),
            ));
        }
        let mut rng = pulse_api::rng::derive(seed, "init");
        let net = Net::new(&self.cfg, n_items, &mut rng)?;
        let opt = AdamW::new(
            net.named().into_iter().map(|(_, v)| v).collect(),
            ParamsAdamW {
                lr: self.cfg.learning_rate,
                weight_decay: self.cfg.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        self.state = Some(State {
            net,
            opt,
            examples,
            sampler: common::sampler_for(self.loss.as_ref(), data),
        });
        Ok(())
    }

    fn training(&self) -> Option<TrainConfig> {
        Some(self.cfg.train_config())
    }

    fn train_epoch(
        &mut self,
        _data: &SplitData,
        ctx: &mut EpochContext<'_>,
    ) -> Result<f64, PluginError> {
        let mut st = self
            .state
            .take()
            .ok_or_else(|| common::not_prepared(Gru4RecConfig::TYPE))?;
        let result = self.run_epoch(&mut st, ctx);
        self.state = Some(st);
        result
    }

    fn score(
        &self,
        data: &SplitData,
        phase: Phase,
        users: &[u32],
    ) -> Result<Vec<f32>, PluginError> {
        let st = self
            .state
            .as_ref()
            .ok_or_else(|| common::not_prepared(Gru4RecConfig::TYPE))?;
        let n_items = st.net.n_items;
        common::check_users(Gru4RecConfig::TYPE, data, users)?;
        let items_t = st
            .net
            .item
            .as_detached_tensor()
            .narrow(0, 0, n_items)?
            .t()?;
        let l = self.cfg.max_len;
        let mut out = Vec::with_capacity(users.len() * n_items);
        for chunk in users.chunks(SCORE_CHUNK) {
            let seqs: Vec<Vec<u32>> = chunk
                .iter()
                .map(|&u| {
                    let h = data.history(u, phase);
                    match h.len() {
                        // No history: the padding item stands in, the same for every such user.
                        0 => vec![n_items as u32],
                        n => h[n.saturating_sub(l)..].to_vec(),
                    }
                })
                .collect();
            let batch = Batch::new(&seqs, n_items as u32)?;
            let last = seqs
                .iter()
                .enumerate()
                .map(|(r, s)| (r * batch.steps + s.len() - 1) as u32)
                .collect();
            let q = st.net.forward(&batch, last, None)?;
            out.extend(q.matmul(&items_t)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    fn snapshot(&self) -> Result<Vec<(String, Tensor)>, PluginError> {
        match &self.state {
            Some(st) => common::snapshot(&st.net.named()),
            None => Ok(Vec::new()),
        }
    }

    fn restore(&mut self, weights: &[(String, Tensor)]) -> Result<(), PluginError> {
        let st = self
            .state
            .as_ref()
            .ok_or_else(|| common::not_prepared(Gru4RecConfig::TYPE))?;
        common::restore(&st.net.named(), weights)
    }
}

#[cfg(test)]
mod tests;
