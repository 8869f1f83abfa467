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
    /// Wall-clock minutes each run may train: after the first epoch that ends past it,
    /// training stops as if early-stopped and the best validation epoch is tested (RecBole's
    /// reference runs were cut the same way). None: no limit.
    pub train_budget_minutes: Option<f64>,
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
            train_budget_minutes: None,
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
        if let Some(m) = self.train_budget_minutes {
            if !(m > 0.0 && m.is_finite()) {
                e.push(ConfigError::out_of_range(
                    "train_budget_minutes",
                    "> 0 (leave the key out for no limit)",
                    m,
                ));
            }
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
    /// RecBole 1.2.1's behaviour: `known` for general models, `none` for sequential ones.
    ByKind,
}

impl Mask {
    /// The mask a model of `kind` is evaluated with.
    pub fn resolve(self, kind: crate::recommender::ModelKind) -> Mask {
        match (self, kind) {
            (Mask::ByKind, crate::recommender::ModelKind::General) => Mask::Known,
            (Mask::ByKind, crate::recommender::ModelKind::Sequential) => Mask::None,
            (m, _) => m,
        }
    }
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
    /// `local` (the embedded run store only) or `mlflow` (also an MLflow tracking server; the
    /// local store stays the source of truth).
    #[serde(rename = "type")]
    pub kind: String,
    /// Run store directory (default `./pulse-runs`, or `$PULSE_STORE`).
    pub store: Option<PathBuf>,
    /// `mlflow` only: tracking server URL (default `$MLFLOW_TRACKING_URI`). Credentials never
    /// go here: they come from `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME`/`PASSWORD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// `mlflow` only: seconds `pulse run` waits at exit for undelivered records (default 30);
    /// whatever is left stays marked unsynced for `pulse sync`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_timeout: Option<f64>,
}

impl Default for TrackerSection {
    fn default() -> Self {
        Self {
            kind: "local".into(),
            store: None,
            uri: None,
            flush_timeout: None,
        }
    }
}

impl TrackerSection {
    pub const KNOWN: &'static [&'static str] = &["local", "mlflow"];
    /// Environment variable MLflow's own client reads the server URL from.
    pub const URI_ENV: &'static str = "MLFLOW_TRACKING_URI";
    pub const DEFAULT_FLUSH_TIMEOUT: f64 = 30.0;

    /// The MLflow server URL: `uri`, else `$MLFLOW_TRACKING_URI` (`None` for `local`).
    pub fn mlflow_uri(&self) -> Option<String> {
        self.mlflow_uri_with(std::env::var(Self::URI_ENV).ok())
    }

    fn mlflow_uri_with(&self, env_uri: Option<String>) -> Option<String> {
        if self.kind != "mlflow" {
            return None;
        }
        self.uri
            .clone()
            .or(env_uri)
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
    }

    pub fn validate(&self) -> Vec<ConfigError> {
        self.validate_with(std::env::var(Self::URI_ENV).ok())
    }

    /// `validate` with `$MLFLOW_TRACKING_URI` given explicitly (testable without the process
    /// environment).
    pub fn validate_with(&self, env_uri: Option<String>) -> Vec<ConfigError> {
        let mut e = Vec::new();
        if !Self::KNOWN.contains(&self.kind.as_str()) {
            e.push(ConfigError::new(
                vec!["type".into()],
                crate::ConfigErrorKind::UnknownType {
                    family: "tracker".into(),
                    found: self.kind.clone(),
                    known: Self::KNOWN.iter().map(|s| s.to_string()).collect(),
                },
            ));
            return e;
        }
        if self.kind != "mlflow" {
            for (key, set) in [
                ("uri", self.uri.is_some()),
                ("flush_timeout", self.flush_timeout.is_some()),
            ] {
                if set {
                    e.push(ConfigError::message(
                        key,
                        "only used by the mlflow tracker; add type = \"mlflow\" or remove it",
                    ));
                }
            }
            return e;
        }
        match (&self.uri, self.mlflow_uri_with(env_uri)) {
            (Some(u), _) if !is_http_url(u) => e.push(ConfigError::invalid_value(
                "uri",
                "an http:// or https:// URL such as 'http://127.0.0.1:5000'",
                format!("'{u}'"),
            )),
            (_, None) => e.push(ConfigError::message(
                "type",
                format!(
                    "the mlflow tracker needs a server: add uri = \"http://127.0.0.1:5000\" \
                     under [tracker], or export {}",
                    Self::URI_ENV
                ),
            )),
            (None, Some(u)) if !is_http_url(&u) => e.push(ConfigError::message(
                "type",
                format!(
                    "{} is '{u}', not an http:// or https:// URL; set uri = \
                     \"http://127.0.0.1:5000\" under [tracker] or fix the variable",
                    Self::URI_ENV
                ),
            )),
            _ => {}
        }
        if let Some(t) = self.flush_timeout {
            if !(0.0..=3600.0).contains(&t) {
                e.push(ConfigError::out_of_range(
                    "flush_timeout",
                    "0..=3600 seconds",
                    t,
                ));
            }
        }
        e
    }
}

