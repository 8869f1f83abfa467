//! Stage tests on real data and a real model: ml-100k through the data-set plugin and
//! SmolLM2-135M (GGUF) through the backbone plugin, fetched once into `$PULSE_HOME` (run with
//! `PULSE_HOME=target/pulse-home-test` to share the cache). Kept small: 5 users, 6 new tokens.

use super::*;
use crate::rationale::rationale_key;
use pulse_api::sections::SplitConfig;
use pulse_api::stages::{RationaleSection, Select};
use pulse_api::{Backbone, CompiledPrompt, LoadContext, Prompt, SplitData};
use serde_json::json;
use std::path::Path;
use std::sync::OnceLock;

pub(crate) fn registry() -> &'static pulse_registry::Registry {
    static R: OnceLock<pulse_registry::Registry> = OnceLock::new();
    R.get_or_init(pulse_registry::default_registry)
}

pub(crate) fn ctx() -> LoadContext {
    LoadContext {
        cache_dir: pulse_assets::cache_dir(),
        base_dir: ".".into(),
        seed: 0,
    }
}

pub(crate) fn ml100k() -> &'static SplitData {
    static D: OnceLock<SplitData> = OnceLock::new();
    D.get_or_init(|| {
        let ds = registry()
            .build_dataset(&json!({"type": "recbole-atomic", "source": "ml-100k"}))
            .unwrap();
        let raw = ds.load(&ctx()).unwrap();
        let mut d = pulse_data::prepare(&raw, &SplitConfig::default()).unwrap();
        d.dataset = "ml-100k".into();
        d
    })
}

fn backbone(section: serde_json::Value) -> Box<dyn Backbone> {
    registry().build_backbone(&section).unwrap()
}

fn prompt(section: serde_json::Value) -> Box<dyn CompiledPrompt> {
    let p: Box<dyn Prompt> = registry().build_prompt(&section).unwrap();
    p.compile(Path::new(".")).unwrap()
}

fn small() -> RationaleSection {
    RationaleSection {
        backbone: "slm".into(),
        prompt: "why".into(),
        max_new_tokens: 6,
        batch_size: 5,
        chunk_size: 2,
        users: Some(5),
        user_seed: 3,
        ..RationaleSection::default()
    }
}

#[test]
fn ml100k_items_carry_text_fields_for_prompts() {
    let d = ml100k();
    let fields: Vec<&str> = d.item_text.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(fields, ["movie_title", "release_year", "class"]);
    let p = prompt(json!({"type": "pulse-rationale", "history_len": 3}));
    p.check_fields(&fields.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap();
    let ex = select(d, &small())[0];
    let c = rationale::prompt_context(d, ex, 3);
    assert_eq!(c.history.len(), 3);
    assert_eq!(c.n_history, ex.position as usize);
    let user = &p.render(&c).unwrap()[1].content;
    assert!(user.contains("(the last 3 of"), "{user}");
}

/// The key of `section` with the standard backbone and prompt.
fn key_of(
    section: &RationaleSection,
    backbone_model: &str,
    history_len: usize,
    data: &str,
) -> String {
    let b = backbone(json!({"type": "gguf", "model": backbone_model}));
    let p = prompt(json!({"type": "pulse-rationale", "history_len": history_len}));
    let c = ctx();
    let job = RationaleJob {
        data: &SplitData::default(),
        data_key: data.into(),
        section,
        backbone: b.as_ref(),
        prompt: p.as_ref(),
        ctx: &c,
    };
    rationale_key(&job).unwrap().hash()
}

#[test]
fn stage_key_changes_exactly_when_inputs_change() {
    let base = small();
    let k0 = key_of(&base, "smollm2-135m-instruct", 20, "d");
    #[track_caller]
    fn check(k0: &str, got: String, changes: bool) {
        assert_eq!(got != k0, changes, "key change expected: {changes}");
    }
    let with = |f: &dyn Fn(&mut RationaleSection)| {
        let mut s = base.clone();
        f(&mut s);
        key_of(&s, "smollm2-135m-instruct", 20, "d")
    };
    // Inputs that decide the rows.
    check(&k0, with(&|s| s.max_new_tokens = 7), true);
    check(&k0, with(&|s| s.temperature = 0.7), true);
    check(&k0, with(&|s| s.top_p = Some(0.9)), true);
    check(&k0, with(&|s| s.top_k = Some(4)), true);
    check(&k0, with(&|s| s.seed = 1), true);
    check(&k0, with(&|s| s.repetition_penalty = 1.1), true);
    check(&k0, with(&|s| s.stop = Some("\"}".into())), true);
    check(&k0, with(&|s| s.users = Some(6)), true);
    check(&k0, with(&|s| s.user_seed = 4), true);
    check(&k0, with(&|s| s.select = Select::EveryK), true);
    check(&k0, key_of(&base, "gemma3-270m", 20, "d"), true);
    check(&k0, key_of(&base, "smollm2-135m-instruct", 19, "d"), true);
    check(
        &k0,
        key_of(&base, "smollm2-135m-instruct", 20, "other-data"),
        true,
    );
    // Inputs that only decide how fast they are made, and names.
    check(&k0, with(&|s| s.batch_size = 1), false);
    check(&k0, with(&|s| s.chunk_size = 100), false);
    check(&k0, with(&|s| s.backbone = "renamed".into()), false);
    check(&k0, key_of(&base, "smollm2-135m-instruct", 20, "d"), false);
    // The data key follows the data set section and the split.
    let split = SplitConfig::default();
    let a = data_key(
        &json!({"type": "recbole-atomic", "source": "ml-100k"}),
        &split,
    );
    let b = data_key(
        &json!({"type": "recbole-atomic", "source": "ml-1m"}),
        &split,
    );
    let c = data_key(
        &json!({"type": "recbole-atomic", "source": "ml-100k"}),
        &SplitConfig {
            min_user_interactions: 5,
            ..split.clone()
        },
    );
    assert!(a != b && a != c && b != c);
}

#[test]
fn interrupted_stage_resumes_and_a_rerun_generates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data = ml100k();
    let section = small();
    let b = backbone(json!({"type": "gguf", "model": "smollm2-135m-instruct", "threads": 2}));
    let p = prompt(json!({"type": "pulse-rationale", "history_len": 5}));
    let c = ctx();
    let job = RationaleJob {
        data,
        data_key: "ml-100k-test".into(),
        section: &section,
        backbone: b.as_ref(),
        prompt: p.as_ref(),
        ctx: &c,
    };
    let opts = |max_chunks| StageOptions {
        root: root.path().to_path_buf(),
        show_progress: false,
        max_chunks,
        cancel: None,
    };
    #[track_caller]
    fn check(r: &RationaleReport, cached: usize, generated: usize, complete: bool) {
        assert_eq!(
            (r.selected, r.cached, r.generated, r.complete),
            (5, cached, generated, complete),
            "{r:?}"
        );
    }
    // Interrupted after the first chunk (2 rows): the chunk is kept.
    let first = run_rationales(&job, &opts(Some(1))).unwrap();
    check(&first, 0, 2, false);
    assert_eq!(load_rationales(&first.dir).unwrap().len(), 2);
    // Resumed: only the 3 missing rows are generated.
    let second = run_rationales(&job, &opts(None)).unwrap();
    check(&second, 2, 3, true);
    assert_eq!(second.dir, first.dir);
    // Same inputs again: nothing to generate.
    let third = run_rationales(&job, &opts(None)).unwrap();
    check(&third, 5, 0, true);
    assert_eq!(third.new_tokens, 0);

    let rows = load_rationales(&third.dir).unwrap();
    let mut ids: Vec<(String, u32)> = rows.iter().map(|r| (r.user.clone(), r.position)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "one row per selected example");
    let mut expected: Vec<(String, u32)> = select(data, &section)
        .iter()
        .map(|e| (data.user_ids[e.user as usize].clone(), e.position))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    for r in &rows {
        assert!(
            r.completion_tokens >= 1 && r.completion_tokens <= 6,
            "{r:?}"
        );
        assert!(r.prompt_tokens > 50, "{r:?}");
        assert!(!r.raw.is_empty(), "{r:?}");
        // 6 tokens cannot close the JSON: whatever was there is taken, or nothing.
        assert_eq!(parse_rationale(&r.raw), (r.rationale.clone(), r.parse));
    }
}

