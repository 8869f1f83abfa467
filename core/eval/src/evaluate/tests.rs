//! Driver tests on hand-computed cases, with a test-only model that returns a fixed score
//! table (one row per user, the same for both phases).

use super::*;
use pulse_api::sections::NegativeSampling;
use pulse_api::{ModelKind, PluginError};
use rand::{Rng as _, SeedableRng};
use std::sync::Mutex;

struct FixedScores {
    rows: Vec<Vec<f32>>,
    /// Sizes of the batches the evaluator asked for.
    batches: Mutex<Vec<usize>>,
    /// Drop this many scores from every answer (to test the shape check).
    short_by: usize,
}

impl FixedScores {
    fn new(rows: Vec<Vec<f32>>) -> Self {
        Self {
            rows,
            batches: Mutex::new(Vec::new()),
            short_by: 0,
        }
    }
}

impl Recommender for FixedScores {
    fn kind(&self) -> ModelKind {
        ModelKind::General
    }

    fn prepare(&mut self, _: &SplitData, _: u64) -> Result<(), PluginError> {
        Ok(())
    }

    fn score(&self, _: &SplitData, _: Phase, users: &[u32]) -> Result<Vec<f32>, PluginError> {
        self.batches.lock().unwrap().push(users.len());
        let mut out: Vec<f32> = users
            .iter()
            .flat_map(|&u| self.rows[u as usize].iter().copied())
            .collect();
        out.truncate(out.len() - self.short_by);
        Ok(out)
    }
}

/// Per user: (train, valid, test).
fn split(n_items: usize, users: &[(&[u32], &[u32], &[u32])]) -> SplitData {
    SplitData {
        dataset: "hand".into(),
        user_ids: (0..users.len()).map(|u| format!("u{u}")).collect(),
        item_ids: (0..n_items).map(|i| format!("i{i}")).collect(),
        train: users.iter().map(|u| u.0.to_vec()).collect(),
        valid: users.iter().map(|u| u.1.to_vec()).collect(),
        test: users.iter().map(|u| u.2.to_vec()).collect(),
        ..SplitData::default()
    }
}

/// Three users over six items:
/// u0 train {0, 1}, valid {2}, test {3}; u1 train {4}, test {5}; u2 train {0}, valid {1, 3}.
fn hand_data() -> (SplitData, FixedScores) {
    let data = split(
        6,
        &[
            (&[0, 1], &[2], &[3]),
            (&[4], &[], &[5]),
            (&[0], &[1, 3], &[]),
        ],
    );
    let model = FixedScores::new(vec![
        vec![0.9, 0.8, 0.5, 0.7, 0.5, 0.1],
        vec![0.1, 0.2, 0.3, 0.4, 0.9, 0.4],
        vec![0.95, 0.6, 0.3, 0.6, 0.2, 0.7],
    ]);
    (data, model)
}

fn config(metrics: &[&str]) -> EvalConfig {
    EvalConfig {
        metrics: metrics.iter().map(|m| m.to_string()).collect(),
        ..EvalConfig::default()
    }
}

