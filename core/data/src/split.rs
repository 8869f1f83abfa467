//! Steps 5–6 of [`crate::prepare`]: dense ids and the train / valid / test split, walking the
//! ordered frame once, plus the item text table aligned to the dense item ids.

use crate::filter::{Filtered, KEY};
use crate::DataError;
use pulse_api::data::{columns, RawDataset, SplitData};
use pulse_api::polars::prelude::{DataType, PlHashMap};
use pulse_api::sections::{SplitConfig, SplitKind};

/// One user's interactions in order: `(dense item id, sort key)`.
type Sequence = Vec<(u32, f64)>;

/// Renumbers codes densely in order of first appearance.
struct Renumber {
    dense: Vec<u32>,
    order: Vec<u32>,
}

impl Renumber {
    const UNSEEN: u32 = u32::MAX;

    fn new(codes: usize) -> Self {
        Self {
            dense: vec![Self::UNSEEN; codes],
            order: Vec::new(),
        }
    }

    fn id(&mut self, code: u32) -> u32 {
        let slot = &mut self.dense[code as usize];
        if *slot == Self::UNSEEN {
            // invariant: fewer dense ids than codes, and codes are u32.
            *slot = self.order.len() as u32;
            self.order.push(code);
        }
        *slot
    }

    /// Raw ids in dense order.
    fn names(&self, names: &[String]) -> Vec<String> {
        self.order
            .iter()
            .map(|&c| names[c as usize].clone())
            .collect()
    }
}

pub(crate) fn split(name: &str, f: Filtered, cfg: &SplitConfig) -> Result<SplitData, DataError> {
    let users = f.frame.column(columns::USER)?.u32()?;
    let items = f.frame.column(columns::ITEM)?.u32()?;
    let keys = f.frame.column(KEY)?.f64()?;
    let mut user_ids = Renumber::new(f.user_names.len());
    let mut item_ids = Renumber::new(f.item_names.len());
    let mut seqs: Vec<Sequence> = Vec::new();
    let mut all_keys = Vec::with_capacity(f.frame.height());
    for ((u, i), k) in users.iter().zip(items.iter()).zip(keys.iter()) {
        // Nulls were rejected before filtering; a null here would be a polars bug.
        let (Some(u), Some(i), Some(k)) = (u, i, k) else {
            return Err(DataError::Nulls {
                dataset: name.into(),
                column: "user/item/order key".into(),
                count: 1,
            });
        };
        let u = user_ids.id(u) as usize;
        if u == seqs.len() {
            seqs.push(Vec::new());
        }
        seqs[u].push((item_ids.id(i), k));
        all_keys.push(k);
    }

    let n = seqs.len();
    let (mut train, mut valid, mut test) = (
        vec![Vec::new(); n],
        vec![Vec::new(); n],
        vec![Vec::new(); n],
    );
    let items_of = |s: &[(u32, f64)]| s.iter().map(|&(i, _)| i).collect::<Vec<u32>>();
    match cfg.kind {
        SplitKind::LeaveOneOut => {
            for (u, s) in seqs.iter().enumerate() {
                // Fewer than 3 interactions cannot give train, valid and test each one item:
                // such users keep everything for training and are not evaluated.
                if s.len() < 3 {
                    train[u] = items_of(s);
                } else {
                    let l = s.len();
                    train[u] = items_of(&s[..l - 2]);
                    valid[u] = items_of(&s[l - 2..l - 1]);
                    test[u] = items_of(&s[l - 1..]);
                }
            }
        }
        SplitKind::Ratio => {
            for (u, s) in seqs.iter().enumerate() {
                let [a, b, _] = ratio_counts(s.len(), &cfg.ratios);
                train[u] = items_of(&s[..a]);
                valid[u] = items_of(&s[a..a + b]);
                test[u] = items_of(&s[a + b..]);
            }
        }
        SplitKind::Temporal => {
            // `all_keys` is sorted (the frame is ordered by it).
            let at = |q: f64| {
                let pos = ((q * all_keys.len() as f64).floor() as usize).min(all_keys.len() - 1);
                all_keys[pos]
            };
            let (valid_from, test_from) = (at(cfg.cut[0]), at(cfg.cut[1]));
            for (u, s) in seqs.iter().enumerate() {
                for &(i, k) in s {
                    let part = if k >= test_from {
                        &mut test[u]
                    } else if k >= valid_from {
                        &mut valid[u]
                    } else {
                        &mut train[u]
                    };
                    part.push(i);
                }
            }
        }
    }

    let count = |v: &[Vec<u32>]| v.iter().map(Vec::len).sum::<usize>();
    let mut stats = f.stats;
    stats.users = user_ids.order.len();
    stats.items = item_ids.order.len();
    stats.train = count(&train);
    stats.valid = count(&valid);
    stats.test = count(&test);
    Ok(SplitData {
        dataset: name.into(),
        user_ids: user_ids.names(&f.user_names),
        item_ids: item_ids.names(&f.item_names),
        train,
        valid,
        test,
        item_text: Vec::new(),
        stats,
    })
}

