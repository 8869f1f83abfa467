//! The evaluation driver: picks the users of a phase, asks the model for score tables batch by
//! batch, turns each row into per-user metric values (on two threads for large batches) and
//! averages them.

use crate::metrics::metric_value;
use crate::rank::{compute_ranks, sampled_ranks, UserCase};
use crate::sampling::NegativeSampler;
use pulse_api::sections::{EvalConfig, Mask, MetricSpec, Protocol};
use pulse_api::{Phase, PluginError, Recommender, SplitData};
use serde::Serialize;
use std::collections::BTreeMap;

/// Batches with fewer users are ranked on the calling thread; spawning costs more than it saves.
const PARALLEL_MIN_USERS: usize = 64;

/// Metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalResult {
    /// `"ndcg@10"` → mean over evaluated users.
    pub metrics: BTreeMap<String, f64>,
    /// Same keys; one value per evaluated user, aligned with `users`.
    pub per_user: BTreeMap<String, Vec<f64>>,
    /// Users evaluated (those with targets in the phase), ascending.
    pub users: Vec<u32>,
}

/// Why an evaluation could not be completed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    #[error("scoring failed: {0}")]
    Model(#[from] PluginError),
    #[error(
        "the model returned {got} scores for {users} users × {items} items (expected {expected})"
    )]
    ScoreShape {
        users: usize,
        items: usize,
        expected: usize,
        got: usize,
    },
    #[error("the model returned a NaN score for user '{user}', item '{item}'")]
    NanScore { user: String, item: String },
    #[error("no metric to compute: `metrics` lists none that parse (e.g. 'ndcg@10')")]
    NoMetrics,
    #[error("no user has {phase} items, so there is nothing to evaluate")]
    NoTargets { phase: &'static str },
    #[error("inconsistent split data: {0}")]
    Data(String),
    #[error(
        "user '{user}': only {available} items can serve as sampled negatives, but `negatives` \
         is {wanted}; lower `negatives` or use protocol = \"full\""
    )]
    TooFewNegatives {
        user: String,
        available: usize,
        wanted: usize,
    },
}

/// Everything a worker needs to turn a score row into metric values.
struct Context<'a> {
    data: &'a SplitData,
    phase: Phase,
    mask: Mask,
    specs: &'a [MetricSpec],
    sampler: Option<&'a NegativeSampler>,
    n_items: usize,
}

/// Evaluates `model` on `phase` (see the crate docs for the protocol, masking and tie rules).
/// `mask` is passed separately from `cfg.mask` because the runtime resolves it per model kind.
pub fn evaluate(
    model: &dyn Recommender,
    data: &SplitData,
    phase: Phase,
    cfg: &EvalConfig,
    mask: Mask,
    seed: u64,
) -> Result<EvalResult, EvalError> {
    let mut specs = cfg.metric_specs();
    specs.sort();
    specs.dedup();
    if specs.is_empty() {
        return Err(EvalError::NoMetrics);
    }
    check_data(data)?;
    let n_items = data.n_items();
    let users: Vec<u32> = (0..data.n_users() as u32)
        .filter(|&u| !data.targets(u, phase).is_empty())
        .collect();
    if users.is_empty() {
        return Err(EvalError::NoTargets {
            phase: phase.name(),
        });
    }
    let sampler = match cfg.protocol {
        Protocol::Full => None,
        Protocol::Sampled => Some(NegativeSampler::new(
            cfg.sampling,
            &data.item_counts(),
            cfg.negatives,
            seed,
        )),
    };
    let ctx = Context {
        data,
        phase,
        mask: mask.resolve(model.kind()),
        specs: &specs,
        sampler: sampler.as_ref(),
        n_items,
    };

    let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(users.len()); specs.len()];
    for batch in users.chunks(cfg.batch_users.max(1)) {
        let scores = model.score(data, phase, batch)?;
        let expected = batch.len() * n_items;
        if scores.len() != expected {
            return Err(EvalError::ScoreShape {
                users: batch.len(),
                items: n_items,
                expected,
                got: scores.len(),
            });
        }
        let values = rank_batch(&ctx, batch, &scores)?;
        for row in values.chunks(specs.len()) {
            for (col, &v) in columns.iter_mut().zip(row) {
                col.push(v);
            }
        }
    }

    let mut metrics = BTreeMap::new();
    let mut per_user = BTreeMap::new();
    for (spec, col) in specs.iter().zip(columns) {
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        metrics.insert(spec.to_string(), mean);
        per_user.insert(spec.to_string(), col);
    }
    Ok(EvalResult {
        metrics,
        per_user,
        users,
    })
}

