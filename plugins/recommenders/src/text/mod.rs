//! Text-aware sequential recommenders: `text-seq` (MoRec/UniSRec-style: item vectors from item
//! text through a frozen encoder, projected into a SASRec user tower), `slm-emb` (the same
//! with item vectors from a small language model's mean hidden state) and `pulse`, the joint
//! what/why model of PULSE: the item tower reads thought-space item vectors (plus ID
//! embeddings), the user tower is a causal transformer, and the loss adds to the next-item
//! loss (*what*) λ times an InfoNCE loss (*why*) pulling the user state at each explained
//! target step towards that step's rationale vector. Rationales are a training signal only:
//! scoring is the last hidden state against precomputed item vectors, as in SASRec.
//!
//! The three share one network ([`model::TextRec`]); the configs differ in defaults and in
//! which keys exist. Item and rationale vectors are side inputs the runtime computes through
//! the cached text stages (`item_vectors` / `rationale_vectors` name their source: the
//! `thought-space` stage or a `[backbones.NAME]` section used frozen).

mod config;
mod model;

pub use config::{PulseConfig, SlmEmbConfig, TextSeqConfig};
pub(crate) use model::build;

#[cfg(test)]
mod tests;
