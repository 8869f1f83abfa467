//! What a caller asks of a generating backbone ([`GenParams`]) and what it gets back
//! ([`Generation`]). Shared by every backbone that generates text, local or remote, so that a
//! stage can switch backbones without changing its parameters or its stored rows.

use serde::{Deserialize, Serialize};

/// Decoding parameters. `temperature == 0` means greedy decoding (the other sampling knobs are
/// then ignored); otherwise tokens are sampled after repetition penalty, temperature, top-k and
/// top-p, in that order, from a generator seeded by `seed` and the prompt's index, so a rerun
/// with the same prompts and parameters gives the same texts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenParams {
    /// Upper bound on generated tokens per prompt.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0` is greedy.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`None` or `0`: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability mass reaches `p` (`None` or `1`: all).
    pub top_p: Option<f32>,
    /// CTRL-style penalty on tokens already in the prompt or the output (`1`: off).
    pub repetition_penalty: f32,
    /// Seed of the sampler.
    pub seed: u64,
    /// Generation stops when the text contains one of these; the text is cut before it.
    pub stop: Vec<String>,
    /// Most sequences decoded together. Larger batches amortise reading the weights over more
    /// tokens; memory for the KV cache grows with it.
    pub batch_size: usize,
}

impl Default for GenParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            repetition_penalty: 1.0,
            seed: 0,
            stop: Vec::new(),
            batch_size: 64,
        }
    }
}

impl GenParams {
    /// Greedy decoding of at most `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            ..Self::default()
        }
    }

    /// Whether tokens are picked by argmax rather than sampled.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks the ranges; the message names the field and the accepted values.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!(
                "temperature must be a finite number >= 0, not {}",
                self.temperature
            ));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("top_p must be in (0, 1], not {p}"));
            }
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(format!(
                "repetition_penalty must be a finite number > 0, not {}",
                self.repetition_penalty
            ));
        }
        if self.batch_size == 0 {
            return Err("batch_size must be at least 1".into());
        }
        if self.stop.iter().any(String::is_empty) {
            return Err("stop strings must not be empty".into());
        }
        Ok(())
    }
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// The model emitted an end-of-generation token.
    Eos,
    /// The text reached one of the stop strings.
    Stop,
    /// `max_new_tokens` (or the model's context) was reached.
    Length,
}

impl FinishReason {
    /// `eos`, `stop` or `length` (the OpenAI API's words for the last two).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

impl std::fmt::Display for FinishReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One prompt's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// The generated text, without the prompt, the end-of-generation token or the stop string.
    pub text: String,
    /// Tokens in the prompt as the model saw it.
    pub prompt_tokens: usize,
    /// Tokens generated (including a final end-of-generation token).
    pub new_tokens: usize,
    pub finish_reason: FinishReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(p: GenParams, expected: Result<(), &str>) {
        match (p.validate(), expected) {
            (Ok(()), Ok(())) => {}
            (Err(got), Err(want)) => assert!(got.contains(want), "{got:?} lacks {want:?}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn params_are_validated() {
        check(GenParams::default(), Ok(()));
        check(
            GenParams {
                temperature: 0.7,
                top_k: Some(40),
                top_p: Some(0.9),
                repetition_penalty: 1.1,
                ..GenParams::default()
            },
            Ok(()),
        );
        check(
            GenParams {
                temperature: -1.0,
                ..GenParams::default()
            },
            Err("temperature must be"),
        );
        check(
            GenParams {
                top_p: Some(0.0),
                ..GenParams::default()
            },
            Err("top_p must be in (0, 1]"),
        );
        check(
            GenParams {
                batch_size: 0,
                ..GenParams::default()
            },
            Err("batch_size"),
        );
        check(
            GenParams {
                stop: vec![String::new()],
                ..GenParams::default()
            },
            Err("stop strings"),
        );
    }

    #[test]
    fn params_read_from_toml_like_json() {
        let p: GenParams =
            serde_json::from_str(r#"{"max_new_tokens": 96, "stop": ["}"]}"#).unwrap();
        assert_eq!(p.max_new_tokens, 96);
        assert_eq!(p.stop, ["}"]);
        assert!(p.is_greedy());
        let e = serde_json::from_str::<GenParams>(r#"{"max_tokens": 3}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `max_tokens`"), "{e}");
        assert_eq!(
            serde_json::to_string(&FinishReason::Length).unwrap(),
            "\"length\""
        );
    }
}
