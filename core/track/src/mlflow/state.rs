//! What an MLflow server has acknowledged for one local run, kept next to the run as
//! `mlflow-sync.json` (one entry per server URL) and written atomically after every
//! acknowledged request. A metrics request is recorded as *in flight* before it is sent, so a
//! crash or a timeout never leaves doubt unrecorded: the next delivery asks the server what it
//! holds before sending that range again. Also the per-run lock that keeps a live `pulse run`
//! and a `pulse sync` from delivering the same run at once.

use crate::fsutil::{io_err, write_json};
use pulse_api::{RunStatus, TrackError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File name of the delivery record inside a run directory.
pub const SYNC_FILE: &str = "mlflow-sync.json";
/// File name of the delivery lock inside a run directory.
pub const LOCK_FILE: &str = "mlflow-sync.lock";

/// Metric points the server refused (kept so they are reported, never silently dropped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// Sequence numbers `from..to`.
    pub from: u64,
    pub to: u64,
    pub error: String,
}

/// One artifact's delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactState {
    /// Size of the local file when it was delivered (a rewrite is uploaded again).
    pub size: u64,
    /// `None` when uploaded; the reason when skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// Delivery of one run to one server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TargetState {
    pub experiment_id: Option<String>,
    /// The MLflow run id.
    pub run_id: Option<String>,
    pub parent_run_id: Option<String>,
    pub artifact_uri: Option<String>,
    /// A `runs/create` was sent: before creating again, search for the run by its
    /// `pulse.run_id` tag (the first request may have been applied without an answer).
    pub create_attempted: bool,
    pub params_sent: bool,
    /// Every metric with a sequence number below this is on the server.
    pub metrics_acked: u64,
    /// Sequence numbers `[from, to)` sent without a confirmed answer.
    pub in_flight: Option<[u64; 2]>,
    pub rejected: Vec<Rejected>,
    pub artifacts: BTreeMap<String, ArtifactState>,
    /// The final status the server confirmed.
    pub status_sent: Option<RunStatus>,
    /// Everything the local store holds for this (ended) run is on the server.
    pub complete: bool,
    /// The last delivery problem, for `pulse sync` to show.
    pub last_error: Option<String>,
    pub updated_ms: i64,
}

/// The whole `mlflow-sync.json`: one [`TargetState`] per server URL.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncFile {
    pub targets: BTreeMap<String, TargetState>,
}

/// The key a server URL is recorded under (no trailing `/`).
pub fn target_key(uri: &str) -> String {
    uri.trim().trim_end_matches('/').to_string()
}

impl SyncFile {
    /// Reads `dir/mlflow-sync.json`; a missing file is an empty record.
    pub fn load(dir: &Path) -> Result<Self, TrackError> {
        let path = dir.join(SYNC_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| TrackError::Other(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    /// Whether the run has a delivery record at all (it was tracked to some server).
    pub fn exists(dir: &Path) -> bool {
        dir.join(SYNC_FILE).is_file()
    }

    pub fn target(&self, uri: &str) -> TargetState {
        self.targets
            .get(&target_key(uri))
            .cloned()
            .unwrap_or_default()
    }

    /// Stores `state` for `uri` and writes the file atomically.
    pub fn save(dir: &Path, uri: &str, state: &TargetState) -> Result<(), TrackError> {
        let mut file = Self::load(dir).unwrap_or_default();
        let mut state = state.clone();
        state.updated_ms = crate::now_ms();
        file.targets.insert(target_key(uri), state);
        write_json(&dir.join(SYNC_FILE), &file)
    }
}

/// Exclusive right to deliver one run; released on drop.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of run `dir`. `Err(pid)` when another live process holds it; a lock
    /// left by a process that no longer exists is taken over.
    pub fn acquire(dir: &Path) -> Result<Result<RunLock, u32>, TrackError> {
        let path = dir.join(LOCK_FILE);
        for _ in 0..3 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(std::process::id().to_string().as_bytes())
                        .map_err(io_err(format!("writing {}", path.display())))?;
                    return Ok(Ok(RunLock { path }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.trim().parse::<u32>().ok());
                    match holder {
                        Some(pid) if pid != std::process::id() && process_alive(pid) => {
                            return Ok(Err(pid))
                        }
                        // Stale (its process is gone) or unreadable: take it over.
                        _ => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
                Err(e) => return Err(io_err(format!("creating {}", path.display()))(e)),
            }
        }
        Err(TrackError::Other(format!(
            "cannot take the delivery lock {}",
            path.display()
        )))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether process `pid` exists (Linux: `/proc/PID`; elsewhere assumed alive, so a stale lock
/// there needs deleting by hand, which the error message says).
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    if proc.is_dir() {
        proc.join(pid.to_string()).exists()
    } else {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_per_target() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(SyncFile::load(tmp.path()).unwrap(), SyncFile::default());
        assert!(!SyncFile::exists(tmp.path()));
        let s = TargetState {
            run_id: Some("r".into()),
            metrics_acked: 7,
            in_flight: Some([7, 9]),
            ..TargetState::default()
        };
        SyncFile::save(tmp.path(), "http://a:1/", &s).unwrap();
        SyncFile::save(tmp.path(), "http://b:2", &TargetState::default()).unwrap();
        let f = SyncFile::load(tmp.path()).unwrap();
        assert_eq!(f.targets.len(), 2);
        let back = f.target("http://a:1");
        assert_eq!((back.metrics_acked, back.in_flight), (7, Some([7, 9])));
        assert!(back.updated_ms > 0);
        assert_eq!(f.target("http://c:3"), TargetState::default());
    }

    #[test]
    fn lock_is_exclusive_and_stale_locks_are_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(tmp.path()).unwrap().unwrap();
        // Our own pid in the file counts as ours (re-entry after a crash of this process id).
        assert!(RunLock::acquire(tmp.path()).unwrap().is_ok());
        drop(lock);
        // pid 1 is alive on Linux: the lock is refused.
        std::fs::write(tmp.path().join(LOCK_FILE), "1").unwrap();
        if Path::new("/proc/1").exists() {
            assert_eq!(RunLock::acquire(tmp.path()).unwrap().unwrap_err(), 1);
        }
        // A pid that cannot exist: stale, taken over.
        std::fs::write(tmp.path().join(LOCK_FILE), "4294967295").unwrap();
        let lock = RunLock::acquire(tmp.path()).unwrap();
        assert!(lock.is_ok());
    }
}
