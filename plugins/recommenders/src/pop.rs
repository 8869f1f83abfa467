//! `pop`: ranks items by how often they occur in the training data, the same ranking for every
//! user. True popularity (an interaction count), unlike RecBole 1.2.1's `Pop`, which counts
//! batches and sampled negatives (see the RecBole protocol notes).

use crate::common::not_prepared;
use pulse_api::{
    ConfigError, LossBuilder, ModelKind, Phase, PluginConfig, PluginError, Recommender, SplitData,
};
use serde::{Deserialize, Serialize};

/// Configuration of `pop`; it has no settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PopConfig {}

impl PluginConfig for PopConfig {
    const TYPE: &'static str = "pop";
    const SUMMARY: &'static str =
        "item popularity: training interaction counts, same for every user";
    const EXAMPLE: &'static str = "\
# pop has no settings: every user gets the items ranked by their number of
# training interactions.
";
}

/// Builds a `pop` model (no losses involved).
pub fn build(
    _cfg: PopConfig,
    _losses: &dyn LossBuilder,
) -> Result<Box<dyn Recommender>, Vec<ConfigError>> {
    Ok(Box::new(Pop::default()))
}

/// The fitted popularity model.
#[derive(Debug, Default)]
pub struct Pop {
    /// Training count per item; `None` until `prepare`.
    counts: Option<Vec<f32>>,
}

impl Recommender for Pop {
    fn kind(&self) -> ModelKind {
        ModelKind::General
    }

    fn prepare(&mut self, data: &SplitData, _seed: u64) -> Result<(), PluginError> {
        self.counts = Some(data.item_counts().into_iter().map(|c| c as f32).collect());
        Ok(())
    }

    fn score(
        &self,
        _data: &SplitData,
        _phase: Phase,
        users: &[u32],
    ) -> Result<Vec<f32>, PluginError> {
        let counts = self
            .counts
            .as_ref()
            .ok_or_else(|| not_prepared(PopConfig::TYPE))?;
        let mut out = Vec::with_capacity(users.len() * counts.len());
        for _ in users {
            out.extend_from_slice(counts);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestLosses;

    #[track_caller]
    fn check(train: Vec<Vec<u32>>, n_items: usize, expected: &[f32]) {
        let data = SplitData {
            user_ids: (0..train.len()).map(|u| u.to_string()).collect(),
            item_ids: (0..n_items).map(|i| i.to_string()).collect(),
            valid: vec![Vec::new(); train.len()],
            test: vec![Vec::new(); train.len()],
            train,
            ..SplitData::default()
        };
        let mut m = build(PopConfig::default(), &TestLosses).unwrap();
        assert_eq!(m.kind(), ModelKind::General);
        assert!(m.training().is_none());
        m.prepare(&data, 1).unwrap();
        let users: Vec<u32> = (0..data.n_users() as u32).collect();
        let scores = m.score(&data, Phase::Valid, &users).unwrap();
        for row in scores.chunks(n_items) {
            assert_eq!(row, expected);
        }
    }

    #[test]
    fn scores_are_training_counts_for_every_user() {
        check(
            vec![vec![0, 1], vec![1, 2], vec![1]],
            4,
            &[1.0, 3.0, 1.0, 0.0],
        );
        check(vec![vec![2]], 3, &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn score_before_prepare_is_an_error() {
        let m = Pop::default();
        assert!(m.score(&SplitData::default(), Phase::Test, &[0]).is_err());
    }
}
