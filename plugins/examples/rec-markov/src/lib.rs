//! `markov`: a sequential recommender shipped as a dynamic plugin (an example of a model that
//! lives outside pulse). It counts item-to-next-item transitions in the training sequences and
//! scores item `j` for a user whose history ends `…, h₃, h₂, h₁` as
//! `Σ_{k<window} decay^k · P(j | h_{k+1}) + backoff · P_pop(j)`: the chances of following each of
//! the last `window` items (the most recent counting most), plus a little global popularity so
//! that items never seen after the user's recent ones still get an order. Fitted in `prepare`
//! (counting is the whole training); no loss, no epochs.
//!
//! `pulse plugin new NAME --family recommender` scaffolds a crate from this file.

// Tests may panic on failure; library code may not (see the workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

use pulse_api::config::check_range;
use pulse_api::serde::{Deserialize, Serialize};
use pulse_api::{
    ConfigError, LossBuilder, ModelKind, Phase, PluginConfig, PluginError, Recommender, Registrar,
    SplitData,
};
use std::collections::HashMap;

/// Config of the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "pulse_api::serde", deny_unknown_fields, default)]
pub struct MarkovConfig {
    /// How many of the user's last items vote for the next one.
    pub window: usize,
    /// Weight of each older item relative to the next more recent one.
    pub decay: f64,
    /// Weight of global popularity (a probability, like the transition terms).
    pub backoff: f64,
}

impl Default for MarkovConfig {
    fn default() -> Self {
        Self {
            window: 3,
            decay: 0.5,
            backoff: 0.1,
        }
    }
}

impl PluginConfig for MarkovConfig {
    const TYPE: &'static str = "markov";
    const SUMMARY: &'static str =
        "decayed first-order Markov chain over the last items, with popularity back-off";
    const EXAMPLE: &'static str = "\
# How many of the user's last items vote for the next one.
window = 3
# Weight of each older item relative to the next more recent one.
decay = 0.5
# Weight of global popularity, for items that never followed the user's recent ones.
backoff = 0.1
";

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        check_range(&mut errors, "window", self.window, 1, 1000);
        check_range(&mut errors, "decay", self.decay, 0.0, 1.0);
        if !(self.backoff.is_finite() && self.backoff >= 0.0) {
            errors.push(ConfigError::out_of_range("backoff", ">= 0", self.backoff));
        }
        errors
    }
}

/// The fitted model.
#[derive(Debug)]
pub struct Markov {
    cfg: MarkovConfig,
    fit: Option<Fit>,
}

#[derive(Debug)]
struct Fit {
    /// Per item: (next item, P(next | item)), the followers seen in training.
    next: Vec<Vec<(u32, f32)>>,
    /// P_pop(item): share of training interactions.
    pop: Vec<f32>,
}

impl Markov {
    pub fn new(cfg: MarkovConfig) -> Self {
        Self { cfg, fit: None }
    }
}

fn fit(data: &SplitData) -> Fit {
    let n = data.n_items();
    let mut counts: Vec<HashMap<u32, u32>> = vec![HashMap::new(); n];
    for seq in &data.train {
        for pair in seq.windows(2) {
            *counts[pair[0] as usize].entry(pair[1]).or_default() += 1;
        }
    }
    let next = counts
        .into_iter()
        .map(|c| {
            let total: u32 = c.values().sum();
            let mut row: Vec<(u32, f32)> = c
                .into_iter()
                .map(|(j, k)| (j, k as f32 / total as f32))
                .collect();
            row.sort_unstable_by_key(|&(j, _)| j);
            row
        })
        .collect();
    let item_counts = data.item_counts();
    let total = item_counts.iter().map(|&c| c as f32).sum::<f32>().max(1.0);
    let pop = item_counts.iter().map(|&c| c as f32 / total).collect();
    Fit { next, pop }
}

impl Recommender for Markov {
    fn kind(&self) -> ModelKind {
        ModelKind::Sequential
    }

    fn prepare(&mut self, data: &SplitData, _seed: u64) -> Result<(), PluginError> {
        if data.train.iter().all(|s| s.is_empty()) {
            return Err(PluginError::Data("markov: no training interactions".into()));
        }
        self.fit = Some(fit(data));
        Ok(())
    }

    fn score(
        &self,
        data: &SplitData,
        phase: Phase,
        users: &[u32],
    ) -> Result<Vec<f32>, PluginError> {
        let fit = self
            .fit
            .as_ref()
            .ok_or_else(|| PluginError::Other("markov: score called before prepare".into()))?;
        let n = fit.pop.len();
        let backoff = self.cfg.backoff as f32;
        let mut out = Vec::with_capacity(users.len() * n);
        for &u in users {
            let start = out.len();
            out.extend(fit.pop.iter().map(|p| backoff * p));
            let row = &mut out[start..];
            let history = data.history(u, phase);
            let mut weight = 1.0f32;
            for &item in history.iter().rev().take(self.cfg.window) {
                for &(j, p) in &fit.next[item as usize] {
                    row[j as usize] += weight * p;
                }
                weight *= self.cfg.decay as f32;
            }
        }
        Ok(out)
    }
}

