//! MLflow's JSON shapes and limits: request and response bodies of the tracking REST API, the
//! mapping of pulse's metric and parameter names onto the characters MLflow accepts, value
//! truncation, and the splitting of `runs/log-batch` payloads so that no request exceeds the
//! server's limits (1000 metrics, 100 params, 100 tags, 1000 items, 1 MB).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `runs/log-batch`: at most this many metrics per request.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// `runs/log-batch`: at most this many params (and, separately, tags) per request.
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
/// `runs/log-batch`: at most this many items of all kinds per request.
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// `runs/log-batch`: the server refuses bodies over 1 MB; a margin covers the envelope.
pub const MAX_BATCH_BYTES: usize = 900_000;
/// Longest metric, param or tag key.
pub const MAX_KEY_LEN: usize = 250;
/// Longest param value MLflow 2.x/3.x stores.
pub const MAX_PARAM_VALUE_LEN: usize = 6000;
/// Longest tag value every backend is guaranteed to store.
pub const MAX_TAG_VALUE_LEN: usize = 5000;
/// Appended to a truncated value.
pub const TRUNCATION_MARKER: &str = "…[truncated; full value in artifact spec.json]";

/// A metric value: JSON numbers, with MLflow's spelling of the non-finite ones as strings
/// (`"NaN"`, `"Infinity"`, `"-Infinity"`), which plain JSON cannot carry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Value(pub f64);

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v == f64::INFINITY {
            s.serialize_str("Infinity")
        } else if v == f64::NEG_INFINITY {
            s.serialize_str("-Infinity")
        } else {
            s.serialize_f64(v)
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Str(String),
            Null(()),
        }
        Ok(Value(match Raw::deserialize(d)? {
            Raw::Num(v) => v,
            Raw::Str(s) => match s.as_str() {
                "Infinity" | "inf" => f64::INFINITY,
                "-Infinity" | "-inf" => f64::NEG_INFINITY,
                other => other.parse().unwrap_or(f64::NAN),
            },
            Raw::Null(()) => f64::NAN,
        }))
    }
}

/// An int64 that protobuf's JSON mapping may also write as a string.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(i64),
        Str(String),
    }
    match Raw::deserialize(d)? {
        Raw::Num(v) => Ok(v),
        Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn opt_int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "int64")] i64);
    Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
}

/// One metric point as MLflow sends and receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireMetric {
    pub key: String,
    pub value: Value,
    #[serde(deserialize_with = "int64")]
    pub timestamp: i64,
    #[serde(default, deserialize_with = "int64")]
    pub step: i64,
}

impl WireMetric {
    /// What identifies a point on the server: MLflow keeps every logged point, so the same
    /// (key, step, timestamp, value) twice means it was logged twice.
    pub fn identity(&self) -> (String, i64, i64, u64) {
        let bits = if self.value.0.is_nan() {
            f64::NAN.to_bits()
        } else {
            self.value.0.to_bits()
        };
        (self.key.clone(), self.step, self.timestamp, bits)
    }
}

/// A param or tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// The body of `runs/log-batch`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogBatch {
    pub run_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<WireMetric>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<KeyValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<KeyValue>,
}

/// `experiments/get-by-name` answers `{"experiment": …}`.
#[derive(Debug, Clone, Deserialize)]
pub struct Experiment {
    pub experiment_id: String,
    #[serde(default)]
    pub name: String,
}

/// A run's `info`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunInfoWire {
    pub run_id: String,
    pub experiment_id: String,
    pub run_name: String,
    pub status: String,
    #[serde(deserialize_with = "opt_int64")]
    pub start_time: Option<i64>,
    #[serde(deserialize_with = "opt_int64")]
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: String,
}

/// A run's `data`: latest metric values, params and tags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunData {
    pub metrics: Vec<WireMetric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

/// A run as `runs/get`, `runs/create` and `runs/search` return it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Run {
    pub info: RunInfoWire,
    pub data: RunData,
}

impl Run {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.data
            .tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }
}

/// MLflow's error body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    pub error_code: String,
    pub message: String,
}

/// MLflow accepts letters, digits, `_ - . / space` (and `:` on non-Windows servers) in metric
/// and param names. `@` becomes `_at_` (MLflow's own spelling: `precision_at_10`), anything
/// else outside the set becomes `_`, and the result is cut to 250 bytes.
pub fn sanitize_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 3);
    for c in key.chars() {
        match c {
            '@' => out.push_str("_at_"),
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ') => {
                out.push(c)
            }
            _ => out.push('_'),
        }
    }
    // MLflow refuses names that a path normalisation would change (`a//b`, `/a`, `a/`).
    while out.contains("//") {
        out = out.replace("//", "/");
    }
    let trimmed = out.trim_matches('/');
    let mut out = if trimmed.is_empty() || trimmed == "." || trimmed.starts_with("..") {
        format!("_{trimmed}")
    } else {
        trimmed.to_string()
    };
    truncate_bytes(&mut out, MAX_KEY_LEN);
    out
}

