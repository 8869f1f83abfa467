//! Thought-space tests on real data and the real encoder: ml-100k through the data-set plugin,
//! all-MiniLM-L6-v2 from `$PULSE_HOME` (run with `PULSE_HOME=target/pulse-home-test`), and
//! template rationales made from the chosen movie's genres, which the behaviour text also
//! carries, so a trained space has something real to find.

use super::model::{Side, Towers};
use super::text::{self, Pair};
use super::train::{self, Data};
use super::*;
use crate::json::ParseStatus;
use crate::tests::{ctx, ml100k, registry};
use candle_core::{Device, Tensor};
use pulse_api::stages::{ThoughtPooling, ThoughtTrain};
use pulse_backbones::bert::{EncoderFiles, EncoderSource, TextTokenizer, MINILM};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

fn minilm() -> &'static EncoderFiles {
    static F: OnceLock<EncoderFiles> = OnceLock::new();
    F.get_or_init(|| {
        EncoderSource::Asset {
            name: MINILM.into(),
            cache_dir: Some(pulse_assets::cache_dir()),
        }
        .files()
        .unwrap()
    })
}

fn encoder_section() -> serde_json::Value {
    json!({"type": "bert", "model": MINILM})
}

/// "A pick for fans of Action, Adventure and Thriller." from the genres of `item`.
fn template(data: &SplitData, item: u32) -> String {
    let genres: Vec<&str> = data
        .text("class", item)
        .unwrap()
        .split_whitespace()
        .collect();
    let list = match genres.as_slice() {
        [] => "anything".to_string(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    format!("A pick for fans of {list}.")
}

/// "Title (year)", as the rationale stage labels items.
fn label(data: &SplitData, item: u32) -> String {
    format!(
        "{} ({})",
        data.text("movie_title", item).unwrap(),
        data.text("release_year", item).unwrap()
    )
}

/// Rationale rows like the rationale stage's for the last training interaction of the first
/// `users` users (20 history titles each), explained by [`template`].
fn template_rows(users: usize) -> Vec<RationaleRow> {
    let d = ml100k();
    (0..users)
        .filter(|&u| d.train[u].len() >= 2)
        .map(|u| {
            let seq = &d.train[u];
            let pos = seq.len() - 1;
            let history: Vec<String> = seq[pos.saturating_sub(20)..pos]
                .iter()
                .map(|&i| label(d, i))
                .collect();
            RationaleRow {
                user: d.user_ids[u].clone(),
                position: pos as u32,
                item: d.item_ids[seq[pos] as usize].clone(),
                item_label: label(d, seq[pos]),
                history: history.join(" | "),
                rationale: template(d, seq[pos]),
                raw: String::new(),
                parse: ParseStatus::Ok,
                prompt_tokens: 0,
                completion_tokens: 0,
            }
        })
        .collect()
}

fn heads_section() -> ThoughtSpaceSection {
    ThoughtSpaceSection {
        encoder: "minilm".into(),
        projection: 64,
        train: ThoughtTrain::Heads,
        epochs: 4,
        batch_size: 32,
        learning_rate: 1e-2,
        weight_decay: 0.0,
        history: 5,
        max_tokens: 64,
        valid_fraction: 0.25,
        ..ThoughtSpaceSection::default()
    }
}

fn job<'a>(
    section: &'a ThoughtSpaceSection,
    rows: &'a [RationaleRow],
    encoder: &'a serde_json::Value,
    ctx: &'a LoadContext,
) -> ThoughtJob<'a> {
    ThoughtJob {
        data: ml100k(),
        data_key: "ml-100k-test".into(),
        section,
        rationales: rows,
        encoder,
        ctx,
        losses: registry(),
    }
}

fn opts(root: &Path) -> StageOptions {
    StageOptions {
        root: root.to_path_buf(),
        ..StageOptions::default()
    }
}

