//! Training benchmark for the recommenders: seconds per epoch and validation/test NDCG@10 on
//! ml-100k (a RecBole atomic `.inter` file: implicit feedback, iterative 5-core, chronological
//! leave-one-out, full ranking; seen items masked for general models only) or, without a file,
//! on generated data of ml-100k's size (943 users, 1,349 items, ~99k interactions).
//!
//! ```text
//! cargo run --release -p pulse-recommenders --example bench -- \
//!     [--inter PATH/ml-100k.inter] [--model sasrec|bpr-mf|lightgcn|itemknn|pop|…] \
//!     [--epochs N] [--patience P] [--seed S] \
//!     [--set key=value]...
//! ```
//! `--set` takes the model's own config keys (`--set dropout=0.2 --set loss.type=bpr`). The loop
//! is the core's: train an epoch, validate, keep the best snapshot, stop after `patience`
//! rounds without improvement, restore the best weights and test.

use candle_core::Tensor;
use pulse_api::plugin::Factory;
use pulse_api::rng::derive;
use pulse_api::{
    ConfigError, EpochContext, Loss, LossBuilder, LossInput, ModelKind, Phase, PluginError,
    Recommender, Registrar, SplitData,
};
use rand::Rng as _;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Cross-entropy as the `ce` plugin computes it (log-softmax, gather, mean).
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

/// Process CPU seconds (user + system) from /proc, 0 where unavailable.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // fields 14 and 15 of stat (utime, stime) are 11 and 12 after the command name; 100 Hz
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

/// BPR: `−mean log σ(pos − neg)`.
struct Bpr(usize);

impl Loss for Bpr {
    fn type_name(&self) -> &str {
        "bpr"
    }
    fn input(&self) -> LossInput {
        LossInput::Sampled { negatives: self.0 }
    }
    fn sampled(&self, pos: &Tensor, neg: &Tensor) -> Result<Tensor, PluginError> {
        let d = pos.unsqueeze(1)?.broadcast_sub(neg)?;
        Ok(candle_nn::ops::sigmoid(&d)?
            .clamp(1e-10, 1.0)?
            .log()?
            .neg()?
            .mean_all()?)
    }
}

struct Losses;

impl LossBuilder for Losses {
    fn build_loss(&self, s: &Value) -> Result<Arc<dyn Loss>, Vec<ConfigError>> {
        match s["type"].as_str() {
            Some("ce") => Ok(Arc::new(Ce)),
            Some("bpr") => Ok(Arc::new(Bpr(s["negatives"].as_u64().unwrap_or(1) as usize))),
            other => Err(vec![ConfigError::message(
                "type",
                format!("unknown loss {other:?}"),
            )]),
        }
    }
}

/// Reads a RecBole `.inter` file into per-user chronological sequences after 5-core filtering.
fn load_inter(path: &str) -> SplitData {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.split(':').next() == Some(name))
            .unwrap_or_else(|| panic!("{path}: no column {name}"))
    };
    let (cu, ci, ct) = (col("user_id"), col("item_id"), col("timestamp"));
    let mut rows: Vec<(String, String, f64)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[cu].to_string(),
                f[ci].to_string(),
                f[ct].parse().unwrap_or(0.0),
            )
        })
        .collect();
    loop {
        let mut uc: HashMap<&str, usize> = HashMap::new();
        let mut ic: HashMap<&str, usize> = HashMap::new();
        for (u, i, _) in &rows {
            *uc.entry(u).or_default() += 1;
            *ic.entry(i).or_default() += 1;
        }
        let keep: Vec<bool> = rows
            .iter()
            .map(|(u, i, _)| uc[u.as_str()] >= 5 && ic[i.as_str()] >= 5)
            .collect();
        if keep.iter().all(|&k| k) {
            break;
        }
        let mut it = keep.into_iter();
        rows.retain(|_| it.next().unwrap_or(false));
    }
    let mut users: HashMap<String, u32> = HashMap::new();
    let mut items: HashMap<String, u32> = HashMap::new();
    let mut seqs: Vec<Vec<(f64, usize, u32)>> = Vec::new();
    for (k, (u, i, t)) in rows.iter().enumerate() {
        let nu = users.len() as u32;
        let uid = *users.entry(u.clone()).or_insert(nu);
        let ni = items.len() as u32;
        let iid = *items.entry(i.clone()).or_insert(ni);
        if uid as usize == seqs.len() {
            seqs.push(Vec::new());
        }
        seqs[uid as usize].push((*t, k, iid));
    }
    let seqs = seqs
        .into_iter()
        .map(|mut s| {
            s.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            s.into_iter().map(|(_, _, i)| i).collect()
        })
        .collect();
    split(seqs, items.len())
}

