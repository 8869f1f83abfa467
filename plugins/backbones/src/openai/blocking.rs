//! A synchronous face for callers that are not async (pipeline stages, benches): it owns a
//! small tokio runtime, runs single requests to completion, and runs batches of requests
//! concurrently up to the client's `max_concurrency`, returning results in input order.

use super::client::OpenAiClient;
use super::config::OpenAiConfig;
use super::types::{ChatMessage, Completion, RequestParams};
use super::OpenAiError;
use crate::{GenParams, Generation};
use tokio::runtime::Runtime;

/// An [`OpenAiClient`] with its own runtime.
#[derive(Debug)]
pub struct BlockingClient {
    client: OpenAiClient,
    rt: Runtime,
}

impl BlockingClient {
    /// Builds the client and a single-threaded runtime (network waits need no more).
    pub fn new(cfg: OpenAiConfig) -> Result<Self, OpenAiError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| OpenAiError::Client(e.to_string()))?;
        // reqwest's client must be created inside a runtime context for its timers.
        let client = {
            let _guard = rt.enter();
            OpenAiClient::new(cfg)?
        };
        Ok(Self { client, rt })
    }

    /// The async client (to share with async code).
    pub fn client(&self) -> &OpenAiClient {
        &self.client
    }

    /// See [`OpenAiClient::chat`].
    pub fn chat(
        &self,
        messages: &[ChatMessage],
        params: &RequestParams,
    ) -> Result<Completion, OpenAiError> {
        self.rt.block_on(self.client.chat(messages, params))
    }

    /// See [`OpenAiClient::complete`].
    pub fn complete(
        &self,
        prompt: &str,
        params: &RequestParams,
    ) -> Result<Completion, OpenAiError> {
        self.rt.block_on(self.client.complete(prompt, params))
    }

    /// See [`OpenAiClient::embed`].
    pub fn embed(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, OpenAiError> {
        self.rt.block_on(self.client.embed(inputs))
    }

    /// Many chats at once (bounded by `max_concurrency`); one result per conversation, in
    /// input order, so one failure does not lose the others.
    pub fn chat_many(
        &self,
        conversations: &[Vec<ChatMessage>],
        params: &RequestParams,
    ) -> Vec<Result<Completion, OpenAiError>> {
        self.many(conversations.to_vec(), params, |c, msgs, p| async move {
            c.chat(&msgs, &p).await
        })
    }

    /// Many raw-prompt completions at once; results in input order.
    pub fn complete_many(
        &self,
        prompts: &[String],
        params: &RequestParams,
    ) -> Vec<Result<Completion, OpenAiError>> {
        self.many(prompts.to_vec(), params, |c, prompt, p| async move {
            c.complete(&prompt, &p).await
        })
    }

    /// pulse's generation interface over `/completions`: raw prompts (already rendered with
    /// the model's chat template, as the other backbones receive them) in, one
    /// [`Generation`] per prompt out, in order.
    pub fn generate(
        &self,
        prompts: &[String],
        params: &GenParams,
    ) -> Vec<Result<Generation, OpenAiError>> {
        let wire = self.wire(params);
        self.complete_many(prompts, &wire)
            .into_iter()
            .map(|r| r.map(Completion::into_generation))
            .collect()
    }

    /// As [`BlockingClient::generate`] over `/chat/completions`: the server applies the
    /// model's chat template.
    pub fn generate_chat(
        &self,
        conversations: &[Vec<ChatMessage>],
        params: &GenParams,
    ) -> Vec<Result<Generation, OpenAiError>> {
        let wire = self.wire(params);
        self.chat_many(conversations, &wire)
            .into_iter()
            .map(|r| r.map(Completion::into_generation))
            .collect()
    }

    fn wire(&self, params: &GenParams) -> RequestParams {
        RequestParams::from_gen(params, &self.client.config().repetition_penalty_key)
    }

    fn many<I, F, Fut>(
        &self,
        inputs: Vec<I>,
        params: &RequestParams,
        call: F,
    ) -> Vec<Result<Completion, OpenAiError>>
    where
        I: Send + 'static,
        F: Fn(OpenAiClient, I, RequestParams) -> Fut,
        Fut: std::future::Future<Output = Result<Completion, OpenAiError>> + Send + 'static,
    {
        self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            let n = inputs.len();
            for (i, input) in inputs.into_iter().enumerate() {
                let fut = call(self.client.clone(), input, params.clone());
                set.spawn(async move { (i, fut.await) });
            }
            let mut out: Vec<Option<Result<Completion, OpenAiError>>> =
                (0..n).map(|_| None).collect();
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((i, r)) => out[i] = Some(r),
                    // A panicking task is a bug in this module; keep the others' results.
                    Err(e) => tracing::error!("openai request task failed: {e}"),
                }
            }
            out.into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| Err(OpenAiError::Client("request task failed".into())))
                })
                .collect()
        })
    }
}
