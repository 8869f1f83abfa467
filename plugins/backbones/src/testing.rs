//! Test fixtures: the real GGUF models of the asset catalog, fetched once into
//! `$PULSE_HOME` (run the tests with `PULSE_HOME=target/pulse-home-test` to share the cache)
//! and loaded once per test binary.

use crate::gguf::{GgufBackbone, LoadOptions, WeightFormat};
use candle_core::quantized::gguf_file::Content;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The path of a catalog model, fetched if needed.
pub(crate) fn model_path(name: &str) -> PathBuf {
    let cache = pulse_assets::cache_dir();
    let asset = pulse_assets::named_asset(name).unwrap();
    pulse_assets::fetch_file(&cache, asset, asset.file("model.gguf").unwrap()).unwrap()
}

/// The metadata of a catalog model.
pub(crate) fn gguf_content(name: &str) -> Content {
    let path = model_path(name);
    let mut f = std::fs::File::open(path).unwrap();
    Content::read(&mut f).unwrap()
}

/// A catalog model loaded on the CPU in `format`, shared by all tests of the binary.
pub(crate) fn backbone(name: &str, format: WeightFormat) -> &'static GgufBackbone {
    static LOADED: OnceLock<Mutex<HashMap<(String, WeightFormat), &'static GgufBackbone>>> =
        OnceLock::new();
    let map = LOADED.get_or_init(Default::default);
    // Holding the lock while loading makes concurrent tests wait for one load.
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry((name.to_string(), format)).or_insert_with(|| {
        let opts = LoadOptions {
            weights: format,
            ..LoadOptions::default()
        };
        Box::leak(Box::new(
            GgufBackbone::load(&model_path(name), &opts).unwrap(),
        ))
    })
}
