//! The network of the text models: item tower = projected item vectors (and/or ID
//! embeddings), user tower = the shared causal transformer, trained like SASRec (one example
//! per window of a training sequence, loss at every position), plus, for `pulse`, the *why*
//! loss at the explained target steps of each batch.
//!
//! **Why loss.** For every target in a batch that has a rationale vector (its user and its
//! position in the user's training sequence are known from the window), the user state that
//! predicts it goes through a linear head into the rationale space; the rows are L2-normalised
//! and scored against every rationale of the batch (`[m, m]` cosine similarities, the others
//! are the negatives), and the `why_loss` plugin (InfoNCE) is applied with each row's own
//! rationale as the target. Batches with fewer than two explained targets add nothing.

use super::config::Settings;
use crate::common::{self, ids, DEVICE};
use crate::transformer::{self, Batch, Dims, Dropout, Net};
use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use pulse_api::{
    ConfigError, EpochContext, InputRequest, Loss, LossBuilder, ModelKind, Phase, PluginError,
    RationaleVectors, Recommender, SideInputs, SplitData, TrainConfig, Vectors,
};
use pulse_data::NegativeSampler;
use rand::seq::SliceRandom;
use std::sync::Arc;

/// Initial spread of the projection and why-head weights (the transformer's `INIT_STD`).
const INIT_STD: f64 = 0.02;

/// Builds an untrained text model from resolved settings.
pub(crate) fn build(
    s: Settings,
    losses: &dyn LossBuilder,
) -> Result<Box<dyn Recommender>, Vec<ConfigError>> {
    let loss = s.fields.loss.build(losses)?;
    common::check_loss(s.type_name, loss.as_ref())?;
    let why = if s.uses_why() {
        let why = losses.build_loss(&s.why_loss.0).map_err(|errs| {
            errs.into_iter()
                .map(|e| e.prefixed(&["why_loss".to_string()]))
                .collect::<Vec<_>>()
        })?;
        Some(why)
    } else {
        None
    };
    Ok(Box::new(TextRec {
        s,
        loss,
        why,
        items: None,
        rationales: None,
        state: None,
    }))
}

/// A `text-seq`, `slm-emb` or `pulse` model.
pub struct TextRec {
    s: Settings,
    loss: Arc<dyn Loss>,
    why: Option<Arc<dyn Loss>>,
    items: Option<Arc<Vectors>>,
    rationales: Option<Arc<RationaleVectors>>,
    state: Option<State>,
}

/// One training window: `user`'s training items `start..end`.
struct Window {
    user: u32,
    start: u32,
    end: u32,
}

struct State {
    net: Net,
    /// `[n_items + 1, dv]` item vectors, the last row zero (padding); absent when `text = false`.
    text: Option<Tensor>,
    proj_w: Var,
    proj_b: Var,
    /// `[hidden, dr]`: user state into the rationale space (`pulse` with λ > 0).
    why_w: Option<Var>,
    opt: AdamW,
    windows: Vec<Window>,
    sampler: NegativeSampler,
    last_positions: Tensor,
}

/// Windows of at most `len + 1` items cut from each training sequence's end, neighbours
/// sharing one item (as `sasrec`), remembering whose and where.
fn user_windows(train: &[Vec<u32>], len: usize) -> Vec<Window> {
    let mut out = Vec::new();
    for (u, seq) in train.iter().enumerate() {
        let mut end = seq.len();
        while end >= 2 {
            let start = end.saturating_sub(len + 1);
            out.push(Window {
                user: u as u32,
                start: start as u32,
                end: end as u32,
            });
            if start == 0 {
                break;
            }
            end = start + 1;
        }
    }
    out
}

