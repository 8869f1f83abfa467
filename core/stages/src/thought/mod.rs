//! The thought-space stage (PULSE, arXiv 2510.08626): a behaviour encoder (reading
//! `[CONTEXT] History: … [CHOSEN_ITEM] …`) and a rationale encoder, both started from a `bert`
//! backbone, trained with InfoNCE so that a behaviour lands next to its own rationale. The
//! stage writes what the models read: every item encoded by the behaviour side (from
//! `[CHOSEN_ITEM] ` and the item's text fields) and every rationale by the rationale side, as
//! embedding tables like [`crate::embed`]'s, plus the per-epoch held-out retrieval metrics and
//! the best epoch's weights.
//!
//! - [`text`]: pairs, texts, the held-out split, token sequences within `max_tokens`.
//! - [`model`]: the towers (encoders, heads, normalisation), snapshots and weight files.
//! - [`train`]: the InfoNCE loop and the per-epoch evaluation.
//! - [`metrics`]: Recall@1/@10 and MRR of a held-out similarity matrix.
//!
//! Cached under `$PULSE_HOME/cache/stages/thought-space/<key>/`; the key covers the stage
//! version, the data, the rationale rows used (their content), the encoder's weights (its
//! backbone id) and the whole `[thought_space]` section. `metrics.json` is written last and
//! marks a complete directory: a call that finds it reads the tables and never loads the
//! encoder.

mod metrics;
mod model;
mod text;
mod train;

pub use metrics::{retrieval, Retrieval};

use crate::cache::{open_dir, write_atomic, StageKey};
use crate::embed::{read_table, write_table, EmbeddingTable};
use crate::progress::progress_bar;
use crate::rationale::{RationaleRow, StageOptions};
use crate::StageError;
use pulse_api::plugin::decode_section;
use pulse_api::stages::ThoughtSpaceSection;
use pulse_api::{Backbone, LoadContext, LossBuilder, PluginError, SplitData};
use pulse_backbones::{BertConfigSection, DeviceSpec};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bumped whenever this code changes what the stage writes; part of the key.
pub const THOUGHT_STAGE_VERSION: u32 = 1;

/// The stage's name in the cache.
pub const THOUGHT_STAGE: &str = "thought-space";

const ITEMS: &str = "items.parquet";
const RATIONALES: &str = "rationales.parquet";
const METRICS: &str = "metrics.json";

/// Texts encoded between two looks at the stop flag in the final pass.
const ENCODE_CHUNK: usize = 256;

/// Random streams drawn from `section.seed`, one per use, so changing one use (say, the batch
/// size) leaves the others' draws alone.
const STREAM_HEADS: u64 = 1;
const STREAM_BATCHES: u64 = 2;

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream);
    r
}

/// Everything the stage reads.
pub struct ThoughtJob<'a> {
    pub data: &'a SplitData,
    /// Identity of the data (see [`crate::data_key`]).
    pub data_key: String,
    pub section: &'a ThoughtSpaceSection,
    /// The rationale stage's rows; those whose parse failed (no rationale) are left out.
    pub rationales: &'a [RationaleRow],
    /// The `[backbones.NAME]` section `section.encoder` names; must be of type `bert`.
    pub encoder: &'a serde_json::Value,
    pub ctx: &'a LoadContext,
    /// Builds the `infonce` loss (the registry).
    pub losses: &'a dyn LossBuilder,
}

/// The stage's outputs.
#[derive(Debug, Clone)]
pub struct ThoughtSpace {
    /// `$root/thought-space/<key16>/`.
    pub dir: PathBuf,
    /// Keys: raw item ids (`data.item_ids` order); vectors: the behaviour side on
    /// `[CHOSEN_ITEM] ` + the item's text fields. Unit length.
    pub items: EmbeddingTable,
    /// Keys: `RAWUSER:POSITION` of each used rationale row (as
    /// [`crate::embed_rationales`]); vectors: the rationale side. Unit length.
    pub rationales: EmbeddingTable,
    pub metrics: ThoughtMetrics,
    /// False: read from the cache (the encoder was never loaded).
    pub computed: bool,
    /// Wall time of this call.
    pub seconds: f64,
}

/// Training record, stored as `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThoughtMetrics {
    pub pairs_train: usize,
    pub pairs_held_out: usize,
    /// Epoch 0 is before training.
    pub epochs: Vec<EpochMetrics>,
    /// The epoch (by held-out MRR) whose weights made the tables.
    pub best_epoch: usize,
    /// Training and evaluation, encoders' load excluded.
    pub train_seconds: f64,
    /// The process's peak resident memory (Linux `VmHWM`) when the stage finished, in MiB.
    pub peak_rss_mb: Option<f64>,
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (`None` for epoch 0).
    pub loss: Option<f64>,
    /// Held-out retrieval of each behaviour's own rationale among all held-out rationales.
    pub recall_at_1: f64,
    pub recall_at_10: f64,
    pub mrr: f64,
    /// Wall time of the epoch, its evaluation included (epoch 0: the evaluation, and with
    /// `train = "heads"` the one-off encoding of every pair).
    pub seconds: f64,
    /// Training throughput of the epoch's batches (0 for epoch 0).
    pub pairs_per_second: f64,
}

