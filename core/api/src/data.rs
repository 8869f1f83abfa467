//! The data that flows between stages: a dataset plugin's raw tables ([`RawDataset`], polars
//! frames in file order) and the preprocessed, split, integer-indexed form every recommender and
//! the evaluator work on ([`SplitData`]).

use polars::frame::DataFrame;

/// Column names every dataset plugin uses in [`RawDataset::interactions`].
pub mod columns {
    /// Raw user id (string).
    pub const USER: &str = "user";
    /// Raw item id (string).
    pub const ITEM: &str = "item";
    /// Seconds since the epoch as f64 (exact for integers below 2^53). Optional column.
    pub const TIMESTAMP: &str = "timestamp";
    /// Explicit rating as f64. Optional column.
    pub const RATING: &str = "rating";
}

/// What a dataset plugin hands over: interactions in file order (file order is the tie-break of
/// the chronological sort), plus optional item and user side tables keyed by `item` / `user`
/// whose other columns are strings (title, year, genres, …).
#[derive(Debug, Clone)]
pub struct RawDataset {
    pub name: String,
    pub interactions: DataFrame,
    pub items: Option<DataFrame>,
    pub users: Option<DataFrame>,
}

/// Which held-out part is being predicted; decides what counts as the user's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Valid,
    Test,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Valid => "valid",
            Phase::Test => "test",
        }
    }
}

/// Counts after each preprocessing step, reported with every run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DataStats {
    pub raw_interactions: usize,
    pub after_dedup: usize,
    pub after_threshold: usize,
    pub interactions: usize,
    pub users: usize,
    pub items: usize,
    pub train: usize,
    pub valid: usize,
    pub test: usize,
}

/// A preprocessed data set with dense ids: users `0..n_users`, items `0..n_items`, every list in
/// chronological order. Item text fields are kept for text-aware models (PULSE).
#[derive(Debug, Clone, Default)]
pub struct SplitData {
    pub dataset: String,
    pub user_ids: Vec<String>,
    pub item_ids: Vec<String>,
    pub train: Vec<Vec<u32>>,
    pub valid: Vec<Vec<u32>>,
    pub test: Vec<Vec<u32>>,
    /// `(field name, value per item)`; missing values are empty strings.
    pub item_text: Vec<(String, Vec<String>)>,
    pub stats: DataStats,
}

impl SplitData {
    pub fn n_users(&self) -> usize {
        self.user_ids.len()
    }

    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    /// The items a model may read as the user's past when predicting `phase`: training items
    /// for validation; training then validation items for test.
    pub fn history(&self, user: u32, phase: Phase) -> Vec<u32> {
        let u = user as usize;
        let mut h = self.train[u].clone();
        if phase == Phase::Test {
            h.extend_from_slice(&self.valid[u]);
        }
        h
    }

    /// The held-out items of `user` for `phase`.
    pub fn targets(&self, user: u32, phase: Phase) -> &[u32] {
        match phase {
            Phase::Valid => &self.valid[user as usize],
            Phase::Test => &self.test[user as usize],
        }
    }

    /// Training interaction count per item.
    pub fn item_counts(&self) -> Vec<u32> {
        let mut c = vec![0u32; self.n_items()];
        for seq in &self.train {
            for &i in seq {
                c[i as usize] += 1;
            }
        }
        c
    }

    /// Value of a text field for an item, if the data set has that field.
    pub fn text(&self, field: &str, item: u32) -> Option<&str> {
        self.item_text
            .iter()
            .find(|(f, _)| f == field)
            .and_then(|(_, v)| v.get(item as usize))
            .map(String::as_str)
    }
}
