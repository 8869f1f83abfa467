//! `pulse-track` records runs. The local run store ([`LocalStore`]) is always on and is the
//! source of truth: one directory per run holding the resolved spec, flattened params, metrics
//! as JSON lines, status, environment and artifacts. Remote trackers ([`mlflow`]) ship from
//! what the local store holds.
//!
//! **Architecture invariant:** this is the only crate that writes run records or speaks to a
//! tracking server; nothing here may abort a trial — callers log tracker errors and go on.

mod fsutil;
pub mod mlflow;
pub mod read;
pub mod store;

pub use read::{RunRecord, StoreReader};
pub use store::LocalStore;

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
