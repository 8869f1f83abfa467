//! Side inputs for models ([`pulse_api::InputRequest`]): item vectors and rationale vectors,
//! from the thought-space stage or from a `[backbones.NAME]` section used frozen, turned from
//! the stages' keyed tables into the dense-id tables models read. Called by the runtime for
//! each model that asks (every stage is cached, so a second model reads Parquet and loads no
//! weights).

use crate::embed::{embed_items, embed_rationales, EmbeddingTable};
use crate::rationale::{data_key, StageOptions};
use crate::spec::{self, run_for_trial, thought_space_for_trial};
use crate::StageError;
use pulse_api::{
    InputRequest, LoadContext, RationaleVectors, SideInputs, SplitData, Vectors, THOUGHT_SPACE,
};
use pulse_registry::Registry;
use pulse_spec::Trial;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Where a trial's stages live and how they run.
pub struct SideContext<'a> {
    pub registry: &'a Registry,
    pub trial: &'a Trial,
    pub base_dir: &'a Path,
    pub cache_dir: &'a Path,
    pub ds_name: &'a str,
    pub data: &'a SplitData,
    pub opts: &'a StageOptions,
}

impl SideContext<'_> {
    fn load_context(&self) -> LoadContext {
        spec::load_context(self.trial, self.base_dir, self.cache_dir)
    }

    fn backbone(&self, name: &str) -> Result<Box<dyn pulse_api::Backbone>, StageError> {
        spec::backbone(self.registry, self.trial, name)
    }

    fn thought_space(&self) -> Result<crate::thought::ThoughtSpace, StageError> {
        thought_space_for_trial(
            self.registry,
            self.trial,
            self.base_dir,
            self.cache_dir,
            self.ds_name,
            self.data,
            self.opts,
        )?
        .ok_or_else(|| {
            StageError::Invalid(
                "a model asks for thought-space vectors, but the spec has no [thought_space] \
                 section; add one (see experiments/pulse/ml100k.toml) or name a \
                 [backbones.NAME] instead"
                    .into(),
            )
        })
    }

    fn rationale_dir(&self) -> Result<std::path::PathBuf, StageError> {
        run_for_trial(
            self.registry,
            self.trial,
            self.base_dir,
            self.cache_dir,
            self.ds_name,
            self.data,
            self.opts,
        )?
        .map(|r| r.dir)
        .ok_or_else(|| {
            StageError::Invalid(
                "a model asks for rationale vectors, but the spec has no [rationales] section"
                    .into(),
            )
        })
    }
}

/// The side inputs of one model, with numbers worth recording in its run (the thought
/// space's held-out retrieval metrics).
#[derive(Debug, Clone, Default)]
pub struct SideReport {
    pub inputs: SideInputs,
    pub metrics: Vec<(String, f64)>,
}

/// Computes (or reads from the stage cache) everything `requests` names.
pub fn side_inputs(
    cx: &SideContext<'_>,
    requests: &[InputRequest],
) -> Result<SideReport, StageError> {
    let mut out = SideInputs::default();
    let mut metrics = Vec::new();
    let mut thought: Option<crate::thought::ThoughtSpace> = None;
    let mut thought_space = || -> Result<crate::thought::ThoughtSpace, StageError> {
        if let Some(t) = &thought {
            return Ok(t.clone());
        }
        let t = cx.thought_space()?;
        metrics.extend(thought_metrics(&t));
        thought = Some(t.clone());
        Ok(t)
    };
    for req in requests {
        match req {
            InputRequest::ItemVectors(src) => {
                let table = if src == THOUGHT_SPACE {
                    thought_space()?.items
                } else {
                    let fields: Vec<String> =
                        cx.data.item_text.iter().map(|(f, _)| f.clone()).collect();
                    let key = data_key(
                        spec::section(cx.trial, "datasets", cx.ds_name)?,
                        &cx.trial.resolved.split,
                    );
                    embed_items(
                        cx.data,
                        &key,
                        &fields,
                        cx.backbone(src)?.as_ref(),
                        &cx.load_context(),
                        &cx.opts.root,
                    )?
                };
                out.item_vectors
                    .insert(src.clone(), Arc::new(item_vectors(cx.data, &table)?));
            }
            InputRequest::RationaleVectors(src) => {
                let table = if src == THOUGHT_SPACE {
                    thought_space()?.rationales
                } else {
                    embed_rationales(
                        &cx.rationale_dir()?,
                        cx.backbone(src)?.as_ref(),
                        &cx.load_context(),
                        &cx.opts.root,
                    )?
                };
                out.rationale_vectors
                    .insert(src.clone(), Arc::new(rationale_vectors(cx.data, &table)?));
            }
        }
    }
    Ok(SideReport {
        inputs: out,
        metrics,
    })
}