/// Train / valid / test sizes for `n` interactions, exactly as RecBole 1.2.1's
/// `_calcu_split_ids`: valid and test are rounded down, train takes the rest, then a part whose
/// share is positive but under one interaction gets one (test first) while train keeps two.
fn ratio_counts(n: usize, ratios: &[f64; 3]) -> [usize; 3] {
    let total: f64 = ratios.iter().sum();
    let r = ratios.map(|x| x / total);
    let nf = n as f64;
    let mut cnt = r.map(|x| (x * nf).floor() as usize);
    cnt[0] = n.saturating_sub(cnt[1] + cnt[2]);
    for part in [2, 1] {
        if cnt[0] <= 1 {
            break;
        }
        let share = r[part] * nf;
        if 0.0 < share && share < 1.0 {
            cnt[part] += 1;
            cnt[0] -= 1;
        }
    }
    cnt
}

/// Every non-id column of `raw.items`, one value per dense item id (`""` when the item has no
/// row or the value is missing). The first row of a repeated item id wins.
pub(crate) fn item_text(
    raw: &RawDataset,
    item_ids: &[String],
) -> Result<Vec<(String, Vec<String>)>, DataError> {
    let Some(table) = &raw.items else {
        return Ok(Vec::new());
    };
    let key_column = table
        .column(columns::ITEM)
        .map_err(|_| DataError::MissingColumn {
            dataset: raw.name.clone(),
            column: columns::ITEM.into(),
            why: "the item table needs as its key".into(),
        })?;
    let keys = key_column.cast(&DataType::String)?;
    let keys = keys.str()?;
    let mut row_of: PlHashMap<&str, usize> = PlHashMap::default();
    for (r, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            row_of.entry(k).or_insert(r);
        }
    }
    let rows: Vec<Option<usize>> = item_ids
        .iter()
        .map(|id| row_of.get(id.as_str()).copied())
        .collect();
    let mut out = Vec::new();
    for column in table.columns() {
        if column.name().as_str() == columns::ITEM {
            continue;
        }
        let text = column.cast(&DataType::String)?;
        let text = text.str()?;
        let values = rows
            .iter()
            .map(|r| r.and_then(|r| text.get(r)).unwrap_or("").to_string())
            .collect();
        out.push((column.name().to_string(), values));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[track_caller]
    fn check(n: usize, ratios: [f64; 3], expected: [usize; 3]) {
        assert_eq!(
            super::ratio_counts(n, &ratios),
            expected,
            "n = {n}, ratios = {ratios:?}"
        );
    }

    #[test]
    fn ratio_counts_follow_recbole() {
        check(10, [0.8, 0.1, 0.1], [8, 1, 1]);
        check(30, [0.8, 0.1, 0.1], [24, 3, 3]);
        check(19, [0.8, 0.1, 0.1], [17, 1, 1]);
        // Shares under one interaction still get one while train keeps two or more.
        check(5, [0.8, 0.1, 0.1], [3, 1, 1]);
        check(3, [0.8, 0.1, 0.1], [1, 1, 1]);
        check(2, [0.8, 0.1, 0.1], [1, 0, 1]);
        check(1, [0.8, 0.1, 0.1], [1, 0, 0]);
        check(10, [1.0, 0.0, 0.0], [10, 0, 0]);
        check(10, [0.5, 0.0, 0.5], [5, 0, 5]);
        check(7, [0.7, 0.2, 0.1], [5, 1, 1]);
        check(2, [0.4, 0.2, 0.4], [1, 0, 1]);
    }
}
