//! The training loop the core owns for every trained model: epochs, validation every
//! `eval_every` epochs on the configured metric, best-epoch snapshot, early stopping with
//! patience, restore of the best weights, and the metric stream (train loss and validation
//! metrics per epoch) sent to the run recorders.

use crate::progress::EpochBar;
use crate::record::Recorders;
use crate::RuntimeError;
use pulse_api::sections::{EvalConfig, Mask};
use pulse_api::{EpochContext, Phase, Recommender, SplitData};
use std::time::Instant;

/// What training produced.
#[derive(Debug, Clone, Default)]
pub struct FitOutcome {
    /// Epochs run (0 for models without iterative training).
    pub epochs: usize,
    /// Epoch whose weights were kept.
    pub best_epoch: Option<usize>,
    pub best_valid: Option<f64>,
    pub seconds: f64,
    /// Mean seconds per training epoch (excluding validation).
    pub epoch_seconds: Option<f64>,
}

/// Everything the loop needs besides the model.
pub struct FitSettings<'a> {
    pub eval: &'a EvalConfig,
    pub mask: Mask,
    pub seed: u64,
    pub label: String,
    pub show_progress: bool,
}

/// Prepares and (when the model trains iteratively) trains `model`, leaving the best weights in.
pub fn fit(
    model: &mut dyn Recommender,
    data: &SplitData,
    s: &FitSettings<'_>,
    rec: &mut Recorders,
) -> Result<FitOutcome, RuntimeError> {
    let started = Instant::now();
    model.prepare(data, s.seed)?;
    let Some(tc) = model.training() else {
        return Ok(FitOutcome {
            seconds: started.elapsed().as_secs_f64(),
            ..FitOutcome::default()
        });
    };
    let watch = s.eval.valid_spec().ok_or_else(|| {
        RuntimeError::Invalid(format!("bad valid_metric '{}'", s.eval.valid_metric))
    })?;
    let watch_key = watch.to_string();
    let mut eval_cfg = s.eval.clone();
    if !eval_cfg.metric_specs().contains(&watch) {
        eval_cfg.metrics.push(watch_key.clone());
    }
    let has_valid = data.valid.iter().any(|v| !v.is_empty());

    let mut rng = pulse_api::rng::derive(s.seed, "train");
    let bar = EpochBar::new(s.show_progress, s.label.clone());
    let mut best: Option<(f64, usize, Vec<(String, candle_core::Tensor)>)> = None;
    let mut since_best = 0usize;
    let mut epochs = 0usize;
    let mut train_secs = 0.0;
    for epoch in 1..=tc.epochs {
        bar.epoch(epoch, tc.epochs);
        let t = Instant::now();
        let loss = model.train_epoch(
            data,
            &mut EpochContext {
                epoch,
                rng: &mut rng,
                progress: &bar,
            },
        )?;
        train_secs += t.elapsed().as_secs_f64();
        epochs = epoch;
        if !loss.is_finite() {
            bar.finish();
            return Err(RuntimeError::Diverged { epoch, loss });
        }
        rec.metric("train/loss", loss, epoch as i64);
        if !has_valid || (epoch % tc.eval_every != 0 && epoch != tc.epochs) {
            continue;
        }
        let res = pulse_eval::evaluate(&*model, data, Phase::Valid, &eval_cfg, s.mask, s.seed)?;
        let batch: Vec<(String, f64)> = res
            .metrics
            .iter()
            .map(|(k, v)| (format!("valid/{k}"), *v))
            .collect();
        rec.metrics(&batch, epoch as i64);
        let v = res.metrics.get(&watch_key).copied().unwrap_or(f64::NAN);
        let improved = best.as_ref().is_none_or(|(b, _, _)| v > *b);
        tracing::debug!(
            "{} epoch {epoch}: loss {loss:.4}, valid {watch_key} {v:.4}{}",
            s.label,
            if improved { " (best)" } else { "" }
        );
        if improved {
            best = Some((v, epoch, model.snapshot()?));
            since_best = 0;
        } else {
            since_best += 1;
            if tc.patience > 0 && since_best >= tc.patience {
                tracing::info!(
                    "{}: early stop at epoch {epoch} ({} rounds without a better valid {watch_key})",
                    s.label,
                    tc.patience
                );
                break;
            }
        }
    }
    bar.finish();
    let (best_valid, best_epoch) = match best {
        Some((v, e, weights)) => {
            model.restore(&weights)?;
            (Some(v), Some(e))
        }
        None => (None, None),
    };
    Ok(FitOutcome {
        epochs,
        best_epoch,
        best_valid,
        seconds: started.elapsed().as_secs_f64(),
        epoch_seconds: (epochs > 0).then(|| train_secs / epochs as f64),
    })
}
