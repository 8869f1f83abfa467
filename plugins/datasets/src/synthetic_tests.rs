//! Tests of the synthetic generator: determinism, well-formed logs, and that the structure it
//! promises is really there (simple tastes and habits models beat popularity).

use super::*;
use crate::test_support::{column_f64, column_str};
use std::collections::{HashMap, HashSet};

fn generate(cfg: SyntheticConfig, ctx_seed: u64) -> RawDataset {
    let ctx = LoadContext {
        cache_dir: "unused".into(),
        base_dir: ".".into(),
        seed: ctx_seed,
    };
    build(cfg).unwrap().load(&ctx).unwrap()
}

/// Per user: items in chronological order.
fn sequences(raw: &RawDataset) -> Vec<Vec<String>> {
    let users = column_str(&raw.interactions, "user");
    let items = column_str(&raw.interactions, "item");
    let mut order: Vec<String> = Vec::new();
    let mut by_user: HashMap<String, Vec<String>> = HashMap::new();
    for (u, i) in users.into_iter().zip(items) {
        if !by_user.contains_key(&u) {
            order.push(u.clone());
        }
        by_user.entry(u).or_default().push(i);
    }
    order
        .into_iter()
        .map(|u| by_user.remove(&u).unwrap_or_default())
        .collect()
}

#[test]
fn seeded_and_well_formed() {
    let cfg = SyntheticConfig::default();
    let a = generate(cfg.clone(), 7);
    assert!(a
        .interactions
        .equals(&generate(cfg.clone(), 7).interactions));
    assert!(!a
        .interactions
        .equals(&generate(cfg.clone(), 8).interactions));
    // An explicit seed wins over the trial's.
    let fixed = SyntheticConfig {
        seed: Some(3),
        ..cfg.clone()
    };
    assert!(generate(fixed.clone(), 1)
        .interactions
        .equals(&generate(fixed, 2).interactions));

    let n = a.interactions.height();
    assert!((300 * 35..=300 * 45).contains(&n), "{n} rows");
    let users = column_str(&a.interactions, "user");
    let items = column_str(&a.interactions, "item");
    let ts = column_f64(&a.interactions, "timestamp");
    let ratings = column_f64(&a.interactions, "rating");
    let pairs: HashSet<(&String, &String)> = users.iter().zip(&items).collect();
    assert_eq!(pairs.len(), n, "a user repeated an item");
    for k in 1..n {
        if users[k] == users[k - 1] {
            assert!(ts[k] > ts[k - 1], "row {k} goes back in time");
        }
    }
    assert!(ratings.iter().all(|r| (1.0..=5.0).contains(r)));
    assert_eq!(users.iter().collect::<HashSet<_>>().len(), 300);
    assert!(items.iter().collect::<HashSet<_>>().len() > 190);
    let side = a.items.unwrap();
    assert_eq!(side.height(), 200);
    assert_eq!(column_str(&side, "item")[16], "i17");
    assert_eq!(column_str(&side, "title")[16], "Item 17 (cluster 0)");
    assert_eq!(column_str(&side, "genre")[17], "Comedy");
}

/// HR@10 of leave-last-out over all users for a scorer `(history) -> scores`, ranking items the
/// user has not seen; ties go to the lower item index.
fn hit_rate(seqs: &[Vec<usize>], n_items: usize, score: impl Fn(&[usize]) -> Vec<f64>) -> f64 {
    let mut hits = 0;
    for s in seqs {
        let (hist, target) = s.split_at(s.len() - 1);
        let scores = score(hist);
        let mut ranked: Vec<usize> = (0..n_items).filter(|i| !hist.contains(i)).collect();
        ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        hits += usize::from(ranked[..10].contains(&target[0]));
    }
    hits as f64 / seqs.len() as f64
}

#[test]
fn tastes_and_habits_beat_popularity() {
    let raw = generate(SyntheticConfig::default(), 2020);
    let seqs: Vec<Vec<usize>> = sequences(&raw)
        .into_iter()
        .map(|s| {
            s.iter()
                .map(|i| i[1..].parse::<usize>().unwrap() - 1)
                .collect()
        })
        .collect();
    let n = 200;
    let train: Vec<&[usize]> = seqs.iter().map(|s| &s[..s.len() - 1]).collect();
    let mut pop = vec![0.0; n];
    let mut next = vec![vec![0.0; n]; n];
    let mut co = vec![vec![0.0; n]; n];
    for s in &train {
        for (k, &i) in s.iter().enumerate() {
            pop[i] += 1.0;
            if k > 0 {
                next[s[k - 1]][i] += 1.0;
            }
            for &j in s.iter() {
                if i != j {
                    co[i][j] += 1.0;
                }
            }
        }
    }
    let popularity = hit_rate(&seqs, n, |_| pop.clone());
    // Habits: what usually follows the last item (popularity breaks ties).
    let markov = hit_rate(&seqs, n, |h| {
        let last = h[h.len() - 1];
        (0..n).map(|j| next[last][j] + pop[j] * 1e-6).collect()
    });
    // Tastes: cosine-normalised co-occurrence with the whole history (an item-kNN).
    let knn = hit_rate(&seqs, n, |h| {
        (0..n)
            .map(|j| {
                h.iter()
                    .map(|&i| co[i][j] / (pop[i] * pop[j]).sqrt().max(1.0))
                    .sum::<f64>()
            })
            .collect()
    });
    eprintln!("HR@10 pop {popularity:.3} knn {knn:.3} markov {markov:.3}");
    assert!(knn > 1.3 * popularity, "knn {knn} vs pop {popularity}");
    assert!(
        markov > 2.0 * popularity,
        "markov {markov} vs pop {popularity}"
    );
    assert!(markov > knn, "markov {markov} vs knn {knn}");
}
