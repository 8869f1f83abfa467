//! Training throughput of the thought space per `train` mode, on real ml-100k data with the
//! real all-MiniLM-L6-v2: pairs/s of one epoch for `encoder` (everything), `layers`
//! (embeddings frozen), `encoder` with `freeze_layers = 4`, and `heads` (with its one-off
//! encoding of every pair shown apart), plus the token lengths that decide the cost.
//! Histories are "Title (year)" labels as the rationale stage stores them; rationales are
//! templates of the length SmolLM2's run to (about 40 tokens), made from the chosen movie's
//! genres and year. Run with
//! `PULSE_HOME=target/pulse-home-test RAYON_NUM_THREADS=1 cargo bench --release -p pulse-stages`;
//! `THOUGHT_BENCH_PAIRS` (default 192) sets the pair count, `THOUGHT_BENCH_MODES` a comma
//! list of modes (`encoder,layers,freeze4,heads,shared`).

use pulse_api::sections::SplitConfig;
use pulse_api::stages::{ThoughtSpaceSection, ThoughtTrain};
use pulse_api::{LoadContext, SplitData};
use pulse_backbones::bert::{EncoderSource, TextTokenizer, MINILM};
use pulse_stages::{run_thought_space, ParseStatus, RationaleRow, StageOptions, ThoughtJob};
use serde_json::json;

// As `pulse` itself runs (core/cli): allocation-heavy autograd is allocator-sensitive.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// CPU seconds this process has used (user + system), from `/proc/self/stat`; `None` off
/// Linux. Under contention (a shared machine) wall-clock pairs/s understate the speed, and
/// CPU time says by how much.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux platform pulse builds for.
    Some(ticks / 100.0)
}