#[test]
fn item_and_rationale_embeddings_are_cached_tables() {
    let root = tempfile::tempdir().unwrap();
    let data = ml100k();
    let enc = backbone(json!({"type": "bert", "model": "all-minilm-l6-v2"}));
    let fields = vec!["movie_title".to_string(), "class".to_string()];
    assert_eq!(
        embed::item_text(data, 0, &fields),
        format!(
            "{}. {}",
            data.text("movie_title", 0).unwrap(),
            data.text("class", 0).unwrap()
        )
    );
    let first = embed_items(data, "d", &fields, enc.as_ref(), &ctx(), root.path()).unwrap();
    assert!(first.computed);
    assert_eq!((first.keys.len(), first.dim), (data.n_items(), 384));
    let norm: f32 = first.row(0).iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    let again = embed_items(data, "d", &fields, enc.as_ref(), &ctx(), root.path()).unwrap();
    assert!(!again.computed);
    assert_eq!(
        (again.keys.clone(), again.vectors.clone()),
        (first.keys.clone(), first.vectors.clone())
    );
    let other_fields =
        embed_items(data, "d", &fields[..1], enc.as_ref(), &ctx(), root.path()).unwrap();
    assert!(other_fields.computed);
    assert_ne!(other_fields.dir, first.dir);

    // Rationale embeddings read a stage directory's rows.
    let dir = root.path().join("rationales-fixture");
    std::fs::create_dir_all(&dir).unwrap();
    let mut df = polars::df!(
        "user" => ["1", "2"], "position" => [3u32, 4], "item" => ["50", "60"],
        "rationale" => ["Loves space operas.", "Enjoys quiet dramas."], "raw" => ["", ""],
        "parse" => ["ok", "ok"], "prompt_tokens" => [1u32, 1], "completion_tokens" => [1u32, 1],
    )
    .unwrap();
    cache::write_chunk(&dir, &mut df).unwrap();
    let r = embed_rationales(&dir, enc.as_ref(), &ctx(), root.path()).unwrap();
    assert_eq!(r.keys, ["1:3", "2:4"]);
    assert!(r.computed);
    assert!(
        !embed_rationales(&dir, enc.as_ref(), &ctx(), root.path())
            .unwrap()
            .computed
    );
    // A generate-only backbone cannot embed (gguf models can now: mean hidden states).
    let echo = backbone(json!({"type": "echo"}));
    let e = embed_items(data, "x", &fields, echo.as_ref(), &ctx(), root.path()).unwrap_err();
    assert!(e.to_string().contains("cannot embed"), "{e}");
}
