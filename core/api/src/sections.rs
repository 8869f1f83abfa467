//! Typed forms of the spec sections the core itself owns: `[experiment]`, `[split]`, `[eval]`
//! and `[tracker]`. Plugin sections are typed by their plugins; these are typed here so the
//! spec layer, the data pipeline, the evaluator and the runtime share one definition.

use crate::config::{check_range, ConfigError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// `[experiment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExperimentSection {
    /// Name under which runs are stored and compared.
    pub name: String,
    pub description: String,
    /// Seed of every trial (unless `seeds` is given).
    pub seed: u64,
    /// Run every trial once per seed (for mean ± sd).
    pub seeds: Vec<u64>,
    /// Spec files this one layers on top of, lowest priority first (resolved by `pulse-spec`).
    pub extends: Vec<String>,
    /// Data sets to run on (default: every one declared under `[datasets]`).
    pub datasets: Vec<String>,
    /// Models to run (default: every one declared under `[models]`).
    pub models: Vec<String>,
}

impl Default for ExperimentSection {
    fn default() -> Self {
        Self {
            name: "default".into(),
            description: String::new(),
            seed: 2020,
            seeds: Vec::new(),
            extends: Vec::new(),
            datasets: Vec::new(),
            models: Vec::new(),
        }
    }
}

impl ExperimentSection {
    /// The seeds every trial runs with.
    pub fn all_seeds(&self) -> Vec<u64> {
        if self.seeds.is_empty() {
            vec![self.seed]
        } else {
            self.seeds.clone()
        }
    }

    pub fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        let ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            e.push(ConfigError::invalid_value(
                "name",
                "a non-empty name of letters, digits, '-', '_' or '.'",
                format!("'{}'", self.name),
            ));
        }
        e
    }
}

/// How held-out data is cut from each user's chronological sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitKind {
    /// Last interaction = test, second to last = valid, the rest = train.
    LeaveOneOut,
    /// Per user, the first `ratios[0]` of interactions train, then valid, then test.
    Ratio,
    /// One global time cut: interactions at or after the `cut` quantiles are valid / test.
    Temporal,
}

/// How interactions are ordered before splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Exact timestamps; file order breaks true ties (stable sort). The default.
    Timestamp,
    /// RecBole 1.2.1's order: timestamps rounded to float32, stable sort. Reproduces its splits.
    Recbole,
    /// File order, ignoring timestamps.
    File,
}

/// Which duplicate (user, item) rows survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dedup {
    /// Keep the first occurrence in file order.
    First,
    /// Keep the last occurrence in file order.
    Last,
    /// Keep every row (repeat consumption).
    None,
}

/// `[split]`: filtering, ordering and splitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    #[serde(rename = "type")]
    pub kind: SplitKind,
    pub order: Order,
    pub dedup: Dedup,
    /// Drop interactions whose rating is below this value (none by default: every rating is an
    /// implicit interaction).
    pub rating_threshold: Option<f64>,
    /// Iterative k-core: users with fewer interactions are removed, until stable.
    pub min_user_interactions: usize,
    /// Iterative k-core: items with fewer interactions are removed, until stable.
    pub min_item_interactions: usize,
    /// `ratio` only: train / valid / test fractions.
    pub ratios: [f64; 3],
    /// `temporal` only: global timestamp quantiles where valid and test begin.
    pub cut: [f64; 2],
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            kind: SplitKind::LeaveOneOut,
            order: Order::Timestamp,
            dedup: Dedup::First,
            rating_threshold: None,
            min_user_interactions: 0,
            min_item_interactions: 0,
            ratios: [0.8, 0.1, 0.1],
            cut: [0.8, 0.9],
        }
    }
}

impl SplitConfig {
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        check_range(
            &mut e,
            "min_user_interactions",
            self.min_user_interactions,
            0,
            1_000_000,
        );
        check_range(
            &mut e,
            "min_item_interactions",
            self.min_item_interactions,
            0,
            1_000_000,
        );
        let sum: f64 = self.ratios.iter().sum();
        if self.ratios.iter().any(|r| !(0.0..=1.0).contains(r)) || (sum - 1.0).abs() > 1e-6 {
            e.push(ConfigError::invalid_value(
                "ratios",
                "three fractions in [0, 1] that sum to 1",
                format!("{:?}", self.ratios),
            ));
        }
        let [a, b] = self.cut;
        if !(0.0 < a && a <= b && b < 1.0) {
            e.push(ConfigError::invalid_value(
                "cut",
                "two quantiles 0 < valid <= test < 1",
                format!("{:?}", self.cut),
            ));
        }
        e
    }
}

/// Ranking metrics pulse computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricName {
    Hr,
    Ndcg,
    Mrr,
    Recall,
    Precision,
}

impl MetricName {
    pub const ALL: [MetricName; 5] = [
        MetricName::Hr,
        MetricName::Ndcg,
        MetricName::Mrr,
        MetricName::Recall,
        MetricName::Precision,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MetricName::Hr => "hr",
            MetricName::Ndcg => "ndcg",
            MetricName::Mrr => "mrr",
            MetricName::Recall => "recall",
            MetricName::Precision => "precision",
        }
    }
}