fn ctx() -> LoadContext {
    LoadContext {
        cache_dir: pulse_assets::cache_dir(),
        base_dir: ".".into(),
        seed: 0,
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn ml100k(registry: &pulse_registry::Registry) -> Result<SplitData> {
    let ds = registry
        .build_dataset(&json!({"type": "recbole-atomic", "source": "ml-100k"}))
        .map_err(|e| format!("{e:?}"))?;
    let raw = ds.load(&ctx())?;
    let mut d = pulse_data::prepare(&raw, &SplitConfig::default())?;
    d.dataset = "ml-100k".into();
    Ok(d)
}

/// The last training interaction of the first `n` users, explained by a template.
fn rows(d: &SplitData, n: usize) -> Vec<RationaleRow> {
    (0..d.n_users())
        .filter(|&u| d.train[u].len() >= 2)
        .take(n)
        .map(|u| {
            let seq = &d.train[u];
            let pos = seq.len() - 1;
            let item = seq[pos];
            // As the rationale stage labels items: "Title (year)".
            let label = |i: u32| {
                let t = d.text("movie_title", i).unwrap_or("");
                format!("{t} ({})", d.text("release_year", i).unwrap_or(""))
            };
            let history: Vec<String> = seq[pos.saturating_sub(20)..pos]
                .iter()
                .map(|&i| label(i))
                .collect();
            let genres = d.text("class", item).unwrap_or("").replace(' ', ", ");
            let year = d.text("release_year", item).unwrap_or("");
            RationaleRow {
                user: d.user_ids[u].clone(),
                position: pos as u32,
                item: d.item_ids[item as usize].clone(),
                item_label: label(item),
                history: history.join(" | "),
                rationale: format!(
                    "The user chose a {genres} film from {year}, which matches the taste for \
                     {genres} stories that their recent history shows, and fits the mood of \
                     what they watched before."
                ),
                raw: String::new(),
                parse: ParseStatus::Ok,
                prompt_tokens: 0,
                completion_tokens: 0,
            }
        })
        .collect()
}

fn mean_tokens(tok: &TextTokenizer, texts: &[String]) -> Result<f64> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = tok.encode(&refs)?;
    Ok(ids.iter().map(Vec::len).sum::<usize>() as f64 / ids.len().max(1) as f64)
}

fn main() -> Result<()> {
    let registry = pulse_registry::default_registry();
    let data = ml100k(&registry)?;
    let n: usize = std::env::var("THOUGHT_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(192);
    let modes = std::env::var("THOUGHT_BENCH_MODES")
        .unwrap_or_else(|_| "encoder,layers,freeze4,heads".into());
    let rows = rows(&data, n);
    let base = ThoughtSpaceSection {
        encoder: "minilm".into(),
        epochs: 1,
        valid_fraction: 0.1,
        ..ThoughtSpaceSection::default()
    };
    let files = EncoderSource::asset(MINILM).files()?;
    let tok = TextTokenizer::from_json(&files.tokenizer, base.max_tokens)?;
    let fields: Vec<String> = data.item_text.iter().map(|(f, _)| f.clone()).collect();
    let behaviour: Vec<String> = rows
        .iter()
        .map(|r| {
            let h: Vec<&str> = r.history.split(" | ").collect();
            let item = data.item_ids.iter().position(|i| *i == r.item).unwrap_or(0) as u32;
            format!(
                "[CONTEXT] History: {} [CHOSEN_ITEM] {}",
                h[h.len().saturating_sub(base.history)..].join(" | "),
                pulse_stages::embed::item_text(&data, item, &fields)
            )
        })
        .collect();
    let rationales: Vec<String> = rows.iter().map(|r| r.rationale.clone()).collect();
    println!(
        "{} pairs; mean tokens (cut at {}): behaviour {:.1}, rationale {:.1}; rayon threads {}",
        rows.len(),
        base.max_tokens,
        mean_tokens(&tok, &behaviour)?,
        mean_tokens(&tok, &rationales)?,
        rayon_threads()
    );
    let encoder = json!({"type": "bert", "model": MINILM});
    let c = ctx();
    for mode in modes.split(',') {
        let section = match mode {
            "encoder" => base.clone(),
            "shared" => ThoughtSpaceSection {
                shared: true,
                ..base.clone()
            },
            "layers" => ThoughtSpaceSection {
                train: ThoughtTrain::Layers,
                ..base.clone()
            },
            "freeze4" => ThoughtSpaceSection {
                freeze_layers: 4,
                ..base.clone()
            },
            "heads" => ThoughtSpaceSection {
                train: ThoughtTrain::Heads,
                projection: 128,
                learning_rate: 1e-3,
                ..base.clone()
            },
            other => return Err(format!("unknown mode {other}").into()),
        };
        let root = tempfile::tempdir()?;
        let job = ThoughtJob {
            data: &data,
            data_key: "bench".into(),
            section: &section,
            rationales: &rows,
            encoder: &encoder,
            ctx: &c,
            losses: &registry,
        };
        let opts = StageOptions {
            root: root.path().to_path_buf(),
            ..StageOptions::default()
        };
        let cpu0 = cpu_seconds();
        let space = run_thought_space(&job, &opts)?;
        let cpu = cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
        // The share of one core this run got, to scale the wall-clock rate.
        let share = cpu.map(|c| c / space.seconds / rayon_threads() as f64);
        let m = &space.metrics;
        let e1 = &m.epochs[1];
        let epoch0 = m.epochs[0].seconds;
        println!(
            "{mode:8} {:7.2} pairs/s training (~{:.2} per full core; CPU share {:.0}%) ({} pairs, \
             {:.1}s); epoch 0 {:.1}s; MRR {:.3} -> {:.3}; whole stage {:.1}s; peak RSS {:.0} MiB",
            e1.pairs_per_second,
            e1.pairs_per_second / share.unwrap_or(1.0).max(1e-9),
            100.0 * share.unwrap_or(f64::NAN),
            m.pairs_train,
            m.pairs_train as f64 / e1.pairs_per_second.max(1e-9),
            epoch0,
            m.epochs[0].mrr,
            e1.mrr,
            space.seconds,
            m.peak_rss_mb.unwrap_or(0.0),
        );
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
