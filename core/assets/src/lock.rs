//! A cross-process lock file, so that two pulse processes (or two threads) fetching the same
//! package do not download it twice or rename over each other. The lock is a file created with
//! `create_new` (atomic on every platform); it is removed when the guard drops. A lock left by a
//! crashed process is broken once it is older than [`STALE_AFTER`]. Breaking a live lock costs
//! at most a second download: each download lands in its own temporary directory and is
//! renamed into place atomically, so readers never see a partial archive.

use crate::AssetError;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A lock untouched for this long belongs to a process that died mid-download.
const STALE_AFTER: Duration = Duration::from_secs(30 * 60);
const POLL: Duration = Duration::from_millis(200);

/// Holds the lock file until dropped.
#[derive(Debug)]
pub(crate) struct LockGuard {
    path: PathBuf,
}

impl LockGuard {
    /// Blocks until the lock at `path` is ours.
    pub(crate) fn acquire(path: &Path, what: &str) -> Result<LockGuard, AssetError> {
        let mut announced = false;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    // The pid only helps a human who finds a leftover lock; failing to write
                    // it does not weaken the lock.
                    let _ = writeln!(f, "{}", std::process::id());
                    return Ok(LockGuard {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    if is_stale(path) {
                        tracing::warn!(lock = %path.display(), "breaking a stale download lock");
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    if !announced {
                        tracing::info!(lock = %path.display(), "waiting for another download of {what}");
                        announced = true;
                    }
                    std::thread::sleep(POLL);
                }
                Err(e) => return Err(AssetError::io(path, "create lock file", e)),
            }
        }
    }
}

fn is_stale(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
