//! Throughput of the `gguf` backbone on rationale-style prompts built from MovieLens-100K
//! histories (the `ml-100k-titles` asset: items keyed by title). Used by
//! `experiments/benchmarks/slm-throughput.sh`, which runs llama.cpp on the same prompts.
//!
//! ```text
//! cargo run --release -p pulse-backbones --example slm_throughput -- \
//!     [--model smollm2-135m-instruct|PATH.gguf] [--prompts 64] [--max-new 96] [--batch 64] \
//!     [--weights auto|quantized|f32|f16] [--device cpu|cuda:0] [--history 10] \
//!     [--write-prompts FILE.jsonl [--prompts-only]] [--out FILE.jsonl]
//! ```
//!
//! Prints one JSON line: prompts, prompt and generated tokens, seconds, generated tokens/s.
//! `--write-prompts` writes the prompts (chat template applied, one JSON string a line) for
//! llama.cpp's side; with `--prompts-only` nothing is generated.

use pulse_backbones::chat::Message;
use pulse_backbones::gguf::{GgufBackbone, LoadOptions, WeightFormat};
use pulse_backbones::GenParams;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

type Error = Box<dyn std::error::Error>;

struct Args {
    model: String,
    prompts: usize,
    max_new: usize,
    batch: usize,
    weights: WeightFormat,
    device: String,
    history: usize,
    write_prompts: Option<String>,
    prompts_only: bool,
    out: Option<String>,
}

fn parse_args() -> Result<Args, Error> {
    let mut a = Args {
        model: "smollm2-135m-instruct".into(),
        prompts: 64,
        max_new: 96,
        batch: 64,
        weights: WeightFormat::Auto,
        device: "cpu".into(),
        history: 10,
        write_prompts: None,
        prompts_only: false,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => a.model = value()?,
            "--prompts" => a.prompts = value()?.parse()?,
            "--max-new" => a.max_new = value()?.parse()?,
            "--batch" => a.batch = value()?.parse()?,
            "--weights" => a.weights = serde_json::from_value(serde_json::Value::String(value()?))?,
            "--device" => a.device = value()?,
            "--history" => a.history = value()?.parse()?,
            "--write-prompts" => a.write_prompts = Some(value()?),
            "--prompts-only" => a.prompts_only = true,
            "--out" => a.out = Some(value()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(a)
}

/// Reads one file of the `ml-100k-titles` asset.
fn dataset_file(name: &str) -> Result<String, Error> {
    let cache = pulse_assets::cache_dir();
    let asset = pulse_assets::named_asset("ml-100k-titles")?;
    let file = asset.file(name).ok_or("missing dataset file")?;
    Ok(std::fs::read_to_string(pulse_assets::fetch_file(
        &cache, asset, file,
    )?)?)
}

/// One user message per user: their last `history` ratings before their last interaction, and
/// the item they chose last.
fn user_messages(n: usize, history: usize) -> Result<Vec<String>, Error> {
    let items = dataset_file("ml-100k.item")?;
    let mut genres: HashMap<&str, String> = HashMap::new();
    for line in items.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 4 {
            genres.insert(f[0], f[3].replace(' ', ", "));
        }
    }
    let inter = dataset_file("ml-100k.inter")?;
    let mut by_user: HashMap<&str, Vec<(u64, &str, &str)>> = HashMap::new();
    for line in inter.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() >= 4 {
            let ts = f[3].parse::<f64>().unwrap_or(0.0) as u64;
            by_user.entry(f[0]).or_default().push((ts, f[1], f[2]));
        }
    }
    let mut users: Vec<&str> = by_user
        .iter()
        .filter(|(_, v)| v.len() > history)
        .map(|(u, _)| *u)
        .collect();
    // Numeric order of `100k_<id>`, so the same users are picked on every run.
    users.sort_by_key(|u| {
        u.trim_start_matches("100k_")
            .parse::<u64>()
            .unwrap_or(u64::MAX)
    });
    let mut out = Vec::new();
    for u in users.into_iter().take(n) {
        let mut v = by_user[u].clone();
        v.sort();
        let (target, past) = v.split_last().ok_or("empty history")?;
        let past = &past[past.len().saturating_sub(history)..];
        let mut msg =
            String::from("A movie viewer rated these films, oldest first (rating out of 5):\n");
        for (_, title, rating) in past {
            let g = genres.get(title).map_or("", String::as_str);
            msg.push_str(&format!("- {title} [{g}]: {rating}\n"));
        }
        let g = genres.get(target.1).map_or("", String::as_str);
        msg.push_str(&format!(
            "Next they chose to watch: {} [{g}].\nAs an analyst, infer their latent preferences \
             from the history and explain why they made this choice. Answer with JSON \
             {{\"rationale\": \"...\"}} in under 100 words.",
            target.1
        ));
        out.push(msg);
    }
    Ok(out)
}

fn main() -> Result<(), Error> {
    let a = parse_args()?;
    let opts = LoadOptions {
        device: a.device.parse()?,
        weights: a.weights,
    };
    let t = Instant::now();
    let model = if Path::new(&a.model).is_file() {
        GgufBackbone::load(Path::new(&a.model), &opts)?
    } else {
        GgufBackbone::load_named(&a.model, &pulse_assets::cache_dir(), &opts)?
    };
    let load_secs = t.elapsed().as_secs_f64();
    let prompts: Vec<String> = user_messages(a.prompts, a.history)?
        .into_iter()
        .map(|m| {
            model
                .apply_chat_template(&[Message::user(m)], true)
                .map_err(Error::from)
        })
        .collect::<Result<_, _>>()?;
    if let Some(path) = &a.write_prompts {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for p in &prompts {
            writeln!(f, "{}", serde_json::to_string(p)?)?;
        }
    }
    if a.prompts_only {
        return Ok(());
    }
    let params = GenParams {
        max_new_tokens: a.max_new,
        batch_size: a.batch,
        ..GenParams::greedy(a.max_new)
    };
    let t = Instant::now();
    let gens = model.generate(&prompts, &params)?;
    let secs = t.elapsed().as_secs_f64();
    let new_tokens: usize = gens.iter().map(|g| g.new_tokens).sum();
    let prompt_tokens: usize = gens.iter().map(|g| g.prompt_tokens).sum();
    if let Some(path) = &a.out {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        for g in &gens {
            writeln!(f, "{}", serde_json::to_string(g)?)?;
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "engine": "pulse",
            "model": model.name(),
            "weights": model.weight_format(),
            "device": a.device,
            "threads": std::env::var("RAYON_NUM_THREADS").ok(),
            "batch": a.batch,
            "prompts": prompts.len(),
            "prompt_tokens": prompt_tokens,
            "new_tokens": new_tokens,
            "load_secs": load_secs,
            "secs": secs,
            "new_tokens_per_sec": new_tokens as f64 / secs,
        })
    );
    Ok(())
}
