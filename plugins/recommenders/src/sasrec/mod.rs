//! `sasrec`: self-attentive sequential recommendation (Kang & McAuley 2018), with RecBole's
//! architecture and defaults where they make sense: learned item and position embeddings,
//! `layers` post-norm transformer blocks with causal self-attention, GELU feed-forward layers,
//! layer-norm eps 1e-12, N(0, 0.02²) initial weights, and output logits `hidden · itemᵀ` with
//! the item embedding shared between input and output. The loss is a plugin (`ce` over full
//! logits by default; a sampled loss gets negatives from the shared sampler it asks for).
//!
//! **Training examples.** One example per *window* of a user's training sequence, with the
//! loss at every position (the original SASRec scheme), rather than RecBole's one example per
//! prefix (which recomputes the same prefixes up to 50 times). Each training sequence is cut
//! from its end into windows of up to `max_len + 1` items; consecutive windows overlap by one
//! item (the last input of an earlier window is the first item of the next), so every training
//! interaction except the user's first is a target exactly once, always with the preceding
//! items of its window (at most `max_len`) as context. A window's input is `window[..-1]` and
//! its targets `window[1..]`; inputs are left-padded with the padding id `n_items`, attention
//! is causal and ignores padding, and only real positions are gathered (`index_select`) before
//! computing logits, so the loss sees `[targets, n_items]`. `batch_size` counts windows. Windows
//! are shuffled every epoch with the epoch's generator, which also draws the dropout masks.
//! With `windows = "last"` an epoch holds only each user's most recent window (Kang &
//! McAuley's own code): an epoch costs a fraction, and older interactions are never targets.
//!
//! **Scoring.** The user's history as of the phase, last `max_len` items, no dropout; the last
//! position's hidden state dotted with every item embedding. Users are scored in batches.

