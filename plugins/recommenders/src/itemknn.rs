//! `itemknn`: item-based collaborative filtering (Deshpande & Karypis 2004) as RecBole 1.2.1's
//! `ItemKNN` computes it. Two items are similar when the same users interacted with both:
//! `sim(i, j) = |U(i) ∩ U(j)| / (√|U(i)| · √|U(j)| + shrink + 1e-6)` over the binary training
//! user × item matrix (cosine with shrinkage; RecBole's 1e-6 keeps the denominator positive).
//! Each candidate item keeps its `k` most similar items as neighbours, and a user's score for a
//! candidate is the sum of its similarities to those neighbours that are in the user's history.
//! Fitted outright in `prepare`, no training epochs.
//!
//! Fitting is sparse: for each item, walk its users' histories and count co-occurrences in a
//! dense row (`Σ_u |history(u)|²` increments in all, instead of `n_items² · n_users`), pick the
//! top `k`, and store the result transposed (history item → the candidates it scores), so that
//! scoring a user is one sparse row accumulation per history item. Items are split over
//! candle's worker threads for fitting and users for scoring.

use crate::common::{self, not_prepared};
use pulse_api::config::check_range;
use pulse_api::{
    ConfigError, LossBuilder, ModelKind, Phase, PluginConfig, PluginError, Recommender, SplitData,
};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// Configuration of `itemknn`; the defaults are RecBole 1.2.1's (`k: 100`, `shrink: 0.0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ItemKnnConfig {
    /// Neighbours kept per item (the most similar ones).
    pub k: usize,
    /// Added to the cosine denominator; damps similarities resting on few common users.
    pub shrink: f64,
}

impl Default for ItemKnnConfig {
    fn default() -> Self {
        Self {
            k: 100,
            shrink: 0.0,
        }
    }
}

impl PluginConfig for ItemKnnConfig {
    const TYPE: &'static str = "itemknn";
    const SUMMARY: &'static str =
        "item-item cosine similarity with shrinkage over the training matrix, top-k neighbours";
    const EXAMPLE: &'static str = r#"# Neighbours kept per item (the most similar ones).
k = 100
# Added to the cosine denominator |U(i)|^½·|U(j)|^½; damps similarities resting on few
# common users (0 = plain cosine, RecBole's default).
shrink = 0.0
"#;

    fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        check_range(&mut errors, "k", self.k, 1, 1 << 24);
        if !(self.shrink.is_finite() && self.shrink >= 0.0) {
            errors.push(ConfigError::out_of_range(
                "shrink",
                "a finite value >= 0",
                self.shrink,
            ));
        }
        errors
    }
}

/// Builds an unfitted `itemknn` (no losses involved).
pub fn build(
    cfg: ItemKnnConfig,
    _losses: &dyn LossBuilder,
) -> Result<Box<dyn Recommender>, Vec<ConfigError>> {
    Ok(Box::new(ItemKnn { cfg, fitted: None }))
}

/// An `itemknn` model.
pub struct ItemKnn {
    cfg: ItemKnnConfig,
    fitted: Option<Contributions>,
}

/// The neighbour lists transposed, in compressed rows: row `j` lists every candidate `i` that
/// has `j` among its neighbours, with `sim(i, j)` — what history item `j` adds to `i`'s score.
#[derive(Debug, Clone, PartialEq)]
struct Contributions {
    n_items: usize,
    offsets: Vec<usize>,
    candidates: Vec<u32>,
    weights: Vec<f32>,
}

impl Contributions {
    fn from_neighbours(neighbours: &[Vec<(u32, f32)>]) -> Self {
        let n_items = neighbours.len();
        let mut offsets = vec![0usize; n_items + 1];
        for list in neighbours {
            for &(j, _) in list {
                offsets[j as usize + 1] += 1;
            }
        }
        for j in 0..n_items {
            offsets[j + 1] += offsets[j];
        }
        let total = offsets[n_items];
        let mut candidates = vec![0u32; total];
        let mut weights = vec![0f32; total];
        let mut next = offsets.clone();
        for (i, list) in neighbours.iter().enumerate() {
            for &(j, w) in list {
                let slot = &mut next[j as usize];
                candidates[*slot] = i as u32;
                weights[*slot] = w;
                *slot += 1;
            }
        }
        Self {
            n_items,
            offsets,
            candidates,
            weights,
        }
    }