/// Every list must exist per user and name real items, so ranking can index rows directly.
fn check_data(data: &SplitData) -> Result<(), EvalError> {
    let n_users = data.n_users();
    for (name, lists) in [
        ("train", &data.train),
        ("valid", &data.valid),
        ("test", &data.test),
    ] {
        if lists.len() != n_users {
            return Err(EvalError::Data(format!(
                "{} {name} lists for {n_users} users",
                lists.len()
            )));
        }
        let n_items = data.n_items();
        if let Some((u, &i)) = lists
            .iter()
            .enumerate()
            .find_map(|(u, l)| l.iter().find(|&&i| i as usize >= n_items).map(|i| (u, i)))
        {
            return Err(EvalError::Data(format!(
                "user '{}' has {name} item id {i}, but there are only {n_items} items",
                data.user_ids[u]
            )));
        }
    }
    Ok(())
}

/// Metric values of a batch, flat `users × specs`, in batch order.
fn rank_batch(ctx: &Context<'_>, batch: &[u32], scores: &[f32]) -> Result<Vec<f64>, EvalError> {
    if batch.len() < PARALLEL_MIN_USERS {
        return rank_users(ctx, batch, scores);
    }
    let mid = batch.len() / 2;
    let (users_a, users_b) = batch.split_at(mid);
    let (scores_a, scores_b) = scores.split_at(mid * ctx.n_items);
    std::thread::scope(|s| {
        let second = s.spawn(|| rank_users(ctx, users_b, scores_b));
        let first = rank_users(ctx, users_a, scores_a);
        let second = second
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let mut values = first?;
        values.extend(second?);
        Ok(values)
    })
}

fn rank_users(ctx: &Context<'_>, users: &[u32], scores: &[f32]) -> Result<Vec<f64>, EvalError> {
    let mut marks = vec![false; ctx.n_items];
    let mut out = Vec::with_capacity(users.len() * ctx.specs.len());
    for (&user, row) in users.iter().zip(scores.chunks_exact(ctx.n_items)) {
        if let Some(item) = row.iter().position(|s| s.is_nan()) {
            return Err(EvalError::NanScore {
                user: ctx.data.user_ids[user as usize].clone(),
                item: ctx.data.item_ids[item].clone(),
            });
        }
        let known = match ctx.mask {
            Mask::Known => ctx.data.history(user, ctx.phase),
            Mask::None | Mask::ByKind => Vec::new(),
        };
        let case = UserCase::new(ctx.data.targets(user, ctx.phase), &known);
        let ranks = match ctx.sampler {
            None => compute_ranks(row, &case.targets, &case.masked),
            Some(sampler) => {
                let mut exclude = case.targets.clone();
                exclude.extend_from_slice(&case.masked);
                let negatives = sampler.draw(user, &exclude, &mut marks).map_err(|few| {
                    EvalError::TooFewNegatives {
                        user: ctx.data.user_ids[user as usize].clone(),
                        available: few.available,
                        wanted: sampler.k(),
                    }
                })?;
                sampled_ranks(row, &case.targets, &negatives)
            }
        };
        out.extend(ctx.specs.iter().map(|&spec| metric_value(spec, &ranks)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