use crate::common::{self, ids};
use crate::transformer::{self, Batch, Dims, Dropout, Net};
use candle_core::Tensor;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use pulse_api::config::check_range;
use pulse_api::{
    ConfigError, EpochContext, Loss, LossBuilder, LossSpec, ModelKind, Phase, PluginConfig,
    PluginError, Recommender, SplitData, TrainConfig,
};
use pulse_data::NegativeSampler;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Configuration of `sasrec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SasRecConfig {
    /// Size of item/position embeddings and of every hidden state.
    pub hidden_size: usize,
    /// Width of the feed-forward layer inside each block.
    pub inner_size: usize,
    /// Number of transformer blocks.
    pub layers: usize,
    /// Attention heads per block; must divide `hidden_size`.
    pub heads: usize,
    /// Dropout probability for hidden states and attention weights, in [0, 1).
    pub dropout: f64,
    /// Longest history the model reads (older items are dropped).
    pub max_len: usize,
    /// Training windows per epoch: `all` (every window of every training sequence) or `last`
    /// (each user's most recent window only, as the original SASRec code trains).
    pub windows: WindowScheme,
    /// Training objective: over full logits (`ce`) or sampled negatives (`bpr`, …).
    pub loss: LossSpec,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Sequence windows (each up to `max_len` targets) per optimiser step.
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

impl Default for SasRecConfig {
    fn default() -> Self {
        Self {
            hidden_size: 64,
            inner_size: 256,
            layers: 2,
            heads: 2,
            dropout: 0.5,
            max_len: 50,
            windows: WindowScheme::All,
            loss: LossSpec::of("ce"),
            epochs: 200,
            batch_size: 128,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            patience: 10,
            eval_every: 1,
        }
    }
}

impl SasRecConfig {
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

impl PluginConfig for SasRecConfig {
    const TYPE: &'static str = "sasrec";
    const SUMMARY: &'static str =
        "SASRec: causal self-attention over the item history (Kang & McAuley 2018)";
    const EXAMPLE: &'static str = r#"# Size of item/position embeddings and hidden states.
hidden_size = 64
# Width of the feed-forward layer inside each block.
inner_size = 256
# Number of transformer blocks.
layers = 2
# Attention heads per block; must divide hidden_size.
heads = 2
# Dropout for hidden states and attention weights, in [0, 1).
dropout = 0.5
# Longest history the model reads (older items are dropped).
max_len = 50
# Training windows per epoch: "all" (every window of every sequence) or "last" (each user's
# most recent max_len + 1 items only: fewer, cheaper epochs).
windows = "all"
# Training objective: full logits (ce) or sampled negatives (bpr, ...).
loss = { type = "ce" }
# Maximum number of epochs (validation decides when to stop).
epochs = 200
# Sequence windows (each up to max_len targets) per optimiser step.
batch_size = 128
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
        transformer::check_dims(
            &mut errors,
            self.hidden_size,
            self.inner_size,
            self.layers,
            self.heads,
        );
        common::check_dropout(&mut errors, self.dropout);
        check_range(&mut errors, "max_len", self.max_len, 1, 1024);
        self.train_config().validate(&mut errors);
        errors
    }
}

/// Which windows of the training sequences an epoch trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowScheme {
    /// Every window: each training interaction (but a user's first) is a target once per epoch.
    All,
    /// Each user's most recent window only.
    Last,
}

/// Builds an untrained `sasrec` (parameters are allocated in `prepare`).
pub fn build(
    cfg: SasRecConfig,
    losses: &dyn LossBuilder,
) -> Result<Box<dyn Recommender>, Vec<ConfigError>> {
    let loss = cfg.loss.build(losses)?;
    common::check_loss(SasRecConfig::TYPE, loss.as_ref())?;
    Ok(Box::new(SasRec {
        cfg,
        loss,
        state: None,
    }))
}

/// A `sasrec` model.
pub struct SasRec {
    cfg: SasRecConfig,
    loss: Arc<dyn Loss>,
    state: Option<State>,
}

struct State {
    net: Net,
    opt: AdamW,
    windows: Vec<Vec<u32>>,
    sampler: NegativeSampler,
    /// `r · max_len + max_len − 1` for r < SCORE_CHUNK: the last position of each scored row.
    last_positions: Tensor,
}

/// Cuts training sequences into windows of at most `len + 1` items from their ends, neighbours
/// sharing one item, so that every item but a sequence's first is a target exactly once.
pub(crate) fn windows(train: &[Vec<u32>], len: usize) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for seq in train {
        let mut end = seq.len();
        while end >= 2 {
            let start = end.saturating_sub(len + 1);
            out.push(seq[start..end].to_vec());
            if start == 0 {
                break;
            }
            end = start + 1;
        }
    }
    out
}

impl SasRec {
    fn dims(&self, n_items: usize) -> Dims {
        Dims {
            n_items,
            hidden: self.cfg.hidden_size,
            inner: self.cfg.inner_size,
            layers: self.cfg.layers,
            heads: self.cfg.heads,
            max_len: self.cfg.max_len,
        }
    }

    fn run_epoch(&self, st: &mut State, ctx: &mut EpochContext<'_>) -> Result<f64, PluginError> {
        let dims = st.net.dims;
        let l = dims.max_len;
        let mut order: Vec<usize> = (0..st.windows.len()).collect();
        order.shuffle(ctx.rng);
        let bs = self.cfg.batch_size;
        ctx.progress.start(order.len().div_ceil(bs) as u64);
        let (mut total, mut count) = (0.0, 0usize);
        for chunk in order.chunks(bs) {
            let mut inputs = Vec::with_capacity(chunk.len());
            let mut targets = Vec::new();
            let mut positions = Vec::new();
            for (r, &w) in chunk.iter().enumerate() {
                let win = &st.windows[w];
                let n = win.len() - 1;
                inputs.push(&win[..n]);
                targets.extend_from_slice(&win[1..]);
                let first = r * l + l - n;
                positions.extend((first..first + n).map(|p| p as u32));
            }
            let batch = Batch::new(&inputs, &dims)?;
            let dropout = Dropout {
                p: self.cfg.dropout as f32,
                rng: ctx.rng,
            };
            let hidden = st.net.forward(&batch, Some(dropout))?;
            let h = hidden.index_select(&ids(positions)?, 0)?;
            let m = targets.len();
            let loss = common::item_loss_with(
                self.loss.as_ref(),
                &st.sampler,
                None,
                &h,
                st.net.item.as_tensor(),
                dims.n_items,
                targets,
                ctx.rng,
            )?;
            st.opt.backward_step(&loss)?;
            let value = common::loss_value(&loss, SasRecConfig::TYPE)?;
            total += value * m as f64;
            count += m;
            ctx.progress.advance(1, value);
        }
        Ok(total / count.max(1) as f64)
    }
}

impl Recommender for SasRec {
    fn kind(&self) -> ModelKind {
        ModelKind::Sequential
    }

    fn prepare(&mut self, data: &SplitData, seed: u64) -> Result<(), PluginError> {
        let n_items = data.n_items();
        common::check_items(SasRecConfig::TYPE, self.loss.as_ref(), n_items)?;
        let windows = match self.cfg.windows {
            WindowScheme::All => windows(&data.train, self.cfg.max_len),
            WindowScheme::Last => data
                .train
                .iter()
                .filter(|seq| seq.len() >= 2)
                .map(|seq| seq[seq.len().saturating_sub(self.cfg.max_len + 1)..].to_vec())
                .collect(),
        };
        if windows.is_empty() {
            return Err(PluginError::Data(
                "sasrec: no user has two training interactions to learn a transition from".into(),
            ));
        }
        tracing::debug!(
            windows = windows.len(),
            targets = windows.iter().map(|w| w.len() - 1).sum::<usize>(),
            "sasrec training windows"
        );
        let dims = self.dims(n_items);
        let mut rng = pulse_api::rng::derive(seed, "init");
        let net = Net::new(dims, &mut rng)?;
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
            windows,
            sampler: common::sampler_for(self.loss.as_ref(), data),
            last_positions: transformer::last_positions(dims.max_len)?,
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
            .ok_or_else(|| common::not_prepared(SasRecConfig::TYPE))?;
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
            .ok_or_else(|| common::not_prepared(SasRecConfig::TYPE))?;
        common::check_users(SasRecConfig::TYPE, data, users)?;
        let items = st.net.item.as_detached_tensor();
        transformer::score_last(&st.net, &items, &st.last_positions, data, phase, users)
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
            .ok_or_else(|| common::not_prepared(SasRecConfig::TYPE))?;
        common::restore(&st.net.named(), weights)
    }
}

#[cfg(test)]
mod tests;
