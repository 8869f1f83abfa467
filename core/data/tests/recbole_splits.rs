//! pulse reproduces RecBole 1.2.1's splits of MovieLens exactly: the built-in ml-100k and ml-1m
//! sources are fetched for real, 5-core filtered and split leave-one-out in RecBole's float32
//! order, and every user's valid and test item is compared with RecBole's own split
//! (`shared/reference/splits/<ds>.split.tsv`, beside the repository).

// Test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use pulse_api::data::{RawDataset, SplitData};
use pulse_api::sections::{Order, SplitConfig};
use pulse_api::{Dataset, LoadContext};
use pulse_datasets::RecboleAtomicConfig;
use std::collections::HashMap;
use std::path::PathBuf;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `$PULSE_HOME`, else `target/pulse-home-test` (shared with pulse-datasets' tests).
fn cache_dir() -> PathBuf {
    match std::env::var_os("PULSE_HOME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace().join("target/pulse-home-test"),
    }
}

fn load(source: &str) -> RawDataset {
    let cfg = RecboleAtomicConfig {
        source: Some(source.into()),
        ..RecboleAtomicConfig::default()
    };
    let ds: Box<dyn Dataset> = pulse_datasets::recbole::build(cfg).unwrap();
    let ctx = LoadContext {
        cache_dir: cache_dir(),
        base_dir: workspace(),
        seed: 2020,
    };
    ds.load(&ctx).unwrap()
}

fn recbole_protocol(order: Order) -> SplitConfig {
    SplitConfig {
        order,
        min_user_interactions: 5,
        min_item_interactions: 5,
        ..SplitConfig::default()
    }
}

/// RecBole's split: user -> (valid item, test item, training interactions).
fn reference(name: &str) -> HashMap<String, (String, String, usize)> {
    let path = workspace().join(format!("../shared/reference/splits/{name}.split.tsv"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (shared/ must sit beside the repository)",
            path.display()
        )
    });
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("user\tvalid_item\ttest_item\tn_train"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l:?}");
            (
                f[0].to_string(),
                (f[1].to_string(), f[2].to_string(), f[3].parse().unwrap()),
            )
        })
        .collect()
}

/// `(users whose valid item differs, users whose test item differs)` from the reference;
/// every user must be present with the reference's training count.
fn differences(d: &SplitData, want: &HashMap<String, (String, String, usize)>) -> (usize, usize) {
    assert_eq!(d.n_users(), want.len());
    let (mut valid, mut test) = (0, 0);
    for u in 0..d.n_users() {
        let (v, t, n_train) = &want[&d.user_ids[u]];
        assert_eq!(d.train[u].len(), *n_train, "user {}", d.user_ids[u]);
        assert_eq!((d.valid[u].len(), d.test[u].len()), (1, 1));
        valid += usize::from(&d.item_ids[d.valid[u][0] as usize] != v);
        test += usize::from(&d.item_ids[d.test[u][0] as usize] != t);
    }
    (valid, test)
}

/// `counts` = (users, items, interactions) after 5-core; `exact_order_diffs` = (valid, test)
/// differences when ordering by exact timestamps instead, as RECBOLE-PROTOCOL.md states.
#[track_caller]
fn check(source: &str, counts: (usize, usize, usize), exact_order_diffs: (usize, usize)) {
    let raw = load(source);
    let want = reference(source);

    let d = pulse_data::prepare(&raw, &recbole_protocol(Order::Recbole)).unwrap();
    let s = &d.stats;
    assert_eq!((s.users, s.items, s.interactions), counts);
    assert_eq!((d.n_users(), d.n_items()), (counts.0, counts.1));
    assert_eq!(
        (s.train + s.valid + s.test, s.valid, s.test),
        (counts.2, counts.0, counts.0)
    );
    assert_eq!(
        differences(&d, &want),
        (0, 0),
        "recbole order must reproduce RecBole"
    );
    assert!(!d.item_text.is_empty() && d.item_text.iter().all(|(_, v)| v.len() == counts.1));

    let exact = pulse_data::prepare(&raw, &recbole_protocol(Order::Timestamp)).unwrap();
    assert_eq!(differences(&exact, &want), exact_order_diffs);
}

#[test]
fn ml_100k_matches_recbole() {
    check("ml-100k", (943, 1_349, 99_287), (251, 150));
}

#[test]
fn ml_1m_matches_recbole() {
    check("ml-1m", (6_040, 3_416, 999_611), (1_977, 1_190));
}

/// Wall time of `prepare` on ml-1m (a measurement, not an assertion):
/// `cargo test --release -p pulse-data --test recbole_splits -- --ignored --nocapture`.
#[test]
#[ignore]
fn prepare_time_ml_1m() {
    let raw = load("ml-1m");
    for order in [Order::Recbole, Order::Timestamp, Order::File] {
        let cfg = recbole_protocol(order);
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let d = pulse_data::prepare(&raw, &cfg).unwrap();
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(d.stats.interactions, 999_611);
        }
        times.sort_by(f64::total_cmp);
        eprintln!(
            "prepare(ml-1m, 5-core, leave-one-out, order {order:?}): median {:.3} s, min {:.3} s",
            times[2], times[0]
        );
    }
}
