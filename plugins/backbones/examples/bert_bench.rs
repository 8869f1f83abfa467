//! Encoder throughput benchmark: all-MiniLM-L6-v2 embedding every MovieLens-100K item title
//! (the `recbole-atomic` data set, source `ml-100k-titles`, 1,682 titles) in length-bucketed
//! batches. Prints load time and titles per second (best and median of several passes); run it
//! under `/usr/bin/time -v` for peak RSS — `plugins/backbones/scripts/bench-bert.sh` does both.
//!
//!     cargo run --release -p pulse-backbones --example bert_bench -- [--batch 64] [--passes 5]

use pulse_api::polars::prelude::DataType;
use pulse_api::LoadContext;
use pulse_backbones::bert::{Encoder, EncoderOptions, EncoderSource, MINILM};
use std::time::Instant;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let batch = arg(&args, "--batch", 64);
    let passes = arg(&args, "--passes", 5).max(1);

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
    let titles: Vec<String> = col.str()?.iter().flatten().map(str::to_string).collect();
    let refs: Vec<&str> = titles.iter().map(String::as_str).collect();

    let t0 = Instant::now();
    let opts = EncoderOptions {
        batch_size: batch,
        ..EncoderOptions::default()
    };
    let enc = Encoder::load_with(
        &EncoderSource::asset(MINILM),
        &candle_core::Device::Cpu,
        opts,
    )?;
    let load_s = t0.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let ids = enc.tokenizer().encode(&refs)?;
    let tok_s = t0.elapsed().as_secs_f64();
    let tokens: usize = ids.iter().map(Vec::len).sum();

    let mut rates = Vec::with_capacity(passes);
    let mut dims = (0, 0);
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    for _ in 0..passes {
        let t0 = Instant::now();
        let out = enc.encode_tensor(&refs)?;
        let s = t0.elapsed().as_secs_f64();
        dims = out.dims2()?;
        rates.push(refs.len() as f64 / s);
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = cpu0.and_then(|c0| cpu_seconds().map(|c1| c1 - c0));
    rates.sort_by(f64::total_cmp);
    let best = rates[rates.len() - 1];
    let median = rates[rates.len() / 2];
    println!(
        "titles {} ({} tokens, {:.1} per title incl. [CLS]/[SEP]); output {}x{}",
        refs.len(),
        tokens,
        tokens as f64 / refs.len() as f64,
        dims.0,
        dims.1
    );
    println!("threads {}", candle_core::utils::get_num_threads());
    println!("load {load_s:.2} s; tokenize all {:.1} ms", tok_s * 1e3);
    println!(
        "encode batch {batch}: best {best:.0} titles/s, median {median:.0} titles/s over {passes} passes"
    );
    if let Some(cpu) = cpu {
        println!(
            "cpu {cpu:.1} s for {wall:.1} s wall ({:.0}% of one core): {:.0} titles per CPU-second",
            100.0 * cpu / wall,
            (passes * refs.len()) as f64 / cpu
        );
    }
    Ok(())
}