/// `expected`: per metric, the per-user values (their mean is checked too).
#[track_caller]
fn check(result: &EvalResult, users: &[u32], expected: &[(&str, &[f64])]) {
    assert_eq!(result.users, users);
    assert_eq!(
        result.metrics.keys().collect::<Vec<_>>(),
        {
            let mut keys: Vec<&str> = expected.iter().map(|e| e.0).collect();
            keys.sort_unstable();
            keys
        },
        "metric keys"
    );
    for (metric, values) in expected {
        let got = &result.per_user[*metric];
        assert_eq!(got.len(), values.len(), "{metric}");
        for (g, w) in got.iter().zip(*values) {
            assert!(
                (g - w).abs() < 1e-12,
                "{metric}: got {got:?}, want {values:?}"
            );
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let got_mean = result.metrics[*metric];
        assert!(
            (got_mean - mean).abs() < 1e-12,
            "{metric} mean {got_mean} != {mean}"
        );
    }
}

const THIRD: f64 = 1.0 / 3.0;

#[test]
fn full_protocol_valid_with_masking() {
    let (data, model) = hand_data();
    let cfg = config(&["hr@1", "hr@3", "ndcg@3", "mrr@3", "recall@3", "precision@3"]);
    let r = evaluate(&model, &data, Phase::Valid, &cfg, Mask::Known, 0).unwrap();
    // u1 has no valid item → not evaluated.
    // u0: target 2 (0.5), items 0, 1 masked; competitors 3 (0.7, higher) and 4 (0.5, tie) → 3.
    //     ndcg@3 = 1/log2(4) = 0.5
    // u2: targets 1 and 3 (0.6 each), item 0 masked; each has 5 (0.7) and the other target
    //     (tie) above → ranks 3, 3. DCG = 2 · 1/log2(4) = 1; IDCG = 1 + 1/log2(3)
    //     = 1.6309297535714575 → ndcg 0.6131471927654584; precision 2/3
    check(
        &r,
        &[0, 2],
        &[
            ("hr@1", &[0.0, 0.0]),
            ("hr@3", &[1.0, 1.0]),
            ("ndcg@3", &[0.5, 0.613_147_192_765_458_4]),
            ("mrr@3", &[THIRD, THIRD]),
            ("recall@3", &[1.0, 1.0]),
            ("precision@3", &[THIRD, 2.0 * THIRD]),
        ],
    );
}

#[test]
fn full_protocol_test_masks_train_and_valid() {
    let (data, model) = hand_data();
    let cfg = config(&["hr@1", "hr@3", "ndcg@3", "mrr@3", "precision@3"]);
    let r = evaluate(&model, &data, Phase::Test, &cfg, Mask::Known, 0).unwrap();
    // u0: target 3 (0.7), items 0, 1 (train) and 2 (valid) masked; 4 and 5 score lower → 1.
    // u1: target 5 (0.4), item 4 masked; item 3 ties at 0.4 → 2; ndcg = 1/log2(3).
    // u2 has no test item.
    check(
        &r,
        &[0, 1],
        &[
            ("hr@1", &[1.0, 0.0]),
            ("hr@3", &[1.0, 1.0]),
            ("ndcg@3", &[1.0, 0.630_929_753_571_457_5]),
            ("mrr@3", &[1.0, 0.5]),
            ("precision@3", &[THIRD, THIRD]),
        ],
    );
}

#[test]
fn full_protocol_without_masking() {
    let (data, model) = hand_data();
    let cfg = config(&["hr@3", "ndcg@5", "mrr@5", "recall@5", "precision@5"]);
    let r = evaluate(&model, &data, Phase::Valid, &cfg, Mask::None, 0).unwrap();
    // u0: target 2 (0.5) behind 0, 1, 3 and tied 4 → 5; ndcg = 1/log2(6) = 0.38685280723454163
    // u2: targets 1, 3 (0.6) behind 0 (0.95), 5 (0.7) and each other → 4, 4;
    //     DCG = 2/log2(5) = 0.8613531161467861, / IDCG 1.6309297535714575 = 0.5281362451451818
    check(
        &r,
        &[0, 2],
        &[
            ("hr@3", &[0.0, 0.0]),
            (
                "ndcg@5",
                &[0.386_852_807_234_541_63, 0.528_136_245_145_181_8],
            ),
            ("mrr@5", &[0.2, 0.25]),
            ("recall@5", &[1.0, 1.0]),
            ("precision@5", &[0.2, 0.4]),
        ],
    );
}

#[test]
fn known_targets_are_not_masked() {
    // Repeat consumption: item 2 is in training and is the valid item again.
    let data = split(4, &[(&[2, 0, 2], &[2], &[])]);
    let model = FixedScores::new(vec![vec![0.9, 0.5, 0.8, 0.1]]);
    let cfg = config(&["mrr@10"]);
    // Known: only item 0 is masked; target 2 (0.8) is then first.
    let r = evaluate(&model, &data, Phase::Valid, &cfg, Mask::Known, 0).unwrap();
    check(&r, &[0], &[("mrr@10", &[1.0])]);
    // None: item 0 (0.9) stays ahead → rank 2.
    let r = evaluate(&model, &data, Phase::Valid, &cfg, Mask::None, 0).unwrap();
    check(&r, &[0], &[("mrr@10", &[0.5])]);
}

#[test]
fn constant_scores_rank_targets_last() {
    let data = split(5, &[(&[0], &[3], &[])]);
    let model = FixedScores::new(vec![vec![1.0; 5]]);
    // 4 candidates after masking item 0, all tied → the target is rank 4, never 1.
    let r = evaluate(
        &model,
        &data,
        Phase::Valid,
        &config(&["mrr@10", "hr@3"]),
        Mask::Known,
        0,
    )
    .unwrap();
    check(&r, &[0], &[("mrr@10", &[0.25]), ("hr@3", &[0.0])]);
}

#[test]
fn sampled_with_every_candidate_equals_full() {
    // Valid with masking: u0 and u2 each have exactly 3 items that are neither targets nor
    // known (u0: 3, 4, 5; u2: 2, 4, 5), so 3 negatives are all of them and the sampled ranking
    // is the full one.
    let (data, model) = hand_data();
    let metrics = ["hr@1", "hr@3", "ndcg@3", "mrr@3", "precision@3"];
    let full = evaluate(
        &model,
        &data,
        Phase::Valid,
        &config(&metrics),
        Mask::Known,
        0,
    )
    .unwrap();
    let mut cfg = config(&metrics);
    cfg.protocol = Protocol::Sampled;
    cfg.negatives = 3;
    for sampling in [NegativeSampling::Uniform, NegativeSampling::Popularity] {
        cfg.sampling = sampling;
        // Popularity: only items 0, 1 (u0's known items) and 4 have training counts, so u0
        // has a single drawable negative and the draw must fail instead of padding.
        let r = evaluate(&model, &data, Phase::Valid, &cfg, Mask::Known, 3);
        match sampling {
            NegativeSampling::Uniform => assert_eq!(r.unwrap(), full),
            NegativeSampling::Popularity => {
                let e = r.unwrap_err();
                assert!(
                    matches!(
                        e,
                        EvalError::TooFewNegatives {
                            available: 1,
                            wanted: 3,
                            ..
                        }
                    ),
                    "{e}"
                );
            }
        }
    }
    cfg.sampling = NegativeSampling::Uniform;
    cfg.negatives = 4;
    let e = evaluate(&model, &data, Phase::Valid, &cfg, Mask::Known, 3).unwrap_err();
    assert_eq!(
        e.to_string(),
        "user 'u0': only 3 items can serve as sampled negatives, but `negatives` is 4; \
         lower `negatives` or use protocol = \"full\""
    );
}

/// 40 users over 30 items. Known items score 10, the target 5, everything else 0..1: a target
/// can only lose to a known item, so any known item drawn as a negative shows up as a miss.
fn exclusion_case() -> (SplitData, FixedScores) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut users = Vec::new();
    let mut rows = Vec::new();
    for u in 0..40u32 {
        let known: Vec<u32> = (0..6).map(|j| (u + j * 4) % 30).collect();
        let target = (u + 25) % 30;
        let mut row: Vec<f32> = (0..30).map(|_| rng.random::<f32>()).collect();
        for &k in &known {
            row[k as usize] = 10.0;
        }
        row[target as usize] = 5.0;
        users.push((known, vec![target]));
        rows.push(row);
    }
    let lists: Vec<(&[u32], &[u32], &[u32])> = users
        .iter()
        .map(|(k, t)| (k.as_slice(), t.as_slice(), &[][..]))
        .collect();
    (split(30, &lists), FixedScores::new(rows))
}

