//! Side inputs: data a model asks the runtime for beyond the interactions — item vectors
//! (item text through an encoder) and rationale vectors (a rationale's embedding for a
//! training interaction). A model lists what it needs ([`crate::Recommender::inputs`]); the
//! runtime computes it through the cached text stages and hands it over
//! ([`crate::Recommender::attach`]) before `prepare`. Kept as plain row-major `f32` tables so
//! the contract stays free of stage, cache and file details.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The source name that means "the thought-space stage's encoders" rather than a
/// `[backbones.NAME]` section used frozen.
pub const THOUGHT_SPACE: &str = "thought-space";

/// One request of a model, naming its source: [`THOUGHT_SPACE`] or a `[backbones.NAME]`
/// section with the `embed` capability.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputRequest {
    /// One vector per item (dense item id order), from the item's text fields.
    ItemVectors(String),
    /// One vector per explained training interaction (`[rationales]` rows).
    RationaleVectors(String),
}

impl InputRequest {
    pub fn source(&self) -> &str {
        match self {
            InputRequest::ItemVectors(s) | InputRequest::RationaleVectors(s) => s,
        }
    }
}

/// A row-major table of `rows × dim` vectors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vectors {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Rationale vectors keyed by (dense user id, position of the explained item in the user's
/// training sequence).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RationaleVectors {
    pub vectors: Vectors,
    pub index: HashMap<(u32, u32), usize>,
}

impl RationaleVectors {
    /// The vector explaining `user`'s training interaction at `position`, if there is one.
    pub fn get(&self, user: u32, position: u32) -> Option<&[f32]> {
        self.index
            .get(&(user, position))
            .map(|&r| self.vectors.row(r))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Everything the runtime computed for one model, by source name.
#[derive(Debug, Clone, Default)]
pub struct SideInputs {
    pub item_vectors: BTreeMap<String, Arc<Vectors>>,
    pub rationale_vectors: BTreeMap<String, Arc<RationaleVectors>>,
}

impl SideInputs {
    pub fn items(&self, source: &str) -> Option<&Arc<Vectors>> {
        self.item_vectors.get(source)
    }

    pub fn rationales(&self, source: &str) -> Option<&Arc<RationaleVectors>> {
        self.rationale_vectors.get(source)
    }
}
