//! Embedding throughput of the `gguf` backbone (the `slm-emb` baseline's item vectors): every
//! MovieLens-100K item title (the `recbole-atomic` data set, source `ml-100k-titles`, 1,682
//! titles) embedded as the mean final hidden state. Prints load time and titles per second
//! (best and median of several passes); run it under `/usr/bin/time -v` for peak RSS —
//! `plugins/backbones/scripts/bench-gguf-embed.sh` does both.
//!
//!     cargo run --release -p pulse-backbones --example gguf_embed_bench -- \
//!         [--model smollm2-135m-instruct] [--weights auto|quantized|f32|int8] \
//!         [--batch-tokens 1024] [--passes 3]

use pulse_api::polars::prelude::DataType;
use pulse_api::LoadContext;
use pulse_backbones::gguf::{EmbedParams, GgufBackbone, LoadOptions, WeightFormat};
use std::time::Instant;

type Error = Box<dyn std::error::Error>;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (Linux; clock
/// ticks of 1/100 s). On a shared machine titles per CPU-second says more than wall-clock rate.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn titles() -> Result<Vec<String>, Error> {
    let cfg: pulse_datasets::RecboleAtomicConfig =
        pulse_api::decode(&pulse_api::serde_json::json!({"source": "ml-100k-titles"}))
            .map_err(|e| format!("{e:?}"))?;
    let ds = pulse_datasets::recbole::build(cfg).map_err(|e| format!("{e:?}"))?;
    let ctx = LoadContext {
        cache_dir: pulse_assets::cache_dir(),
        base_dir: ".".into(),
        seed: 0,
    };
    let raw = ds.load(&ctx)?;
    let items = raw.items.ok_or("ml-100k-titles has no item table")?;
    let col = items.column("item")?.cast(&DataType::String)?;
    Ok(col.str()?.iter().flatten().map(str::to_string).collect())
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let model = arg(&args, "--model").unwrap_or_else(|| "smollm2-135m-instruct".into());
    let weights: WeightFormat = match arg(&args, "--weights") {
        Some(w) => serde_json::from_value(serde_json::Value::String(w))?,
        None => WeightFormat::Auto,
    };
    let params = EmbedParams {
        batch_tokens: arg(&args, "--batch-tokens")
            .map_or(Ok(EmbedParams::default().batch_tokens), |v| v.parse())?,
        ..EmbedParams::default()
    };
    let passes: usize = arg(&args, "--passes").map_or(Ok(3), |v| v.parse())?;

    let titles = titles()?;
    let refs: Vec<&str> = titles.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let opts = LoadOptions {
        weights,
        ..LoadOptions::default()
    };
    let m = GgufBackbone::load_named(&model, &pulse_assets::cache_dir(), &opts)?;
    let load_s = t0.elapsed().as_secs_f64();
    let mut tokens = 0;
    for t in &refs {
        tokens += m.encode_prompt(t)?.len();
    }

    let mut rates = Vec::with_capacity(passes);
    let mut dim = 0;
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    for _ in 0..passes.max(1) {
        let t0 = Instant::now();
        let out = m.embed_with(&refs, &params)?;
        rates.push(refs.len() as f64 / t0.elapsed().as_secs_f64());
        dim = out[0].len();
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = cpu0.and_then(|c0| cpu_seconds().map(|c1| c1 - c0));
    rates.sort_by(f64::total_cmp);
    let (best, median) = (rates[rates.len() - 1], rates[rates.len() / 2]);
    println!(
        "{model} ({:?} weights): titles {} ({tokens} tokens, {:.1} per title); dim {dim}",
        m.weight_format(),
        refs.len(),
        tokens as f64 / refs.len() as f64
    );
    println!("rayon threads {}", rayon::current_num_threads());
    println!("load {load_s:.2} s");
    println!(
        "embed batch_tokens {}: best {best:.0} titles/s, median {median:.0} titles/s over {} passes",
        params.batch_tokens,
        rates.len()
    );
    if let Some(cpu) = cpu {
        println!(
            "cpu {cpu:.1} s for {wall:.1} s wall ({:.0}% of one core): {:.0} titles per CPU-second",
            100.0 * cpu / wall,
            (rates.len() * refs.len()) as f64 / cpu
        );
    }
    Ok(())
}
