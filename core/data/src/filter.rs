//! Steps 1–4 of [`crate::prepare`] on polars lazy frames: dedup, rating threshold, iterative
//! k-core and the stable chronological sort. The result is one ordered frame with the columns
//! `user`, `item` (integer codes) and [`KEY`], the value the order was sorted by (and the
//! temporal split cuts on).
//!
//! Raw ids are strings; hashing them in every dedup and k-core pass dominated the run time, so
//! they are first replaced by `u32` codes (in order of first appearance in the file) and the
//! polars steps work on integers.

use crate::DataError;
use pulse_api::data::{columns, DataStats, RawDataset};
use pulse_api::polars::prelude::*;
use pulse_api::sections::{Dedup, Order, SplitConfig};

/// The sort key column: exact timestamp, float32-rounded timestamp, or file position.
pub(crate) const KEY: &str = "__key";
/// Position in the plugin's file order; the tie-break of every sort.
const ROW: &str = "__row";
const PAIR: &str = "__pair";

/// The filtered, chronologically ordered interactions.
#[derive(Debug)]
pub(crate) struct Filtered {
    /// Columns `user` and `item` (UInt32 codes), [`KEY`] (Float64), sorted by `KEY` then file
    /// position.
    pub frame: DataFrame,
    /// Raw user id of each user code.
    pub user_names: Vec<String>,
    /// Raw item id of each item code.
    pub item_names: Vec<String>,
    /// Raw, dedup, threshold and k-core counts; the rest is filled by the split.
    pub stats: DataStats,
}

fn has(df: &DataFrame, name: &str) -> bool {
    df.get_column_index(name).is_some()
}

fn missing(raw: &RawDataset, column: &str, why: &str) -> DataError {
    DataError::MissingColumn {
        dataset: raw.name.clone(),
        column: column.into(),
        why: why.into(),
    }
}

/// Fails if `name` has nulls (ids and sort keys must be complete).
fn no_nulls(raw: &RawDataset, df: &DataFrame, name: &str) -> Result<(), DataError> {
    let count = df.column(name)?.null_count();
    if count > 0 {
        return Err(DataError::Nulls {
            dataset: raw.name.clone(),
            column: name.into(),
            count,
        });
    }
    Ok(())
}

