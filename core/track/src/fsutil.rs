//! Atomic file writes (temp file in the same directory + rename), so a crash never leaves a
//! half-written status or artifact behind.

use pulse_api::TrackError;
use std::io::Write;
use std::path::Path;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrackError {
    let context = context.into();
    move |source| TrackError::Io { context, source }
}

/// Writes `bytes` to `path` atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrackError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("renaming to {}", path.display())))
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), TrackError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| TrackError::Other(format!("serialising {}: {e}", path.display())))?;
    write_atomic(path, &bytes)
}
