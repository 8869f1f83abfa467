//! Pieces every trained model here shares: seeded weight initialisation (candle's own CPU RNG is
//! not reproducible across runs, so weights come from `pulse_api::rng`), uniform negative
//! sampling, the model/loss compatibility check made at build time, applying a loss to the
//! scores a model produced, and deep-copy snapshots of named parameters.

use candle_core::{DType, Device, Tensor, Var};
use pulse_api::config::ConfigErrorKind;
use pulse_api::rng::Rng;
use pulse_api::{ConfigError, Loss, LossInput, PluginError, SplitData};
use pulse_data::NegativeSampler;
use rand::Rng as _;
use std::sync::Mutex;

/// Every model here runs on the CPU.
pub(crate) const DEVICE: Device = Device::Cpu;

/// A `[rows, cols]` f32 variable drawn from N(0, std²) with the given generator.
pub(crate) fn normal_var(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    std: f64,
) -> Result<Var, PluginError> {
    let mut values = Vec::with_capacity(rows * cols);
    while values.len() < rows * cols {
        // Box–Muller gives two independent normals per pair of uniforms.
        let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1], keeps ln finite
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = std::f64::consts::TAU * u2;
        values.push((r * theta.cos()) as f32);
        if values.len() < rows * cols {
            values.push((r * theta.sin()) as f32);
        }
    }
    Ok(Var::from_vec(values, (rows, cols), &DEVICE)?)
}

/// A `[rows, cols]` f32 variable drawn from U(−bound, bound) with the given generator.
pub(crate) fn uniform_var(
    rng: &mut Rng,
    rows: usize,
    cols: usize,
    bound: f64,
) -> Result<Var, PluginError> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Ok(Var::from_vec(values, (rows, cols), &DEVICE)?)
}

/// Splits `out` into contiguous blocks of whole `unit`-sized rows, one per thread of candle's
/// CPU pool, and calls `f(first_row, block)` on each. Running on candle's own (spin-waiting)
/// workers rather than fresh threads keeps the two from competing for the same cores. Every
/// row is written by exactly one call, so results do not depend on the number of threads. Runs
/// on the calling thread when there are fewer than `min_rows` rows per extra thread.
pub(crate) fn par_rows<T: Send>(
    out: &mut [T],
    unit: usize,
    min_rows: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let unit = unit.max(1);
    let rows = out.len() / unit;
    let pool = candle_core::utils::barrier_pool();
    let threads = (pool.n_workers() + 1).min(rows / min_rows.max(1)).max(1);
    if threads == 1 {
        f(0, out);
        return;
    }
    let per = rows.div_ceil(threads);
    // One uncontended lock per block hands each pool thread its own mutable rows.
    let blocks: Vec<Mutex<(usize, &mut [T])>> = out
        .chunks_mut(per * unit)
        .enumerate()
        .map(|(t, b)| Mutex::new((t * per, b)))
        .collect();
    pool.execute(|tid| {
        if let Some(block) = blocks.get(tid) {
            let mut guard = block.lock().unwrap_or_else(|e| e.into_inner());
            let (first, rows) = &mut *guard;
            f(*first, rows);
        }
    });
}

/// A variable filled with `value` (layer-norm gains and biases).
pub(crate) fn const_var(len: usize, value: f32) -> Result<Var, PluginError> {
    Ok(Var::from_vec(vec![value; len], len, &DEVICE)?)
}

/// Xavier-normal standard deviation of a `[rows, cols]` embedding table, as PyTorch computes it
/// (fan_in = cols, fan_out = rows).
pub(crate) fn xavier_std(rows: usize, cols: usize) -> f64 {
    (2.0 / (rows + cols) as f64).sqrt()
}

/// Dropout probabilities must lie in [0, 1).
pub(crate) fn check_dropout(errors: &mut Vec<ConfigError>, dropout: f64) {
    if !(0.0..1.0).contains(&dropout) {
        errors.push(ConfigError::out_of_range("dropout", "0 to <1", dropout));
    }
}

/// Refuses user ids outside the data set, which a sequence model would otherwise index past
/// its histories with.
pub(crate) fn check_users(model: &str, data: &SplitData, users: &[u32]) -> Result<(), PluginError> {
    match users.iter().find(|&&u| u as usize >= data.n_users()) {
        Some(&u) => Err(PluginError::Data(format!(
            "{model}: user {u} is not in the data ({} users)",
            data.n_users()
        ))),
        None => Ok(()),
    }
}

