//! Tests of `gru4rec`: the network reads left to right and ignores padding, learning on
//! sequential data, determinism and snapshots, configuration checks.

use super::*;
use crate::testing::{self, TestLosses};

fn small(loss: &str) -> Gru4RecConfig {
    Gru4RecConfig {
        embedding_size: 32,
        hidden_size: 48,
        dropout: 0.1,
        max_len: 20,
        batch_size: 16,
        learning_rate: 0.005,
        loss: LossSpec::of(loss),
        ..Gru4RecConfig::default()
    }
}

#[track_caller]
fn check_examples(seq: Vec<u32>, len: usize, expected: &[(&[u32], usize)]) {
    let got = examples(std::slice::from_ref(&seq), len, 0);
    let want: Vec<Example> = expected
        .iter()
        .map(|&(items, targets)| Example {
            items: items.to_vec(),
            targets,
        })
        .collect();
    assert_eq!(got, want);
    let mut targets: Vec<u32> = got
        .iter()
        .flat_map(|e| e.items[e.items.len() - e.targets..].to_vec())
        .collect();
    targets.sort();
    let mut all = seq.get(1..).unwrap_or_default().to_vec();
    all.sort();
    assert_eq!(targets, all, "every item but the first is a target once");
}

#[test]
fn examples_cover_every_target_once_with_context() {
    check_examples(
        vec![1, 2, 3, 4, 5, 6, 7, 8],
        3,
        &[
            (&[3, 4, 5, 6, 7, 8], 3),
            (&[1, 2, 3, 4, 5], 3),
            (&[1, 2], 1),
        ],
    );
    check_examples(vec![1, 2, 3, 4], 3, &[(&[1, 2, 3, 4], 3)]);
    check_examples(vec![9, 8], 1, &[(&[9, 8], 1)]);
    check_examples(vec![1, 2, 3], 1, &[(&[2, 3], 1), (&[1, 2], 1)]);
    check_examples(vec![4], 3, &[]);
    // One target per example: every prefix, newest first, each with up to `len` items before.
    let prefixes = examples(&[vec![1, 2, 3, 4]], 2, 1);
    let got: Vec<(&[u32], usize)> = prefixes.iter().map(|e| (&e.items[..], e.targets)).collect();
    assert_eq!(
        got,
        [(&[2, 3, 4][..], 1), (&[1, 2, 3][..], 1), (&[1, 2][..], 1)]
    );
    check_examples(vec![], 3, &[]);
}

/// Output rows at every position of each sequence (no dropout).
fn outputs(net: &Net, seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
    let batch = Batch::new(seqs, net.n_items as u32).unwrap();
    let positions = seqs
        .iter()
        .enumerate()
        .flat_map(|(r, s)| (0..s.len()).map(move |t| (r * batch.steps + t) as u32))
        .collect();
    net.forward(&batch, positions, None)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

#[track_caller]
fn check_same(a: &[f32], b: &[f32]) {
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
}

#[test]
fn reads_left_to_right_and_ignores_padding() {
    let cfg = Gru4RecConfig {
        layers: 2,
        ..small("ce")
    };
    let net = Net::new(&cfg, 10, &mut pulse_api::rng::derive(1, "init")).unwrap();
    let a = outputs(&net, &[vec![1, 2, 3]]);
    let b = outputs(&net, &[vec![1, 2, 7]]);
    check_same(&a[1], &b[1]);
    assert_ne!(a[2], b[2], "the last item matters");
    assert_ne!(a[1], a[2]);
    // A short row padded next to a long one gives the same outputs as alone.
    let c = outputs(&net, &[vec![4, 4, 4, 4, 4, 4], vec![1, 2, 3]]);
    for t in 0..3 {
        check_same(&a[t], &c[6 + t]);
    }
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
        "gru4rec with {loss}: HR@10 {hr:.3} vs pop {base:.3}"
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
    testing::check_example::<Gru4RecConfig>();
    testing::check_invalid::<Gru4RecConfig>(
        r#"{"dropout": 1.0, "max_len": 0, "layers": 0, "hidden_size": 0, "embedding_size": 0}"#,
        &[
            "dropout",
            "max_len",
            "layers",
            "hidden_size",
            "embedding_size",
        ],
    );
    testing::check_invalid::<Gru4RecConfig>(
        r#"{"batch_size": 0, "learning_rate": 0.0}"#,
        &["batch_size", "learning_rate"],
    );
    testing::check_invalid::<Gru4RecConfig>(r#"{"hiden_size": 3}"#, &["hiden_size"]);
    testing::check_incompatible(|l| {
        build(
            Gru4RecConfig {
                loss: l,
                ..Gru4RecConfig::default()
            },
            &TestLosses,
        )
        .map(|_| ())
    });
}