/// Rows of a table keyed by raw item id, in dense item order; every item must have one.
pub fn item_vectors(data: &SplitData, t: &EmbeddingTable) -> Result<Vectors, StageError> {
    let row: HashMap<&str, usize> = t
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let mut out = Vec::with_capacity(data.n_items() * t.dim);
    for id in &data.item_ids {
        let r = row.get(id.as_str()).ok_or_else(|| {
            StageError::Invalid(format!(
                "item vectors in {} lack item '{id}' (the table belongs to other data)",
                t.dir.display()
            ))
        })?;
        out.extend_from_slice(t.row(*r));
    }
    Ok(Vectors {
        dim: t.dim,
        data: out,
    })
}

/// Rows of a table keyed `RAWUSER:POSITION`, indexed by (dense user, position); rows of users
/// the data set lacks are skipped.
pub fn rationale_vectors(
    data: &SplitData,
    t: &EmbeddingTable,
) -> Result<RationaleVectors, StageError> {
    let users: HashMap<&str, u32> = data
        .user_ids
        .iter()
        .enumerate()
        .map(|(i, u)| (u.as_str(), i as u32))
        .collect();
    let mut index = HashMap::new();
    let mut vectors = Vec::new();
    for (i, key) in t.keys.iter().enumerate() {
        let (user, pos) = key
            .rsplit_once(':')
            .and_then(|(u, p)| Some((u, p.parse::<u32>().ok()?)))
            .ok_or_else(|| {
                StageError::Invalid(format!("rationale key '{key}' is not USER:POSITION"))
            })?;
        if let Some(&u) = users.get(user) {
            index.insert((u, pos), vectors.len() / t.dim.max(1));
            vectors.extend_from_slice(t.row(i));
        }
    }
    Ok(RationaleVectors {
        vectors: Vectors {
            dim: t.dim,
            data: vectors,
        },
        index,
    })
}

/// The best epoch's held-out retrieval (and the untrained encoders' for reference).
fn thought_metrics(t: &crate::thought::ThoughtSpace) -> Vec<(String, f64)> {
    let m = &t.metrics;
    let mut out = vec![
        ("thought_space/seconds".to_string(), t.seconds),
        (
            "thought_space/pairs_train".to_string(),
            m.pairs_train as f64,
        ),
        (
            "thought_space/pairs_held_out".to_string(),
            m.pairs_held_out as f64,
        ),
        ("thought_space/best_epoch".to_string(), m.best_epoch as f64),
    ];
    for (prefix, e) in [
        (
            "thought_space",
            m.epochs.iter().find(|e| e.epoch == m.best_epoch),
        ),
        (
            "thought_space/untrained",
            m.epochs.iter().find(|e| e.epoch == 0),
        ),
    ] {
        if let Some(e) = e {
            out.push((format!("{prefix}/recall_at_1"), e.recall_at_1));
            out.push((format!("{prefix}/recall_at_10"), e.recall_at_10));
            out.push((format!("{prefix}/mrr"), e.mrr));
        }
    }
    out
}
