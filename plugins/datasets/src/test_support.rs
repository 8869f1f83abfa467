//! Helpers shared by this crate's tests: decoding configs like the spec layer does, reading
//! frame columns, and the shared download cache for tests that fetch real data.

use pulse_api::config::ConfigError;
use pulse_api::polars::prelude::DataFrame;
use pulse_api::PluginConfig;
use std::path::PathBuf;

/// Decodes a section body given as JSON (plus `validate`), as the registry does.
pub fn decode_json<C: PluginConfig>(json: &str) -> Result<C, Vec<ConfigError>> {
    let v: pulse_api::serde_json::Value = pulse_api::serde_json::from_str(json).unwrap();
    pulse_api::plugin::decode_section::<C>(&v)
}

/// Decodes a TOML section body via JSON, as the spec layer does.
pub fn decode_toml<C: PluginConfig>(text: &str) -> Result<C, Vec<ConfigError>> {
    let table: toml::Table = toml::from_str(text).unwrap();
    let v = pulse_api::serde_json::to_value(table).unwrap();
    pulse_api::plugin::decode_section::<C>(&v)
}

pub fn names(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect()
}

pub fn column_str(df: &DataFrame, name: &str) -> Vec<String> {
    let c = df.column(name).unwrap().str().unwrap();
    c.iter().map(|v| v.unwrap_or("").to_string()).collect()
}

pub fn column_f64(df: &DataFrame, name: &str) -> Vec<f64> {
    let c = df.column(name).unwrap().f64().unwrap();
    c.iter().map(|v| v.unwrap()).collect()
}

/// `$PULSE_HOME` if set, else `target/pulse-home-test` in the workspace, so that repeated test
/// runs (and the `pulse-data` tests) reuse one download.
pub fn test_home() -> PathBuf {
    match std::env::var_os("PULSE_HOME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/pulse-home-test"),
    }
}
