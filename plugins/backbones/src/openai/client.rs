//! The async client: one shared HTTP connection pool, a semaphore bounding requests in flight
//! across every clone of the client, and a retry loop (backoff with jitter, `Retry-After`)
//! around each request. A permit is held only while a request is on the wire, never while
//! backing off, so one failing request does not stall the others.

use super::config::OpenAiConfig;
use super::retry::{backoff, parse_retry_after, retryable_status};
use super::types::{
    ChatBody, ChatMessage, ChoicesResponse, Completion, CompletionBody, EmbeddingBody,
    EmbeddingResponse, RequestParams,
};
use super::OpenAiError;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// A client for one OpenAI-compatible server. Cheap to clone; clones share the connection
/// pool and the concurrency bound.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    cfg: Arc<OpenAiConfig>,
    http: reqwest::Client,
    key: Option<String>,
    slots: Arc<Semaphore>,
}

/// Longest server error body kept in an error message.
const MAX_BODY: usize = 2_000;

fn clip(s: &str) -> String {
    if s.len() <= MAX_BODY {
        return s.to_string();
    }
    let mut end = MAX_BODY;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl OpenAiClient {
    /// Checks `cfg`, reads the API key from its variable and builds the HTTP client.
    pub fn new(cfg: OpenAiConfig) -> Result<Self, OpenAiError> {
        cfg.check()?;
        let key = cfg.api_key()?;
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout())
            .connect_timeout(cfg.connect_timeout())
            .build()
            .map_err(|e| OpenAiError::Client(e.to_string()))?;
        Ok(Self {
            slots: Arc::new(Semaphore::new(cfg.max_concurrency)),
            cfg: Arc::new(cfg),
            http,
            key,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &OpenAiConfig {
        &self.cfg
    }

    /// `POST /chat/completions`: the assistant's reply to `messages`.
    pub async fn chat(
        &self,
        messages: &[ChatMessage],
        params: &RequestParams,
    ) -> Result<Completion, OpenAiError> {
        let body = ChatBody {
            model: &self.cfg.model,
            messages,
            params,
        };
        self.choices("chat/completions", &body).await
    }

    /// `POST /completions`: the continuation of a raw `prompt` (no chat template).
    pub async fn complete(
        &self,
        prompt: &str,
        params: &RequestParams,
    ) -> Result<Completion, OpenAiError> {
        let body = CompletionBody {
            model: &self.cfg.model,
            prompt,
            params,
        };
        self.choices("completions", &body).await
    }

    /// `POST /embeddings`: one vector per input, in input order.
    pub async fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, OpenAiError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let model = self
            .cfg
            .embedding_model
            .as_deref()
            .unwrap_or(&self.cfg.model);
        let url = self.cfg.endpoint("embeddings");
        let body = EmbeddingBody {
            model,
            input: inputs,
        };
        let (resp, raw): (EmbeddingResponse, String) = self.post("embeddings", &body).await?;
        resp.into_vectors(inputs.len())
            .map_err(|why| OpenAiError::Decode {
                url,
                why,
                body: clip(&raw),
            })
    }

    async fn choices<B: Serialize>(&self, path: &str, body: &B) -> Result<Completion, OpenAiError> {
        let (resp, raw): (ChoicesResponse, String) = self.post(path, body).await?;
        resp.into_completion().ok_or_else(|| OpenAiError::Decode {
            url: self.cfg.endpoint(path),
            why: "no choice with text".into(),
            body: clip(&raw),
        })
    }

    /// Sends `body` to `path` with retries; the parsed JSON answer and its raw text.
    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(R, String), OpenAiError> {
        let url = self.cfg.endpoint(path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = {
                // invariant: the semaphore is never closed, so acquire cannot fail; a failure
                // would mean the client is being torn down, reported as unreachable.
                let _permit = self
                    .slots
                    .acquire()
                    .await
                    .map_err(|e| OpenAiError::Unreachable {
                        url: url.clone(),
                        attempts: attempt,
                        detail: e.to_string(),
                    })?;
                self.send_once(&url, body).await
            };
            let (err, retry_after) = match outcome {
                Ok(raw) => {
                    return match serde_json::from_str::<R>(&raw) {
                        Ok(r) => Ok((r, raw)),
                        Err(e) => Err(OpenAiError::Decode {
                            url,
                            why: e.to_string(),
                            body: clip(&raw),
                        }),
                    }
                }
                Err(Failure::Fatal(e)) => return Err(e.with_attempts(attempt)),
                Err(Failure::Transient(e, retry_after)) => (e, retry_after),
            };
            if attempt > self.cfg.max_retries {
                return Err(err.with_attempts(attempt));
            }
            let unit: f64 = rand::rng().random();
            let wait = backoff(
                attempt - 1,
                self.cfg.backoff_base_ms,
                self.cfg.backoff_max_ms,
                unit,
                retry_after,
            );
            tracing::debug!(%url, attempt, ?wait, error = %err, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_once<B: Serialize>(&self, url: &str, body: &B) -> Result<String, Failure> {
        let mut req = self.http.post(url).json(body);
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        let unreachable = |e: reqwest::Error| {
            // Connection refused/reset and timeouts are transient; a request that could not
            // even be built (bad URL) is not.
            let transient = e.is_connect() || e.is_timeout() || e.is_request() || e.is_body();
            let err = OpenAiError::Unreachable {
                url: url.to_string(),
                attempts: 0,
                detail: error_chain(&e),
            };
            if transient {
                Failure::Transient(err, None)
            } else {
                Failure::Fatal(err)
            }
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let text = resp.text().await.map_err(unreachable)?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let err = OpenAiError::Status {
            url: url.to_string(),
            status,
            attempts: 0,
            body: clip(&text),
        };
        if retryable_status(status) {
            Err(Failure::Transient(err, retry_after))
        } else {
            Err(Failure::Fatal(err))
        }
    }
}

/// How one attempt failed.
enum Failure {
    Transient(OpenAiError, Option<std::time::Duration>),
    Fatal(OpenAiError),
}

impl OpenAiError {
    fn with_attempts(mut self, n: u32) -> Self {
        match &mut self {
            OpenAiError::Unreachable { attempts, .. } | OpenAiError::Status { attempts, .. } => {
                *attempts = n
            }
            _ => {}
        }
        self
    }
}

/// reqwest's top-level message is often just "error sending request"; the cause says why.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
