//! Training the thought space: InfoNCE over batches of (behaviour, rationale) pairs, where the
//! other pairs' rationales of the batch are the negatives (all of them through the full
//! similarity matrix, or `negatives` drawn per row), AdamW on the trainable weights, batches
//! reshuffled every epoch. Held-out retrieval is measured before training (epoch 0) and after
//! every epoch; the best epoch by MRR is kept. With `train = "heads"` the encoders never change,
//! so their pooled outputs are computed once and only the heads run per batch.

use super::metrics::retrieval;
use super::model::{Side, Snapshot, Towers};
use super::{rng, EpochMetrics, STREAM_BATCHES};
use crate::progress::progress_bar;
use crate::rationale::StageOptions;
use crate::StageError;
use candle_core::Tensor;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use pulse_api::stages::ThoughtSpaceSection;
use pulse_api::{Loss, LossBuilder};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Token sequences of every pair and which pairs train or are held out.
pub(crate) struct Data<'a> {
    pub behaviour: &'a [Vec<u32>],
    pub rationale: &'a [Vec<u32>],
    pub train: &'a [usize],
    pub held_out: &'a [usize],
}

/// What training produced. The towers hold the last epoch's weights until
/// [`Fit::restore_best`].
pub(crate) struct Fit {
    pub epochs: Vec<EpochMetrics>,
    pub best_epoch: usize,
    /// The best epoch's weights when it is not the last.
    best: Option<Snapshot>,
    pub seconds: f64,
    /// `train = "heads"`: the pooled rationale-encoder outputs of every pair, reused for the
    /// rationale table.
    pub rationale_pooled: Option<Tensor>,
}

/// Where a batch's vectors come from.
enum Inputs<'a> {
    /// Token sequences through the encoders.
    Tokens(&'a Data<'a>),
    /// Pooled encoder outputs computed once (`train = "heads"`): `(behaviour, rationale)`,
    /// one row per pair.
    Pooled(Tensor, Tensor),
}

impl Inputs<'_> {
    /// Unit vectors of `pairs` on `side`; with gradients when `grad`.
    fn vectors(
        &self,
        towers: &Towers,
        side: Side,
        pairs: &[usize],
        grad: bool,
    ) -> Result<Tensor, StageError> {
        match self {
            Inputs::Tokens(d) => {
                let ids = match side {
                    Side::Behaviour => d.behaviour,
                    Side::Rationale => d.rationale,
                };
                if grad {
                    let seqs: Vec<&[u32]> = pairs.iter().map(|&i| ids[i].as_slice()).collect();
                    towers.forward(side, &seqs)
                } else {
                    let seqs: Vec<Vec<u32>> = pairs.iter().map(|&i| ids[i].clone()).collect();
                    towers.vectors(side, &seqs)
                }
            }
            Inputs::Pooled(b, r) => {
                let pooled = match side {
                    Side::Behaviour => b,
                    Side::Rationale => r,
                };
                let idx: Vec<u32> = pairs.iter().map(|&i| i as u32).collect();
                let idx = Tensor::from_vec(idx, pairs.len(), pooled.device())?;
                let v = towers.project(side, &pooled.index_select(&idx, 0)?)?;
                Ok(if grad { v } else { v.detach() })
            }
        }
    }
}

/// The InfoNCE losses: over the full in-batch matrix, and with `k` sampled negatives.
struct Losses {
    full: Arc<dyn Loss>,
    sampled: Option<(usize, Arc<dyn Loss>)>,
}