impl TextRec {
    fn name(&self) -> &'static str {
        self.s.type_name
    }

    /// The item table `[n_items + 1, hidden]` the towers read, with or without a graph.
    fn item_table(&self, st: &State, train: bool) -> Result<Tensor, PluginError> {
        let t = |v: &Var| {
            if train {
                v.as_tensor().clone()
            } else {
                v.as_detached_tensor()
            }
        };
        let ids_table = t(&st.net.item);
        match &st.text {
            Some(text) => {
                let projected = text.matmul(&t(&st.proj_w))?.broadcast_add(&t(&st.proj_b))?;
                if self.s.id_embeddings {
                    Ok((projected + ids_table)?)
                } else {
                    Ok(projected)
                }
            }
            None => Ok(ids_table),
        }
    }

    fn run_epoch(
        &self,
        st: &mut State,
        ctx: &mut EpochContext<'_>,
        data: &SplitData,
    ) -> Result<f64, PluginError> {
        let dims = st.net.dims;
        let l = dims.max_len;
        let mut order: Vec<usize> = (0..st.windows.len()).collect();
        order.shuffle(ctx.rng);
        let bs = self.s.fields.batch_size;
        ctx.progress.start(order.len().div_ceil(bs) as u64);
        let (mut total, mut count) = (0.0, 0usize);
        for chunk in order.chunks(bs) {
            let mut inputs = Vec::with_capacity(chunk.len());
            let mut targets = Vec::new();
            let mut positions = Vec::new();
            // (row of `h`, rationale vector) of every explained target.
            let mut explained: Vec<(u32, &[f32])> = Vec::new();
            for (r, &w) in chunk.iter().enumerate() {
                let win = &st.windows[w];
                let seq = &data.train[win.user as usize][win.start as usize..win.end as usize];
                let n = seq.len() - 1;
                inputs.push(&seq[..n]);
                if let Some(rv) = self.rationales.as_deref().filter(|_| st.why_w.is_some()) {
                    for j in 0..n {
                        if let Some(v) = rv.get(win.user, win.start + 1 + j as u32) {
                            explained.push(((targets.len() + j) as u32, v));
                        }
                    }
                }
                targets.extend_from_slice(&seq[1..]);
                let first = r * l + l - n;
                positions.extend((first..first + n).map(|p| p as u32));
            }
            let batch = Batch::new(&inputs, &dims)?;
            let table = self.item_table(st, true)?;
            let dropout = Dropout {
                p: self.s.fields.dropout as f32,
                rng: ctx.rng,
            };
            let hidden = st.net.forward_with(&table, &batch, Some(dropout))?;
            let h = hidden.index_select(&ids(positions)?, 0)?;
            let m = targets.len();
            let mut loss = common::item_loss_with(
                self.loss.as_ref(),
                &st.sampler,
                None,
                &h,
                &table,
                dims.n_items,
                targets,
                ctx.rng,
            )?;
            if let (Some(why), Some(why_w)) = (&self.why, &st.why_w) {
                if explained.len() >= 2 {
                    let why_loss = why_term(why.as_ref(), &h, why_w, &explained)?;
                    loss = (loss + (why_loss * self.s.why_weight)?)?;
                }
            }
            st.opt.backward_step(&loss)?;
            let value = common::loss_value(&loss, self.name())?;
            total += value * m as f64;
            count += m;
            ctx.progress.advance(1, value);
        }
        Ok(total / count.max(1) as f64)
    }

    /// Every trainable variable with a stable name (snapshots); the optimiser gets those in use.
    fn named(st: &State) -> Vec<(String, Var)> {
        let mut v = st.net.named();
        v.push(("text_projection.weight".into(), st.proj_w.clone()));
        v.push(("text_projection.bias".into(), st.proj_b.clone()));
        if let Some(w) = &st.why_w {
            v.push(("why_head.weight".into(), w.clone()));
        }
        v
    }
}

/// InfoNCE between the projected user states of the explained rows and their rationales.
pub(super) fn why_term(
    loss: &dyn Loss,
    h: &Tensor,
    why_w: &Var,
    explained: &[(u32, &[f32])],
) -> Result<Tensor, PluginError> {
    let m = explained.len();
    let dr = explained[0].1.len();
    let rows = ids(explained.iter().map(|(r, _)| *r).collect())?;
    let mut rv = Vec::with_capacity(m * dr);
    for (_, v) in explained {
        rv.extend_from_slice(v);
    }
    let r = l2_rows(&Tensor::from_vec(rv, (m, dr), &DEVICE)?)?;
    let q = l2_rows(&h.index_select(&rows, 0)?.matmul(why_w.as_tensor())?)?;
    let sim = q.matmul(&r.t()?)?;
    let targets = ids((0..m as u32).collect())?;
    loss.full(&sim, &targets)
}