    /// Adds the contributions of each (distinct) history item to `row`.
    fn accumulate(&self, history: &[u32], row: &mut [f32]) {
        for &j in history {
            let j = j as usize;
            if j >= self.n_items {
                continue;
            }
            let (a, b) = (self.offsets[j], self.offsets[j + 1]);
            for (&i, &w) in self.candidates[a..b].iter().zip(&self.weights[a..b]) {
                row[i as usize] += w;
            }
        }
    }
}

/// Distinct items per user, sorted (the binary interaction matrix by rows).
fn user_rows(train: &[Vec<u32>], n_items: usize) -> Result<Vec<Vec<u32>>, PluginError> {
    train
        .iter()
        .map(|items| {
            let mut row = items.clone();
            row.sort_unstable();
            row.dedup();
            match row.last() {
                Some(&i) if i as usize >= n_items => Err(PluginError::Data(format!(
                    "itemknn: item id {i} outside the catalogue of {n_items} items"
                ))),
                _ => Ok(row),
            }
        })
        .collect()
}

/// Highest similarity first; the lower item id wins a tie, so results are reproducible.
fn by_similarity(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// The `k` most similar items of every item (positive similarities only), best first.
fn neighbours(rows: &[Vec<u32>], n_items: usize, k: usize, shrink: f64) -> Vec<Vec<(u32, f32)>> {
    // The matrix by columns: the users of each item.
    let mut offsets = vec![0usize; n_items + 1];
    for row in rows {
        for &i in row {
            offsets[i as usize + 1] += 1;
        }
    }
    for i in 0..n_items {
        offsets[i + 1] += offsets[i];
    }
    let mut users = vec![0u32; offsets[n_items]];
    let mut next = offsets.clone();
    for (u, row) in rows.iter().enumerate() {
        for &i in row {
            users[next[i as usize]] = u as u32;
            next[i as usize] += 1;
        }
    }
    let norms: Vec<f64> = (0..n_items)
        .map(|i| ((offsets[i + 1] - offsets[i]) as f64).sqrt())
        .collect();

    let mut out: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n_items];
    common::par_rows(&mut out, 1, 16, |first, block| {
        let mut counts = vec![0u32; n_items];
        let mut touched: Vec<u32> = Vec::new();
        for (a, slot) in (first..).zip(block.iter_mut()) {
            for &u in &users[offsets[a]..offsets[a + 1]] {
                for &b in &rows[u as usize] {
                    let c = &mut counts[b as usize];
                    if *c == 0 {
                        touched.push(b);
                    }
                    *c += 1;
                }
            }
            let mut list: Vec<(u32, f32)> = touched
                .iter()
                .filter(|&&b| b as usize != a)
                .map(|&b| {
                    let dot = f64::from(counts[b as usize]);
                    let sim = dot / (norms[a] * norms[b as usize] + shrink + 1e-6);
                    (b, sim as f32)
                })
                .filter(|&(_, s)| s > 0.0)
                .collect();
            for &b in &touched {
                counts[b as usize] = 0;
            }
            touched.clear();
            if list.len() > k {
                list.select_nth_unstable_by(k - 1, by_similarity);
                list.truncate(k);
            }
            list.sort_unstable_by(by_similarity);
            *slot = list;
        }
    });
    out
}

/// Users scored per thread at least (below that one thread is faster).
const MIN_USERS_PER_THREAD: usize = 32;

impl Recommender for ItemKnn {
    fn kind(&self) -> ModelKind {
        ModelKind::General
    }

