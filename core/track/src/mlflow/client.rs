//! The HTTP side: an async client for MLflow's tracking REST API (`/api/2.0/mlflow/…`) and its
//! artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/…`), with authentication from the
//! environment the way MLflow's own client reads it, and errors classified by what a caller
//! may conclude: the request never left (safe to resend), it may have been applied (check the
//! server before resending), or the server refused it (do not resend).

use super::wire::{ErrorBody, Experiment, KeyValue, LogBatch, Run, WireMetric};
use serde::de::DeserializeOwned;
use serde_json::{json, Value as Json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What went wrong talking to the server.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MlflowError {
    /// No connection could be made: the request was not applied.
    #[error("cannot reach the MLflow server at {url}: {msg}")]
    Unreachable { url: String, msg: String },
    /// The request was sent but no complete answer came (timeout, connection reset): the server
    /// may or may not have applied it.
    #[error("no answer from {url}: {msg}")]
    NoAnswer { url: String, msg: String },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status} {code}: {message}")]
    Http {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The server answered 2xx with a body that is not what the API documents.
    #[error("{url}: unexpected answer: {msg}")]
    Decode { url: String, msg: String },
    /// A local problem (configuration, run store).
    #[error("{0}")]
    Local(String),
}

impl MlflowError {
    /// Worth retrying later: the server is down, slow, overloaded or failing internally.
    pub fn is_transient(&self) -> bool {
        match self {
            MlflowError::Unreachable { .. } | MlflowError::NoAnswer { .. } => true,
            MlflowError::Http { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            MlflowError::Decode { .. } | MlflowError::Local(_) => false,
        }
    }

    /// The server may have applied the request although it did not confirm it.
    pub fn maybe_applied(&self) -> bool {
        match self {
            MlflowError::Unreachable { .. } | MlflowError::Local(_) => false,
            MlflowError::NoAnswer { .. } | MlflowError::Decode { .. } => true,
            MlflowError::Http { status, .. } => *status >= 500,
        }
    }

    /// Credentials missing or refused: nothing will work until the user fixes them.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            MlflowError::Http {
                status: 401 | 403,
                ..
            }
        )
    }

    /// MLflow's `error_code` (`RESOURCE_ALREADY_EXISTS`, …), if the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Http { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// How requests authenticate, read from the environment like MLflow's client does.
#[derive(Clone, Default, PartialEq)]
pub enum Auth {
    #[default]
    None,
    /// `MLFLOW_TRACKING_TOKEN`.
    Bearer(String),
    /// `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`.
    Basic(String, String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.write_str(match self {
            Auth::None => "None",
            Auth::Bearer(_) => "Bearer(…)",
            Auth::Basic(..) => "Basic(…)",
        })
    }
}

impl Auth {
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(t) = var("MLFLOW_TRACKING_TOKEN") {
            Auth::Bearer(t)
        } else if let (Some(u), Some(p)) = (
            var("MLFLOW_TRACKING_USERNAME"),
            var("MLFLOW_TRACKING_PASSWORD"),
        ) {
            Auth::Basic(u, p)
        } else {
            Auth::None
        }
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Server URL, e.g. `http://127.0.0.1:5000` (a trailing `/` is ignored).
    pub uri: String,
    pub auth: Auth,
    /// `MLFLOW_TRACKING_INSECURE_TLS=true` turns certificate verification off (default on).
    pub insecure_tls: bool,
    /// `MLFLOW_TRACKING_SERVER_CERT_PATH`: an extra trusted CA certificate (PEM).
    pub ca_cert: Option<std::path::PathBuf>,
    /// Limit for one API call (artifact uploads get more, by size).
    pub timeout: Duration,
}

