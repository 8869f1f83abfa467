//! Tests of `bert4rec`: cloze masking, bidirectional attention, learning on sequential data,
//! determinism and snapshots, configuration checks.

use super::*;
use crate::testing::{self, TestLosses};

fn small(loss: &str) -> Bert4RecConfig {
    Bert4RecConfig {
        hidden_size: 32,
        inner_size: 64,
        dropout: 0.1,
        max_len: 20,
        batch_size: 16,
        learning_rate: 0.005,
        loss: LossSpec::of(loss),
        ..Bert4RecConfig::default()
    }
}

#[track_caller]
fn check_mask(win: &[u32], ratio: f64, last_only: bool, seed: u64) {
    const MASK: u32 = 99;
    let (input, masked) = mask_window(
        win,
        MASK,
        ratio,
        last_only,
        &mut pulse_api::rng::derive(seed, "mask"),
    );
    assert_eq!(input.len(), win.len());
    assert!(!masked.is_empty(), "every window has a target");
    for (i, (&a, &b)) in input.iter().zip(win).enumerate() {
        match masked.iter().find(|(p, _)| *p == i) {
            Some(&(_, item)) => assert!(a == MASK && item == b, "position {i}"),
            None => assert_eq!(a, b, "position {i} is kept"),
        }
    }
    if last_only {
        assert_eq!(masked, [(win.len() - 1, win[win.len() - 1])]);
    }
}

#[test]
fn masking_replaces_items_by_the_mask_token() {
    let long: Vec<u32> = (0..2000).map(|i| i % 50).collect();
    check_mask(&long, 0.2, false, 1);
    check_mask(&long, 0.2, true, 1);
    check_mask(&[3, 4], 0.2, false, 2);
    check_mask(&[3, 4], 1.0, false, 2);
    // The share masked follows mask_ratio.
    let (_, masked) = mask_window(
        &long,
        99,
        0.2,
        false,
        &mut pulse_api::rng::derive(3, "mask"),
    );
    assert!((340..460).contains(&masked.len()), "{}", masked.len());
}

#[test]
fn attention_sees_both_directions_but_not_padding() {
    let cfg = small("ce");
    let m = Model::new(&cfg, 10, &mut pulse_api::rng::derive(1, "init")).unwrap();
    let dims = m.enc.dims;
    let l = dims.max_len as u32;
    let head = |seqs: &[Vec<u32>], row: u32| {
        let b = Batch::bidirectional(seqs, &dims).unwrap();
        m.forward(&b, vec![row * l + l - 2], None)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    // The second-to-last position changes when a later item does.
    let a = head(&[vec![1, 2, 3]], 0);
    assert_ne!(a, head(&[vec![1, 2, 7]], 0));
    // Rows are independent of each other's lengths (padding is masked).
    let c = head(&[vec![4, 4, 4, 4, 4, 4, 4], vec![1, 2, 3]], 1);
    for (x, y) in a.iter().zip(&c) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

#[track_caller]
fn check_learns(cfg: Bert4RecConfig, epochs: usize, min_gain: f64) {
    let data = testing::sequential_data(5);
    let pop = testing::fitted_pop(&data);
    let base = testing::hit_rate(pop.as_ref(), &data, false);
    let loss = cfg.loss.0["type"].clone();
    let mut m = build(cfg, &TestLosses).unwrap();
    assert_eq!(m.kind(), ModelKind::Sequential);
    let losses = testing::fit(m.as_mut(), &data, 3, epochs);
    assert!(losses[losses.len() - 1] < losses[0], "{losses:?}");
    let hr = testing::hit_rate(m.as_ref(), &data, false);
    assert!(
        hr > base + min_gain,
        "bert4rec with {loss}: HR@10 {hr:.3} vs pop {base:.3}"
    );
}

#[test]
fn learns_successors_far_better_than_pop() {
    check_learns(small("ce"), 25, 0.4);
    let bpr = Bert4RecConfig {
        loss: LossSpec(serde_json::json!({"type": "bpr", "negatives": 8})),
        ..small("ce")
    };
    check_learns(bpr, 30, 0.25);
    // RecBole's last-only batches still learn.
    let last = Bert4RecConfig {
        last_item_ratio: 0.5,
        ..small("ce")
    };
    check_learns(last, 40, 0.3);
}

#[test]
fn deterministic_and_restorable() {
    let data = testing::sequential_data(2);
    testing::check_determinism(|| build(small("ce"), &TestLosses).unwrap(), &data);
}

#[test]
fn scoring_checks_users_and_handles_empty_histories() {
    let mut data = testing::sequential_data(2);
    let mut m = build(small("ce"), &TestLosses).unwrap();
    assert!(
        m.score(&data, Phase::Valid, &[0]).is_err(),
        "before prepare"
    );
    m.prepare(&data, 1).unwrap();
    let n = data.n_items();
    assert_eq!(
        m.score(&data, Phase::Test, &[0, 5, 7]).unwrap().len(),
        3 * n
    );
    assert!(m.score(&data, Phase::Test, &[200]).is_err());
    data.train[3].clear();
    let s = m.score(&data, Phase::Valid, &[3]).unwrap();
    assert!(s.len() == n && s.iter().all(|v| v.is_finite()));
}

#[test]
fn config_checks() {
    testing::check_example::<Bert4RecConfig>();
    testing::check_invalid::<Bert4RecConfig>(r#"{"heads": 3}"#, &["heads"]);
    testing::check_invalid::<Bert4RecConfig>(
        r#"{"mask_ratio": 0.0, "last_item_ratio": 1.5, "max_len": 1, "dropout": 1.0}"#,
        &["mask_ratio", "last_item_ratio", "max_len", "dropout"],
    );
    testing::check_invalid::<Bert4RecConfig>(
        r#"{"mask_ratio": 1.2, "layers": 0, "epochs": 0}"#,
        &["mask_ratio", "layers", "epochs"],
    );
    testing::check_invalid::<Bert4RecConfig>(r#"{"mask_prob": 0.2}"#, &["mask_prob"]);
    testing::check_incompatible(|l| {
        build(
            Bert4RecConfig {
                loss: l,
                ..Bert4RecConfig::default()
            },
            &TestLosses,
        )
        .map(|_| ())
    });
}
