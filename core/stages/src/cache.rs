//! The stage cache: `$PULSE_HOME/cache/stages/<stage>/<key>/`, where `<key>` is the SHA-256 of
//! the canonical JSON of everything that decides the stage's output (see [`StageKey`]). A stage
//! directory holds `manifest.json` (the key's inputs, for people) and Parquet chunks
//! `chunk-NNNNN.parquet`, each written to a temporary name and renamed into place, so a chunk
//! either exists whole or not at all and an interrupted run keeps every finished chunk.

use crate::StageError;
use polars::prelude::*;
use polars_io::parquet::read::ParquetReader;
use polars_io::parquet::write::ParquetWriter;
use polars_io::SerReader;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The inputs that decide a stage's output, hashed into its directory name.
#[derive(Debug, Clone, PartialEq)]
pub struct StageKey {
    pub stage: &'static str,
    /// Canonical JSON (serde_json sorts object keys) of the inputs.
    pub inputs: Value,
}

impl StageKey {
    pub fn new(stage: &'static str, inputs: Value) -> Self {
        Self { stage, inputs }
    }

    /// 64 hex digits.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.stage.as_bytes());
        h.update(b"\0");
        h.update(self.inputs.to_string().as_bytes());
        hex::encode(h.finalize())
    }

    /// `root/<stage>/<first 16 hex digits>`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(self.stage).join(&self.hash()[..16])
    }
}

/// `$PULSE_HOME/cache/stages`.
pub fn stages_root(cache_dir: &Path) -> PathBuf {
    cache_dir.join("cache").join("stages")
}

pub(crate) fn io(what: &Path) -> impl FnOnce(std::io::Error) -> StageError + '_ {
    move |source| StageError::Io {
        path: what.to_path_buf(),
        source,
    }
}

/// Creates the directory and writes `manifest.json` (idempotent).
pub fn open_dir(root: &Path, key: &StageKey) -> Result<PathBuf, StageError> {
    let dir = key.dir(root);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let manifest = dir.join("manifest.json");
    if !manifest.exists() {
        let body = serde_json::json!({
            "stage": key.stage,
            "key": key.hash(),
            "inputs": key.inputs,
        });
        write_atomic(&manifest, |f| {
            serde_json::to_writer_pretty(f, &body).map_err(std::io::Error::other)
        })?;
    }
    Ok(dir)
}

/// Writes through a temporary file in the same directory, then renames it into place.
pub(crate) fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), StageError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    write(&mut f).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Chunk files of a stage directory, in order.
pub fn chunks(dir: &Path) -> Result<Vec<PathBuf>, StageError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for e in entries {
        let p = e.map_err(io(dir))?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().to_string());
        if name.is_some_and(|n| n.starts_with("chunk-") && n.ends_with(".parquet")) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Writes `df` as the next chunk of `dir`; returns its path.
pub fn write_chunk(dir: &Path, df: &mut DataFrame) -> Result<PathBuf, StageError> {
    let next = chunks(dir)?.len();
    let path = dir.join(format!("chunk-{next:05}.parquet"));
    write_parquet(&path, df)?;
    Ok(path)
}

/// Writes one Parquet file atomically.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<(), StageError> {
    write_atomic(path, |f| {
        ParquetWriter::new(f)
            .finish(df)
            .map(|_| ())
            .map_err(std::io::Error::other)
    })
}

/// Reads one Parquet file.
pub fn read_parquet(path: &Path) -> Result<DataFrame, StageError> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    ParquetReader::new(f)
        .finish()
        .map_err(|e| StageError::Table(format!("{}: {e}", path.display())))
}

/// Every chunk of `dir`, stacked (an empty frame when there are none).
pub fn read_chunks(dir: &Path) -> Result<Option<DataFrame>, StageError> {
    let mut acc: Option<DataFrame> = None;
    for p in chunks(dir)? {
        let df = read_parquet(&p)?;
        acc = Some(match acc {
            None => df,
            Some(mut a) => {
                a.vstack_mut(&df)
                    .map_err(|e| StageError::Table(e.to_string()))?;
                a
            }
        });
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_change_exactly_with_their_inputs() {
        let a = StageKey::new("rationales", json!({"data": "d1", "gen": {"t": 0.0}}));
        let same = StageKey::new("rationales", json!({"gen": {"t": 0.0}, "data": "d1"}));
        let other = StageKey::new("rationales", json!({"data": "d2", "gen": {"t": 0.0}}));
        let stage = StageKey::new("embeddings", json!({"data": "d1", "gen": {"t": 0.0}}));
        assert_eq!(a.hash(), same.hash(), "key order must not matter");
        assert_ne!(a.hash(), other.hash());
        assert_ne!(a.hash(), stage.hash());
        assert_eq!(
            a.dir(Path::new("/r")),
            Path::new("/r/rationales").join(&a.hash()[..16])
        );
    }

    #[test]
    fn chunks_are_written_whole_and_read_back_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let key = StageKey::new("t", json!({}));
        let dir = open_dir(tmp.path(), &key).unwrap();
        assert!(read_chunks(&dir).unwrap().is_none());
        for (i, name) in ["a", "b"].iter().enumerate() {
            let mut df = df!("user" => [*name], "n" => [i as u32]).unwrap();
            write_chunk(&dir, &mut df).unwrap();
        }
        let all = read_chunks(&dir).unwrap().unwrap();
        let users: Vec<_> = all.column("user").unwrap().str().unwrap().iter().collect();
        assert_eq!(users, [Some("a"), Some("b")]);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap())
                .unwrap();
        assert_eq!(manifest["key"], key.hash());
    }
}