/// ml-100k-sized random data: log-normal history lengths (20..737, mean ≈ 105), Zipf-like item
/// popularity, and a preferred successor per item followed 30% of the time.
fn synthetic() -> SplitData {
    let (n_users, n_items) = (943usize, 1349usize);
    let mut rng = derive(1, "bench-data");
    let weights: Vec<f64> = (1..=n_items).map(|r| 1.0 / r as f64).collect();
    let total: f64 = weights.iter().sum();
    let cdf: Vec<f64> = weights
        .iter()
        .scan(0.0, |a, w| {
            *a += w / total;
            Some(*a)
        })
        .collect();
    let draw = |rng: &mut pulse_api::rng::Rng| {
        let x: f64 = rng.random();
        cdf.partition_point(|&c| c < x).min(n_items - 1) as u32
    };
    let succ: Vec<u32> = (0..n_items)
        .map(|_| rng.random_range(0..n_items as u32))
        .collect();
    let seqs = (0..n_users)
        .map(|_| {
            let z: f64 = (0..12).map(|_| rng.random::<f64>()).sum::<f64>() - 6.0;
            let len = ((4.25 + 0.85 * z).exp().round() as usize).clamp(20, 737);
            let mut s = vec![draw(&mut rng)];
            while s.len() < len {
                let prev = s[s.len() - 1] as usize;
                s.push(if rng.random_bool(0.3) {
                    succ[prev]
                } else {
                    draw(&mut rng)
                });
            }
            s
        })
        .collect();
    split(seqs, n_items)
}

fn split(seqs: Vec<Vec<u32>>, n_items: usize) -> SplitData {
    let mut d = SplitData {
        dataset: "bench".into(),
        item_ids: (0..n_items).map(|i| i.to_string()).collect(),
        ..SplitData::default()
    };
    for (u, mut s) in seqs.into_iter().enumerate() {
        d.user_ids.push(u.to_string());
        d.test.push(s.pop().into_iter().collect());
        d.valid.push(s.pop().into_iter().collect());
        d.train.push(s);
    }
    d
}

/// (NDCG@10, HR@10) over users with a target, full ranking.
fn evaluate(m: &dyn Recommender, d: &SplitData, phase: Phase) -> Result<(f64, f64), PluginError> {
    let n = d.n_items();
    let users: Vec<u32> = (0..d.n_users() as u32)
        .filter(|&u| !d.targets(u, phase).is_empty())
        .collect();
    let (mut ndcg, mut hr) = (0.0, 0.0);
    for chunk in users.chunks(256) {
        let scores = m.score(d, phase, chunk)?;
        for (&u, row) in chunk.iter().zip(scores.chunks(n)) {
            let mut row = row.to_vec();
            if m.kind() == ModelKind::General {
                for i in d.history(u, phase) {
                    row[i as usize] = f32::NEG_INFINITY;
                }
            }
            let t = d.targets(u, phase)[0] as usize;
            let rank = row.iter().filter(|&&s| s > row[t]).count();
            if rank < 10 {
                hr += 1.0;
                ndcg += 1.0 / ((rank + 2) as f64).log2();
            }
        }
    }
    let k = users.len() as f64;
    Ok((ndcg / k, hr / k))
}