    fn prepare(&mut self, data: &SplitData, _seed: u64) -> Result<(), PluginError> {
        let n_items = data.n_items();
        if u32::try_from(n_items).is_err() {
            return Err(PluginError::Data(format!(
                "itemknn: {n_items} items exceed the u32 id range"
            )));
        }
        let rows = user_rows(&data.train, n_items)?;
        let nb = neighbours(&rows, n_items, self.cfg.k, self.cfg.shrink);
        let fitted = Contributions::from_neighbours(&nb);
        tracing::debug!(
            items = n_items,
            pairs = fitted.candidates.len(),
            "itemknn neighbours"
        );
        self.fitted = Some(fitted);
        Ok(())
    }

    fn score(
        &self,
        data: &SplitData,
        phase: Phase,
        users: &[u32],
    ) -> Result<Vec<f32>, PluginError> {
        let fitted = self
            .fitted
            .as_ref()
            .ok_or_else(|| not_prepared(ItemKnnConfig::TYPE))?;
        let n = fitted.n_items;
        if data.n_items() != n {
            return Err(PluginError::Data(format!(
                "itemknn was fitted on {n} items, the data has {}",
                data.n_items()
            )));
        }
        if let Some(&u) = users.iter().find(|&&u| u as usize >= data.n_users()) {
            return Err(PluginError::Data(format!("itemknn: unknown user {u}")));
        }
        let mut out = vec![0f32; users.len() * n];
        common::par_rows(&mut out, n, MIN_USERS_PER_THREAD, |first, block| {
            for (&u, row) in users[first..].iter().zip(block.chunks_mut(n)) {
                let mut history = data.history(u, phase);
                history.sort_unstable();
                history.dedup();
                fitted.accumulate(&history, row);
            }
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, TestLosses};

    fn data(train: Vec<Vec<u32>>, n_items: usize) -> SplitData {
        let n = train.len();
        SplitData {
            user_ids: (0..n).map(|u| u.to_string()).collect(),
            item_ids: (0..n_items).map(|i| i.to_string()).collect(),
            valid: vec![Vec::new(); n],
            test: vec![Vec::new(); n],
            train,
            ..SplitData::default()
        }
    }

    /// Neighbour lists (rounded to 4 decimals) and the scores of every user.
    #[track_caller]
    fn check(
        train: Vec<Vec<u32>>,
        n_items: usize,
        cfg: ItemKnnConfig,
        expected_neighbours: &[&[(u32, f32)]],
        expected_scores: &[&[f32]],
    ) {
        let rows = user_rows(&train, n_items).unwrap();
        let nb = neighbours(&rows, n_items, cfg.k, cfg.shrink);
        let rounded: Vec<Vec<(u32, f32)>> = nb
            .iter()
            .map(|l| {
                l.iter()
                    .map(|&(j, s)| (j, (s * 1e4).round() / 1e4))
                    .collect()
            })
            .collect();
        assert_eq!(rounded, expected_neighbours);
        let d = data(train, n_items);
        let mut m = build(cfg, &TestLosses).unwrap();
        assert!(m.training().is_none());
        m.prepare(&d, 0).unwrap();
        let scores = testing::all_scores(m.as_ref(), &d);
        for (u, (got, want)) in scores.chunks(n_items).zip(expected_scores).enumerate() {
            for (g, w) in got.iter().zip(*want) {
                assert!((g - w).abs() < 1e-4, "user {u}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn cosine_with_shrinkage_and_top_k() {
        // Users of items: 0 {0, 1}, 1 {0, 1}, 2 {1, 2}; every norm is √2.
        let train = || vec![vec![0, 1], vec![1, 2, 0], vec![2, 2]];
        check(
            train(),
            4,
            ItemKnnConfig::default(),
            &[
                &[(1, 1.0), (2, 0.5)],
                &[(0, 1.0), (2, 0.5)],
                &[(0, 0.5), (1, 0.5)],
                &[],
            ],
            &[
                &[1.0, 1.0, 1.0, 0.0],
                &[1.5, 1.5, 1.0, 0.0],
                &[0.5, 0.5, 0.0, 0.0],
            ],
        );
        // k = 1 keeps the best neighbour (lower id on a tie); shrink 2 halves sim(0, 1).
        check(
            train(),
            4,
            ItemKnnConfig { k: 1, shrink: 2.0 },
            &[&[(1, 0.5)], &[(0, 0.5)], &[(0, 0.25)], &[]],
            &[
                &[0.5, 0.5, 0.25, 0.0],
                &[0.5, 0.5, 0.25, 0.0],
                &[0.0, 0.0, 0.0, 0.0],
            ],
        );
    }

    /// Every pair's similarity the slow way, to check the sparse fit against.
    fn dense_neighbours(rows: &[Vec<u32>], n: usize, k: usize, shrink: f64) -> Vec<Vec<u32>> {
        let has = |u: usize, i: usize| rows[u].contains(&(i as u32));
        let count = |i: usize| (0..rows.len()).filter(|&u| has(u, i)).count() as f64;
        (0..n)
            .map(|a| {
                let mut l: Vec<(u32, f32)> = (0..n)
                    .filter(|&b| b != a)
                    .map(|b| {
                        let dot = (0..rows.len()).filter(|&u| has(u, a) && has(u, b)).count();
                        let den = count(a).sqrt() * count(b).sqrt() + shrink + 1e-6;
                        (b as u32, (dot as f64 / den) as f32)
                    })
                    .filter(|&(_, s)| s > 0.0)
                    .collect();
                l.sort_by(by_similarity);
                l.into_iter().take(k).map(|(j, _)| j).collect()
            })
            .collect()
    }

    #[test]
    fn sparse_fit_matches_the_dense_definition() {
        let d = testing::clustered_data(5);
        let rows = user_rows(&d.train, d.n_items()).unwrap();
        for (k, shrink) in [(5, 0.0), (20, 10.0), (1000, 1.0)] {
            let got: Vec<Vec<u32>> = neighbours(&rows, d.n_items(), k, shrink)
                .into_iter()
                .map(|l| l.into_iter().map(|(j, _)| j).collect())
                .collect();
            assert_eq!(
                got,
                dense_neighbours(&rows, d.n_items(), k, shrink),
                "k {k}"
            );
        }
    }

    #[test]
    fn learns_clusters_better_than_pop() {
        let d = testing::clustered_data(7);
        let base = testing::hit_rate(testing::fitted_pop(&d).as_ref(), &d, true);
        let mut m = build(ItemKnnConfig::default(), &TestLosses).unwrap();
        assert_eq!(m.kind(), ModelKind::General);
        m.prepare(&d, 0).unwrap();
        let hr = testing::hit_rate(m.as_ref(), &d, true);
        assert!(hr > base + 0.15, "itemknn HR@10 {hr:.3} vs pop {base:.3}");
    }

    #[test]
    fn test_phase_reads_the_validation_item_too() {
        let mut d = data(vec![vec![0], vec![1, 2]], 3);
        d.valid = vec![vec![1], vec![0]];
        let mut m = build(ItemKnnConfig::default(), &TestLosses).unwrap();
        m.prepare(&d, 0).unwrap();
        let valid = m.score(&d, Phase::Valid, &[0]).unwrap();
        let test = m.score(&d, Phase::Test, &[0]).unwrap();
        assert_eq!(valid, [0.0, 0.0, 0.0], "item 0 has no co-occurring item");
        assert!(test[2] > 0.5, "item 1 brings its neighbour 2: {test:?}");
        assert!(m.score(&d, Phase::Test, &[5]).is_err());
        let unfitted = build(ItemKnnConfig::default(), &TestLosses).unwrap();
        assert!(unfitted.score(&d, Phase::Test, &[0]).is_err());
    }

    #[test]
    fn config_checks() {
        testing::check_example::<ItemKnnConfig>();
        testing::check_invalid::<ItemKnnConfig>(r#"{"k": 0, "shrink": -1.0}"#, &["k", "shrink"]);
        testing::check_invalid::<ItemKnnConfig>(r#"{"neighbours": 8}"#, &["neighbours"]);
        assert_eq!(
            ItemKnnConfig::default(),
            ItemKnnConfig {
                k: 100,
                shrink: 0.0
            }
        );
    }
}