/// Rejects a loss whose input the model cannot produce. Both models here produce full logits
/// and sampled scores; a sampled loss must ask for at least one negative.
pub(crate) fn check_loss(model: &str, loss: &dyn Loss) -> Result<(), Vec<ConfigError>> {
    match loss.input() {
        LossInput::FullLogits => Ok(()),
        LossInput::Sampled { negatives } if negatives > 0 => Ok(()),
        LossInput::Sampled { .. } => Err(vec![ConfigError::new(
            vec!["loss".into(), "type".into()],
            ConfigErrorKind::Incompatible(format!(
                "model '{model}' cannot train with loss '{}': it asks for 0 sampled negatives, \
                 and a model can only produce scores for at least one",
                loss.type_name()
            )),
        )]),
    }
}

/// Checks the training data can feed the loss: sampling a negative needs two items.
pub(crate) fn check_items(model: &str, loss: &dyn Loss, n_items: usize) -> Result<(), PluginError> {
    if n_items == 0 {
        return Err(PluginError::Data(format!(
            "model '{model}' needs at least one item"
        )));
    }
    if matches!(loss.input(), LossInput::Sampled { .. }) && n_items < 2 {
        return Err(PluginError::Data(format!(
            "model '{model}' with loss '{}' samples negatives and needs at least two items",
            loss.type_name()
        )));
    }
    if u32::try_from(n_items).is_err() {
        return Err(PluginError::Data(format!(
            "model '{model}': {n_items} items exceed the u32 id range"
        )));
    }
    Ok(())
}

/// The value of a scalar (or one-element) loss tensor; a non-finite value is an error because
/// continuing would only spread NaN through the weights.
pub(crate) fn loss_value(loss: &Tensor, model: &str) -> Result<f64, PluginError> {
    let v = loss.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    match v.as_slice() {
        [x] if x.is_finite() => Ok(*x),
        [x] => Err(PluginError::Other(format!(
            "model '{model}': training loss became {x}; try a smaller learning_rate"
        ))),
        _ => Err(PluginError::Other(format!(
            "model '{model}': the loss returned {} values instead of one",
            v.len()
        ))),
    }
}

/// Deep copies of named variables.
pub(crate) fn snapshot(vars: &[(String, Var)]) -> Result<Vec<(String, Tensor)>, PluginError> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect()
}