#[test]
fn retrieval_ranks_the_own_rationale_with_ties_against() {
    #[track_caller]
    fn check(sim: &[&[f32]], r1: f64, r10: f64, mrr: f64) {
        let rows: Vec<Vec<f32>> = sim.iter().map(|r| r.to_vec()).collect();
        let got = retrieval(&rows);
        let want = Retrieval {
            recall_at_1: r1,
            recall_at_10: r10,
            mrr,
        };
        for (g, w) in [
            (got.recall_at_1, want.recall_at_1),
            (got.recall_at_10, want.recall_at_10),
            (got.mrr, want.mrr),
        ] {
            assert!((g - w).abs() < 1e-12, "{sim:?}: got {got:?}, want {want:?}");
        }
    }
    // Ranks 1, 2, 3: MRR (1 + 1/2 + 1/3) / 3.
    check(
        &[&[0.9, 0.1, 0.0], &[0.8, 0.5, 0.1], &[0.3, 0.2, 0.1]],
        1.0 / 3.0,
        1.0,
        (1.0 + 0.5 + 1.0 / 3.0) / 3.0,
    );
    // A tie with one other counts against: rank 2, not 1.
    check(&[&[0.5, 0.5], &[0.0, 1.0]], 0.5, 1.0, (0.5 + 1.0) / 2.0);
    // Everything equal: every own rationale ranks last.
    check(&[&[1.0; 3], &[1.0; 3], &[1.0; 3]], 0.0, 1.0, 1.0 / 3.0);
    // A NaN score counts against; a NaN own score ranks last.
    check(&[&[0.5, f32::NAN], &[f32::NAN, 0.0]], 0.0, 1.0, 0.5);
    // Rank 11 of 12 misses Recall@10.
    let mut row = vec![1.0f32; 12];
    row[0] = 0.5;
    row[11] = 0.0;
    let mut sim: Vec<Vec<f32>> = (0..12)
        .map(|i| {
            let mut r = vec![0.0f32; 12];
            r[i] = 1.0;
            r
        })
        .collect();
    sim[0] = row;
    let got = retrieval(&sim);
    assert!((got.recall_at_10 - 11.0 / 12.0).abs() < 1e-12, "{got:?}");
    assert!(
        (got.mrr - (11.0 + 1.0 / 11.0) / 12.0).abs() < 1e-12,
        "{got:?}"
    );
    assert_eq!(retrieval(&[]), Retrieval::default());
}

#[test]
fn behaviour_texts_drop_the_oldest_history_to_fit() {
    let hist = |n: usize| -> Vec<String> { (0..n).map(|i| format!("Movie number {i}")).collect() };
    let item = "Heat. 1995. Action Crime Thriller";
    #[track_caller]
    fn check(tok: &TextTokenizer, history: Vec<String>, item: &str, max: usize, kept: usize) {
        let p = Pair {
            key: "u:1".into(),
            user: "u".into(),
            history,
            item_text: item.into(),
            rationale: String::new(),
        };
        let got = text::behaviour_tokens(tok, std::slice::from_ref(&p), max).unwrap();
        let start = p.history.len() - kept;
        let want = text::behaviour_text(&p.history[start..], item);
        assert_eq!(got[0], tok.encode(&[want.as_str()]).unwrap()[0], "{want}");
        assert!(got[0].len() <= max);
    }
    let tok = TextTokenizer::from_json(&minilm().tokenizer, 40).unwrap();
    // Short enough: everything stays.
    check(&tok, hist(2), item, 40, 2);
    // [CLS] "[context] history:" is 6 tokens, each "movie number i |" 4, the chosen item part
    // and [SEP] 13 (less the last "|"): 5 entries make 38 tokens, 6 would make 42.
    check(&tok, hist(10), item, 40, 5);
    check(&tok, hist(5), item, 40, 5);
    // Not even an empty history fits: the text is cut at the end, as a last resort.
    let tiny = TextTokenizer::from_json(&minilm().tokenizer, 8).unwrap();
    check(&tiny, hist(3), item, 8, 0);
    assert_eq!(
        text::behaviour_text(&[], "X"),
        "[CONTEXT] History: [CHOSEN_ITEM] X"
    );
    assert_eq!(
        text::behaviour_text(&hist(2), "X"),
        "[CONTEXT] History: Movie number 0 | Movie number 1 [CHOSEN_ITEM] X"
    );
}

