//! A real MLflow tracking server for the tracker tests, and a small independent REST reader to
//! check what it holds (plain HTTP/1.1 over std, so the checks do not go through the client
//! under test). The server is `$PULSE_TEST_MLFLOW_URI` (CI starts one) or, failing that, one
//! started here from the virtual environment `.ci/run` creates (`target/mlflow-venv`, or
//! `$PULSE_TEST_MLFLOW_BIN`). With neither, the tests fail and say how to get one.

use crate::root;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `mlflow` executable of the test virtual environment.
fn mlflow_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PULSE_TEST_MLFLOW_BIN") {
        return Some(PathBuf::from(p));
    }
    let p = root().join("target/mlflow-venv/bin/mlflow");
    p.is_file().then_some(p)
}

fn no_server() -> ! {
    panic!(
        "the MLflow tracker tests need a tracking server: set PULSE_TEST_MLFLOW_URI=http://HOST:PORT, \
         or create the virtual environment .ci/run uses (python3 -m venv target/mlflow-venv && \
         target/mlflow-venv/bin/pip install mlflow) so the tests can start one"
    )
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A server started by a test, on its own SQLite file and artifact directory; killed (its
/// whole process group) on drop, or when the test process goes away.
pub struct Server {
    pub uri: String,
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Server {
            uri: String::new(),
            port: free_port(),
            dir,
            child: None,
        };
        s.uri = format!("http://127.0.0.1:{}", s.port);
        s.restart();
        s
    }

    /// Starts the server (again, on the same port and database) and waits for `/health`.
    pub fn restart(&mut self) {
        let bin = mlflow_bin().unwrap_or_else(|| no_server());
        let d = self.dir.path();
        // The shell watches the test process and takes the server's process group down with
        // it, so a failed test never leaves a server behind.
        // (`kill -KILL -PGID`: dash's kill refuses `--`.)
        let script = r#"P=$1; shift; "$@" & while kill -0 "$P" 2>/dev/null; do sleep 1; done; kill -KILL -$$"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(std::process::id().to_string())
            .arg(&bin)
            .args(["server", "--backend-store-uri"])
            .arg(format!("sqlite:///{}/mlflow.db", d.display()))
            .arg("--artifacts-destination")
            .arg(d.join("artifacts"))
            .args(["--serve-artifacts", "--host", "127.0.0.1", "--workers", "1"])
            .args(["--port", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("server.log")).unwrap())
            .process_group(0)
            .spawn()
            .expect("starting mlflow server");
        self.child = Some(child);
        wait_healthy(&self.uri, &d.join("server.log"));
    }

    /// Kills the server at once (SIGKILL to its process group), like a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.wait();
        }
        // Until the port is free again, a restart would fail.
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && t.elapsed().as_secs() < 30 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

use std::os::unix::process::CommandExt as _;

fn wait_healthy(uri: &str, log: &std::path::Path) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(180) {
        if matches!(http("GET", uri, "/health", None), Ok((200, _))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "mlflow server at {uri} did not answer /health within 180 s; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// The server shared by the tests that need no faults.
pub fn shared_uri() -> String {
    if let Ok(u) = std::env::var("PULSE_TEST_MLFLOW_URI") {
        if !u.trim().is_empty() {
            return u.trim().trim_end_matches('/').to_string();
        }
    }
    static SERVER: OnceLock<Mutex<Option<Server>>> = OnceLock::new();
    let cell = SERVER.get_or_init(|| Mutex::new(None));
    let mut guard = cell.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_none() {
        if mlflow_bin().is_none() {
            no_server();
        }
        let s = Server::start();
        // Kept for the whole test process; the watchdog shell stops it afterwards.
        *guard = Some(s);
    }
    guard.as_ref().unwrap().uri.clone()
}

/// A fresh experiment name, so tests sharing a server never see each other's runs.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

/// One HTTP/1.1 request; returns the status and the JSON body (`Null` when not JSON).
pub fn http(
    method: &str,
    uri: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let host = uri.trim_start_matches("http://");
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
        payload.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `GET /api/2.0/mlflow/<api>?<query>` that must succeed.
pub fn get(uri: &str, api: &str, query: &[(&str, &str)]) -> Value {
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let path = format!("/api/2.0/mlflow/{api}?{}", q.join("&"));
    let (status, body) = http("GET", uri, &path, None).unwrap();
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every run (children and sweep parents) of experiment `name`.
pub fn runs_of(uri: &str, name: &str) -> Vec<Value> {
    let exp = get(uri, "experiments/get-by-name", &[("experiment_name", name)]);
    let id = exp["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = http(
        "POST",
        uri,
        "/api/2.0/mlflow/runs/search",
        Some(&json!({"experiment_ids": [id], "max_results": 1000})),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    body["runs"].as_array().cloned().unwrap_or_default()
}

/// A tag of a run from `runs/search`.
pub fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

/// Every point of metric `key` of MLflow run `run_id`.
pub fn history(uri: &str, run_id: &str, key: &str) -> Vec<Value> {
    get(
        uri,
        "metrics/get-history",
        &[("run_id", run_id), ("metric_key", key)],
    )["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Artifact file paths of a run (recursively).
pub fn artifacts(uri: &str, run_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs = vec![String::new()];
    while let Some(d) = dirs.pop() {
        let mut q = vec![("run_id", run_id)];
        if !d.is_empty() {
            q.push(("path", d.as_str()));
        }
        let listing = get(uri, "artifacts/list", &q);
        for f in listing["files"].as_array().cloned().unwrap_or_default() {
            let p = f["path"].as_str().unwrap_or_default().to_string();
            if f["is_dir"] == true {
                dirs.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
