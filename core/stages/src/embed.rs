//! The embedding stage: vectors for item texts (chosen fields joined) and for stored
//! rationales, from any backbone with the `embed` capability, cached as one Parquet table per
//! key (`key` string column, `vector` list-of-f32 column) under the stage cache. The PULSE
//! model and text baselines call [`embed_items`] / [`embed_rationales`]; a second call with the
//! same inputs reads the table and never loads the encoder.

use crate::cache::{open_dir, read_parquet, write_parquet, StageKey};
use crate::rationale::load_rationales;
use crate::StageError;
use polars::prelude::*;
use pulse_api::{Backbone, Capability, LoadContext, SplitData};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Bumped whenever this code changes what a table contains; part of the key.
pub const EMBED_STAGE_VERSION: u32 = 1;

/// Texts encoded per call.
const BATCH: usize = 64;

/// A cached embedding table: row `i` of `vectors` (row-major, `dim` wide) belongs to `keys[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingTable {
    pub dir: PathBuf,
    pub keys: Vec<String>,
    pub dim: usize,
    pub vectors: Vec<f32>,
    /// Whether this call computed the table (false: read from the cache).
    pub computed: bool,
}

impl EmbeddingTable {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }
}

/// The text of an item: its `fields` joined with ". " (missing and empty ones skipped).
pub fn item_text(data: &SplitData, item: u32, fields: &[String]) -> String {
    fields
        .iter()
        .filter_map(|f| data.text(f, item))
        .filter(|t| !t.trim().is_empty())
        .collect::<Vec<_>>()
        .join(". ")
}

/// Embeds every item's text (`fields` joined); keys are the raw item ids.
pub fn embed_items(
    data: &SplitData,
    data_key: &str,
    fields: &[String],
    backbone: &dyn Backbone,
    ctx: &LoadContext,
    root: &Path,
) -> Result<EmbeddingTable, StageError> {
    let key = StageKey::new(
        "item-embeddings",
        json!({
            "version": EMBED_STAGE_VERSION,
            "data": data_key,
            "fields": fields,
            "backbone": backbone.id(ctx)?,
        }),
    );
    let items: Vec<(String, String)> = (0..data.n_items() as u32)
        .map(|i| {
            (
                data.item_ids[i as usize].clone(),
                item_text(data, i, fields),
            )
        })
        .collect();
    cached_table(&key, root, backbone, ctx, items)
}

/// Embeds the rationales stored in a rationale stage directory; keys are `user:position`.
pub fn embed_rationales(
    rationale_dir: &Path,
    backbone: &dyn Backbone,
    ctx: &LoadContext,
    root: &Path,
) -> Result<EmbeddingTable, StageError> {
    let rows = load_rationales(rationale_dir)?;
    let texts: Vec<(String, String)> = rows
        .into_iter()
        .map(|r| (format!("{}:{}", r.user, r.position), r.rationale))
        .collect();
    // The rows themselves are hashed: a resumed rationale stage gains rows, and so a new key.
    let content = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (k, t) in &texts {
            h.update(k.as_bytes());
            h.update(b"\0");
            h.update(t.as_bytes());
            h.update(b"\0");
        }
        hex::encode(h.finalize())
    };
    let key = StageKey::new(
        "rationale-embeddings",
        json!({
            "version": EMBED_STAGE_VERSION,
            "rationales": content,
            "backbone": backbone.id(ctx)?,
        }),
    );
    cached_table(&key, root, backbone, ctx, texts)
}

fn cached_table(
    key: &StageKey,
    root: &Path,
    backbone: &dyn Backbone,
    ctx: &LoadContext,
    texts: Vec<(String, String)>,
) -> Result<EmbeddingTable, StageError> {
    let dir = open_dir(root, key)?;
    let path = dir.join("embeddings.parquet");
    if path.exists() {
        let mut t = read_table(&path)?;
        t.dir = dir;
        return Ok(t);
    }
    if !backbone.capabilities().contains(&Capability::Embed) {
        return Err(StageError::Invalid(format!(
            "backbone {} cannot embed text",
            backbone.describe()
        )));
    }
    let model = backbone.open(ctx)?;
    let mut vectors = Vec::new();
    let mut dim = 0;
    for batch in texts.chunks(BATCH) {
        let refs: Vec<&str> = batch.iter().map(|(_, t)| t.as_str()).collect();
        for v in model.embed(&refs)? {
            dim = v.len();
            vectors.push(v);
        }
    }
    let keys: Vec<String> = texts.into_iter().map(|(k, _)| k).collect();
    let table = EmbeddingTable {
        dir,
        keys,
        dim,
        vectors: vectors.concat(),
        computed: true,
    };
    write_table(&path, &table)?;
    Ok(table)
}

/// Writes `table` as one Parquet file (`key` string column, `vector` list-of-f32 column),
/// atomically.
pub(crate) fn write_table(path: &Path, table: &EmbeddingTable) -> Result<(), StageError> {
    let list: Vec<Series> = (0..table.keys.len())
        .map(|i| Series::new("".into(), table.row(i)))
        .collect();
    let mut df = DataFrame::new(
        table.keys.len(),
        vec![
            Column::new("key".into(), table.keys.clone()),
            Column::new("vector".into(), list),
        ],
    )
    .map_err(|e| StageError::Table(e.to_string()))?;
    write_parquet(path, &mut df)
}

/// Reads a table written by [`write_table`]; `dir` is left empty and `computed` false.
pub(crate) fn read_table(path: &Path) -> Result<EmbeddingTable, StageError> {
    let df = read_parquet(path)?;
    let t = |e: PolarsError| StageError::Table(format!("{}: {e}", path.display()));
    let keys: Vec<String> = df
        .column("key")
        .map_err(t)?
        .str()
        .map_err(t)?
        .iter()
        .map(|k| k.unwrap_or_default().to_string())
        .collect();
    let mut vectors = Vec::new();
    let mut dim = 0;
    let list = df.column("vector").map_err(t)?.list().map_err(t)?;
    for i in 0..list.len() {
        let Some(s) = list.get_as_series(i) else {
            return Err(StageError::Table(format!(
                "{}: a null vector",
                path.display()
            )));
        };
        let v: Vec<f32> = s
            .f32()
            .map_err(t)?
            .iter()
            .map(|x| x.unwrap_or(0.0))
            .collect();
        dim = v.len();
        vectors.extend(v);
    }
    Ok(EmbeddingTable {
        dir: PathBuf::new(),
        keys,
        dim,
        vectors,
        computed: false,
    })
}
