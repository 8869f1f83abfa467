//! Test support: two small losses (full-softmax cross-entropy and BPR) and a loss builder, since
//! the real loss plugins live in another crate; generators of small data sets with sequential
//! or cluster structure; fitting, hit-rate and determinism helpers shared by the model tests.

use crate::pop::{self, PopConfig};
use candle_core::Tensor;
use pulse_api::config::ConfigErrorKind;
use pulse_api::plugin::decode_section;
use pulse_api::rng::derive;
use pulse_api::{
    ConfigError, EpochContext, Loss, LossBuilder, LossInput, LossSpec, Phase, PluginConfig,
    PluginError, Progress, Recommender, SplitData,
};
use rand::seq::SliceRandom;
use rand::Rng as _;
use std::cell::Cell;
use std::sync::Arc;

/// Cross-entropy over full logits.
struct Ce;

impl Loss for Ce {
    fn type_name(&self) -> &str {
        "ce"
    }
    fn input(&self) -> LossInput {
        LossInput::FullLogits
    }
    fn full(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor, PluginError> {
        Ok(candle_nn::loss::cross_entropy(logits, targets)?)
    }
}

/// `−mean log σ(pos − neg)` over every negative.
struct Bpr {
    negatives: usize,
}

impl Loss for Bpr {
    fn type_name(&self) -> &str {
        "bpr"
    }
    fn input(&self) -> LossInput {
        LossInput::Sampled {
            negatives: self.negatives,
        }
    }
    fn sampled(&self, pos: &Tensor, neg: &Tensor) -> Result<Tensor, PluginError> {
        let diff = pos.unsqueeze(1)?.broadcast_sub(neg)?;
        // −log σ(x) = log(1 + e^(−x)); fine for the small scores of these tests.
        Ok(diff.neg()?.exp()?.affine(1.0, 1.0)?.log()?.mean_all()?)
    }
}

/// InfoNCE over a full similarity matrix: cross-entropy of `sim / temperature`.
struct InfoNce {
    temperature: f64,
}

impl Loss for InfoNce {
    fn type_name(&self) -> &str {
        "infonce"
    }

    fn input(&self) -> LossInput {
        LossInput::Sampled { negatives: 10 }
    }