/// Item vectors minus their mean, scaled so the average row norm is 1. Encoders' vectors
/// share a large common direction (SmolLM2's mean hidden states of unrelated titles have
/// cosine ≈ 0.94), which a projection would otherwise have to learn to ignore.
fn centered(v: &Vectors) -> Vec<f32> {
    let (n, d) = (v.rows(), v.dim);
    let mut mean = vec![0.0f64; d];
    for r in 0..n {
        for (m, x) in mean.iter_mut().zip(v.row(r)) {
            *m += *x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let mut out: Vec<f32> = (0..n)
        .flat_map(|r| {
            v.row(r)
                .iter()
                .zip(&mean)
                .map(|(x, m)| (*x as f64 - m) as f32)
        })
        .collect();
    let norm = out
        .chunks(d.max(1))
        .map(|row| row.iter().map(|x| (x * x) as f64).sum::<f64>().sqrt())
        .sum::<f64>()
        / n.max(1) as f64;
    if norm > 0.0 {
        out.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    }
    out
}

fn l2_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = (x.sqr()?.sum_keepdim(1)? + 1e-12)?.sqrt()?;
    x.broadcast_div(&norm)
}

impl Recommender for TextRec {
    fn kind(&self) -> ModelKind {
        ModelKind::Sequential
    }

    fn inputs(&self) -> Vec<InputRequest> {
        let mut out = Vec::new();
        if self.s.text {
            out.push(InputRequest::ItemVectors(self.s.item_vectors.clone()));
        }
        if self.s.uses_why() {
            out.push(InputRequest::RationaleVectors(
                self.s.rationale_vectors.clone(),
            ));
        }
        out
    }

    fn attach(&mut self, side: &SideInputs) -> Result<(), PluginError> {
        if self.s.text {
            let src = &self.s.item_vectors;
            self.items = Some(side.items(src).cloned().ok_or_else(|| {
                PluginError::Other(format!(
                    "{}: no item vectors from '{src}' were provided",
                    self.name()
                ))
            })?);
        }
        if self.s.uses_why() {
            let src = &self.s.rationale_vectors;
            let r = side.rationales(src).cloned().ok_or_else(|| {
                PluginError::Other(format!(
                    "{}: no rationale vectors from '{src}' were provided",
                    self.name()
                ))
            })?;
            if r.len() < 2 {
                return Err(PluginError::Data(format!(
                    "{}: why_weight > 0 needs rationales, but '{src}' has {}; generate more \
                     ([rationales] users / select) or set why_weight = 0",
                    self.name(),
                    r.len()
                )));
            }
            self.rationales = Some(r);
        }
        Ok(())
    }

    fn prepare(&mut self, data: &SplitData, seed: u64) -> Result<(), PluginError> {
        let n_items = data.n_items();
        common::check_items(self.name(), self.loss.as_ref(), n_items)?;
        let f = &self.s.fields;
        let windows = user_windows(&data.train, f.max_len);
        if windows.is_empty() {
            return Err(PluginError::Data(format!(
                "{}: no user has two training interactions to learn a transition from",
                self.name()
            )));
        }
        let dims = Dims {
            n_items,
            hidden: f.hidden_size,
            inner: f.inner_size,
            layers: f.layers,
            heads: f.heads,
            max_len: f.max_len,
        };
        let mut rng = pulse_api::rng::derive(seed, "init");
        let net = Net::new(dims, &mut rng)?;
        let text = match (&self.items, self.s.text) {
            (Some(v), true) => {
                if v.rows() != n_items {
                    return Err(PluginError::Data(format!(
                        "{}: item vectors have {} rows, the data set has {n_items} items",
                        self.name(),
                        v.rows()
                    )));
                }
                let mut padded = if self.s.fields.center {
                    centered(v)
                } else {
                    v.data.clone()
                };
                padded.extend(std::iter::repeat_n(0.0, v.dim));
                Some(Tensor::from_vec(padded, (n_items + 1, v.dim), &DEVICE)?)
            }
            (None, true) => {
                return Err(PluginError::Other(format!(
                    "{}: prepare() before the item vectors were attached",
                    self.name()
                )))
            }
            _ => None,
        };
        let dv = self.items.as_ref().map_or(1, |v| v.dim);
        let proj_w = common::normal_var(&mut rng, dv, f.hidden_size, INIT_STD)?;
        let proj_b = common::const_var(f.hidden_size, 0.0)?;
        let why_w = match &self.rationales {
            Some(r) if self.s.uses_why() => Some(common::normal_var(
                &mut rng,
                f.hidden_size,
                r.vectors.dim,
                INIT_STD,
            )?),
            _ => None,
        };
        let mut trained: Vec<Var> = net
            .named()
            .into_iter()
            .filter(|(n, _)| self.s.id_embeddings || n != "item_embedding")
            .map(|(_, v)| v)
            .collect();
        if text.is_some() {
            trained.push(proj_w.clone());
            trained.push(proj_b.clone());
        }
        trained.extend(why_w.iter().cloned());
        let opt = AdamW::new(
            trained,
            ParamsAdamW {
                lr: f.learning_rate,
                weight_decay: f.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        if let Some(r) = &self.rationales {
            tracing::info!(
                "{}: {} rationale vectors ({}-d) for the why loss, λ = {}",
                self.name(),
                r.len(),
                r.vectors.dim,
                self.s.why_weight
            );
        }
        self.state = Some(State {
            net,
            text,
            proj_w,
            proj_b,
            why_w,
            opt,
            windows,
            sampler: common::sampler_for(self.loss.as_ref(), data),
            last_positions: transformer::last_positions(dims.max_len)?,
        });
        Ok(())
    }

    fn training(&self) -> Option<TrainConfig> {
        Some(self.s.train_config())
    }

    fn train_epoch(
        &mut self,
        data: &SplitData,
        ctx: &mut EpochContext<'_>,
    ) -> Result<f64, PluginError> {
        let mut st = self
            .state
            .take()
            .ok_or_else(|| common::not_prepared(self.name()))?;
        let result = self.run_epoch(&mut st, ctx, data);
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
            .ok_or_else(|| common::not_prepared(self.name()))?;
        common::check_users(self.name(), data, users)?;
        let table = self.item_table(st, false)?;
        transformer::score_last(&st.net, &table, &st.last_positions, data, phase, users)
    }

    fn snapshot(&self) -> Result<Vec<(String, Tensor)>, PluginError> {
        match &self.state {
            Some(st) => common::snapshot(&Self::named(st)),
            None => Ok(Vec::new()),
        }
    }

    fn restore(&mut self, weights: &[(String, Tensor)]) -> Result<(), PluginError> {
        let st = self
            .state
            .as_ref()
            .ok_or_else(|| common::not_prepared(self.name()))?;
        common::restore(&Self::named(st), weights)
    }
}