impl Losses {
    fn build(s: &ThoughtSpaceSection, builder: &dyn LossBuilder) -> Result<Self, StageError> {
        let build = |section: serde_json::Value| {
            builder.build_loss(&section).map_err(|errs| {
                StageError::Invalid(format!(
                    "thought space: the infonce loss: {}",
                    errs.iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })
        };
        let full = build(json!({"type": "infonce", "temperature": s.temperature}))?;
        let sampled = match s.negatives {
            0 => None,
            k => Some((
                k,
                build(json!({"type": "infonce", "temperature": s.temperature, "negatives": k}))?,
            )),
        };
        Ok(Self { full, sampled })
    }

    /// Loss of a batch: `b`, `r` are `(n, dim)` unit vectors, row `i` of each a pair.
    fn batch(&self, b: &Tensor, r: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor, StageError> {
        let n = b.dim(0)?;
        let sim = b.matmul(&r.t()?)?;
        match &self.sampled {
            Some((k, loss)) if *k < n - 1 => {
                let mut idx = Vec::with_capacity(n * k);
                for i in 0..n {
                    for j in rand::seq::index::sample(rng, n - 1, *k) {
                        // Draws from the n - 1 others: skip the row's own column.
                        idx.push(if j >= i { j + 1 } else { j } as u32);
                    }
                }
                let idx = Tensor::from_vec(idx, (n, *k), sim.device())?;
                let pos = (b * r)?.sum(1)?;
                let neg = sim.gather(&idx, 1)?;
                Ok(loss.sampled(&pos, &neg)?)
            }
            _ => {
                let targets = Tensor::arange(0u32, n as u32, sim.device())?;
                Ok(self.full.full(&sim, &targets)?)
            }
        }
    }
}

/// Held-out retrieval with the current weights.
fn evaluate(
    towers: &Towers,
    inputs: &Inputs<'_>,
    held_out: &[usize],
) -> Result<super::Retrieval, StageError> {
    let b = inputs.vectors(towers, Side::Behaviour, held_out, false)?;
    let r = inputs.vectors(towers, Side::Rationale, held_out, false)?;
    let sim = b.matmul(&r.t()?)?.to_vec2::<f32>()?;
    Ok(retrieval(&sim))
}

fn log_epoch(m: &EpochMetrics) {
    let loss = m.loss.map_or("-".to_string(), |l| format!("{l:.4}"));
    tracing::info!(
        "thought space: epoch {}: loss {loss}, held-out R@1 {:.3} R@10 {:.3} MRR {:.3} \
         ({:.1} pairs/s, {:.1}s)",
        m.epoch,
        m.recall_at_1,
        m.recall_at_10,
        m.mrr,
        m.pairs_per_second,
        m.seconds
    );
}

impl Fit {
    /// Puts the best epoch's weights back into `towers` (nothing to do when it was the last).
    pub fn restore_best(&self, towers: &Towers) -> Result<(), StageError> {
        match &self.best {
            Some(snap) => towers.restore(snap),
            None => Ok(()),
        }
    }
}

/// Trains `towers` on `data`; they hold the last epoch's weights after it, the best one's
/// after [`Fit::restore_best`].
pub(crate) fn fit(
    towers: &Towers,
    data: &Data<'_>,
    s: &ThoughtSpaceSection,
    builder: &dyn LossBuilder,
    opts: &StageOptions,
) -> Result<Fit, StageError> {
    let started = Instant::now();
    let losses = Losses::build(s, builder)?;
    let inputs = if towers.encoders_train() {
        Inputs::Tokens(data)
    } else {
        Inputs::Pooled(
            towers.pooled(Side::Behaviour, data.behaviour)?,
            towers.pooled(Side::Rationale, data.rationale)?,
        )
    };
    let first = evaluate(towers, &inputs, data.held_out)?;
    let mut epochs = vec![EpochMetrics {
        epoch: 0,
        loss: None,
        recall_at_1: first.recall_at_1,
        recall_at_10: first.recall_at_10,
        mrr: first.mrr,
        seconds: started.elapsed().as_secs_f64(),
        pairs_per_second: 0.0,
    }];
    log_epoch(&epochs[0]);
    let (mut best_epoch, mut best_mrr) = (0, first.mrr);
    let mut best: Option<Snapshot> = None;
    if s.epochs > 0 {
        let vars = towers.trainable_vars();
        if vars.is_empty() {
            return Err(StageError::Invalid(
                "thought space: nothing would train (every encoder layer frozen and no \
                 projection head); lower freeze_layers or set projection > 0"
                    .into(),
            ));
        }
        let mut opt = AdamW::new(
            vars,
            ParamsAdamW {
                lr: s.learning_rate,
                weight_decay: s.weight_decay,
                ..ParamsAdamW::default()
            },
        )?;
        // Epoch 0 may stay the best: keep its weights.
        best = Some(towers.snapshot()?);
        let mut rng = rng(s.seed, STREAM_BATCHES);
        let bar = progress_bar(opts, "thought space", "pairs", s.epochs * data.train.len());
        let (mut trained, mut train_secs) = (0usize, 0f64);
        for epoch in 1..=s.epochs {
            let epoch_start = Instant::now();
            let mut order = data.train.to_vec();
            order.shuffle(&mut rng);
            let (mut loss_sum, mut batches, mut pairs) = (0f64, 0usize, 0usize);
            for batch in order.chunks(s.batch_size) {
                if opts.cancelled() {
                    bar.abandon();
                    return Err(StageError::Interrupted(format!(
                        "thought-space training (epoch {epoch}); nothing was stored, a rerun \
                         starts over"
                    )));
                }
                bar.inc(batch.len() as u64);
                // One pair has no negatives to learn from.
                if batch.len() < 2 {
                    continue;
                }
                let t = Instant::now();
                let b = inputs.vectors(towers, Side::Behaviour, batch, true)?;
                let r = inputs.vectors(towers, Side::Rationale, batch, true)?;
                let loss = losses.batch(&b, &r, &mut rng)?;
                opt.backward_step(&loss)?;
                loss_sum += f64::from(loss.to_scalar::<f32>()?);
                batches += 1;
                pairs += batch.len();
                trained += batch.len();
                train_secs += t.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "{:.1} pairs/s loss {:.4}",
                    trained as f64 / train_secs.max(1e-9),
                    loss_sum / batches as f64
                ));
            }
            let batch_secs = epoch_start.elapsed().as_secs_f64();
            let m = evaluate(towers, &inputs, data.held_out)?;
            let record = EpochMetrics {
                epoch,
                loss: (batches > 0).then(|| loss_sum / batches as f64),
                recall_at_1: m.recall_at_1,
                recall_at_10: m.recall_at_10,
                mrr: m.mrr,
                seconds: epoch_start.elapsed().as_secs_f64(),
                pairs_per_second: pairs as f64 / batch_secs.max(1e-9),
            };
            bar.suspend(|| log_epoch(&record));
            epochs.push(record);
            if m.mrr > best_mrr {
                (best_epoch, best_mrr) = (epoch, m.mrr);
                // The last epoch's weights stay in the towers anyway.
                best = if epoch < s.epochs {
                    Some(towers.snapshot()?)
                } else {
                    None
                };
            }
        }
        bar.finish_and_clear();
    }
    if best_epoch == s.epochs {
        best = None;
    }
    let rationale_pooled = match inputs {
        Inputs::Pooled(_, r) => Some(r),
        Inputs::Tokens(_) => None,
    };
    Ok(Fit {
        epochs,
        best_epoch,
        best,
        seconds: started.elapsed().as_secs_f64(),
        rationale_pooled,
    })
}