    fn full(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor, PluginError> {
        let scaled = (logits / self.temperature)?;
        Ok(candle_nn::loss::cross_entropy(&scaled, targets)?)
    }
}

/// Builds `ce`, `infonce` (optional `temperature`, default 1), `bpr` (optional `negatives`, default 1) and `zero-negatives` (a sampled loss
/// asking for no negatives, which no model can feed).
pub struct TestLosses;

impl LossBuilder for TestLosses {
    fn build_loss(&self, section: &serde_json::Value) -> Result<Arc<dyn Loss>, Vec<ConfigError>> {
        let ty = section["type"].as_str().unwrap_or_default();
        let negatives = section["negatives"].as_u64().unwrap_or(1) as usize;
        match ty {
            "ce" => Ok(Arc::new(Ce)),
            "infonce" => Ok(Arc::new(InfoNce {
                temperature: section["temperature"].as_f64().unwrap_or(1.0),
            })),
            "bpr" => Ok(Arc::new(Bpr { negatives })),
            "zero-negatives" => Ok(Arc::new(Bpr { negatives: 0 })),
            other => Err(vec![ConfigError::new(
                vec!["type".into()],
                ConfigErrorKind::UnknownType {
                    family: "loss".into(),
                    found: other.into(),
                    known: vec!["bpr".into(), "ce".into()],
                },
            )]),
        }
    }
}

/// Leave-one-out split of full sequences: last item → test, second last → valid.
fn split(seqs: Vec<Vec<u32>>, n_items: usize) -> SplitData {
    let n_users = seqs.len();
    let mut data = SplitData {
        dataset: "generated".into(),
        user_ids: (0..n_users).map(|u| format!("u{u}")).collect(),
        item_ids: (0..n_items).map(|i| format!("i{i}")).collect(),
        ..SplitData::default()
    };
    for mut s in seqs {
        let test = s.pop().into_iter().collect();
        let valid = s.pop().into_iter().collect();
        data.train.push(s);
        data.valid.push(valid);
        data.test.push(test);
    }
    data
}

/// 200 users, 100 items; each item has a preferred successor (a random permutation) that
/// follows it 80% of the time, otherwise a uniformly random item.
pub fn sequential_data(seed: u64) -> SplitData {
    let mut rng = derive(seed, "sequential-data");
    let mut succ: Vec<u32> = (0..100).collect();
    succ.shuffle(&mut rng);
    let seqs = (0..200)
        .map(|_| {
            let len = rng.random_range(15..30);
            let mut s = vec![rng.random_range(0..100u32)];
            while s.len() < len {
                let prev = s[s.len() - 1];
                s.push(if rng.random_bool(0.8) {
                    succ[prev as usize]
                } else {
                    rng.random_range(0..100)
                });
            }
            s
        })
        .collect();
    split(seqs, 100)
}

/// 200 users, 100 items in 5 clusters of 20 (item i is in cluster i mod 5); each user has a
/// cluster and 12–16 distinct items, 90% of them from it, in random order.
pub fn clustered_data(seed: u64) -> SplitData {
    let mut rng = derive(seed, "clustered-data");
    let seqs = (0..200u32)
        .map(|u| {
            let cluster = u % 5;
            let len = rng.random_range(12..17);
            let mut s: Vec<u32> = Vec::new();
            while s.len() < len {
                let i = if rng.random_bool(0.9) {
                    rng.random_range(0..20u32) * 5 + cluster
                } else {
                    rng.random_range(0..100)
                };
                if !s.contains(&i) {
                    s.push(i);
                }
            }
            s
        })
        .collect();
    split(seqs, 100)
}

pub fn fitted_pop(data: &SplitData) -> Box<dyn Recommender> {
    let mut m = pop::build(PopConfig::default(), &TestLosses).unwrap();
    m.prepare(data, 0).unwrap();
    m
}

/// Counts what a model reports, to check the progress protocol.
#[derive(Default)]
struct Counting {
    started: Cell<u64>,
    advanced: Cell<u64>,
}

impl Progress for Counting {
    fn start(&self, total: u64) {
        self.started.set(self.started.get() + total);
    }
    fn advance(&self, batches: u64, loss: f64) {
        assert!(loss.is_finite());
        self.advanced.set(self.advanced.get() + batches);
    }
}

/// `prepare` and `epochs` training epochs, the way the core runs them; returns the losses.
pub fn fit(m: &mut dyn Recommender, data: &SplitData, seed: u64, epochs: usize) -> Vec<f64> {
    m.prepare(data, seed).unwrap();
    let mut rng = derive(seed, "train");
    let progress = Counting::default();
    let losses: Vec<f64> = (1..=epochs)
        .map(|epoch| {
            let mut ctx = EpochContext {
                epoch,
                rng: &mut rng,
                progress: &progress,
            };
            m.train_epoch(data, &mut ctx).unwrap()
        })
        .collect();
    assert!(progress.started.get() > 0);
    assert_eq!(progress.started.get(), progress.advanced.get());
    losses
}

/// One more epoch after `fit` (continuing with a fresh generator).
pub fn train_more(m: &mut dyn Recommender, data: &SplitData) {
    let mut rng = derive(99, "more");
    let mut ctx = EpochContext {
        epoch: 1,
        rng: &mut rng,
        progress: &pulse_api::recommender::NoProgress,
    };
    m.train_epoch(data, &mut ctx).unwrap();
}

pub fn all_scores(m: &dyn Recommender, data: &SplitData) -> Vec<f32> {
    let users: Vec<u32> = (0..data.n_users() as u32).collect();
    m.score(data, Phase::Valid, &users).unwrap()
}

/// Share of users whose validation item is in the top 10 (training items excluded from the
/// ranking when `mask_history`, as for general models).
pub fn hit_rate(m: &dyn Recommender, data: &SplitData, mask_history: bool) -> f64 {
    let n = data.n_items();
    let scores = all_scores(m, data);
    let mut hits = 0;
    for (u, row) in scores.chunks(n).enumerate() {
        let mut row = row.to_vec();
        if mask_history {
            for &i in &data.train[u] {
                row[i as usize] = f32::NEG_INFINITY;
            }
        }
        let target = data.valid[u][0] as usize;
        let better = row.iter().filter(|&&s| s > row[target]).count();
        if better < 10 {
            hits += 1;
        }
    }
    hits as f64 / data.n_users() as f64
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Same seed → bit-identical scores; a snapshot restored after more training gives the
/// snapshot's scores back; a snapshot missing a weight is refused.
pub fn check_determinism(make: impl Fn() -> Box<dyn Recommender>, data: &SplitData) {
    let mut a = make();
    let mut b = make();
    let la = fit(a.as_mut(), data, 11, 2);
    let lb = fit(b.as_mut(), data, 11, 2);
    assert_eq!(la, lb);
    let sa = all_scores(a.as_ref(), data);
    assert_eq!(bits(&sa), bits(&all_scores(b.as_ref(), data)));

    let mut c = make();
    fit(c.as_mut(), data, 12, 2);
    assert_ne!(
        bits(&sa),
        bits(&all_scores(c.as_ref(), data)),
        "seed has no effect"
    );

    let snap = a.snapshot().unwrap();
    assert!(!snap.is_empty());
    train_more(a.as_mut(), data);
    assert_ne!(bits(&sa), bits(&all_scores(a.as_ref(), data)));
    a.restore(&snap).unwrap();
    assert_eq!(bits(&sa), bits(&all_scores(a.as_ref(), data)));
    assert!(a.restore(&snap[1..]).is_err());
}

/// The documented example decodes to the default config.
pub fn check_example<C: PluginConfig + PartialEq + std::fmt::Debug>() {
    let table: toml::Table = toml::from_str(C::EXAMPLE).unwrap();
    let json = serde_json::to_value(table).unwrap();
    let cfg = decode_section::<C>(&json).unwrap();
    assert_eq!(cfg, C::default(), "{} example", C::TYPE);
    assert!(C::default().validate().is_empty());
}

/// Decoding `json` fails with errors at exactly these keys.
#[track_caller]
pub fn check_invalid<C: PluginConfig + std::fmt::Debug>(json: &str, keys: &[&str]) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let errs = decode_section::<C>(&v).unwrap_err();
    let mut found: Vec<String> = errs.iter().map(ConfigError::dotted).collect();
    found.sort();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(found, want, "{errs:?}");
}

/// A loss asking for an input the model cannot produce is refused at `loss.type`, and an
/// unknown loss type is reported under `loss`.
pub fn check_incompatible(build: impl Fn(LossSpec) -> Result<(), Vec<ConfigError>>) {
    let errs = build(LossSpec::of("zero-negatives")).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].dotted(), "loss.type");
    assert!(
        matches!(errs[0].kind, ConfigErrorKind::Incompatible(_)),
        "{errs:?}"
    );
    let errs = build(LossSpec::of("nope")).unwrap_err();
    assert_eq!(errs[0].dotted(), "loss.type");
    assert!(matches!(errs[0].kind, ConfigErrorKind::UnknownType { .. }));
}
