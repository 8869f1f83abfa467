//! `bpr-mf`: matrix factorisation (Rendle et al. 2009). A user and an item each have an
//! embedding; the score is their dot product. One training example is a (user, positive item)
//! pair from the training data, shuffled every epoch; the loss is a plugin (`bpr` with one
//! uniform negative by default, negatives drawn by the shared sampler the loss asks for, or
//! any loss over full logits such as `ce`). Optimiser: AdamW
//! (with the default `weight_decay = 0` it is Adam, as in RecBole). Embeddings start
//! xavier-normal like RecBole's, drawn from the trial seed.

use crate::common::{self, ids, DEVICE};
use candle_core::{Tensor, Var};
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

/// Configuration of `bpr-mf`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BprMfConfig {
    /// Size of the user and item embeddings.
    pub embedding_size: usize,
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

impl Default for BprMfConfig {
    fn default() -> Self {
        Self {
            embedding_size: 64,
            loss: LossSpec::of("bpr"),
            epochs: 200,
            batch_size: 2048,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            patience: 10,
            eval_every: 1,
        }
    }
}

impl BprMfConfig {
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

impl PluginConfig for BprMfConfig {
    const TYPE: &'static str = "bpr-mf";
    const SUMMARY: &'static str =
        "matrix factorisation: user · item embedding dot product (BPR loss by default)";
    const EXAMPLE: &'static str = r#"# Size of the user and item embeddings.
embedding_size = 64
# Training objective: sampled negatives (bpr) or full logits (ce).
loss = { type = "bpr" }
# Maximum number of epochs (validation decides when to stop).
epochs = 200
# (user, positive item) pairs per optimiser step.
batch_size = 2048
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
        self.train_config().validate(&mut errors);
        errors
    }
}

/// Builds an untrained `bpr-mf` (parameters are allocated in `prepare`).
pub fn build(
    cfg: BprMfConfig,
    losses: &dyn LossBuilder,
) -> Result<Box<dyn Recommender>, Vec<ConfigError>> {
    let loss = cfg.loss.build(losses)?;
    common::check_loss(BprMfConfig::TYPE, loss.as_ref())?;
    Ok(Box::new(BprMf {
        cfg,
        loss,
        state: None,
    }))
}

/// A `bpr-mf` model.
pub struct BprMf {
    cfg: BprMfConfig,
    loss: Arc<dyn Loss>,
    state: Option<State>,
}

struct State {
    user: Var,
    item: Var,
    opt: AdamW,
    /// Every training (user, item) pair, in data order; epochs shuffle an index over it.
    pairs: Vec<(u32, u32)>,
    n_items: u32,
    sampler: NegativeSampler,
}

impl State {
    fn named(&self) -> Vec<(String, Var)> {
        vec![
            ("user_embedding".into(), self.user.clone()),
            ("item_embedding".into(), self.item.clone()),
        ]
    }
}

/// Users scored per matrix product (bounds the `[users, n_items]` temporary).
const SCORE_CHUNK: usize = 1024;

impl BprMf {
    fn batch_loss(
        &self,
        st: &State,
        batch: &[u32],
        rng: &mut pulse_api::rng::Rng,
    ) -> Result<Tensor, PluginError> {
        let (users, pos): (Vec<u32>, Vec<u32>) =
            batch.iter().map(|&i| st.pairs[i as usize]).unzip();
        let u = st.user.as_tensor().index_select(&ids(users.clone())?, 0)?;
        let n_items = st.n_items as usize;
        common::item_loss_with(
            self.loss.as_ref(),
            &st.sampler,
            Some(&users),
            &u,
            st.item.as_tensor(),
            n_items,
            pos,
            rng,
        )
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
            let value = common::loss_value(&loss, BprMfConfig::TYPE)?;
            total += value * batch.len() as f64;
            ctx.progress.advance(1, value);
        }
        Ok(total / order.len() as f64)
    }
}

impl Recommender for BprMf {
    fn kind(&self) -> ModelKind {
        ModelKind::General
    }