/// `http://host…` or `https://host…` with a non-empty host.
fn is_http_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("http://")
        .or_else(|| u.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.starts_with(':') && !host.contains(char::is_whitespace)
    })
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

    #[track_caller]
    fn check_tracker(toml_like: &[(&str, &str)], env: Option<&str>, expected: &[&str]) {
        let mut t = TrackerSection::default();
        for (k, v) in toml_like {
            match *k {
                "type" => t.kind = v.to_string(),
                "uri" => t.uri = Some(v.to_string()),
                "flush_timeout" => t.flush_timeout = v.parse().ok(),
                _ => panic!("unknown key {k}"),
            }
        }
        let got: Vec<String> = t
            .validate_with(env.map(str::to_string))
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(got.len(), expected.len(), "{got:?}");
        for (g, want) in got.iter().zip(expected) {
            assert!(g.contains(want), "{g} lacks {want}");
        }
    }

    #[test]
    fn tracker_sections() {
        check_tracker(&[], None, &[]);
        check_tracker(
            &[("type", "mlflow"), ("uri", "http://127.0.0.1:5000")],
            None,
            &[],
        );
        check_tracker(&[("type", "mlflow")], Some("https://mlflow.lab"), &[]);
        check_tracker(
            &[("type", "mlflow")],
            None,
            &["type: the mlflow tracker needs a server"],
        );
        check_tracker(&[("type", "mlflow")], Some("  "), &["needs a server"]);
        check_tracker(
            &[("type", "mlflow")],
            Some("localhost:5000"),
            &["not an http://"],
        );
        check_tracker(
            &[("type", "mlflow"), ("uri", "localhost:5000")],
            None,
            &["uri: invalid value 'localhost:5000'"],
        );
        check_tracker(
            &[("type", "mlflow"), ("uri", "http://")],
            None,
            &["uri: invalid"],
        );
        check_tracker(
            &[("uri", "http://x:1")],
            None,
            &["uri: only used by the mlflow tracker"],
        );
        check_tracker(
            &[
                ("type", "mlflow"),
                ("uri", "http://x"),
                ("flush_timeout", "-1"),
            ],
            None,
            &["flush_timeout: value -1 is out of range"],
        );
        check_tracker(
            &[("type", "wandb")],
            None,
            &["unknown tracker type 'wandb'"],
        );
    }

    #[test]
    fn tracker_uri_prefers_the_spec() {
        let t = TrackerSection {
            kind: "mlflow".into(),
            uri: Some("http://spec:1".into()),
            ..TrackerSection::default()
        };
        assert_eq!(
            t.mlflow_uri_with(Some("http://env:2".into())).as_deref(),
            Some("http://spec:1")
        );
        let env_only = TrackerSection {
            kind: "mlflow".into(),
            ..TrackerSection::default()
        };
        assert_eq!(
            env_only
                .mlflow_uri_with(Some("http://env:2".into()))
                .as_deref(),
            Some("http://env:2")
        );
        assert_eq!(
            TrackerSection::default().mlflow_uri_with(Some("http://e".into())),
            None
        );
    }
}