#[test]
fn sampled_negatives_exclude_known_items_and_are_deterministic() {
    let (data, model) = exclusion_case();
    let mut cfg = config(&["hr@1", "ndcg@10"]);
    cfg.protocol = Protocol::Sampled;
    cfg.negatives = 10;
    for sampling in [NegativeSampling::Uniform, NegativeSampling::Popularity] {
        cfg.sampling = sampling;
        let masked = evaluate(&model, &data, Phase::Valid, &cfg, Mask::Known, 11).unwrap();
        assert_eq!(
            masked.metrics["hr@1"], 1.0,
            "{sampling:?}: a known item was drawn"
        );
        let again = evaluate(&model, &data, Phase::Valid, &cfg, Mask::Known, 11).unwrap();
        assert_eq!(masked, again, "same seed must give the same result");
        // Without masking, known items are fair negatives: with 6 of 29 items known and 10
        // draws, almost every user meets one.
        let open = evaluate(&model, &data, Phase::Valid, &cfg, Mask::None, 11).unwrap();
        assert!(
            open.metrics["hr@1"] < 0.5,
            "{sampling:?}: {:?}",
            open.metrics
        );
        let other = evaluate(&model, &data, Phase::Valid, &cfg, Mask::None, 12).unwrap();
        assert_ne!(open.per_user, other.per_user, "the seed must matter");
    }
}