/// The pulse name of a metric key read back from MLflow: `ndcg_at_10` → `ndcg@10`.
pub fn unsanitize_metric(key: &str) -> String {
    let Some(pos) = key.rfind("_at_") else {
        return key.to_string();
    };
    let (head, tail) = (&key[..pos], &key[pos + 4..]);
    if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
        format!("{head}@{tail}")
    } else {
        key.to_string()
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary.
fn truncate_bytes(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// `value` cut to `max` characters, the marker included, when longer; `true` when cut.
pub fn truncate_value(value: &str, max: usize) -> (String, bool) {
    if value.chars().count() <= max {
        return (value.to_string(), false);
    }
    let keep = max.saturating_sub(TRUNCATION_MARKER.chars().count());
    let mut out: String = value.chars().take(keep).collect();
    out.push_str(TRUNCATION_MARKER);
    (out, true)
}

/// Bytes one item adds to a JSON array (its encoding plus a comma).
fn encoded_len<T: Serialize>(item: &T) -> usize {
    serde_json::to_vec(item).map_or(1024, |v| v.len() + 1)
}

/// Splits `items` into consecutive chunks of at most `max_items` whose JSON stays under
/// [`MAX_BATCH_BYTES`]. An item larger than the byte budget gets a chunk of its own (the
/// server will refuse it, which is reported rather than retried).
pub fn chunks<T: Serialize>(items: &[T], max_items: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, item) in items.iter().enumerate() {
        let len = encoded_len(item);
        if i > start && (i - start >= max_items || bytes + len > MAX_BATCH_BYTES) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += len;
    }
    if start < items.len() {
        out.push(start..items.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: &str) {
        assert_eq!(sanitize_key(input), expected, "{input}");
    }

    #[test]
    fn keys_are_mapped_onto_mlflow_characters() {
        check("valid/ndcg@10", "valid/ndcg_at_10");
        check("train/loss", "train/loss");
        check(
            "models.bpr-mf.embedding_size",
            "models.bpr-mf.embedding_size",
        );
        check("a//b/", "a/b");
        check("é€", "__");
        check("", "_");
        check("../x", "_../x");
        assert_eq!(sanitize_key(&"k".repeat(300)).len(), MAX_KEY_LEN);
    }

    #[test]
    fn metric_names_round_trip() {
        for k in ["test/ndcg@10", "hr@5", "train/loss", "best_epoch", "x_at_y"] {
            assert_eq!(unsanitize_metric(&sanitize_key(k)), k);
        }
    }

    #[test]
    fn long_values_are_truncated_with_a_marker() {
        let (v, cut) = truncate_value(&"x".repeat(7000), MAX_PARAM_VALUE_LEN);
        assert!(cut);
        assert_eq!(v.chars().count(), MAX_PARAM_VALUE_LEN);
        assert!(v.ends_with(TRUNCATION_MARKER));
        assert_eq!(truncate_value("short", 10), ("short".to_string(), false));
    }

    #[test]
    fn non_finite_values_use_mlflow_spelling() {
        let m = |v: f64| WireMetric {
            key: "k".into(),
            value: Value(v),
            timestamp: 1,
            step: 2,
        };
        let text = serde_json::to_string(&[m(f64::NAN), m(f64::INFINITY), m(0.5)]).unwrap();
        assert!(
            text.contains("\"NaN\"") && text.contains("\"Infinity\""),
            "{text}"
        );
        let back: Vec<WireMetric> = serde_json::from_str(&text).unwrap();
        assert!(back[0].value.0.is_nan());
        assert_eq!(back[1].value.0, f64::INFINITY);
        assert_eq!(back[0].identity(), m(f64::NAN).identity());
        let s: WireMetric =
            serde_json::from_str(r#"{"key":"k","value":1.5,"timestamp":"7","step":"3"}"#).unwrap();
        assert_eq!((s.timestamp, s.step), (7, 3));
    }

    #[test]
    fn chunks_respect_count_and_size_limits() {
        let small: Vec<u32> = (0..2500).collect();
        let c = chunks(&small, MAX_METRICS_PER_BATCH);
        assert_eq!(c, vec![0..1000, 1000..2000, 2000..2500]);
        let big: Vec<String> = (0..5).map(|_| "v".repeat(400_000)).collect();
        let c = chunks(&big, MAX_PARAMS_TAGS_PER_BATCH);
        assert_eq!(c, vec![0..2, 2..4, 4..5]);
        assert!(chunks::<u8>(&[], 10).is_empty());
    }
}
