//! Value rendering shared by trial labels, tracker parameters and trial ids: dotted-key
//! flattening with TOML-looking values, and the canonical JSON whose hash identifies a trial.

use crate::source::dotted;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Flattens a tree into dotted keys → TOML-looking values (`models.sasrec.hidden_size` →
/// `64`, strings unquoted at the top, lists and empty tables inline), e.g. for tracker params.
pub fn flatten(value: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut path = Vec::new();
    walk(value, &mut path, &mut out);
    out
}

fn walk(v: &Value, path: &mut Vec<String>, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                path.push(k.clone());
                walk(x, path, out);
                path.pop();
            }
        }
        other => {
            out.insert(dotted(path), toml_bare(other));
        }
    }
}

/// A value for a label or parameter: strings without quotes, everything else inline TOML.
pub(crate) fn toml_bare(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => toml_inline(other),
    }
}

/// A value as inline TOML (`"ce"`, `[32, 64]`, `{ type = "bce", negatives = 4 }`).
pub(crate) fn toml_inline(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(toml_inline).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Object(m) => format!(
            "{{ {} }}",
            m.iter()
                .map(|(k, x)| format!("{} = {}", dotted(std::slice::from_ref(k)), toml_inline(x)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// JSON with object keys sorted at every level and no whitespace, so equal trees hash equally
/// whatever map order serde_json was built with.
pub(crate) fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The first 12 hex digits of the SHA-256 of the canonical JSON.
pub(crate) fn trial_id(v: &Value) -> String {
    let digest = Sha256::digest(canonical_json(v).as_bytes());
    let mut id = hex::encode(digest);
    id.truncate(12);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn check(v: Value, expected: &[(&str, &str)]) {
        let got = flatten(&v);
        let want: BTreeMap<String, String> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn flattens_to_dotted_keys() {
        check(
            json!({"models": {"sasrec": {"type": "sasrec", "hidden_size": 64, "dropout": 0.0,
                   "loss": {"type": "bce", "negatives": 4}}},
                   "eval": {"metrics": ["hr@10", "ndcg@10"]}, "plugins": {}}),
            &[
                ("eval.metrics", "[\"hr@10\", \"ndcg@10\"]"),
                ("models.sasrec.dropout", "0.0"),
                ("models.sasrec.hidden_size", "64"),
                ("models.sasrec.loss.negatives", "4"),
                ("models.sasrec.loss.type", "bce"),
                ("models.sasrec.type", "sasrec"),
                ("plugins", "{}"),
            ],
        );
        check(json!({"a.b": {"c": true}}), &[("\"a.b\".c", "true")]);
    }

    #[test]
    fn ids_ignore_key_order_and_see_values() {
        let a = json!({"x": 1, "y": {"b": 2, "a": [1, 2]}});
        let b: Value = serde_json::from_str(r#"{"y": {"a": [1, 2], "b": 2}, "x": 1}"#).unwrap();
        assert_eq!(trial_id(&a), trial_id(&b));
        assert_eq!(trial_id(&a).len(), 12);
        assert_ne!(
            trial_id(&a),
            trial_id(&json!({"x": 2, "y": {"b": 2, "a": [1, 2]}}))
        );
        assert_eq!(canonical_json(&a), r#"{"x":1,"y":{"a":[1,2],"b":2}}"#);
    }
}
