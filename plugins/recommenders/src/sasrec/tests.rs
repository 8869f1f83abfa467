//! Tests of `sasrec`: window cutting, masking (causality, padding), learning on sequential data,
//! determinism and configuration checks.

use super::*;
use crate::common::DEVICE;
use crate::testing::{self, TestLosses};

fn small(loss: &str) -> SasRecConfig {
    SasRecConfig {
        hidden_size: 32,
        inner_size: 64,
        dropout: 0.2,
        max_len: 20,
        batch_size: 32,
        learning_rate: 0.005,
        loss: LossSpec::of(loss),
        ..SasRecConfig::default()
    }
}

#[track_caller]
fn check_windows(seq: Vec<u32>, len: usize, expected: &[&[u32]]) {
    let got = windows(std::slice::from_ref(&seq), len);
    assert_eq!(got, expected);
    let mut targets: Vec<u32> = got.iter().flat_map(|w| w[1..].to_vec()).collect();
    targets.sort();
    let mut want = seq.get(1..).unwrap_or_default().to_vec();
    want.sort();
    assert_eq!(targets, want, "every item but the first is a target once");
}

#[test]
fn windows_cover_every_target_once() {
    check_windows(
        vec![1, 2, 3, 4, 5, 6, 7],
        3,
        &[&[4, 5, 6, 7], &[1, 2, 3, 4]],
    );
    check_windows(
        vec![1, 2, 3, 4, 5, 6, 7, 8],
        3,
        &[&[5, 6, 7, 8], &[2, 3, 4, 5], &[1, 2]],
    );
    check_windows(vec![1, 2, 3], 5, &[&[1, 2, 3]]);
    check_windows(vec![9, 8], 1, &[&[9, 8]]);
    check_windows(vec![4], 3, &[]);
    check_windows(vec![], 3, &[]);
}

fn net(max_len: usize, seed: u64) -> Net {
    let dims = Dims {
        n_items: 10,
        hidden: 8,
        inner: 16,
        layers: 2,
        heads: 2,
        max_len,
    };
    Net::new(dims, &mut pulse_api::rng::derive(seed, "init")).unwrap()
}

fn hidden_rows(n: &Net, seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let b = Batch::new(seqs, &n.dims).unwrap();
    n.forward(&b, None).unwrap().to_vec2::<f32>().unwrap()
}

#[track_caller]
fn check_same_rows(a: &[Vec<f32>], b: &[Vec<f32>], rows: std::ops::Range<usize>) {
    for r in rows {
        for (x, y) in a[r].iter().zip(&b[r]) {
            assert!((x - y).abs() < 1e-5, "row {r}: {x} vs {y}");
        }
    }
}

#[test]
fn attention_is_causal_and_ignores_padding() {
    let n = net(5, 1);
    // Causal: changing the last item leaves earlier positions alone (rows 2 and 3 of 0..5).
    let a = hidden_rows(&n, &[vec![1, 2, 3]]);
    let b = hidden_rows(&n, &[vec![1, 2, 7]]);
    check_same_rows(&a, &b, 2..4);
    assert_ne!(a[4], b[4]);
    // Padding: its embedding does not reach real positions.
    let real = n.item.as_tensor().narrow(0, 0, 10).unwrap();
    let pad = Tensor::ones((1, 8), candle_core::DType::F32, &DEVICE).unwrap();
    n.item
        .set(&Tensor::cat(&[&real, &pad], 0).unwrap())
        .unwrap();
    let c = hidden_rows(&n, &[vec![1, 2, 3]]);
    check_same_rows(&a, &c, 2..5);
    // Rows of a batch are independent, whatever their lengths.
    let d = hidden_rows(&n, &[vec![4, 4, 4, 4, 4, 4, 4], vec![1, 2, 3]]);
    check_same_rows(&a, &d[5..], 2..5);
}

#[track_caller]
fn check_learns(loss: &str, epochs: usize, min_gain: f64) {
    let data = testing::sequential_data(5);
    let pop = testing::fitted_pop(&data);
    let base = testing::hit_rate(pop.as_ref(), &data, false);
    let mut m = build(small(loss), &TestLosses).unwrap();
    assert_eq!(m.kind(), ModelKind::Sequential);
    let losses = testing::fit(m.as_mut(), &data, 3, epochs);
    assert!(losses[losses.len() - 1] < losses[0], "{losses:?}");
    let hr = testing::hit_rate(m.as_ref(), &data, false);
    assert!(
        hr > base + min_gain,
        "sasrec with {loss}: HR@10 {hr:.3} vs pop {base:.3}"
    );
}

#[test]
fn learns_successors_far_better_than_pop() {
    check_learns("ce", 15, 0.4);
    check_learns("bpr", 15, 0.25);
}

#[test]
fn deterministic_and_restorable() {
    let data = testing::sequential_data(2);
    testing::check_determinism(|| build(small("ce"), &TestLosses).unwrap(), &data);
}

#[test]
fn scoring_checks_users() {
    let data = testing::sequential_data(2);
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
}

#[test]
fn config_checks() {
    testing::check_example::<SasRecConfig>();
    testing::check_invalid::<SasRecConfig>(r#"{"heads": 3}"#, &["heads"]);
    testing::check_invalid::<SasRecConfig>(
        r#"{"dropout": 1.0, "max_len": 0, "layers": 0, "hidden_size": 0, "batch_size": 0}"#,
        &["dropout", "max_len", "layers", "hidden_size", "batch_size"],
    );
    testing::check_invalid::<SasRecConfig>(
        r#"{"dropout": -0.1, "eval_every": 0}"#,
        &["dropout", "eval_every"],
    );
    testing::check_invalid::<SasRecConfig>(r#"{"dropout": "high"}"#, &["dropout"]);
    testing::check_incompatible(|l| {
        build(
            SasRecConfig {
                loss: l,
                ..SasRecConfig::default()
            },
            &TestLosses,
        )
        .map(|_| ())
    });
}
