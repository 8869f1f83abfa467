//! Run recording: fans one run's events out to every tracker (the local store first), and turns
//! tracker failures into warnings — a tracker outage never aborts a trial. Also collects the
//! run environment (pulse version, git commit, host) stored with every run.

use pulse_api::{Metric, RunInfo, RunRecorder, RunStatus, Tracker};
use std::collections::BTreeMap;
use std::path::Path;

/// The recorders of one run.
pub struct Recorders {
    run_id: String,
    sinks: Vec<(String, Box<dyn RunRecorder>)>,
}

impl Recorders {
    /// Starts the run on every tracker; those that fail to start are skipped with a warning.
    pub fn start(trackers: &mut [Box<dyn Tracker>], info: &RunInfo) -> Self {
        let mut sinks = Vec::new();
        for t in trackers.iter_mut() {
            match t.start_run(info) {
                Ok(r) => sinks.push((t.name().to_string(), r)),
                Err(e) => tracing::warn!(
                    "tracker {}: could not start run {}: {e}",
                    t.name(),
                    info.run_id
                ),
            }
        }
        Self {
            run_id: info.run_id.clone(),
            sinks,
        }
    }

    /// Number of trackers recording this run.
    pub fn active(&self) -> usize {
        self.sinks.len()
    }

    fn each(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut dyn RunRecorder) -> Result<(), pulse_api::TrackError>,
    ) {
        for (name, r) in &mut self.sinks {
            if let Err(e) = f(r.as_mut()) {
                tracing::warn!("tracker {name}: {what} for run {} failed: {e}", self.run_id);
            }
        }
    }

    pub fn metric(&mut self, key: &str, value: f64, step: i64) {
        self.metrics(&[(key.to_string(), value)], step);
    }

    pub fn metrics(&mut self, values: &[(String, f64)], step: i64) {
        let ts = pulse_track::now_ms();
        let batch: Vec<Metric> = values
            .iter()
            .map(|(k, v)| Metric {
                key: k.clone(),
                value: *v,
                step,
                timestamp: ts,
            })
            .collect();
        self.each("logging metrics", |r| r.log_metrics(&batch));
    }

    pub fn artifact(&mut self, name: &str, bytes: &[u8]) {
        self.each("storing an artifact", |r| r.log_artifact(name, bytes));
    }

    pub fn finish(&mut self, status: RunStatus, error: Option<&str>) {
        self.each("finishing", |r| r.finish(status, error));
    }
}

/// The environment recorded with every run.
pub fn environment(spec_dir: &Path, seed: u64) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("pulse_version".into(), env!("CARGO_PKG_VERSION").into());
    env.insert("pulse_api_version".into(), pulse_api::API_VERSION.into());
    env.insert("seed".into(), seed.to_string());
    env.insert("os".into(), std::env::consts::OS.into());
    env.insert("arch".into(), std::env::consts::ARCH.into());
    if let Ok(n) = std::thread::available_parallelism() {
        env.insert("cpus".into(), n.to_string());
    }
    if let Some(host) = hostname() {
        env.insert("host".into(), host);
    }
    if let Some(commit) = git_commit(spec_dir) {
        env.insert("git_commit".into(), commit);
    }
    env
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The commit of the repository holding the spec, if it is in one and git is installed.
fn git_commit(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A fresh id: 16 hex chars from the clock, the process id and a counter.
pub fn new_id(salt: &str) -> String {
    use sha2::{Digest, Sha256};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let h = Sha256::digest(format!("{salt}/{nanos}/{}/{n}", std::process::id()));
    hex::encode(&h[..8])
}
