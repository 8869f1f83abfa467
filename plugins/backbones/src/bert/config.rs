//! The parts of a BERT checkpoint's JSON side files that shape the forward pass: `config.json`
//! (sizes, layer-norm epsilon, activation), sentence-transformers' `1_Pooling/config.json`
//! (which pooling) and `sentence_bert_config.json` (the sequence length the model was trained
//! with). Unknown keys are ignored: these files carry many fields pulse has no use for.

use super::BertError;
use serde::Deserialize;

/// Architecture hyper-parameters from `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

impl BertConfig {
    /// Parses and checks `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BertError> {
        let cfg: BertConfig = serde_json::from_slice(bytes).map_err(|e| BertError::Config {
            file: "config.json",
            why: e.to_string(),
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), BertError> {
        let bad = |why: String| {
            Err(BertError::Config {
                file: "config.json",
                why,
            })
        };
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        // Only the exact (erf) GELU of the original BERT is implemented; a model trained with
        // another activation would silently produce different vectors.
        if !matches!(
            self.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_pytorch_tanh"
        ) {
            return bad(format!(
                "hidden_act \"{}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh)",
                self.hidden_act
            ));
        }
        if let Some(t) = &self.position_embedding_type {
            if t != "absolute" {
                return bad(format!(
                    "position_embedding_type \"{t}\" is not supported (absolute)"
                ));
            }
        }
        Ok(())
    }

    /// Whether the activation is the tanh approximation rather than the exact GELU.
    pub(crate) fn tanh_gelu(&self) -> bool {
        self.hidden_act != "gelu"
    }
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Average over the real (unpadded) tokens: sentence-transformers' default.
    #[default]
    Mean,
    /// The `[CLS]` token's vector.
    Cls,
    /// Element-wise maximum over the real tokens.
    Max,
}

#[derive(Debug, Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

impl Pooling {
    /// Reads sentence-transformers' `1_Pooling/config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BertError> {
        let f: PoolingFile = serde_json::from_slice(bytes).map_err(|e| BertError::Config {
            file: "1_Pooling/config.json",
            why: e.to_string(),
        })?;
        match (
            f.pooling_mode_mean_tokens,
            f.pooling_mode_cls_token,
            f.pooling_mode_max_tokens,
        ) {
            (true, false, false) => Ok(Pooling::Mean),
            (false, true, false) => Ok(Pooling::Cls),
            (false, false, true) => Ok(Pooling::Max),
            _ => Err(BertError::Config {
                file: "1_Pooling/config.json",
                why: "exactly one of pooling_mode_mean_tokens, pooling_mode_cls_token, \
                      pooling_mode_max_tokens must be true"
                    .into(),
            }),
        }
    }
}

/// `max_seq_length` from sentence-transformers' `sentence_bert_config.json`.
pub fn max_seq_length_from_json(bytes: &[u8]) -> Result<Option<usize>, BertError> {
    #[derive(Deserialize)]
    struct F {
        max_seq_length: Option<usize>,
    }
    let f: F = serde_json::from_slice(bytes).map_err(|e| BertError::Config {
        file: "sentence_bert_config.json",
        why: e.to_string(),
    })?;
    Ok(f.max_seq_length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(json: &str, expected: Result<Pooling, &str>) {
        match (Pooling::from_json(json.as_bytes()), expected) {
            (Ok(p), Ok(e)) => assert_eq!(p, e),
            (Err(err), Err(want)) => assert!(err.to_string().contains(want), "{err}"),
            (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn pooling_modes() {
        check(r#"{"pooling_mode_mean_tokens": true}"#, Ok(Pooling::Mean));
        check(
            r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#,
            Ok(Pooling::Cls),
        );
        check(r#"{"pooling_mode_max_tokens": true}"#, Ok(Pooling::Max));
        check(
            r#"{"pooling_mode_max_tokens": true, "pooling_mode_mean_tokens": true}"#,
            Err("exactly one"),
        );
        check("{", Err("1_Pooling/config.json"));
    }

    /// A small valid config with `key` set to `value`.
    fn config_with(key: &str, value: serde_json::Value) -> Result<BertConfig, BertError> {
        let mut v = serde_json::json!({"vocab_size": 10, "hidden_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
            "max_position_embeddings": 4});
        v[key] = value;
        BertConfig::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn config_rejects_what_the_forward_pass_cannot_do() {
        let ok = config_with("hidden_act", "gelu".into()).unwrap();
        assert_eq!((ok.type_vocab_size, ok.layer_norm_eps), (2, 1e-12));
        assert!(!ok.tanh_gelu());
        for (key, value, want) in [
            (
                "num_attention_heads",
                serde_json::json!(3),
                "not a multiple",
            ),
            ("hidden_act", "relu".into(), "hidden_act \"relu\""),
            (
                "position_embedding_type",
                "relative_key".into(),
                "relative_key",
            ),
        ] {
            let err = config_with(key, value).unwrap_err().to_string();
            assert!(err.contains(want), "{key}: {err}");
        }
        assert_eq!(
            max_seq_length_from_json(br#"{"max_seq_length": 256, "do_lower_case": false}"#)
                .unwrap(),
            Some(256)
        );
    }
}