/// Writes weights taken by [`snapshot`] back, checking every name and shape first so that a
/// mismatched snapshot leaves the model untouched.
pub(crate) fn restore(
    vars: &[(String, Var)],
    weights: &[(String, Tensor)],
) -> Result<(), PluginError> {
    let mut matched = Vec::with_capacity(vars.len());
    for (name, var) in vars {
        let (_, w) = weights
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| PluginError::Other(format!("snapshot has no weight '{name}'")))?;
        if w.dims() != var.dims() {
            return Err(PluginError::Other(format!(
                "snapshot weight '{name}' has shape {:?}, the model needs {:?}",
                w.dims(),
                var.dims()
            )));
        }
        matched.push((var, w));
    }
    if weights.len() != vars.len() {
        return Err(PluginError::Other(format!(
            "snapshot has {} weights, the model has {}",
            weights.len(),
            vars.len()
        )));
    }
    for (var, w) in matched {
        var.set(&w.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

/// The error for `score`/`train_epoch` before `prepare`.
pub(crate) fn not_prepared(model: &str) -> PluginError {
    PluginError::Other(format!("model '{model}' was used before prepare()"))
}

/// An `[n]` u32 tensor.
pub(crate) fn ids(v: Vec<u32>) -> Result<Tensor, PluginError> {
    let n = v.len();
    Ok(Tensor::from_vec(v, n, &DEVICE)?)
}

/// The shared negative sampler (`pulse-data`) a loss asks for, over the training counts and
/// knowing each user's training items (for `exclude = known`).
pub(crate) fn sampler_for(loss: &dyn Loss, data: &SplitData) -> NegativeSampler {
    NegativeSampler::new(loss.sampling(), &data.item_counts()).with_known(&data.train)
}

/// Scores `[n]` of `query [n, d]` against the rows `items` of `table`, and `[n, k]` against
/// `negatives` (row-major `[n, k]` ids).
pub(crate) fn sampled_scores(
    query: &Tensor,
    table: &Tensor,
    positives: Vec<u32>,
    negatives: Vec<u32>,
    k: usize,
) -> Result<(Tensor, Tensor), PluginError> {
    let (n, dim) = query.dims2()?;
    let pos = table.index_select(&ids(positives)?, 0)?;
    let pos_scores = (query * &pos)?.sum(1)?;
    let neg_emb = table
        .index_select(&ids(negatives)?, 0)?
        .reshape((n, k, dim))?;
    let neg_scores = neg_emb.matmul(&query.unsqueeze(2)?)?.squeeze(2)?;
    Ok((pos_scores, neg_scores))
}

/// The loss of query vectors `[n, d]` scored against item embeddings: either full logits over
/// the first `n_items` rows of `table` (a padding row may follow them), or the positive's score
/// and negatives drawn from `sampler` (the distribution the loss asked for), with their log
/// sampling probabilities handed to the loss. `users[row]`, when the model knows them, lets the
/// sampler keep each user's training items out of their negatives.
// Every model calls this once per batch with its own pieces; a parameter struct would only move
// the same eight names into each call site.
#[allow(clippy::too_many_arguments)]
pub(crate) fn item_loss_with(
    loss: &dyn Loss,
    sampler: &NegativeSampler,
    users: Option<&[u32]>,
    query: &Tensor,
    table: &Tensor,
    n_items: usize,
    targets: Vec<u32>,
    rng: &mut Rng,
) -> Result<Tensor, PluginError> {
    match loss.input() {
        LossInput::FullLogits => {
            let items = table.narrow(0, 0, n_items)?;
            let logits = query.matmul(&items.t()?)?;
            loss.full(&logits, &ids(targets)?)
        }
        LossInput::Sampled { negatives } => {
            let n = targets.len();
            let neg = match users {
                Some(users) => sampler.sample_for_users(rng, &targets, users, negatives),
                None => sampler.sample(rng, &targets, negatives),
            };
            let q_pos: Vec<f32> = targets.iter().map(|&t| sampler.log_q(t)).collect();
            let (pos_scores, neg_scores) =
                sampled_scores(query, table, targets, neg.items, negatives)?;
            let q_pos = Tensor::from_vec(q_pos, n, &DEVICE)?;
            let q_neg = Tensor::from_vec(neg.log_q, (n, negatives), &DEVICE)?;
            loss.sampled_with_q(&pos_scores, &neg_scores, &q_pos, &q_neg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_api::rng::derive;

    #[test]
    fn normal_init_has_the_requested_spread_and_is_seeded() {
        let draw = || normal_var(&mut derive(3, "init"), 200, 50, 0.02).unwrap();
        let v = draw()
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let n = v.len() as f32;
        let mean = v.iter().sum::<f32>() / n;
        let std = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n).sqrt();
        assert!(
            mean.abs() < 0.001 && (std - 0.02).abs() < 0.001,
            "{mean} {std}"
        );
        let again = draw()
            .as_tensor()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(v, again);
        let odd = normal_var(&mut derive(3, "init"), 3, 3, 1.0).unwrap();
        assert_eq!(odd.dims(), [3, 3]);
    }

    #[test]
    fn restore_checks_names_and_shapes() {
        let a = const_var(3, 1.0).unwrap();
        let vars = vec![("a".to_string(), a.clone())];
        let snap = snapshot(&vars).unwrap();
        a.set(&Tensor::zeros(3, DType::F32, &DEVICE).unwrap())
            .unwrap();
        assert_eq!(snap[0].1.to_vec1::<f32>().unwrap(), [1.0; 3], "deep copy");
        restore(&vars, &snap).unwrap();
        assert_eq!(a.as_tensor().to_vec1::<f32>().unwrap(), [1.0; 3]);
        let wrong = vec![(
            "a".to_string(),
            Tensor::zeros(2, DType::F32, &DEVICE).unwrap(),
        )];
        assert!(restore(&vars, &wrong).is_err());
        let renamed = vec![("b".to_string(), snap[0].1.clone())];
        assert!(restore(&vars, &renamed).is_err());
    }
}
