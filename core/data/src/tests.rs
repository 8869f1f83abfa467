//! Data-driven tests of [`crate::prepare`] on hand-made frames: every filtering step, ordering
//! and split kind, plus leak checks on a larger random log.

use super::*;
use pulse_api::polars::prelude::{Column, DataFrame};
use pulse_api::sections::{Dedup, Order, SplitKind};
use rand::{Rng as _, SeedableRng};

/// A raw data set from lines `user item timestamp rating`.
fn raw(rows: &str) -> RawDataset {
    let (mut u, mut i, mut t, mut r) = (vec![], vec![], vec![], vec![]);
    for line in rows.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        u.push(f[0].to_string());
        i.push(f[1].to_string());
        t.push(f[2].parse::<f64>().unwrap());
        r.push(f[3].parse::<f64>().unwrap());
    }
    let n = u.len();
    RawDataset {
        name: "t".into(),
        interactions: DataFrame::new(
            n,
            vec![
                Column::new("user".into(), u),
                Column::new("item".into(), i),
                Column::new("timestamp".into(), t),
                Column::new("rating".into(), r),
            ],
        )
        .unwrap(),
        items: None,
        users: None,
    }
}

/// Renders a split with raw ids: one line per user `user: train | valid | test`, then the ids in
/// dense order and the counts.
fn render(d: &SplitData) -> String {
    let names = |v: &[u32]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter()
                .map(|&i| d.item_ids[i as usize].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let mut out: Vec<String> = (0..d.n_users())
        .map(|u| {
            format!(
                "{}: {} | {} | {}",
                d.user_ids[u],
                names(&d.train[u]),
                names(&d.valid[u]),
                names(&d.test[u])
            )
        })
        .collect();
    out.push(format!("items: {}", d.item_ids.join(" ")));
    let s = &d.stats;
    out.push(format!(
        "raw {} dedup {} threshold {} kept {} users {} items {} train {} valid {} test {}",
        s.raw_interactions,
        s.after_dedup,
        s.after_threshold,
        s.interactions,
        s.users,
        s.items,
        s.train,
        s.valid,
        s.test
    ));
    out.join("\n")
}

#[track_caller]
fn check(rows: &str, cfg: SplitConfig, expected: &str) {
    let got = match prepare(&raw(rows), &cfg) {
        Ok(d) => render(&d),
        Err(e) => format!("error: {e}"),
    };
    let expected: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(got, expected.join("\n"));
}

fn cfg() -> SplitConfig {
    SplitConfig::default()
}

const DUPS: &str = "
    u1 a 1 5
    u1 b 2 4
    u1 a 3 1
    u1 c 4 5
";

#[test]
fn dedup_keeps_first_last_or_all() {
    check(
        DUPS,
        cfg(),
        "u1: a | b | c
         items: a b c
         raw 4 dedup 3 threshold 3 kept 3 users 1 items 3 train 1 valid 1 test 1",
    );
    check(
        DUPS,
        SplitConfig {
            dedup: Dedup::Last,
            ..cfg()
        },
        "u1: b | a | c
         items: b a c
         raw 4 dedup 3 threshold 3 kept 3 users 1 items 3 train 1 valid 1 test 1",
    );
    check(
        DUPS,
        SplitConfig {
            dedup: Dedup::None,
            ..cfg()
        },
        "u1: a b | a | c
         items: a b c
         raw 4 dedup 4 threshold 4 kept 4 users 1 items 3 train 2 valid 1 test 1",
    );
}

#[test]
fn threshold_applies_after_dedup() {
    // Keep-first keeps a's rating 5; keep-last keeps its rating 1, which the threshold drops.
    check(
        DUPS,
        SplitConfig {
            rating_threshold: Some(4.0),
            ..cfg()
        },
        "u1: a | b | c
         items: a b c
         raw 4 dedup 3 threshold 3 kept 3 users 1 items 3 train 1 valid 1 test 1",
    );
    check(
        DUPS,
        SplitConfig {
            rating_threshold: Some(4.0),
            dedup: Dedup::Last,
            ..cfg()
        },
        "u1: b c | - | -
         items: b c
         raw 4 dedup 3 threshold 2 kept 2 users 1 items 2 train 2 valid 0 test 0",
    );
}

#[test]
fn k_core_iterates_until_stable() {
    // 2-core. u4 has one interaction -> dropped; then c has one -> dropped; then u3 has one ->
    // dropped; b falls from 3 to 2 and stays. The user cut makes an item fall below k, and that
    // item cut makes another user fall below k.
    let rows = "
        u1 a 1 5
        u1 b 2 5
        u2 a 3 5
        u2 b 4 5
        u3 c 5 5
        u3 b 6 5
        u4 c 7 5
    ";
    let two = SplitConfig {
        min_user_interactions: 2,
        min_item_interactions: 2,
        ..cfg()
    };
    check(
        rows,
        two.clone(),
        "u1: a b | - | -
         u2: a b | - | -
         items: a b
         raw 7 dedup 7 threshold 7 kept 4 users 2 items 2 train 4 valid 0 test 0",
    );
    // Items only: c has 2 rows and survives; nothing iterates.
    check(
        rows,
        SplitConfig {
            min_item_interactions: 2,
            ..cfg()
        },
        "u1: a b | - | -
         u2: a b | - | -
         u3: c b | - | -
         u4: c | - | -
         items: a b c
         raw 7 dedup 7 threshold 7 kept 7 users 4 items 3 train 7 valid 0 test 0",
    );
    // An item cut that starts the cascade: d has one row, so u5 falls to one and goes, and e
    // (only u5 and u6) falls to one and goes, and u6 is left with one.
    let rows2 = "
        u5 d 1 5
        u5 e 2 5
        u6 e 3 5
        u6 f 4 5
        u7 f 5 5
        u7 g 6 5
        u8 f 7 5
        u8 g 8 5
    ";
    check(
        rows2,
        two,
        "u7: f g | - | -
         u8: f g | - | -
         items: f g
         raw 8 dedup 8 threshold 8 kept 4 users 2 items 2 train 4 valid 0 test 0",
    );
    check(
        rows2,
        SplitConfig { min_user_interactions: 10, ..cfg() },
        "error: data set 't': no interactions left after filtering (raw 8, after dedup 8, after threshold 8, after k-core 0)",
    );
}

/// 1e9 is a multiple of 64, float32's step there: 1e9+32 rounds down (tie to even), 1e9+33 and
/// 1e9+40 round up to 1e9+64, so under `recbole` p and q tie and keep file order.
const TIES: &str = "
    u1 w 3000000000 5
    u1 p 1000000040 5
    u1 q 1000000033 5
    u1 r 1000000032 5
";

#[test]
fn orderings() {
    let order = |order| SplitConfig {
        order,
        dedup: Dedup::None,
        ..cfg()
    };
    check(
        TIES,
        order(Order::Timestamp),
        "u1: r q | p | w
         items: r q p w
         raw 4 dedup 4 threshold 4 kept 4 users 1 items 4 train 2 valid 1 test 1",
    );
    check(
        TIES,
        order(Order::Recbole),
        "u1: r p | q | w
         items: r p q w
         raw 4 dedup 4 threshold 4 kept 4 users 1 items 4 train 2 valid 1 test 1",
    );
    check(
        TIES,
        order(Order::File),
        "u1: w p | q | r
         items: w p q r
         raw 4 dedup 4 threshold 4 kept 4 users 1 items 4 train 2 valid 1 test 1",
    );
    // Exact ties keep file order under `timestamp` too.
    check(
        "u1 b 7 5\nu1 a 7 5\nu1 c 7 5\nu2 a 1 5",
        cfg(),
        "u2: a | - | -
         u1: b | a | c
         items: a b c
         raw 4 dedup 4 threshold 4 kept 4 users 2 items 3 train 2 valid 1 test 1",
    );
}

#[test]
fn leave_one_out_and_ratio_splits() {
    let rows = "
        u1 a 1 5
        u1 b 2 5
        u1 c 3 5
        u1 d 4 5
        u1 e 5 5
        u2 a 6 5
        u2 b 7 5
        u3 c 8 5
    ";
    // Users with fewer than 3 interactions only train.
    check(
        rows,
        cfg(),
        "u1: a b c | d | e
         u2: a b | - | -
         u3: c | - | -
         items: a b c d e
         raw 8 dedup 8 threshold 8 kept 8 users 3 items 5 train 6 valid 1 test 1",
    );
    check(
        rows,
        SplitConfig {
            kind: SplitKind::Ratio,
            ..cfg()
        },
        "u1: a b c | d | e
         u2: a | - | b
         u3: c | - | -
         items: a b c d e
         raw 8 dedup 8 threshold 8 kept 8 users 3 items 5 train 5 valid 1 test 2",
    );
    check(
        rows,
        SplitConfig {
            kind: SplitKind::Ratio,
            ratios: [0.4, 0.2, 0.4],
            ..cfg()
        },
        "u1: a b | c | d e
         u2: a | - | b
         u3: c | - | -
         items: a b c d e
         raw 8 dedup 8 threshold 8 kept 8 users 3 items 5 train 4 valid 1 test 3",
    );
}

#[test]
fn temporal_split_cuts_globally() {
    // Ten timestamps; cut at the 0.6 and 0.8 quantiles: keys[6] = 7 and keys[8] = 9 (the tie at
    // 7 goes wholly to valid).
    let rows = "
        u1 a 1 5
        u2 a 2 5
        u1 b 3 5
        u2 b 4 5
        u1 c 5 5
        u2 c 7 5
        u1 d 7 5
        u2 d 8 5
        u1 e 9 5
        u2 e 10 5
    ";
    check(
        rows,
        SplitConfig {
            kind: SplitKind::Temporal,
            cut: [0.6, 0.8],
            ..cfg()
        },
        "u1: a b c | d | e
         u2: a b | c d | e
         items: a b c d e
         raw 10 dedup 10 threshold 10 kept 10 users 2 items 5 train 5 valid 3 test 2",
    );
}

#[test]
fn errors_say_what_is_missing() {
    let mut no_time = raw("u1 a 1 5");
    no_time.interactions = no_time.interactions.drop("timestamp").unwrap();
    let e = prepare(&no_time, &cfg()).unwrap_err().to_string();
    assert!(
        e.contains("no 'timestamp' column") && e.contains("order = \"file\""),
        "{e}"
    );
    let d = prepare(
        &no_time,
        &SplitConfig {
            order: Order::File,
            ..cfg()
        },
    )
    .unwrap();
    assert_eq!(d.train, [vec![0]]);

    let mut no_rating = raw("u1 a 1 5");
    no_rating.interactions = no_rating.interactions.drop("rating").unwrap();
    let e = prepare(
        &no_rating,
        &SplitConfig {
            rating_threshold: Some(3.0),
            ..cfg()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("no 'rating' column, which `rating_threshold` needs"),
        "{e}"
    );

    let e = prepare(
        &raw("u1 a 1 5"),
        &SplitConfig {
            ratios: [0.5, 0.5, 0.5],
            ..cfg()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("invalid [split] section: ratios"), "{e}");
}

#[test]
fn item_text_is_aligned_to_dense_ids() {
    let mut r = raw("u1 b 1 5\nu1 a 2 5\nu1 z 3 5");
    r.items = Some(
        DataFrame::new(
            3,
            vec![
                Column::new("item".into(), ["a", "b", "a"]),
                Column::new("title".into(), [Some("Alpha, \"the\""), None, Some("dup")]),
                Column::new("year".into(), ["1990", "1991", "1992"]),
            ],
        )
        .unwrap(),
    );
    let d = prepare(&r, &cfg()).unwrap();
    assert_eq!(d.item_ids, ["b", "a", "z"]);
    assert_eq!(
        d.item_text,
        [
            (
                "title".to_string(),
                vec!["".to_string(), "Alpha, \"the\"".into(), "".into()]
            ),
            (
                "year".to_string(),
                vec!["1991".to_string(), "1990".into(), "".into()]
            ),
        ]
    );
    assert_eq!(d.text("title", 1), Some("Alpha, \"the\""));
}

/// A random log with many timestamp ties (also after float32 rounding) and repeats.
fn random_log(seed: u64) -> RawDataset {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut rows = String::new();
    for _ in 0..3000 {
        let u = rng.random_range(0..60);
        let i = rng.random_range(0..80);
        let t = 1_000_000_000 + rng.random_range(0..20) * 50;
        rows.push_str(&format!("u{u} i{i} {t} {}\n", rng.random_range(1..=5)));
    }
    raw(&rows)
}

/// Sort key of every kept `(user, item)` pair under `order` (dedup = first: the first row wins).
fn keys_of(raw: &RawDataset, order: Order) -> std::collections::HashMap<(String, String), f64> {
    let df = &raw.interactions;
    let u = df.column("user").unwrap().str().unwrap();
    let i = df.column("item").unwrap().str().unwrap();
    let t = df.column("timestamp").unwrap().f64().unwrap();
    let mut out = std::collections::HashMap::new();
    for (row, ((u, i), t)) in u.iter().zip(i.iter()).zip(t.iter()).enumerate() {
        let key = match order {
            Order::Timestamp => t.unwrap(),
            Order::Recbole => f64::from(t.unwrap() as f32),
            Order::File => row as f64,
        };
        out.entry((u.unwrap().to_string(), i.unwrap().to_string()))
            .or_insert(key);
    }
    out
}

#[test]
fn no_leaks_from_the_future() {
    let raw = random_log(11);
    for order in [Order::Timestamp, Order::Recbole, Order::File] {
        let keys = keys_of(&raw, order);
        for kind in [
            SplitKind::LeaveOneOut,
            SplitKind::Ratio,
            SplitKind::Temporal,
        ] {
            let cfg = SplitConfig {
                kind,
                order,
                min_user_interactions: 3,
                min_item_interactions: 3,
                ..cfg()
            };
            let d = prepare(&raw, &cfg).unwrap();
            let key =
                |u: usize, i: u32| keys[&(d.user_ids[u].clone(), d.item_ids[i as usize].clone())];
            let span = |u: usize, part: &[u32]| {
                let k: Vec<f64> = part.iter().map(|&i| key(u, i)).collect();
                assert!(
                    k.windows(2).all(|w| w[0] <= w[1]),
                    "{order:?} {kind:?}: unsorted"
                );
                (k.first().copied(), k.last().copied())
            };
            let (mut train_max, mut valid_min, mut valid_max, mut test_min) =
                (f64::MIN, f64::MAX, f64::MIN, f64::MAX);
            for u in 0..d.n_users() {
                let (_, tr_hi) = span(u, &d.train[u]);
                let (va_lo, va_hi) = span(u, &d.valid[u]);
                let (te_lo, _) = span(u, &d.test[u]);
                let ordered = [tr_hi, va_lo, va_hi, te_lo];
                let present: Vec<f64> = ordered.into_iter().flatten().collect();
                assert!(
                    present.windows(2).all(|w| w[0] <= w[1]),
                    "{order:?} {kind:?}: user {u} leaks"
                );
                train_max = train_max.max(tr_hi.unwrap_or(f64::MIN));
                valid_min = valid_min.min(va_lo.unwrap_or(f64::MAX));
                valid_max = valid_max.max(va_hi.unwrap_or(f64::MIN));
                test_min = test_min.min(te_lo.unwrap_or(f64::MAX));
            }
            if kind == SplitKind::Temporal {
                assert!(
                    train_max < valid_min && valid_max < test_min,
                    "{order:?}: cut crossed"
                );
            }
            let s = &d.stats;
            assert_eq!(
                s.train + s.valid + s.test,
                s.interactions,
                "{order:?} {kind:?}"
            );
            assert!(s.valid > 0 && s.test > 0, "{order:?} {kind:?}");
        }
    }
}
