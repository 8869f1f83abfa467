//! Tests of `lightgcn`: the normalised adjacency, propagation and its gradient against dense
//! matrix powers, the portable kernel, learning on clustered data, determinism and snapshots,
//! the regulariser and configuration checks.

use super::graph::spmm_rows;
use super::*;
use crate::testing::{self, TestLosses};

/// `Â` as a dense `[n_nodes, n_nodes]` tensor.
fn dense(g: &Graph) -> Tensor {
    let n = g.n_nodes;
    let mut m = vec![0f32; n * n];
    for r in 0..n {
        for k in g.offsets[r]..g.offsets[r + 1] {
            m[r * n + g.cols[k] as usize] = g.vals[k];
        }
    }
    Tensor::from_vec(m, (n, n), &DEVICE).unwrap()
}

fn close(a: &Tensor, b: &Tensor) -> bool {
    let d = (a - b).unwrap().abs().unwrap().max_all().unwrap();
    d.to_scalar::<f32>().unwrap() < 1e-5
}

#[test]
fn adjacency_is_symmetrically_normalised() {
    // Nodes: users 0, 1; items 0, 1 are nodes 2, 3. Degrees 2, 1, 2, 1.
    let g = Graph::new(&[vec![0, 1, 0], vec![0]], 2).unwrap();
    let h = 0.5f32.sqrt();
    let want = [
        [0.0, 0.0, 0.5, h],
        [0.0, 0.0, h, 0.0],
        [0.5, h, 0.0, 0.0],
        [h, 0.0, 0.0, 0.0],
    ];
    let got = dense(&g).to_vec2::<f32>().unwrap();
    for (gr, wr) in got.iter().zip(want) {
        for (a, b) in gr.iter().zip(wr) {
            assert!((a - b).abs() < 1e-6, "{got:?}");
        }
    }
    assert!(Graph::new(&[vec![2]], 2).is_err());
}

/// The fused op and its gradient against dense matrix powers, for `d`-wide embeddings.
#[track_caller]
fn check_propagation(train: &[Vec<u32>], n_items: usize, layers: usize, d: usize) {
    let g = Arc::new(Graph::new(train, n_items).unwrap());
    let n = g.n_nodes;
    let mut rng = pulse_api::rng::derive(1, "test");
    let x = common::normal_var(&mut rng, n, d, 1.0).unwrap();
    let w = common::normal_var(&mut rng, n, d, 1.0).unwrap();
    let w = w.as_tensor();
    let op = Propagate {
        graph: g.clone(),
        layers,
    };
    let fused = x.as_tensor().apply_op1(op).unwrap();
    let grad_fused = (&fused * w).unwrap().sum_all().unwrap().backward().unwrap();

    let a = dense(&g);
    let mut e = x.as_tensor().clone();
    let mut sum = e.clone();
    for _ in 0..layers {
        e = a.matmul(&e).unwrap();
        sum = (sum + &e).unwrap();
    }
    let reference = (sum / (layers + 1) as f64).unwrap();
    let grad_ref = (&reference * w)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(close(&fused, &reference), "forward, {layers} layers");
    let (gf, gr) = (
        grad_fused.get(x.as_tensor()).unwrap(),
        grad_ref.get(x.as_tensor()).unwrap(),
    );
    assert!(close(gf, gr), "gradient, {layers} layers");
}

#[test]
fn propagation_matches_dense_powers() {
    let train = [vec![0, 1], vec![0], vec![2, 1], vec![]];
    for layers in 0..4 {
        check_propagation(&train, 4, layers, 3);
    }
    let data = testing::clustered_data(2);
    // 83 = a 64-wide strip, a 16-wide strip and a 3-wide tail.
    for d in [1, 16, 64, 83] {
        check_propagation(&data.train, data.n_items(), 2, d);
    }
}

/// The portable kernel agrees with the one `spmm` dispatches to (AVX2 + FMA where present).
#[test]
fn portable_kernel_matches_dispatched() {
    let data = testing::clustered_data(4);
    let g = Graph::new(&data.train, data.n_items()).unwrap();
    let d = 83;
    let mut rng = pulse_api::rng::derive(2, "test");
    let x = common::normal_var(&mut rng, g.n_nodes, d, 1.0).unwrap();
    let x = x
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mut fast = vec![0f32; x.len()];
    g.spmm(&x, d, &mut fast);
    let mut portable = vec![f32::NAN; x.len()];
    spmm_rows::<false>(&g, &x, d, 0, &mut portable);
    for (a, b) in fast.iter().zip(&portable) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

fn config(loss: &str) -> LightGcnConfig {
    LightGcnConfig {
        embedding_size: 32,
        loss: LossSpec::of(loss),
        batch_size: 256,
        learning_rate: 0.01,
        ..LightGcnConfig::default()
    }
}

#[track_caller]
fn check_learns(cfg: LightGcnConfig, epochs: usize, min_gain: f64) {
    let data = testing::clustered_data(7);
    let base = testing::hit_rate(testing::fitted_pop(&data).as_ref(), &data, true);
    let mut m = build(cfg.clone(), &TestLosses).unwrap();
    let losses = testing::fit(m.as_mut(), &data, 3, epochs);
    assert!(losses[epochs - 1] < losses[0], "{losses:?}");
    let hr = testing::hit_rate(m.as_ref(), &data, true);
    assert!(
        hr > base + min_gain,
        "lightgcn {cfg:?}: HR@10 {hr:.3} vs pop {base:.3}"
    );
}

#[test]
fn learns_clusters_better_than_pop() {
    check_learns(config("bpr"), 20, 0.15);
    check_learns(config("ce"), 20, 0.15);
    check_learns(
        LightGcnConfig {
            reg_squared: true,
            layers: 3,
            ..config("bpr")
        },
        20,
        0.15,
    );
}

#[test]
fn deterministic_and_restorable() {
    let data = testing::clustered_data(3);
    testing::check_determinism(|| build(config("bpr"), &TestLosses).unwrap(), &data);
}

#[test]
fn regulariser_is_recboles_emb_loss() {
    let t = |v: Vec<f32>| Tensor::from_vec(v, (1, 2), &DEVICE).unwrap();
    let parts = [t(vec![3.0, 4.0]), t(vec![0.0, 1.0])];
    let plain = l2(&parts, false).unwrap().to_scalar::<f32>().unwrap();
    let squared = l2(&parts, true).unwrap().to_scalar::<f32>().unwrap();
    assert_eq!((plain, squared), (6.0, 13.0));
}

#[test]
fn config_checks() {
    testing::check_example::<LightGcnConfig>();
    testing::check_invalid::<LightGcnConfig>(
        r#"{"embedding_size": 0, "layers": 17, "reg_weight": -1.0, "batch_size": 0}"#,
        &["embedding_size", "layers", "reg_weight", "batch_size"],
    );
    testing::check_invalid::<LightGcnConfig>(r#"{"n_layers": 2}"#, &["n_layers"]);
    testing::check_incompatible(|l| {
        build(
            LightGcnConfig {
                loss: l,
                ..LightGcnConfig::default()
            },
            &TestLosses,
        )
        .map(|_| ())
    });
    let m = build(LightGcnConfig::default(), &TestLosses).unwrap();
    assert_eq!(m.kind(), ModelKind::General);
    let tc = m.training().unwrap();
    assert_eq!((tc.batch_size, tc.learning_rate), (2048, 1e-3));
    assert!(m.score(&SplitData::default(), Phase::Test, &[0]).is_err());
}
