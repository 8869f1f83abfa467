//! `pulse-spec` turns an experiment spec (TOML) into a validated [`Plan`] of trials.
//!
//! [`load`] reads the spec file and its `extends` chain and layers them with `PULSE_…`
//! environment variables and `--set` arguments (built-in defaults < extends < file < env <
//! --set). [`plan`] validates every section — the core ones through `pulse_api::sections`, the
//! plugin ones through a [`pulse_api::Catalog`] — and expands `[sweep]` × (base + each
//! `[[ablation]]`) × seeds into [`Trial`]s with content-hash ids. Every problem is reported at
//! once as [`Diagnostics`], each pointing at a file, line and column like a compiler error.
//!
//! **Architecture invariant:** this is the only crate that knows TOML; everything downstream
//! sees `serde_json::Value` trees and typed sections.

mod check;
mod diag;
mod expand;
mod flat;
mod layers;
mod plan;
mod source;

#[cfg(test)]
mod tests;

pub use diag::{Diagnostic, Diagnostics, Location, Origin};
pub use flat::flatten;
pub use layers::{load, Spec, SpecOptions};
pub use plan::{plan, Plan, ResolvedSpec, Trial};