pub(crate) fn filter_and_order(raw: &RawDataset, cfg: &SplitConfig) -> Result<Filtered, DataError> {
    let df = &raw.interactions;
    for c in [columns::USER, columns::ITEM] {
        if !has(df, c) {
            return Err(missing(raw, c, "every data set needs"));
        }
        no_nulls(raw, df, c)?;
    }
    let with_ts = has(df, columns::TIMESTAMP);
    let with_rating = has(df, columns::RATING);
    if matches!(cfg.order, Order::Timestamp | Order::Recbole) {
        if !with_ts {
            return Err(missing(
                raw,
                columns::TIMESTAMP,
                "ordering by time needs (set `order = \"file\"` in [split] to keep file order)",
            ));
        }
        no_nulls(raw, df, columns::TIMESTAMP)?;
    }
    if cfg.rating_threshold.is_some() && !with_rating {
        return Err(missing(raw, columns::RATING, "`rating_threshold` needs"));
    }

    let users = df.column(columns::USER)?.cast(&DataType::String)?;
    let items = df.column(columns::ITEM)?.cast(&DataType::String)?;
    let (user_codes, user_names) = encode(users.str()?);
    let (item_codes, item_names) = encode(items.str()?);
    let mut cols = vec![
        Column::new(columns::USER.into(), user_codes),
        Column::new(columns::ITEM.into(), item_codes),
    ];
    for (present, name) in [
        (with_ts, columns::TIMESTAMP),
        (with_rating, columns::RATING),
    ] {
        if present {
            cols.push(df.column(name)?.cast(&DataType::Float64)?);
        }
    }
    let mut stats = DataStats {
        raw_interactions: df.height(),
        ..DataStats::default()
    };

    let base = DataFrame::new(df.height(), cols)?
        .lazy()
        .with_row_index(ROW, None);
    // One u64 per (user, item) pair: a single-column distinct is several times faster than a
    // two-column one.
    let dedup = |keep| {
        let pair = (col(columns::USER).cast(DataType::UInt64) * lit(1u64 << 32))
            + col(columns::ITEM).cast(DataType::UInt64);
        base.clone()
            .with_column(pair.alias(PAIR))
            .unique_stable_generic(Some(vec![col(PAIR)]), keep)
            .drop(by_name([PAIR], true, false))
    };
    let deduped = match cfg.dedup {
        Dedup::First => dedup(UniqueKeepStrategy::First),
        Dedup::Last => dedup(UniqueKeepStrategy::Last),
        Dedup::None => base,
    }
    .collect()?;
    stats.after_dedup = deduped.height();

    let thresholded = match cfg.rating_threshold {
        Some(t) => deduped
            .lazy()
            .filter(col(columns::RATING).gt_eq(lit(t)))
            .collect()?,
        None => deduped,
    };
    stats.after_threshold = thresholded.height();

    let cored = k_core(
        thresholded,
        cfg.min_user_interactions,
        cfg.min_item_interactions,
    )?;
    stats.interactions = cored.height();

    let key = match cfg.order {
        Order::Timestamp => col(columns::TIMESTAMP),
        // RecBole 1.2.1 keeps timestamps as float32: round to nearest, ties to even, exactly
        // like numpy's float64 -> float32 cast.
        Order::Recbole => col(columns::TIMESTAMP)
            .cast(DataType::Float32)
            .cast(DataType::Float64),
        Order::File => col(ROW).cast(DataType::Float64),
    };
    let ordered = cored
        .lazy()
        .with_column(key.alias(KEY))
        .sort_by_exprs(
            [col(KEY), col(ROW)],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .select([col(columns::USER), col(columns::ITEM), col(KEY)])
        .collect()?;
    Ok(Filtered {
        frame: ordered,
        user_names,
        item_names,
        stats,
    })
}

/// Iterative k-core: drops users with fewer than `min_user` rows and items with fewer than
/// `min_item` rows until a pass drops nothing. The k-core is unique, so the order in which a
/// pass applies the two conditions does not change the result.
fn k_core(mut df: DataFrame, min_user: usize, min_item: usize) -> Result<DataFrame, DataError> {
    if min_user <= 1 && min_item <= 1 {
        return Ok(df);
    }
    let at_least = |column: &str, k: usize| -> PolarsResult<Expr> {
        let k = IdxSize::try_from(k).unwrap_or(IdxSize::MAX);
        Ok(col(column).len().over([col(column)])?.gt_eq(lit(k)))
    };
    loop {
        let before = df.height();
        let mut lf = df.lazy();
        if min_user > 1 {
            lf = lf.filter(at_least(columns::USER, min_user)?);
        }
        if min_item > 1 {
            lf = lf.filter(at_least(columns::ITEM, min_item)?);
        }
        df = lf.collect()?;
        if df.height() == before || df.height() == 0 {
            return Ok(df);
        }
    }
}

/// Integer codes for string ids, numbered by first appearance, and the id of each code.
fn encode(values: &StringChunked) -> (Vec<u32>, Vec<String>) {
    let mut index: PlHashMap<&str, u32> = PlHashMap::default();
    let mut names = Vec::new();
    let codes = values
        .iter()
        .map(|v| {
            // invariant: nulls were rejected before encoding; "" stands in for the impossible.
            let v = v.unwrap_or("");
            *index.entry(v).or_insert_with(|| {
                names.push(v.to_string());
                // invariant: more than u32::MAX distinct ids do not fit in memory as Strings.
                (names.len() - 1) as u32
            })
        })
        .collect();
    (codes, names)
}