    fn prepare(&mut self, data: &SplitData, seed: u64) -> Result<(), PluginError> {
        common::check_items(BprMfConfig::TYPE, self.loss.as_ref(), data.n_items())?;
        let pairs: Vec<(u32, u32)> = data
            .train
            .iter()
            .enumerate()
            .flat_map(|(u, items)| items.iter().map(move |&i| (u as u32, i)))
            .collect();
        if pairs.is_empty() {
            return Err(PluginError::Data("bpr-mf: no training interactions".into()));
        }
        tracing::debug!(pairs = pairs.len(), "bpr-mf training pairs");
        let d = self.cfg.embedding_size;
        let (nu, ni) = (data.n_users(), data.n_items());
        let mut rng = pulse_api::rng::derive(seed, "init");
        let user = common::normal_var(&mut rng, nu, d, common::xavier_std(nu, d))?;
        let item = common::normal_var(&mut rng, ni, d, common::xavier_std(ni, d))?;
        let opt = AdamW::new(
            vec![user.clone(), item.clone()],
            ParamsAdamW {
                lr: self.cfg.learning_rate,
                weight_decay: self.cfg.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        self.state = Some(State {
            user,
            item,
            opt,
            pairs,
            n_items: ni as u32,
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
            .ok_or_else(|| common::not_prepared(BprMfConfig::TYPE))?;
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
        let st = self
            .state
            .as_ref()
            .ok_or_else(|| common::not_prepared(BprMfConfig::TYPE))?;
        let item_t = st.item.as_detached_tensor().t()?;
        let user = st.user.as_detached_tensor();
        let mut out = Vec::with_capacity(users.len() * st.n_items as usize);
        for chunk in users.chunks(SCORE_CHUNK) {
            let u = user.index_select(&Tensor::from_slice(chunk, chunk.len(), &DEVICE)?, 0)?;
            out.extend(u.matmul(&item_t)?.flatten_all()?.to_vec1::<f32>()?);
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
            .as_ref()
            .ok_or_else(|| common::not_prepared(BprMfConfig::TYPE))?;
        common::restore(&st.named(), weights)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, TestLosses};

    fn config(loss: &str) -> BprMfConfig {
        BprMfConfig {
            embedding_size: 32,
            loss: LossSpec::of(loss),
            batch_size: 256,
            learning_rate: 0.01,
            ..BprMfConfig::default()
        }
    }

    #[track_caller]
    fn check_learns(loss: &str, epochs: usize, min_gain: f64) {
        let data = testing::clustered_data(7);
        let pop = testing::fitted_pop(&data);
        let base = testing::hit_rate(pop.as_ref(), &data, true);
        let mut m = build(config(loss), &TestLosses).unwrap();
        testing::fit(m.as_mut(), &data, 3, epochs);
        let hr = testing::hit_rate(m.as_ref(), &data, true);
        assert!(
            hr > base + min_gain,
            "bpr-mf with {loss}: HR@10 {hr:.3} vs pop {base:.3}"
        );
    }

    #[test]
    fn learns_clusters_better_than_pop() {
        check_learns("bpr", 20, 0.15);
        check_learns("ce", 20, 0.15);
    }

    #[test]
    fn deterministic_and_restorable() {
        let data = testing::clustered_data(3);
        testing::check_determinism(|| build(config("bpr"), &TestLosses).unwrap(), &data);
    }

    #[test]
    fn config_checks() {
        testing::check_example::<BprMfConfig>();
        testing::check_invalid::<BprMfConfig>(
            r#"{"embedding_size": 0, "epochs": 0, "learning_rate": 0.0, "weight_decay": -1.0}"#,
            &["embedding_size", "epochs", "learning_rate", "weight_decay"],
        );
        testing::check_invalid::<BprMfConfig>(r#"{"embeding_size": 8}"#, &["embeding_size"]);
        testing::check_incompatible(|l| {
            build(
                BprMfConfig {
                    loss: l,
                    ..BprMfConfig::default()
                },
                &TestLosses,
            )
            .map(|_| ())
        });
        let m = build(BprMfConfig::default(), &TestLosses).unwrap();
        assert_eq!(m.training().unwrap().batch_size, 2048);
    }
}
