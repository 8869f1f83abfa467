//! Configuration of an OpenAI-compatible backbone: where the server is, which model, how the
//! key is found, and how hard to push (concurrency, timeouts, retries). Deserialises from a
//! spec section; every field has a default except the model name.

use super::OpenAiError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[backbones.NAME]` with `type = "openai"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Base URL including the API version, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Model name sent with chat and completion requests.
    pub model: String,
    /// Model name for `/embeddings` (default: `model`).
    pub embedding_model: Option<String>,
    /// Name of the environment variable holding the API key (sent as a bearer token). `None`:
    /// no key, as local servers need none. The key itself never goes into a spec.
    pub api_key_env: Option<String>,
    /// Requests in flight at once, across all callers of one client.
    pub max_concurrency: usize,
    /// Whole-request timeout in seconds (generation of long outputs takes a while).
    pub timeout_secs: f64,
    /// TCP/TLS connect timeout in seconds.
    pub connect_timeout_secs: f64,
    /// Retries after the first attempt, for connection errors, timeouts, 408, 409, 425, 429
    /// and 5xx (except 501).
    pub max_retries: u32,
    /// First backoff cap in milliseconds; doubles per retry (full jitter: a uniform draw in
    /// `[0, cap]`).
    pub backoff_base_ms: u64,
    /// Largest backoff in milliseconds, also the cap on a server's `Retry-After`.
    pub backoff_max_ms: u64,
    /// Request field for the repetition penalty, which the OpenAI API lacks: vLLM reads
    /// `repetition_penalty`, llama.cpp's servers `repeat_penalty`.
    pub repetition_penalty_key: String,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8000/v1".into(),
            model: String::new(),
            embedding_model: None,
            api_key_env: None,
            max_concurrency: 4,
            timeout_secs: 300.0,
            connect_timeout_secs: 10.0,
            max_retries: 4,
            backoff_base_ms: 500,
            backoff_max_ms: 30_000,
            repetition_penalty_key: "repetition_penalty".into(),
        }
    }
}

impl OpenAiConfig {
    /// A config for `model` at `base_url`, other fields at their defaults.
    pub fn new(base_url: &str, model: &str) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            ..Self::default()
        }
    }

    /// Every problem with the values, one message each (empty: valid).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            out.push(format!(
                "base_url \"{}\" must start with http:// or https://",
                self.base_url
            ));
        }
        if self.model.trim().is_empty() {
            out.push("model must name the served model".into());
        }
        if self.max_concurrency == 0 {
            out.push("max_concurrency must be at least 1".into());
        }
        for (key, v) in [
            ("timeout_secs", self.timeout_secs),
            ("connect_timeout_secs", self.connect_timeout_secs),
        ] {
            if !(v.is_finite() && v > 0.0) {
                out.push(format!(
                    "{key} must be a positive number of seconds, not {v}"
                ));
            }
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            out.push(format!(
                "backoff_base_ms ({}) exceeds backoff_max_ms ({})",
                self.backoff_base_ms, self.backoff_max_ms
            ));
        }
        if matches!(&self.api_key_env, Some(v) if v.trim().is_empty()) {
            out.push("api_key_env must name an environment variable".into());
        }
        out
    }

    pub(crate) fn check(&self) -> Result<(), OpenAiError> {
        let p = self.problems();
        if p.is_empty() {
            Ok(())
        } else {
            Err(OpenAiError::Config(p.join("; ")))
        }
    }

    /// The API key, read from `api_key_env` now.
    pub(crate) fn api_key(&self) -> Result<Option<String>, OpenAiError> {
        let Some(var) = &self.api_key_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(k) if !k.trim().is_empty() => Ok(Some(k.trim().to_string())),
            _ => Err(OpenAiError::MissingApiKey { var: var.clone() }),
        }
    }

    /// `base_url` joined with an endpoint path such as `chat/completions`.
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.base_url.trim().trim_end_matches('/'))
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.connect_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::OpenAiConfig;

    #[track_caller]
    fn check(toml_json: serde_json::Value, expected: &[&str]) {
        let cfg: OpenAiConfig = serde_json::from_value(toml_json).unwrap();
        let problems = cfg.problems();
        assert_eq!(problems.len(), expected.len(), "{problems:?}");
        for (p, want) in problems.iter().zip(expected) {
            assert!(p.contains(want), "{p} lacks {want}");
        }
    }

    #[test]
    fn config_problems_are_reported_together() {
        check(serde_json::json!({"model": "m"}), &[]);
        check(
            serde_json::json!({"base_url": "localhost:8000", "max_concurrency": 0}),
            &[
                "must start with http://",
                "model must name",
                "max_concurrency",
            ],
        );
        check(
            serde_json::json!({"model": "m", "timeout_secs": 0.0, "backoff_base_ms": 10, "backoff_max_ms": 1}),
            &["timeout_secs", "backoff_base_ms (10) exceeds"],
        );
        check(
            serde_json::json!({"model": "m", "api_key_env": " "}),
            &["api_key_env"],
        );
        let err = serde_json::from_value::<OpenAiConfig>(serde_json::json!({"modle": "m"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `modle`"), "{err}");
    }

    #[test]
    fn endpoints_join_without_double_slashes() {
        let cfg = OpenAiConfig::new("http://127.0.0.1:9/v1/", "m");
        assert_eq!(
            cfg.endpoint("chat/completions"),
            "http://127.0.0.1:9/v1/chat/completions"
        );
    }

    #[test]
    fn api_key_comes_from_the_named_variable() {
        let mut cfg = OpenAiConfig::new("http://x/v1", "m");
        assert_eq!(cfg.api_key().unwrap(), None);
        // A variable no test sets: its absence is an error that names it.
        cfg.api_key_env = Some("PULSE_TEST_SURELY_UNSET_KEY".into());
        let err = cfg.api_key().unwrap_err().to_string();
        assert!(err.contains("PULSE_TEST_SURELY_UNSET_KEY"), "{err}");
        // PATH is set in every test environment.
        cfg.api_key_env = Some("PATH".into());
        assert!(cfg.api_key().unwrap().is_some());
    }
}