#[test]
fn batching_and_threads_do_not_change_results() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let (n_users, n_items) = (150u32, 40usize);
    let mut lists = Vec::new();
    let mut rows = Vec::new();
    for u in 0..n_users {
        let train: Vec<u32> = (0..rng.random_range(0..10))
            .map(|_| rng.random_range(0..40))
            .collect();
        // every fifth user has no valid item; some have several
        let valid: Vec<u32> = if u % 5 == 0 {
            Vec::new()
        } else {
            (0..rng.random_range(1..4))
                .map(|_| rng.random_range(0..40))
                .collect()
        };
        lists.push((train, valid, vec![]));
        rows.push(
            (0..n_items)
                .map(|_| rng.random_range(0..8) as f32)
                .collect(),
        );
    }
    let refs: Vec<(&[u32], &[u32], &[u32])> = lists
        .iter()
        .map(|(a, b, c)| (a.as_slice(), b.as_slice(), c.as_slice()))
        .collect();
    let data = split(n_items, &refs);
    let model = FixedScores::new(rows);
    for protocol in [Protocol::Full, Protocol::Sampled] {
        let mut cfg = config(&["hr@5", "ndcg@10", "mrr@10", "recall@5", "precision@5"]);
        cfg.protocol = protocol;
        cfg.negatives = 20;
        cfg.batch_users = 120;
        let reference = evaluate(&model, &data, Phase::Valid, &cfg, Mask::Known, 5).unwrap();
        assert_eq!(reference.users.len(), 120);
        assert_eq!(*model.batches.lock().unwrap(), vec![120]);
        for batch in [1, 7, 64] {
            model.batches.lock().unwrap().clear();
            cfg.batch_users = batch;
            let r = evaluate(&model, &data, Phase::Valid, &cfg, Mask::Known, 5).unwrap();
            assert_eq!(r, reference, "batch_users = {batch}");
            let sizes = model.batches.lock().unwrap().clone();
            assert!(sizes.iter().all(|&s| s <= batch) && sizes.iter().sum::<usize>() == 120);
        }
        model.batches.lock().unwrap().clear();
    }
}

#[test]
fn errors_name_the_problem() {
    let (data, model) = hand_data();
    let cfg = config(&["hr@10"]);
    let err = |model: &FixedScores, data: &SplitData, cfg: &EvalConfig| {
        evaluate(model, data, Phase::Valid, cfg, Mask::Known, 0)
            .unwrap_err()
            .to_string()
    };

    let mut short = FixedScores::new(model.rows.clone());
    short.short_by = 1;
    assert_eq!(
        err(&short, &data, &cfg),
        "the model returned 11 scores for 2 users × 6 items (expected 12)"
    );

    let mut rows = model.rows.clone();
    rows[2][4] = f32::NAN;
    assert_eq!(
        err(&FixedScores::new(rows), &data, &cfg),
        "the model returned a NaN score for user 'u2', item 'i4'"
    );

    let mut no_valid = data.clone();
    no_valid.valid = vec![vec![]; 3];
    assert_eq!(
        err(&model, &no_valid, &cfg),
        "no user has valid items, so there is nothing to evaluate"
    );

    let mut bad_item = data.clone();
    bad_item.train[1].push(6);
    assert_eq!(
        err(&model, &bad_item, &cfg),
        "inconsistent split data: user 'u1' has train item id 6, but there are only 6 items"
    );

    assert!(err(&model, &data, &config(&["ndgc@10"])).contains("no metric to compute"));
}

/// Infinite scores are legal (a model may push items out with -inf); only NaN is rejected.
#[test]
fn infinite_scores_rank_normally() {
    let data = split(4, &[(&[], &[1], &[])]);
    let model = FixedScores::new(vec![vec![
        f32::NEG_INFINITY,
        f32::INFINITY,
        0.0,
        f32::INFINITY,
    ]]);
    let r = evaluate(
        &model,
        &data,
        Phase::Valid,
        &config(&["mrr@10"]),
        Mask::None,
        0,
    )
    .unwrap();
    // target 1 (+inf) ties with item 3 (+inf) → rank 2
    check(&r, &[0], &[("mrr@10", &[0.5])]);
}
