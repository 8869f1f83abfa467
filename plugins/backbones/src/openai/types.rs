//! Request and response shapes of the OpenAI API subset pulse uses: chat completions, legacy
//! completions and embeddings. Responses are read leniently (servers differ in which optional
//! fields they fill), requests carry only what was set, plus any server-specific extras.

use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// Sampling parameters as sent on the wire; unset fields are left to the server's defaults.
/// [`RequestParams::from_gen`] translates pulse's backbone-independent [`crate::GenParams`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Server-specific fields sent as they are (`top_k`, `repeat_penalty`, …).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl RequestParams {
    /// Greedy decoding of at most `max_tokens` tokens.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            max_tokens: Some(max_tokens),
            temperature: Some(0.0),
            ..Self::default()
        }
    }

    /// The wire form of pulse's generation parameters. `top_k` and the repetition penalty are
    /// not in the OpenAI API; they are sent as the extra fields vLLM and llama.cpp accept, the
    /// penalty under `penalty_key` (vLLM: `repetition_penalty`, llama.cpp: `repeat_penalty`),
    /// and only when they change anything.
    pub fn from_gen(p: &crate::GenParams, penalty_key: &str) -> Self {
        let mut extra = serde_json::Map::new();
        if let Some(k) = p.top_k.filter(|&k| k > 0) {
            extra.insert("top_k".into(), k.into());
        }
        if p.repetition_penalty != 1.0 {
            extra.insert(penalty_key.into(), f64::from(p.repetition_penalty).into());
        }
        Self {
            max_tokens: Some(u32::try_from(p.max_new_tokens).unwrap_or(u32::MAX)),
            temperature: Some(p.temperature),
            top_p: p.top_p.filter(|&t| t < 1.0),
            stop: p.stop.clone(),
            // Greedy decoding needs no seed; sending one anyway keeps sampled runs repeatable.
            seed: Some(p.seed),
            extra,
        }
    }
}

/// Token counts the server reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// One generated text.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    /// `stop`, `length`, … as the server says.
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
}

impl Completion {
    /// As a backbone-independent [`crate::Generation`]. The OpenAI API reports an
    /// end-of-generation token and a stop string alike as `stop`; both become
    /// [`crate::FinishReason::Stop`]. Token counts are the server's (0 when it sends none).
    pub fn into_generation(self) -> crate::Generation {
        let usage = self.usage.unwrap_or_default();
        let finish_reason = match self.finish_reason.as_deref() {
            Some("length") => crate::FinishReason::Length,
            _ => crate::FinishReason::Stop,
        };
        crate::Generation {
            text: self.text,
            prompt_tokens: usize::try_from(usage.prompt_tokens).unwrap_or(usize::MAX),
            new_tokens: usize::try_from(usage.completion_tokens).unwrap_or(usize::MAX),
            finish_reason,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ChatBody<'a> {
    pub model: &'a str,
    pub messages: &'a [ChatMessage],
    #[serde(flatten)]
    pub params: &'a RequestParams,
}

#[derive(Serialize)]
pub(crate) struct CompletionBody<'a> {
    pub model: &'a str,
    pub prompt: &'a str,
    #[serde(flatten)]
    pub params: &'a RequestParams,
}

#[derive(Serialize)]
pub(crate) struct EmbeddingBody<'a> {
    pub model: &'a str,
    pub input: &'a [&'a str],
}

#[derive(Deserialize)]
pub(crate) struct ChoicesResponse {
    pub choices: Vec<Choice>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Deserialize)]
