//! `pulse-data` turns a dataset plugin's raw tables into the split, integer-indexed
//! [`SplitData`] every recommender and the evaluator work on.
//!
//! [`prepare`] runs, in this order:
//! 1. **dedup** of repeated `(user, item)` pairs (keep the first or last in file order, or all);
//! 2. **rating threshold** (keep `rating >= threshold`);
//! 3. **iterative k-core** on users and items, repeated until nothing changes;
//! 4. **chronological order**: exact timestamps, RecBole 1.2.1's float32 timestamps, or file
//!    order — always a stable sort, file order breaking ties;
//! 5. **dense ids**: users and items are numbered `0..` in order of their first appearance in the
//!    filtered, chronologically ordered table (so the numbering is deterministic and does not
//!    depend on hashing);
//! 6. **split**, every part in chronological order:
//!    - `leave-one-out`: last interaction = test, second to last = valid, the rest = train.
//!      Users with fewer than 3 interactions keep everything in train and have no valid or
//!      test item (they are not evaluated);
//!    - `ratio`: per user, part sizes exactly as RecBole 1.2.1 computes them (valid and test
//!      rounded down, train the rest, then a part with a positive share under one interaction
//!      gets one while train keeps at least two);
//!    - `temporal`: one global cut on the order key. With `n` ordered interactions and keys
//!      `k[0] <= … <= k[n-1]`, valid starts at `k[floor(cut[0]·n)]` and test at
//!      `k[floor(cut[1]·n)]`; interactions tied with a cut value go to the later part, so
//!      every train key < every valid key < every test key. Under `order = "file"` the key is
//!      the file position. A user may end up with no training interactions.
//!
//! Steps 1–4 run on polars lazy frames (ids as integer codes); the split walks the ordered
//! columns once.
//!
//! [`negatives`] holds the negative samplers every model shares (uniform, popularity^α,
//! in-batch), with log sampling probabilities for log-Q correction.

mod filter;
pub mod negatives;
mod split;

pub use negatives::{NegativeSampler, Negatives};

use pulse_api::data::{DataStats, RawDataset, SplitData};
use pulse_api::sections::SplitConfig;

/// Why a data set could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The `[split]` section failed its own validation.
    #[error("invalid [split] section: {0}")]
    Config(String),
    /// A column the configuration needs is absent.
    #[error("data set '{dataset}' has no '{column}' column, which {why}")]
    MissingColumn {
        dataset: String,
        column: String,
        why: String,
    },
    /// A column has missing values where none may be.
    #[error("data set '{dataset}': column '{column}' has {count} missing values")]
    Nulls {
        dataset: String,
        column: String,
        count: usize,
    },
    /// Filtering removed everything.
    #[error("data set '{dataset}': no interactions left after filtering ({stats})")]
    Empty { dataset: String, stats: String },
    /// A polars operation failed.
    #[error("table error: {0}")]
    Table(#[from] pulse_api::polars::error::PolarsError),
}

/// Filters, orders, indexes and splits `raw` as `cfg` says.
pub fn prepare(raw: &RawDataset, cfg: &SplitConfig) -> Result<SplitData, DataError> {
    let problems = cfg.validate();
    if !problems.is_empty() {
        let msgs: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(DataError::Config(msgs.join("; ")));
    }
    let filtered = filter::filter_and_order(raw, cfg)?;
    if filtered.frame.height() == 0 {
        return Err(DataError::Empty {
            dataset: raw.name.clone(),
            stats: describe_counts(&filtered.stats),
        });
    }
    let mut data = split::split(&raw.name, filtered, cfg)?;
    data.item_text = split::item_text(raw, &data.item_ids)?;
    Ok(data)
}

fn describe_counts(s: &DataStats) -> String {
    format!(
        "raw {}, after dedup {}, after threshold {}, after k-core {}",
        s.raw_interactions, s.after_dedup, s.after_threshold, s.interactions
    )
}

#[cfg(test)]
mod tests;