/// Builds an unfitted model (no losses involved).
pub fn build(
    cfg: MarkovConfig,
    _losses: &dyn LossBuilder,
) -> Result<Box<dyn Recommender>, Vec<ConfigError>> {
    Ok(Box::new(Markov::new(cfg)))
}

/// Adds the model to `r`; the same function serves a build of pulse that compiles it in.
pub fn register(r: &mut Registrar) {
    r.recommender::<MarkovConfig>(build);
}

pulse_api::export_plugin!(register);

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_api::plugin::{decode_section, Factory};
    use pulse_api::serde_json::json;

    fn data(train: Vec<Vec<u32>>, valid: Vec<Vec<u32>>, n_items: usize) -> SplitData {
        SplitData {
            user_ids: (0..train.len()).map(|u| u.to_string()).collect(),
            item_ids: (0..n_items).map(|i| i.to_string()).collect(),
            test: vec![Vec::new(); train.len()],
            valid,
            train,
            ..SplitData::default()
        }
    }

    #[track_caller]
    fn check(cfg: MarkovConfig, d: &SplitData, phase: Phase, user: u32, expected: &[f32]) {
        let mut m = Markov::new(cfg);
        m.prepare(d, 0).unwrap();
        let got = m.score(d, phase, &[user]).unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "got {got:?}, expected {expected:?}");
        }
    }

    #[test]
    fn scores_follow_the_last_items_then_popularity() {
        // Transitions: 0→1 twice, 0→2 once, 1→2 once, 2→0 once. 8 interactions:
        // counts 0:3 1:2 2:3 → pop 3/8, 2/8, 3/8 (item 3 never seen).
        let d = data(
            vec![vec![0, 1, 2], vec![0, 1], vec![2, 0, 2]],
            vec![vec![3], vec![0], vec![1]],
            4,
        );
        let only_last = MarkovConfig {
            window: 1,
            decay: 0.5,
            backoff: 0.0,
        };
        // User 1's history ends with 1: P(2 | 1) = 1.
        check(
            only_last.clone(),
            &d,
            Phase::Valid,
            1,
            &[0.0, 0.0, 1.0, 0.0],
        );
        // For test the valid item 0 is the last: P(1 | 0) = 2/3, P(2 | 0) = 1/3.
        check(
            only_last,
            &d,
            Phase::Test,
            1,
            &[0.0, 2.0 / 3.0, 1.0 / 3.0, 0.0],
        );
        // window 2, decay 0.5 over user 0's [.., 1, 2]: 1·P(·|2) + 0.5·P(·|1) + 0.1·pop
        let cfg = MarkovConfig {
            window: 2,
            decay: 0.5,
            backoff: 0.1,
        };
        check(
            cfg,
            &d,
            Phase::Valid,
            0,
            &[
                1.0 + 0.1 * 3.0 / 8.0,
                0.1 * 2.0 / 8.0,
                0.5 + 0.1 * 3.0 / 8.0,
                0.0,
            ],
        );
    }

    #[test]
    fn empty_training_and_unprepared_scoring_are_errors() {
        let mut m = Markov::new(MarkovConfig::default());
        let empty = data(vec![vec![]], vec![vec![]], 2);
        assert!(m.score(&empty, Phase::Valid, &[0]).is_err());
        assert!(m
            .prepare(&empty, 0)
            .unwrap_err()
            .to_string()
            .contains("no training"));
    }

    #[test]
    fn registers_one_sequential_model_and_checks_its_config() {
        let mut r = Registrar::new("test");
        register(&mut r);
        let entries = r.into_entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].info.type_name, MarkovConfig::TYPE);
        assert!(matches!(entries[0].factory, Factory::Recommender(_)));
        let errs =
            (entries[0].check)(&json!({"type": MarkovConfig::TYPE, "window": 0, "decay": 2.0}))
                .unwrap_err();
        let keys: Vec<String> = errs.iter().map(|e| e.dotted()).collect();
        assert_eq!(keys, vec!["window", "decay"]);
    }

    /// `pulse example recommender markov` prints EXAMPLE: it must decode to the defaults.
    #[test]
    fn example_decodes_to_the_defaults() {
        let section =
            json!({"type": MarkovConfig::TYPE, "window": 3, "decay": 0.5, "backoff": 0.1});
        assert_eq!(
            decode_section::<MarkovConfig>(&section).unwrap(),
            MarkovConfig::default()
        );
        for line in MarkovConfig::EXAMPLE
            .lines()
            .filter(|l| !l.starts_with('#'))
        {
            let key = line.split(" = ").next().unwrap();
            assert!(section.get(key).is_some(), "EXAMPLE key {key} not checked");
        }
    }
}