pub(crate) struct Choice {
    #[serde(default)]
    pub message: Option<ChoiceMessage>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ChoiceMessage {
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct EmbeddingResponse {
    pub data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
pub(crate) struct EmbeddingItem {
    #[serde(default)]
    pub index: Option<usize>,
    pub embedding: serde_json::Value,
}

impl ChoicesResponse {
    /// The first choice's text: `message.content` for chat, `text` for completions.
    pub(crate) fn into_completion(self) -> Option<Completion> {
        let usage = self.usage;
        let c = self.choices.into_iter().next()?;
        let text = c.message.and_then(|m| m.content).or(c.text)?;
        Some(Completion {
            text,
            finish_reason: c.finish_reason,
            usage,
        })
    }
}

impl EmbeddingResponse {
    /// Vectors in input order; `Err` says what is wrong with the payload.
    pub(crate) fn into_vectors(self, expected: usize) -> Result<Vec<Vec<f32>>, String> {
        if self.data.len() != expected {
            return Err(format!(
                "{} embeddings for {expected} inputs",
                self.data.len()
            ));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; expected];
        for (pos, item) in self.data.into_iter().enumerate() {
            let i = item.index.unwrap_or(pos);
            let v = pooled(item.embedding)?;
            match out.get_mut(i) {
                Some(slot @ None) => *slot = Some(v),
                _ => return Err(format!("embedding index {i} is out of range or repeated")),
            }
        }
        // invariant: every slot was filled: `expected` distinct in-range indices were seen.
        Ok(out.into_iter().flatten().collect())
    }
}

/// A sentence vector from an `embedding` field: a flat list as it is, or the mean of a list of
/// token vectors (llama.cpp's servers return those for generative models, which have no
/// pooling of their own).
fn pooled(value: serde_json::Value) -> Result<Vec<f32>, String> {
    if let Ok(v) = serde_json::from_value::<Vec<f32>>(value.clone()) {
        return Ok(v);
    }
    let rows: Vec<Vec<f32>> = serde_json::from_value(value)
        .map_err(|_| "an embedding is neither a list of numbers nor a list of token vectors")?;
    let dim = rows.first().map_or(0, Vec::len);
    if dim == 0 || rows.iter().any(|r| r.len() != dim) {
        return Err("token vectors of an embedding are empty or of different lengths".into());
    }
    let mut mean = vec![0f32; dim];
    for r in &rows {
        for (m, x) in mean.iter_mut().zip(r) {
            *m += x;
        }
    }
    let n = rows.len() as f32;
    mean.iter_mut().for_each(|m| *m /= n);
    Ok(mean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(json: &str, expected: Result<Vec<Vec<f32>>, &str>) {
        let r: EmbeddingResponse = serde_json::from_str(json).unwrap();
        match (r.into_vectors(2), expected) {
            (Ok(v), Ok(e)) => assert_eq!(v, e),
            (Err(got), Err(want)) => assert!(got.contains(want), "{got}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn embeddings_come_back_in_input_order() {
        check(
            r#"{"data": [{"index": 1, "embedding": [3, 4]}, {"index": 0, "embedding": [1.5, 2]}]}"#,
            Ok(vec![vec![1.5, 2.0], vec![3.0, 4.0]]),
        );
        check(
            r#"{"data": [{"embedding": [1]}, {"embedding": [2]}]}"#,
            Ok(vec![vec![1.0], vec![2.0]]),
        );
        check(
            r#"{"data": [{"embedding": [1]}]}"#,
            Err("1 embeddings for 2 inputs"),
        );
        check(
            r#"{"data": [{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [2]}]}"#,
            Err("out of range or repeated"),
        );
        // Token vectors are mean-pooled.
        check(
            r#"{"data": [{"embedding": [[1, 2], [3, 6]]}, {"embedding": [[3]]}]}"#,
            Ok(vec![vec![2.0, 4.0], vec![3.0]]),
        );
        check(
            r#"{"data": [{"embedding": [[1, 2], [3]]}, {"embedding": [[3]]}]}"#,
            Err("different lengths"),
        );
        check(
            r#"{"data": [{"embedding": "x"}, {"embedding": [[3]]}]}"#,
            Err("neither a list of numbers"),
        );
    }

    #[test]
    fn pulse_params_translate_to_the_wire() {
        let greedy = RequestParams::from_gen(&crate::GenParams::greedy(96), "repeat_penalty");
        assert_eq!(
            serde_json::to_value(&greedy).unwrap(),
            serde_json::json!({"max_tokens": 96, "temperature": 0.0, "seed": 0})
        );
        let sampled = crate::GenParams {
            temperature: 0.5,
            top_k: Some(40),
            top_p: Some(0.9),
            repetition_penalty: 1.5,
            seed: 7,
            stop: vec!["}".into()],
            ..crate::GenParams::greedy(8)
        };
        assert_eq!(
            serde_json::to_value(RequestParams::from_gen(&sampled, "repetition_penalty")).unwrap(),
            serde_json::json!({"max_tokens": 8, "temperature": 0.5, "top_p": 0.8999999761581421,
                "stop": ["}"], "seed": 7, "top_k": 40, "repetition_penalty": 1.5})
        );
        let g = Completion {
            text: "x".into(),
            finish_reason: Some("length".into()),
            usage: Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 2,
            }),
        }
        .into_generation();
        assert_eq!(
            (g.prompt_tokens, g.new_tokens, g.finish_reason),
            (5, 2, crate::FinishReason::Length)
        );
    }

    #[test]
    fn requests_carry_only_what_is_set() {
        let mut p = RequestParams::greedy(8);
        p.extra.insert("top_k".into(), 40.into());
        let msgs = [ChatMessage::user("hi")];
        let body = ChatBody {
            model: "m",
            messages: &msgs,
            params: &p,
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 8, "temperature": 0.0, "top_k": 40})
        );
        let r: ChoicesResponse = serde_json::from_str(
            r#"{"choices": [{"text": "ok", "finish_reason": "length"}], "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}"#,
        )
        .unwrap();
        let c = r.into_completion().unwrap();
        assert_eq!(
            (
                c.text.as_str(),
                c.finish_reason.as_deref(),
                c.usage.unwrap().completion_tokens
            ),
            ("ok", Some("length"), 1)
        );
    }
}