impl ClientConfig {
    /// `uri` with credentials and TLS settings from the environment.
    pub fn from_env(uri: &str) -> Self {
        let flag = |k: &str| {
            std::env::var(k).is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1"))
        };
        Self {
            uri: uri.trim().trim_end_matches('/').to_string(),
            auth: Auth::from_env(),
            insecure_tls: flag("MLFLOW_TRACKING_INSECURE_TLS"),
            ca_cert: std::env::var_os("MLFLOW_TRACKING_SERVER_CERT_PATH").map(Into::into),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of what a client sent (for `pulse sync` summaries and the overhead benchmark).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub failed: AtomicU64,
    pub bytes_sent: AtomicU64,
}

/// An MLflow REST client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    timeout: Duration,
    stats: Arc<Stats>,
}

/// Where an artifact went.
#[derive(Debug, Clone, PartialEq)]
pub enum Upload {
    Uploaded,
    /// The server does not proxy artifacts for this run; the reason says why.
    Skipped(String),
}

impl Client {
    pub fn new(cfg: &ClientConfig) -> Result<Self, MlflowError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("pulse/", env!("CARGO_PKG_VERSION")));
        if cfg.insecure_tls {
            b = b.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &cfg.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                MlflowError::Local(format!("reading CA certificate {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                MlflowError::Local(format!("CA certificate {}: {e}", path.display()))
            })?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| MlflowError::Local(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: cfg.uri.trim_end_matches('/').to_string(),
            auth: cfg.auth.clone(),
            timeout: cfg.timeout,
            stats: Arc::new(Stats::default()),
        })
    }

    /// The server URL this client talks to.
    pub fn uri(&self) -> &str {
        &self.base
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::None => req,
            Auth::Bearer(t) => req.bearer_auth(t),
            Auth::Basic(u, p) => req.basic_auth(u, Some(p)),
        }
    }

    /// Sends a request and returns the body of a 2xx answer.
    async fn send(
        &self,
        url: String,
        req: reqwest::RequestBuilder,
        body_len: usize,
    ) -> Result<Vec<u8>, MlflowError> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_sent
            .fetch_add(body_len as u64, Ordering::Relaxed);
        let result = self.try_send(&url, req).await;
        if result.is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn try_send(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, MlflowError> {
        let transport = |e: reqwest::Error| {
            let msg = error_chain(&e);
            if e.is_connect() {
                MlflowError::Unreachable {
                    url: url.to_string(),
                    msg,
                }
            } else {
                MlflowError::NoAnswer {
                    url: url.to_string(),
                    msg,
                }
            }
        };
        let resp = self.authed(req).send().await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
            error_code: String::new(),
            message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
        });
        Err(MlflowError::Http {
            url: url.to_string(),
            status: status.as_u16(),
            code: body.error_code,
            message: body.message,
        })
    }

    fn decode<T: DeserializeOwned>(url: &str, bytes: &[u8]) -> Result<T, MlflowError> {
        serde_json::from_slice(bytes).map_err(|e| MlflowError::Decode {
            url: url.to_string(),
            msg: e.to_string(),
        })
    }

    async fn post<T: DeserializeOwned>(&self, api: &str, body: &Json) -> Result<T, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{api}", self.base);
        let bytes = serde_json::to_vec(body).map_err(|e| MlflowError::Local(e.to_string()))?;
        let len = bytes.len();
        let req = self
            .http
            .post(&url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes);
        let out = self.send(url.clone(), req, len).await?;
        Self::decode(&url, if out.is_empty() { b"{}" } else { &out })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        api: &str,
        query: &[(&str, &str)],
    ) -> Result<T, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{api}", self.base);
        let req = self.http.get(&url).timeout(self.timeout).query(query);
        let out = self.send(url.clone(), req, 0).await?;
        Self::decode(&url, &out)
    }

    /// The id of experiment `name`, or `None` when the server has no such experiment.
    pub async fn experiment_id(&self, name: &str) -> Result<Option<String>, MlflowError> {
        #[derive(serde::Deserialize)]
        struct Resp {
            experiment: Experiment,
        }
        match self
            .get::<Resp>("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(r) => Ok(Some(r.experiment.experiment_id)),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The id of experiment `name`, created when missing. Race-safe: when another client
    /// creates it first (`RESOURCE_ALREADY_EXISTS`), the name is read again.
    pub async fn ensure_experiment(&self, name: &str) -> Result<String, MlflowError> {
        if let Some(id) = self.experiment_id(name).await? {
            return Ok(id);
        }
        #[derive(serde::Deserialize)]
        struct Resp {
            experiment_id: String,
        }
        match self
            .post::<Resp>("experiments/create", &json!({ "name": name }))
            .await
        {
            Ok(r) => Ok(r.experiment_id),
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") || e.maybe_applied() => {
                self.experiment_id(name).await?.ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a run (tags set atomically with it, so a search by tag finds it complete).
    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        user: &str,
        start_time: i64,
        tags: &[KeyValue],
    ) -> Result<Run, MlflowError> {
        #[derive(serde::Deserialize)]
        struct Resp {
            run: Run,
        }
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "user_id": user,
            "start_time": start_time,
            "tags": tags,
        });
        Ok(self.post::<Resp>("runs/create", &body).await?.run)
    }

    /// One page of `runs/search`; returns the runs and the next page token.
    pub async fn search_runs(
        &self,
        experiment_ids: &[String],
        filter: &str,
        page_token: Option<&str>,
    ) -> Result<(Vec<Run>, Option<String>), MlflowError> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            runs: Vec<Run>,
            next_page_token: Option<String>,
        }
        let mut body = json!({
            "experiment_ids": experiment_ids,
            "filter": filter,
            "run_view_type": "ACTIVE_ONLY",
            "max_results": 1000,
            "order_by": ["attributes.start_time ASC"],
        });
        if let Some(t) = page_token {
            body["page_token"] = json!(t);
        }
        let r: Resp = self.post("runs/search", &body).await?;
        Ok((r.runs, r.next_page_token.filter(|t| !t.is_empty())))
    }

    /// Every run of the experiments matching `filter` (all pages).
    pub async fn search_all(
        &self,
        experiment_ids: &[String],
        filter: &str,
    ) -> Result<Vec<Run>, MlflowError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (runs, next) = self
                .search_runs(experiment_ids, filter, token.as_deref())
                .await?;
            out.extend(runs);
            match next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// The first run of `experiment_id` whose tag `key` equals `value`.
    pub async fn find_run_by_tag(
        &self,
        experiment_id: &str,
        key: &str,
        value: &str,
    ) -> Result<Option<Run>, MlflowError> {
        let filter = format!("tags.`{key}` = '{}'", value.replace('\'', "\\'"));
        let (runs, _) = self
            .search_runs(&[experiment_id.to_string()], &filter, None)
            .await?;
        Ok(runs.into_iter().next())
    }

    /// `runs/log-batch`. The caller keeps each list within the limits (see `wire::chunks`).
    pub async fn log_batch(&self, batch: &LogBatch) -> Result<(), MlflowError> {
        let body = serde_json::to_value(batch).map_err(|e| MlflowError::Local(e.to_string()))?;
        self.post::<Json>("runs/log-batch", &body).await.map(|_| ())
    }

    /// `runs/update`: the run's status and end time.
    pub async fn update_run(
        &self,
        run_id: &str,
        status: &str,
        end_time: Option<i64>,
    ) -> Result<(), MlflowError> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if let Some(t) = end_time {
            body["end_time"] = json!(t);
        }
        self.post::<Json>("runs/update", &body).await.map(|_| ())
    }

    /// `runs/get`.
    pub async fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        #[derive(serde::Deserialize)]
        struct Resp {
            run: Run,
        }
        Ok(self
            .get::<Resp>("runs/get", &[("run_id", run_id)])
            .await?
            .run)
    }

    /// Every point of metric `key` in run `run_id` (all pages).
    pub async fn metric_history(
        &self,
        run_id: &str,
        key: &str,
    ) -> Result<Vec<WireMetric>, MlflowError> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            metrics: Vec<WireMetric>,
            next_page_token: Option<String>,
        }
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut q = vec![("run_id", run_id), ("metric_key", key)];
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let r: Resp = self.get("metrics/get-history", &q).await?;
            out.extend(r.metrics);
            match r.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = t,
                None => return Ok(out),
            }
        }
    }

    /// Artifact paths (files only, recursively) under `path` of a run, from `artifacts/list`.
    pub async fn list_artifacts(&self, run_id: &str) -> Result<Vec<(String, u64)>, MlflowError> {
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct File {
            path: String,
            is_dir: bool,
            file_size: Option<u64>,
        }
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Resp {
            files: Vec<File>,
        }
        let mut out = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(dir) = dirs.pop() {
            let mut q = vec![("run_id", run_id)];
            if !dir.is_empty() {
                q.push(("path", dir.as_str()));
            }
            let r: Resp = self.get("artifacts/list", &q).await?;
            for f in r.files {
                if f.is_dir {
                    dirs.push(f.path);
                } else {
                    out.push((f.path, f.file_size.unwrap_or(0)));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Uploads `bytes` as `rel_path` under the run's artifact root, through the server's
    /// `mlflow-artifacts` proxy. Runs whose artifact root the server does not proxy (a local
    /// path, S3, …) are reported as skipped with the reason.
    pub async fn upload_artifact(
        &self,
        artifact_uri: &str,
        rel_path: &str,
        bytes: Vec<u8>,
    ) -> Result<Upload, MlflowError> {
        let Some(root) = proxied_root(artifact_uri) else {
            return Ok(Upload::Skipped(format!(
                "the server stores this run's artifacts at '{artifact_uri}' and does not proxy \
                 them; start `mlflow server` with --serve-artifacts --artifacts-destination DIR"
            )));
        };
        let path = format!("{}/{rel_path}", root.trim_matches('/'));
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}",
            self.base,
            encode_path(&path)
        );
        let len = bytes.len();
        // A slow link still gets through a large file: 30 s plus 1 s per MB.
        let timeout = self.timeout + Duration::from_secs((len / 1_000_000) as u64);
        let req = self.http.put(&url).timeout(timeout).body(bytes);
        self.send(url, req, len).await.map(|_| Upload::Uploaded)
    }
}

/// The path under the artifact proxy for `mlflow-artifacts:/…` and
/// `mlflow-artifacts://host:port/…` roots; `None` for roots the server does not proxy.
pub fn proxied_root(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Some(path.trim_matches('/').to_string())
}

/// Percent-encodes each segment of a `/`-separated path.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// An error with its causes, which is where reqwest keeps the useful part.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(uri: &str, expected: Option<&str>) {
        assert_eq!(proxied_root(uri).as_deref(), expected, "{uri}");
    }

    #[test]
    fn artifact_roots() {
        check("mlflow-artifacts:/1/abc/artifacts", Some("1/abc/artifacts"));
        check(
            "mlflow-artifacts://host:5000/1/abc/artifacts",
            Some("1/abc/artifacts"),
        );
        check("/srv/mlruns/1/abc/artifacts", None);
        check("s3://bucket/1/abc", None);
        check("file:///tmp/x", None);
    }

    #[test]
    fn paths_are_percent_encoded_per_segment() {
        assert_eq!(encode_path("1/a b/c@d.json"), "1/a%20b/c%40d.json");
    }

    #[test]
    fn errors_say_what_a_caller_may_conclude() {
        let http = |status: u16| MlflowError::Http {
            url: "u".into(),
            status,
            code: String::new(),
            message: String::new(),
        };
        let unreachable = MlflowError::Unreachable {
            url: "u".into(),
            msg: "refused".into(),
        };
        assert!(unreachable.is_transient() && !unreachable.maybe_applied());
        let timeout = MlflowError::NoAnswer {
            url: "u".into(),
            msg: "timed out".into(),
        };
        assert!(timeout.is_transient() && timeout.maybe_applied());
        assert!(http(503).is_transient() && http(503).maybe_applied());
        assert!(http(429).is_transient() && !http(429).maybe_applied());
        assert!(!http(400).is_transient() && !http(400).maybe_applied());
        assert!(http(401).is_auth() && http(403).is_auth() && !http(404).is_auth());
        assert_eq!(format!("{:?}", Auth::Bearer("secret".into())), "Bearer(…)");
    }
}