#[test]
fn pairs_skip_failed_rows_and_split_by_user() {
    let mut rows = template_rows(40);
    rows[3].parse = ParseStatus::Failed;
    rows[5].rationale = "  ".into();
    // A second pair of user 0, which must land on the same side as the first.
    let mut extra = rows[0].clone();
    extra.position -= 1;
    rows.push(extra);
    let pairs = text::pairs(ml100k(), &rows, 3).unwrap();
    assert_eq!(pairs.len(), rows.len() - 2);
    assert!(pairs
        .iter()
        .all(|p| p.key != format!("{}:{}", rows[3].user, rows[3].position)));
    let full: Vec<&str> = rows[0].history.split(" | ").collect();
    assert_eq!(pairs[0].history, full[full.len() - 3..]);
    assert_eq!(pairs[0].rationale, rows[0].rationale);
    let (train, held) = text::split(&pairs, 0.25, 7).unwrap();
    assert_eq!(train.len() + held.len(), pairs.len());
    assert!(
        held.len() as f64 >= 0.25 * pairs.len() as f64,
        "{}",
        held.len()
    );
    let held_users: HashSet<&str> = held.iter().map(|&i| pairs[i].user.as_str()).collect();
    assert!(train
        .iter()
        .all(|&i| !held_users.contains(pairs[i].user.as_str())));
    assert_eq!(text::split(&pairs, 0.25, 7).unwrap(), (train.clone(), held));
    assert_ne!(text::split(&pairs, 0.25, 8).unwrap().0, train);
    // Too few pairs to train and evaluate.
    let e = text::split(&pairs[..3], 0.25, 0).unwrap_err().to_string();
    assert!(e.contains("at least 2"), "{e}");
    // Rows of another data set.
    rows[1].item = "No Such Movie (2099)".into();
    let e = text::pairs(ml100k(), &rows, 3).unwrap_err().to_string();
    assert!(e.contains("No Such Movie (2099)"), "{e}");
}

