//! Errors of the OpenAI-compatible client, each naming the endpoint and what to check.

/// Why a request to an OpenAI-compatible server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenAiError {
    /// The configuration is unusable (bad URL, zero concurrency, …).
    #[error("openai backbone config: {0}")]
    Config(String),
    /// `api_key_env` names a variable that is not set.
    #[error("the API key variable {var} (api_key_env) is not set or empty; export it, or remove api_key_env for servers without authentication")]
    MissingApiKey { var: String },
    /// The server could not be reached or did not answer in time, even after retries.
    #[error("{url}: no answer after {attempts} attempt(s): {detail}; is the server running and base_url right?")]
    Unreachable {
        url: String,
        attempts: u32,
        detail: String,
    },
    /// The server answered with an error status (after retries, when the status is retryable).
    #[error("{url}: HTTP {status} after {attempts} attempt(s): {body}")]
    Status {
        url: String,
        status: u16,
        attempts: u32,
        body: String,
    },
    /// The answer is not the JSON an OpenAI-compatible server returns.
    #[error("{url}: unexpected response ({why}): {body}")]
    Decode {
        url: String,
        why: String,
        body: String,
    },
    /// The client could not be built (TLS setup, runtime).
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
}
