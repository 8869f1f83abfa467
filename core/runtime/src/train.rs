//! The training loop the core owns for every trained model: epochs, validation every
//! `eval_every` epochs on the configured metric, best-epoch snapshot, early stopping with
//! patience, a wall-clock training budget or an interrupt, restore of the best weights, and the
//! metric stream (train loss and validation metrics per epoch) sent to the run recorders.

use crate::progress::EpochBar;
use crate::record::Recorders;
use crate::RuntimeError;
use pulse_api::sections::{EvalConfig, Mask};
use pulse_api::{EpochContext, Phase, Recommender, SplitData};
use std::time::Instant;

type Weights = Vec<(String, candle_core::Tensor)>;

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
    /// Training stopped because `FitSettings::budget` ran out.
    pub budget_stop: bool,
    /// Training stopped because `FitSettings::cancel` was set; the best epoch so far is kept.
    pub interrupted: bool,
}

/// Everything the loop needs besides the model.
pub struct FitSettings<'a> {
    pub eval: &'a EvalConfig,
    pub mask: Mask,
    pub seed: u64,
    pub label: String,
    pub show_progress: bool,
    /// Checked after every epoch: when set, training stops like a spent budget (the epoch is
    /// validated, the best one kept) and the outcome says `interrupted`.
    pub cancel: &'a std::sync::atomic::AtomicBool,
    /// Wall-clock training budget, checked after every epoch (its validation included).
    pub budget: Option<std::time::Duration>,
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
    // (valid score, epoch, weights) of the best epoch so far.
    let mut best: Option<(f64, usize, Weights)> = None;
    let mut since_best = 0usize;
    let mut stopped_early = false;
    let mut budget_stop = false;
    let mut interrupted = false;
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
        // Hours of training are not thrown away on Ctrl-C: the epoch just run is validated
        // and the best one so far is kept, so that the caller can still test it.
        interrupted = s.cancel.load(std::sync::atomic::Ordering::Relaxed);
        if !loss.is_finite() {
            bar.finish();
            return Err(RuntimeError::Diverged { epoch, loss });
        }
        rec.metric("train/loss", loss, epoch as i64);
        // An interrupt or a spent budget ends training after this epoch; it is validated
        // off the `eval_every` schedule so that it can be kept.
        let stopping =
            interrupted || (epoch < tc.epochs && s.budget.is_some_and(|b| started.elapsed() >= b));
        if has_valid && (epoch % tc.eval_every == 0 || epoch == tc.epochs || stopping) {
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
                    stopped_early = true;
                    break;
                }
            }
        }
        if stopping {
            budget_stop = !interrupted;
            break;
        }
    }
    // The bar is cleared first so that the log line does not tear it.
    bar.finish();
    if stopped_early {
        tracing::info!(
            "{}: early stop at epoch {epochs} ({} rounds without a better valid {watch_key})",
            s.label,
            tc.patience
        );
    }
    if interrupted {
        tracing::warn!(
            "{}: interrupted after epoch {epochs}; testing the best validation epoch so far",
            s.label
        );
    }
    if budget_stop {
        tracing::info!(
            "{}: training budget of {:.1} min spent after epoch {epochs}; keeping the best \
             validation epoch",
            s.label,
            s.budget.map_or(0.0, |b| b.as_secs_f64() / 60.0)
        );
    }
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
        budget_stop,
        interrupted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_api::{ModelKind, PluginError, TrainConfig};

    /// A model whose validation quality follows a script: at "epoch state" e it ranks every
    /// target first when `script[e - 1]` is true, last otherwise. Its snapshot is that state.
    struct Scripted {
        script: Vec<bool>,
        state: usize,
        patience: usize,
    }

    impl Recommender for Scripted {
        fn kind(&self) -> ModelKind {
            ModelKind::General
        }
        fn prepare(&mut self, _: &SplitData, _: u64) -> Result<(), PluginError> {
            Ok(())
        }
        fn training(&self) -> Option<TrainConfig> {
            Some(TrainConfig {
                epochs: self.script.len(),
                batch_size: 1,
                learning_rate: 1.0,
                weight_decay: 0.0,
                patience: self.patience,
                eval_every: 1,
            })
        }
        fn train_epoch(
            &mut self,
            _: &SplitData,
            ctx: &mut EpochContext<'_>,
        ) -> Result<f64, PluginError> {
            self.state = ctx.epoch;
            Ok(1.0 / ctx.epoch as f64)
        }
        fn score(
            &self,
            data: &SplitData,
            phase: Phase,
            users: &[u32],
        ) -> Result<Vec<f32>, PluginError> {
            let good = self.state > 0 && self.script[self.state - 1];
            let mut out = Vec::new();
            for &u in users {
                for i in 0..data.n_items() as u32 {
                    let is_target = data.targets(u, phase).contains(&i);
                    out.push(if is_target == good { 1.0 } else { 0.0 });
                }
            }
            Ok(out)
        }
        fn snapshot(&self) -> Result<Vec<(String, candle_core::Tensor)>, PluginError> {
            let t = candle_core::Tensor::new(&[self.state as u32], &candle_core::Device::Cpu)?;
            Ok(vec![("state".into(), t)])
        }
        fn restore(&mut self, w: &[(String, candle_core::Tensor)]) -> Result<(), PluginError> {
            self.state = w[0].1.to_vec1::<u32>()?[0] as usize;
            Ok(())
        }
    }

    fn data() -> SplitData {
        SplitData {
            dataset: "t".into(),
            user_ids: vec!["a".into(), "b".into()],
            item_ids: (0..6).map(|i| i.to_string()).collect(),
            train: vec![vec![0, 1], vec![2, 3]],
            valid: vec![vec![4], vec![5]],
            test: vec![vec![5], vec![4]],
            ..SplitData::default()
        }
    }

    /// Runs the loop over a script and returns (epochs run, best epoch, restored state).
    #[track_caller]
    fn check(script: &[bool], patience: usize, expected: (usize, Option<usize>, usize)) {
        let out = check_with(script, patience, None, false, expected);
        assert!(!out.budget_stop && !out.interrupted);
    }

    #[track_caller]
    fn check_with(
        script: &[bool],
        patience: usize,
        budget: Option<std::time::Duration>,
        cancelled: bool,
        expected: (usize, Option<usize>, usize),
    ) -> FitOutcome {
        let (out, state) = run(script, patience, budget, cancelled, &data());
        assert_eq!((out.epochs, out.best_epoch, state), expected);
        out
    }

    /// Runs the loop over a script on `data`; returns the outcome and the restored state.
    fn run(
        script: &[bool],
        patience: usize,
        budget: Option<std::time::Duration>,
        cancelled: bool,
        data: &SplitData,
    ) -> (FitOutcome, usize) {
        let mut model = Scripted {
            script: script.to_vec(),
            state: 0,
            patience,
        };
        let eval = EvalConfig::default();
        let settings = FitSettings {
            eval: &eval,
            mask: Mask::Known,
            seed: 1,
            label: "scripted".into(),
            show_progress: false,
            cancel: &std::sync::atomic::AtomicBool::new(cancelled),
            budget,
        };
        let mut rec = Recorders::start(&mut [], &test_info());
        let out = fit(&mut model, data, &settings, &mut rec).unwrap();
        (out, model.state)
    }

    fn test_info() -> pulse_api::RunInfo {
        pulse_api::RunInfo {
            run_id: "r".into(),
            experiment: "e".into(),
            sweep_id: "s".into(),
            trial_id: "t".into(),
            trial_label: "base".into(),
            ablation: None,
            model: "m".into(),
            model_type: "scripted".into(),
            dataset: "d".into(),
            seed: 1,
            resolved_spec: serde_json::Value::Null,
            params: Default::default(),
            environment: Default::default(),
        }
    }

    #[test]
    fn early_stopping_keeps_and_restores_the_best_epoch() {
        // Best at epoch 2; three rounds without improvement stop the loop at epoch 5.
        check(
            &[false, true, false, false, false, true, true],
            3,
            (5, Some(2), 2),
        );
        // No patience: every epoch runs; the first of equal scores is kept.
        check(&[false, true, true, false], 0, (4, Some(2), 2));
        // Improvement at the last epoch is kept.
        check(&[false, false, true], 5, (3, Some(3), 3));
    }

    #[test]
    fn a_spent_budget_stops_after_the_epoch_and_keeps_the_best() {
        use std::time::Duration;
        // Spent from the start: one epoch runs, is validated and kept.
        let out = check_with(
            &[true, true, true],
            0,
            Some(Duration::ZERO),
            false,
            (1, Some(1), 1),
        );
        assert!(out.budget_stop);
        // A budget that outlasts training changes nothing.
        let out = check_with(
            &[false, true, false],
            0,
            Some(Duration::from_secs(3600)),
            false,
            (3, Some(2), 2),
        );
        assert!(!out.budget_stop);
        // Without validation data there is nothing to keep, but the budget still stops it.
        let no_valid = SplitData {
            valid: vec![vec![], vec![]],
            ..data()
        };
        let (out, _) = run(
            &[true, true, true],
            0,
            Some(Duration::ZERO),
            false,
            &no_valid,
        );
        assert_eq!((out.epochs, out.best_epoch), (1, None));
        assert!(out.budget_stop);
    }

    #[test]
    fn an_interrupt_stops_after_the_epoch_and_keeps_the_best() {
        // Requested before the first epoch ends: that epoch runs, is validated and kept, even
        // off the `eval_every` schedule, and the outcome says why training stopped.
        let out = check_with(&[true, true, true], 0, None, true, (1, Some(1), 1));
        assert!(out.interrupted && !out.budget_stop);
        let out = check_with(&[false, true], 0, None, true, (1, Some(1), 1));
        assert!(out.interrupted);
    }
}