/// A metric at a cut-off, written `ndcg@10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricSpec {
    pub name: MetricName,
    pub k: usize,
}

impl MetricSpec {
    /// Parses `name@k`; the error says what is accepted.
    pub fn parse(s: &str) -> Result<MetricSpec, String> {
        let known = MetricName::ALL.map(|m| m.name()).join(", ");
        let (name, k) = s
            .split_once('@')
            .ok_or_else(|| format!("expected NAME@K such as 'ndcg@10' (NAME one of {known})"))?;
        let name = MetricName::ALL
            .into_iter()
            .find(|m| m.name() == name.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown metric '{name}'; known: {known}"))?;
        let k: usize = k
            .parse()
            .map_err(|_| format!("cut-off '{k}' is not a whole number"))?;
        if k == 0 {
            return Err("cut-off K must be at least 1".into());
        }
        Ok(MetricSpec { name, k })
    }
}

impl fmt::Display for MetricSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name.name(), self.k)
    }
}

/// Full ranking over every item, or ranking the target among sampled negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Full,
    Sampled,
}

/// Which items are removed from a user's ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mask {
    /// The user's known items: training items for valid, training + valid items for test.
    Known,
    /// Nothing (RecBole's behaviour for sequential models).
    None,
}

/// How sampled-protocol negatives are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NegativeSampling {
    Uniform,
    Popularity,
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub protocol: Protocol,
    /// `name@k` with name in hr, ndcg, mrr, recall, precision.
    pub metrics: Vec<String>,
    /// Early stopping and best-epoch selection watch this validation metric.
    pub valid_metric: String,
    pub mask: Mask,
    /// `sampled` only: negatives per user.
    pub negatives: usize,
    /// `sampled` only.
    pub sampling: NegativeSampling,
    /// Users scored per batch (memory: batch × items floats).
    pub batch_users: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            protocol: Protocol::Full,
            metrics: vec!["hr@10".into(), "ndcg@10".into(), "mrr@10".into()],
            valid_metric: "ndcg@10".into(),
            mask: Mask::Known,
            negatives: 100,
            sampling: NegativeSampling::Uniform,
            batch_users: 512,
        }
    }
}

impl EvalConfig {
    /// Parsed metrics (call after `validate` passed).
    pub fn metric_specs(&self) -> Vec<MetricSpec> {
        self.metrics
            .iter()
            .filter_map(|m| MetricSpec::parse(m).ok())
            .collect()
    }

    pub fn valid_spec(&self) -> Option<MetricSpec> {
        MetricSpec::parse(&self.valid_metric).ok()
    }

    pub fn validate(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        if self.metrics.is_empty() {
            e.push(ConfigError::invalid_value(
                "metrics",
                "at least one metric such as 'ndcg@10'",
                "[]",
            ));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            if let Err(why) = MetricSpec::parse(m) {
                e.push(ConfigError::message(&format!("metrics.{i}"), why));
            }
        }
        if let Err(why) = MetricSpec::parse(&self.valid_metric) {
            e.push(ConfigError::message("valid_metric", why));
        }
        check_range(&mut e, "negatives", self.negatives, 1, 1_000_000);
        check_range(&mut e, "batch_users", self.batch_users, 1, 1_000_000);
        e
    }
}

/// `[tracker]`: where runs are recorded besides the local store (always on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSection {
    /// `local` (the embedded run store only).
    #[serde(rename = "type")]
    pub kind: String,
    /// Run store directory (default `./pulse-runs`, or `$PULSE_STORE`).
    pub store: Option<PathBuf>,
}

impl Default for TrackerSection {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            store: None,
        }
    }
}

impl TrackerSection {
    pub const KNOWN: &'static [&'static str] = &["local"];

    pub fn validate(&self) -> Vec<ConfigError> {
        if Self::KNOWN.contains(&self.kind.as_str()) {
            Vec::new()
        } else {
            vec![ConfigError::new(
                vec!["type".into()],
                crate::ConfigErrorKind::UnknownType {
                    family: "tracker".into(),
                    found: self.kind.clone(),
                    known: Self::KNOWN.iter().map(|s| s.to_string()).collect(),
                },
            )]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Result<&str, &str>) {
        match (MetricSpec::parse(input), expected) {
            (Ok(m), Ok(want)) => assert_eq!(m.to_string(), want),
            (Err(e), Err(want)) => assert!(e.contains(want), "{e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn metric_specs() {
        check("ndcg@10", Ok("ndcg@10"));
        check("HR@5", Ok("hr@5"));
        check("ndcg@0", Err("at least 1"));
        check("ndgc@10", Err("unknown metric 'ndgc'"));
        check("ndcg", Err("expected NAME@K"));
        check("mrr@x", Err("not a whole number"));
    }
}