fn parse_value(v: &str) -> Value {
    serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()))
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let (mut inter, mut model, mut epochs, mut patience) = (None, "sasrec".to_string(), None, 10);
    let mut seed = 2020;
    let mut section = json!({});
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--inter" => inter = Some(val()),
            "--model" => model = val(),
            "--epochs" => epochs = Some(val().parse::<usize>()?),
            "--patience" => patience = val().parse()?,
            "--seed" => seed = val().parse()?,
            "--set" => {
                let kv = val();
                let (k, v) = kv.split_once('=').ok_or("--set takes key=value")?;
                let mut node = &mut section;
                let parts: Vec<&str> = k.split('.').collect();
                for p in &parts[..parts.len() - 1] {
                    node = node
                        .as_object_mut()
                        .ok_or("--set: key below a value")?
                        .entry(*p)
                        .or_insert(json!({}));
                }
                node[parts[parts.len() - 1]] = parse_value(v);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    section["type"] = json!(model);
    if let Some(e) = epochs {
        section["epochs"] = json!(e);
    }

    let t = Instant::now();
    let data = match &inter {
        Some(p) => load_inter(p),
        None => synthetic(),
    };
    let n_train: usize = data.train.iter().map(Vec::len).sum();
    println!(
        "data: {} users, {} items, {} training interactions ({:.2}s)",
        data.n_users(),
        data.n_items(),
        n_train,
        t.elapsed().as_secs_f64()
    );

    let mut reg = Registrar::new("bench");
    pulse_recommenders::register(&mut reg);
    let entry = reg
        .into_entries()
        .into_iter()
        .find(|e| e.info.type_name == model)
        .unwrap_or_else(|| panic!("no model {model}"));
    let Factory::Recommender(build) = entry.factory else {
        unreachable!()
    };
    println!("config: {section}");
    let mut m = build(&section, &Losses).unwrap_or_else(|e| panic!("{e:?}"));
    let t = Instant::now();
    m.prepare(&data, seed)?;
    println!("prepare: {:.2}s", t.elapsed().as_secs_f64());
    let Some(tc) = m.training() else {
        let (v, vh) = evaluate(m.as_ref(), &data, Phase::Valid)?;
        let (t, th) = evaluate(m.as_ref(), &data, Phase::Test)?;
        println!("valid ndcg@10 {v:.4} hr@10 {vh:.4} | test ndcg@10 {t:.4} hr@10 {th:.4}");
        return Ok(());
    };
    let mut rng = derive(seed, "train");
    let (mut best, mut best_epoch, mut waited, mut snap) = (-1.0, 0, 0, None);
    let mut train_secs = Vec::new();
    let mut train_cpu = Vec::new();
    for epoch in 1..=tc.epochs {
        let t = Instant::now();
        let cpu0 = cpu_seconds();
        let mut ctx = EpochContext {
            epoch,
            rng: &mut rng,
            progress: &pulse_api::recommender::NoProgress,
        };
        let loss = m.train_epoch(&data, &mut ctx)?;
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        train_secs.push(secs);
        train_cpu.push(cpu);
        let t = Instant::now();
        let (ndcg, hr) = evaluate(m.as_ref(), &data, Phase::Valid)?;
        println!(
            "epoch {epoch:3}: loss {loss:.4} train {secs:.2}s (cpu {cpu:.2}s) | valid ndcg@10 {ndcg:.4} hr@10 {hr:.4} (eval {:.2}s)",
            t.elapsed().as_secs_f64()
        );
        if ndcg > best {
            (best, best_epoch, waited) = (ndcg, epoch, 0);
            snap = Some(m.snapshot()?);
        } else {
            waited += 1;
            if patience > 0 && waited >= patience {
                break;
            }
        }
    }
    if let Some(s) = &snap {
        m.restore(s)?;
    }
    let (t, th) = evaluate(m.as_ref(), &data, Phase::Test)?;
    let mut sorted = train_secs.clone();
    sorted.sort_by(f64::total_cmp);
    train_cpu.sort_by(f64::total_cmp);
    println!(
        "summary: {} epochs, median {:.2}s/epoch (min {:.2}s, median cpu {:.2}s), best epoch {best_epoch}, valid ndcg@10 {best:.4}, test ndcg@10 {t:.4} hr@10 {th:.4}",
        train_secs.len(),
        sorted[sorted.len() / 2],
        sorted[0],
        train_cpu[train_cpu.len() / 2],
    );
    Ok(())
}