fn invalid(what: &str, errs: Vec<pulse_api::ConfigError>) -> StageError {
    StageError::Invalid(format!(
        "{what}: {}",
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// The `bert` section the job's encoder names (a clear error for any other type).
fn bert_section(job: &ThoughtJob<'_>) -> Result<BertConfigSection, StageError> {
    let name = &job.section.encoder;
    let ty = job
        .encoder
        .get("type")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if ty != "bert" {
        return Err(StageError::Invalid(format!(
            "[thought_space] encoder = \"{name}\" names a backbone of type \"{ty}\"; the thought \
             space fine-tunes a sentence encoder: name a [backbones.NAME] section with \
             type = \"bert\" (e.g. model = \"all-minilm-l6-v2\")"
        )));
    }
    decode_section::<BertConfigSection>(job.encoder)
        .map_err(|e| invalid(&format!("[backbones.{name}]"), e))
}

/// The stage key of a job (the encoder's id is read, its weights are not).
pub fn thought_key(job: &ThoughtJob<'_>) -> Result<StageKey, StageError> {
    let bert = bert_section(job)?;
    let pairs = text::pairs(job.data, job.rationales, job.section.history)?;
    key_of(job, &bert, &pairs)
}

fn key_of(
    job: &ThoughtJob<'_>,
    bert: &BertConfigSection,
    pairs: &[text::Pair],
) -> Result<StageKey, StageError> {
    Ok(StageKey::new(
        THOUGHT_STAGE,
        json!({
            "version": THOUGHT_STAGE_VERSION,
            "data": job.data_key,
            "rationales": text::content_hash(pairs),
            "encoder": bert.id(job.ctx)?,
            "section": job.section,
        }),
    ))
}

/// Runs the stage, or reads its outputs when a complete run with the same key is cached.
pub fn run_thought_space(
    job: &ThoughtJob<'_>,
    opts: &StageOptions,
) -> Result<ThoughtSpace, StageError> {
    run(job, opts).map(|(space, _)| space)
}

/// [`run_thought_space`], also handing back the trained towers when it computed them.
pub(crate) fn run(
    job: &ThoughtJob<'_>,
    opts: &StageOptions,
) -> Result<(ThoughtSpace, Option<model::Towers>), StageError> {
    let started = Instant::now();
    let s = job.section;
    let problems = s.validate();
    if !problems.is_empty() {
        return Err(invalid("[thought_space]", problems));
    }
    let bert = bert_section(job)?;
    let pairs = text::pairs(job.data, job.rationales, s.history)?;
    let key = key_of(job, &bert, &pairs)?;
    let dir = key.dir(&opts.root);
    if dir.join(METRICS).exists() {
        let space = load_cached(&dir, started)?;
        tracing::info!("thought space: cached in {}", dir.display());
        return Ok((space, None));
    }
    let dir = open_dir(&opts.root, &key)?;
    let (train_idx, held_idx) = text::split(&pairs, s.valid_fraction, s.seed)?;
    let mode = serde_json::to_value(s.train).unwrap_or_default();
    tracing::info!(
        "thought space: {} pairs ({} train, {} held out), {}, train = {mode}, into {}",
        pairs.len(),
        train_idx.len(),
        held_idx.len(),
        bert.describe(),
        dir.display()
    );
    let device = bert
        .device
        .parse::<DeviceSpec>()
        .and_then(DeviceSpec::open)
        .map_err(|e| StageError::Plugin(PluginError::Other(e.to_string())))?;
    let files = bert.source(job.ctx).files()?;
    let towers = model::Towers::load(&files, &device, s)?;
    drop(files);
    let behaviour = text::behaviour_tokens(towers.tokenizer(), &pairs, s.max_tokens)?;
    let rationale_texts: Vec<String> = pairs.iter().map(|p| p.rationale.clone()).collect();
    let rationale = text::tokens(towers.tokenizer(), &rationale_texts)?;
    let data = train::Data {
        behaviour: &behaviour,
        rationale: &rationale,
        train: &train_idx,
        held_out: &held_idx,
    };
    let fit = train::fit(&towers, &data, s, job.losses, opts)?;
    fit.restore_best(&towers)?;
    // Epoch 0's encoders are the checkpoint's: nothing to store.
    towers.save(&dir, towers.encoders_train() && fit.best_epoch > 0)?;

    // The tables, with the best epoch's weights.
    let fields = text::item_fields(job.data);
    let item_texts: Vec<String> = (0..job.data.n_items() as u32)
        .map(|i| text::item_query_text(job.data, i, &fields))
        .collect();
    let item_ids = text::tokens(towers.tokenizer(), &item_texts)?;
    let items = encode(&towers, model::Side::Behaviour, &item_ids, opts, "items")?;
    let rationales = match &fit.rationale_pooled {
        Some(pooled) => towers.project(model::Side::Rationale, pooled)?.detach(),
        None => encode(
            &towers,
            model::Side::Rationale,
            &rationale,
            opts,
            "rationales",
        )?,
    };
    let table = |keys: Vec<String>, v: candle_core::Tensor| -> Result<EmbeddingTable, StageError> {
        let dim = v.dim(1)?;
        Ok(EmbeddingTable {
            dir: dir.clone(),
            keys,
            dim,
            vectors: v.flatten_all()?.to_vec1::<f32>()?,
            computed: true,
        })
    };
    let items = table(job.data.item_ids.clone(), items)?;
    let rationales = table(pairs.iter().map(|p| p.key.clone()).collect(), rationales)?;
    write_table(&dir.join(ITEMS), &items)?;
    write_table(&dir.join(RATIONALES), &rationales)?;
    let metrics = ThoughtMetrics {
        pairs_train: train_idx.len(),
        pairs_held_out: held_idx.len(),
        best_epoch: fit.best_epoch,
        epochs: fit.epochs,
        train_seconds: fit.seconds,
        peak_rss_mb: peak_rss_mb(),
    };
    // Last: its presence marks the directory complete.
    let path = dir.join(METRICS);
    let json = serde_json::to_vec_pretty(&metrics)
        .map_err(|e| StageError::Table(format!("{}: {e}", path.display())))?;
    write_atomic(&path, |f| std::io::Write::write_all(f, &json))?;
    // What a cached call reads back (JSON floats need not round-trip to the last bit), so
    // both calls return the same record.
    let metrics: ThoughtMetrics = serde_json::from_slice(&json)
        .map_err(|e| StageError::Table(format!("{}: {e}", path.display())))?;
    let best_mrr = metrics
        .epochs
        .get(metrics.best_epoch)
        .map_or(0.0, |e| e.mrr);
    tracing::info!(
        "thought space: best epoch {} (held-out MRR {best_mrr:.3}), {} item and {} rationale \
         vectors in {:.1}s",
        metrics.best_epoch,
        items.keys.len(),
        rationales.keys.len(),
        started.elapsed().as_secs_f64()
    );
    let space = ThoughtSpace {
        dir,
        items,
        rationales,
        metrics,
        computed: true,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((space, Some(towers)))
}

/// The final vectors of one side, in chunks of [`ENCODE_CHUNK`] texts, so that a stop request
/// is noticed within seconds and the bar moves (ml-1m's item texts alone take about a minute
/// on 2 cores).
fn encode(
    towers: &model::Towers,
    side: model::Side,
    ids: &[Vec<u32>],
    opts: &StageOptions,
    what: &str,
) -> Result<candle_core::Tensor, StageError> {
    let bar = progress_bar(
        opts,
        &format!("thought space: encoding {what}"),
        what,
        ids.len(),
    );
    let mut parts = Vec::with_capacity(ids.len().div_ceil(ENCODE_CHUNK));
    for chunk in ids.chunks(ENCODE_CHUNK) {
        if opts.cancelled() {
            bar.abandon();
            return Err(StageError::Interrupted(format!(
                "thought-space encoding of the {what}; the tables were not stored, a rerun \
                 starts over"
            )));
        }
        parts.push(towers.vectors(side, chunk)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if parts.is_empty() {
        return towers.vectors(side, ids);
    }
    Ok(candle_core::Tensor::cat(&parts, 0)?)
}

fn load_cached(dir: &Path, started: Instant) -> Result<ThoughtSpace, StageError> {
    let path = dir.join(METRICS);
    let bytes = std::fs::read(&path).map_err(crate::cache::io(&path))?;
    let metrics: ThoughtMetrics = serde_json::from_slice(&bytes)
        .map_err(|e| StageError::Table(format!("{}: {e}", path.display())))?;
    let read = |name: &str| -> Result<EmbeddingTable, StageError> {
        let mut t = read_table(&dir.join(name))?;
        t.dir = dir.to_path_buf();
        Ok(t)
    };
    Ok(ThoughtSpace {
        dir: dir.to_path_buf(),
        items: read(ITEMS)?,
        rationales: read(RATIONALES)?,
        metrics,
        computed: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Peak resident memory of this process in MiB (Linux only).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests;
