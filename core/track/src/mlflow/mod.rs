//! Experiment tracking on an MLflow tracking server over its REST API.
//!
//! The local run store stays the source of truth: every event is appended there first, with a
//! sequence number, and this module ships from it — live, from a background thread beside
//! `pulse run` ([`MlflowTracker`]), or later with `pulse sync` ([`sync_runs`]). What the server
//! acknowledged is recorded per run in `mlflow-sync.json`, so delivery resumes where it
//! stopped and never sends a metric point twice ([`deliver`] explains how). [`fetch_runs`]
//! reads runs back for `pulse compare --from mlflow`.
//!
//! One MLflow run per (trial, data set, model), nested under one parent run per sweep
//! (`mlflow.parentRunId`); params are the flattened resolved spec, metrics keep their steps,
//! artifacts go through the server's `mlflow-artifacts` proxy when it serves artifacts.
//!
//! Files: `wire` (JSON shapes, names, limits), `client` (HTTP), `state` (delivery records),
//! `local` (reading the run store), `deliver` (one run), `worker` (live tracker), `sync`,
//! `remote` (reading back), `proxy` (a fault-injecting loopback proxy for tests and benches).

pub mod client;
pub mod deliver;
pub mod local;
pub mod proxy;
pub mod remote;
pub mod state;
pub mod sync;
pub mod wire;
pub mod worker;

pub use client::{Auth, Client, ClientConfig, MlflowError, Upload};
pub use remote::fetch_runs;
pub use state::{SyncFile, TargetState, SYNC_FILE};
pub use sync::{sync_runs, targets_of, RunSync, SyncOutcome};
pub use worker::{LiveConfig, LiveReport, MlflowTracker};