#[test]
fn heads_training_improves_retrieval_and_a_rerun_reads_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let mut rows = template_rows(320);
    rows[0].parse = ParseStatus::Failed;
    let section = heads_section();
    let enc = encoder_section();
    let c = ctx();
    let j = job(&section, &rows, &enc, &c);
    let (first, towers) = run(&j, &opts(root.path())).unwrap();
    assert!(first.computed && towers.is_some());
    let d = ml100k();
    let m = &first.metrics;
    assert_eq!(m.pairs_train + m.pairs_held_out, rows.len() - 1);
    assert_eq!(m.epochs.len(), 5);
    assert_eq!(m.epochs[0].loss, None);
    assert!(m.epochs[1..].iter().all(|e| e.loss.is_some()));
    let (before, best) = (&m.epochs[0], &m.epochs[m.best_epoch]);
    assert!(m.best_epoch > 0, "{m:#?}");
    assert!(
        best.mrr > before.mrr + 0.02,
        "held-out MRR did not improve: {m:#?}"
    );
    assert_eq!(
        best.mrr,
        m.epochs.iter().map(|e| e.mrr).fold(f64::MIN, f64::max)
    );

    // Tables: every item by raw id, every used row by user:position, unit vectors of the
    // projection's width.
    assert_eq!(first.items.keys, d.item_ids);
    let keys: Vec<String> = rows[1..]
        .iter()
        .map(|r| format!("{}:{}", r.user, r.position))
        .collect();
    assert_eq!(first.rationales.keys, keys);
    for t in [&first.items, &first.rationales] {
        assert_eq!(t.dim, 64);
        assert_eq!(t.vectors.len(), t.keys.len() * 64);
        for i in [0, t.keys.len() - 1] {
            let norm: f32 = t.row(i).iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        }
    }
    // Rows with the same rationale text get the same vector; different texts do not.
    let used = &rows[1..];
    let same = (1..used.len())
        .find(|&i| used[i].rationale == used[0].rationale)
        .unwrap();
    let other = (1..used.len())
        .find(|&i| used[i].rationale != used[0].rationale)
        .unwrap();
    assert_eq!(first.rationales.row(0), first.rationales.row(same));
    assert_ne!(first.rationales.row(0), first.rationales.row(other));
    let names: Vec<String> = std::fs::read_dir(&first.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for f in [
        "manifest.json",
        "metrics.json",
        "items.parquet",
        "rationales.parquet",
    ] {
        assert!(names.iter().any(|n| n == f), "{f} missing: {names:?}");
    }
    // Only the heads trained, so only they are stored.
    assert!(names.iter().any(|n| n == "heads.safetensors"), "{names:?}");
    assert!(!names
        .iter()
        .any(|n| n.contains("behaviour") || n.ends_with(".tmp")));
    let stored: ThoughtMetrics =
        serde_json::from_slice(&std::fs::read(first.dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(&stored, m);

    // The same inputs again: read back, the encoder never loaded.
    let (again, towers) = run(&j, &opts(root.path())).unwrap();
    assert!(!again.computed && towers.is_none());
    assert_eq!(again.dir, first.dir);
    assert_eq!(again.metrics, first.metrics);
    for (x, y) in [
        (&again.items, &first.items),
        (&again.rationales, &first.rationales),
    ] {
        assert_eq!((&x.keys, x.dim, &x.vectors), (&y.keys, y.dim, &y.vectors));
        assert_eq!(x.dir, first.dir);
    }
    assert_eq!(thought_key(&j).unwrap().dir(root.path()), first.dir);
}

#[test]
fn the_key_follows_the_section_the_rows_and_the_data() {
    let rows = template_rows(30);
    let enc = encoder_section();
    let c = ctx();
    let base = heads_section();
    let key = |s: &ThoughtSpaceSection, rows: &[RationaleRow], data_key: &str| {
        let mut j = job(s, rows, &enc, &c);
        j.data_key = data_key.into();
        thought_key(&j).unwrap().hash()
    };
    let k0 = key(&base, &rows, "d");
    #[track_caller]
    fn check(k0: &str, got: String, changes: bool) {
        assert_eq!(got != k0, changes, "key change expected: {changes}");
    }
    let with = |f: &dyn Fn(&mut ThoughtSpaceSection)| {
        let mut s = base.clone();
        f(&mut s);
        key(&s, &rows, "d")
    };
    check(&k0, key(&base, &rows, "d"), false);
    check(&k0, with(&|s| s.temperature = 0.1), true);
    check(&k0, with(&|s| s.epochs = 5), true);
    check(&k0, with(&|s| s.shared = true), true);
    check(&k0, with(&|s| s.pooling = ThoughtPooling::Cls), true);
    check(&k0, with(&|s| s.projection = 32), true);
    check(&k0, with(&|s| s.train = ThoughtTrain::Layers), true);
    check(&k0, with(&|s| s.negatives = 4), true);
    check(&k0, with(&|s| s.history = 6), true);
    check(&k0, with(&|s| s.seed = 1), true);
    check(&k0, with(&|s| s.valid_fraction = 0.2), true);
    check(&k0, key(&base, &rows, "other-data"), true);
    let edit = |f: &dyn Fn(&mut Vec<RationaleRow>)| {
        let mut r = rows.clone();
        f(&mut r);
        key(&base, &r, "d")
    };
    check(&k0, edit(&|r| r[2].rationale.push('!')), true);
    check(&k0, edit(&|r| r[2].item = r[3].item.clone()), true);
    check(&k0, edit(&|r| r[2].history = "Heat (1995)".into()), true);
    check(&k0, edit(&|r| r.truncate(29)), true);
    check(&k0, edit(&|r| r[2].parse = ParseStatus::Failed), true);
    // What no pair reads: a history entry beyond `history`, the raw answer, token counts.
    check(
        &k0,
        edit(&|r| r[2].history = format!("Extra (1990) | {}", r[2].history)),
        false,
    );
    check(&k0, edit(&|r| r[2].raw = "changed".into()), false);
    check(&k0, edit(&|r| r[2].completion_tokens = 9), false);
    // Another encoder checkpoint.
    let other = json!({"type": "bert", "path": "/nonexistent/encoder"});
    let j = job(&base, &rows, &other, &c);
    assert!(thought_key(&j).is_err(), "an unreadable encoder has no id");
}

#[test]
fn only_bert_encoders_are_accepted() {
    let rows = template_rows(10);
    let c = ctx();
    let section = heads_section();
    let root = tempfile::tempdir().unwrap();
    #[track_caller]
    fn check(job: &ThoughtJob<'_>, root: &Path, want: &[&str]) {
        let e = run_thought_space(job, &opts(root)).unwrap_err().to_string();
        for w in want {
            assert!(e.contains(w), "{e:?} lacks {w:?}");
        }
    }
    let gguf = json!({"type": "gguf", "model": "smollm2-135m-instruct"});
    check(
        &job(&section, &rows, &gguf, &c),
        root.path(),
        &["encoder = \"minilm\"", "type \"gguf\"", "type = \"bert\""],
    );
    let typo = json!({"type": "bert", "modle": MINILM});
    check(
        &job(&section, &rows, &typo, &c),
        root.path(),
        &["[backbones.minilm]", "modle"],
    );
    let heads_without_projection = ThoughtSpaceSection {
        projection: 0,
        ..heads_section()
    };
    let enc = encoder_section();
    check(
        &job(&heads_without_projection, &rows, &enc, &c),
        root.path(),
        &["[thought_space]", "projection"],
    );
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

/// The checkpoint's tensors by parameter name, as f32 bits.
fn checkpoint_bits() -> HashMap<String, Vec<u32>> {
    candle_core::safetensors::load_buffer(&minilm().weights, &Device::Cpu)
        .unwrap()
        .into_iter()
        .filter(|(_, v)| v.dtype().is_float())
        .map(|(k, v)| {
            let name = k.strip_prefix("bert.").unwrap_or(&k).to_string();
            (name, bits(&v.to_dtype(candle_core::DType::F32).unwrap()))
        })
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

/// Names of the encoder variables of `side` that differ from the checkpoint.
fn changed(towers: &Towers, side: Side, ckpt: &HashMap<String, Vec<u32>>) -> HashSet<String> {
    let vars = towers.encoder(side).varmap().data().lock().unwrap();
    assert!(vars.len() > 90, "{}", vars.len());
    vars.iter()
        .filter(|(name, v)| bits(v.as_tensor()) != ckpt[name.as_str()])
        .map(|(name, _)| name.clone())
        .collect()
}

/// Trains on a few short pairs; the towers hold the last epoch's weights.
fn fit_small(section: &ThoughtSpaceSection) -> (Towers, train::Fit) {
    let rows = template_rows(16);
    let pairs = text::pairs(ml100k(), &rows, section.history).unwrap();
    let (train_idx, held_idx) = text::split(&pairs, section.valid_fraction, 0).unwrap();
    let towers = Towers::load(minilm(), &Device::Cpu, section).unwrap();
    let behaviour = text::behaviour_tokens(towers.tokenizer(), &pairs, section.max_tokens).unwrap();
    let texts: Vec<String> = pairs.iter().map(|p| p.rationale.clone()).collect();
    let rationale = text::tokens(towers.tokenizer(), &texts).unwrap();
    let data = Data {
        behaviour: &behaviour,
        rationale: &rationale,
        train: &train_idx,
        held_out: &held_idx,
    };
    let fit = train::fit(
        &towers,
        &data,
        section,
        registry(),
        &StageOptions::default(),
    )
    .unwrap();
    assert_eq!(fit.epochs.len(), section.epochs + 1);
    (towers, fit)
}

#[test]
fn training_touches_exactly_the_weights_the_mode_trains() {
    let ckpt = checkpoint_bits();
    let small = ThoughtSpaceSection {
        encoder: "minilm".into(),
        epochs: 1,
        batch_size: 4,
        learning_rate: 1e-3,
        history: 2,
        max_tokens: 32,
        valid_fraction: 0.25,
        ..ThoughtSpaceSection::default()
    };
    // Heads only: both encoders stay bit-identical to the checkpoint; the heads moved away
    // from their (seeded, so reproducible) initial values.
    let heads = ThoughtSpaceSection {
        train: ThoughtTrain::Heads,
        projection: 16,
        ..small.clone()
    };
    let (trained, _) = fit_small(&heads);
    for side in [Side::Behaviour, Side::Rationale] {
        assert_eq!(changed(&trained, side, &ckpt), HashSet::new());
    }
    let fresh = Towers::load(minilm(), &Device::Cpu, &heads).unwrap();
    let (t, f) = (trained.trainable_vars(), fresh.trainable_vars());
    assert_eq!(t.len(), 4);
    for (a, b) in t.iter().zip(&f) {
        assert_ne!(bits(a.as_tensor()), bits(b.as_tensor()));
    }

    // The top two layers of a shared encoder: the embeddings and layers 0-3 stay, every
    // weight of layers 4 and 5 moves.
    let top = ThoughtSpaceSection {
        train: ThoughtTrain::Encoder,
        freeze_layers: 4,
        shared: true,
        ..small
    };
    let (trained, fit) = fit_small(&top);
    let moved = changed(&trained, Side::Behaviour, &ckpt);
    let upper: HashSet<String> = ckpt
        .keys()
        .filter(|n| n.starts_with("encoder.layer.4.") || n.starts_with("encoder.layer.5."))
        .cloned()
        .collect();
    assert_eq!(upper.len(), 32);
    assert_eq!(moved, upper);
    // Keeping the best epoch: epoch 0's weights are the checkpoint's, bit for bit.
    fit.restore_best(&trained).unwrap();
    let after = changed(&trained, Side::Behaviour, &ckpt);
    if fit.best_epoch == 0 {
        assert_eq!(after, HashSet::new());
    } else {
        assert_eq!(after, upper);
    }

    // The stored encoder loads back into a fresh one bit for bit; a shared encoder is one file.
    let dir = tempfile::tempdir().unwrap();
    let files = trained.save(dir.path(), true).unwrap();
    assert_eq!(files, ["encoder.safetensors"]);
    let fresh = Towers::load(minilm(), &Device::Cpu, &top).unwrap();
    let mut map = fresh.encoder(Side::Behaviour).varmap().clone();
    map.load(dir.path().join("encoder.safetensors")).unwrap();
    let want: HashMap<String, Vec<u32>> = {
        let vars = trained
            .encoder(Side::Behaviour)
            .varmap()
            .data()
            .lock()
            .unwrap();
        vars.iter()
            .map(|(n, v)| (n.clone(), bits(v.as_tensor())))
            .collect()
    };
    let vars = map.data().lock().unwrap();
    assert_eq!(vars.len(), want.len());
    for (n, v) in vars.iter() {
        assert!(bits(v.as_tensor()) == want[n], "{n} differs after loading");
    }
}

/// A stop request is noticed in training and, with nothing to train, in the final encoding
/// pass; either way no complete directory is left behind.
fn check_cancelled(epochs: usize, says: &str) {
    let root = tempfile::tempdir().unwrap();
    let rows = template_rows(16);
    let section = ThoughtSpaceSection {
        history: 2,
        max_tokens: 32,
        epochs,
        ..heads_section()
    };
    let enc = encoder_section();
    let c = ctx();
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let o = StageOptions {
        cancel: Some(cancel),
        ..opts(root.path())
    };
    let j = job(&section, &rows, &enc, &c);
    let e = run_thought_space(&j, &o).unwrap_err();
    assert!(matches!(e, StageError::Interrupted(_)), "{e}");
    assert!(e.to_string().contains(says), "{e}");
    let dir = thought_key(&j).unwrap().dir(root.path());
    assert!(!dir.join("metrics.json").exists());
}

#[test]
fn a_cancelled_run_says_so_and_stores_nothing() {
    check_cancelled(1, "thought-space training (epoch 1)");
    check_cancelled(0, "thought-space encoding of the items");
}
