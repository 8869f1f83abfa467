//! Tests of the text models: the item tower learns from item vectors alone, ID embeddings and
//! text combine, the why term equals its hand-computed InfoNCE value, λ changes training only
//! where rationales exist, side inputs are checked, and each type's keys and defaults.

use super::config::TextRecFields;
use super::model::why_term;
use super::*;
use crate::testing::{self, TestLosses};
use candle_core::{Tensor, Var};
use pulse_api::rng::derive;
use pulse_api::{
    InputRequest, LossBuilder, PluginConfig, RationaleVectors, Recommender, SideInputs, SplitData,
    Vectors,
};
use rand::Rng as _;
use std::collections::HashMap;
use std::sync::Arc;

/// Random unit vectors, one per item: text that identifies items but carries no order.
fn item_vectors(n: usize, dim: usize, seed: u64) -> Vectors {
    let mut rng = derive(seed, "vectors");
    let mut data = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let v: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() - 0.5).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        data.extend(v.iter().map(|x| x / norm));
    }
    Vectors { dim, data }
}

/// A rationale per user for their last training target: that item's vector (a "why" that
/// names what was chosen).
fn rationales(data: &SplitData, items: &Vectors) -> RationaleVectors {
    let mut r = RationaleVectors::default();
    r.vectors.dim = items.dim;
    for (u, seq) in data.train.iter().enumerate() {
        let pos = seq.len() as u32 - 1;
        r.index.insert((u as u32, pos), r.index.len());
        r.vectors
            .data
            .extend_from_slice(items.row(seq[pos as usize] as usize));
    }
    r
}

fn fields(text: bool, ids: bool) -> TextRecFields {
    TextRecFields {
        item_vectors: Some("enc".into()),
        text,
        id_embeddings: Some(ids),
        hidden_size: 32,
        inner_size: 64,
        dropout: 0.2,
        max_len: 20,
        batch_size: 32,
        learning_rate: 0.005,
        ..TextRecFields::default()
    }
}

fn side(data: &SplitData, with_rationales: bool) -> SideInputs {
    let v = item_vectors(data.n_items(), 24, 7);
    let mut s = SideInputs::default();
    if with_rationales {
        s.rationale_vectors
            .insert("enc".into(), Arc::new(rationales(data, &v)));
    }
    s.item_vectors.insert("enc".into(), Arc::new(v));
    s
}

fn text_seq(f: TextRecFields, data: &SplitData) -> Box<dyn Recommender> {
    let mut m = build(TextSeqConfig(f).settings(), &TestLosses).unwrap();
    m.attach(&side(data, false)).unwrap();
    m
}

fn pulse(mut f: TextRecFields, why: f64, data: &SplitData) -> Box<dyn Recommender> {
    f.why_weight = Some(why);
    f.rationale_vectors = Some("enc".into());
    let mut m = build(PulseConfig(f).settings(), &TestLosses).unwrap();
    m.attach(&side(data, true)).unwrap();
    m
}

#[track_caller]
fn check_learns(mut m: Box<dyn Recommender>, what: &str, min_gain: f64) {
    let data = testing::sequential_data(5);
    let base = testing::hit_rate(testing::fitted_pop(&data).as_ref(), &data, false);
    let losses = testing::fit(m.as_mut(), &data, 3, 15);
    assert!(losses[losses.len() - 1] < losses[0], "{what}: {losses:?}");
    let hr = testing::hit_rate(m.as_ref(), &data, false);
    assert!(
        hr > base + min_gain,
        "{what}: HR@10 {hr:.3} vs pop {base:.3}"
    );
}

#[test]
fn learns_successors_from_text_ids_or_both() {
    let data = testing::sequential_data(5);
    check_learns(text_seq(fields(true, false), &data), "text only", 0.3);
    check_learns(text_seq(fields(false, true), &data), "ids only", 0.3);
    check_learns(pulse(fields(true, true), 0.5, &data), "pulse", 0.3);
}

#[test]
fn why_term_is_infonce_of_cosines() {
    // h rows 0 and 2 are explained; the head is the identity, so q = normalised h rows.
    let h = Tensor::new(
        &[[3.0f32, 4.0], [9.0, 9.0], [0.0, 2.0]],
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let head = Var::new(&[[1.0f32, 0.0], [0.0, 1.0]], &candle_core::Device::Cpu).unwrap();
    let r0 = [1.0f32, 0.0];
    let r1 = [0.0f32, 5.0];
    let loss = TestLosses
        .build_loss(&serde_json::json!({"type": "infonce", "temperature": 0.5}))
        .unwrap();
    let got = why_term(loss.as_ref(), &h, &head, &[(0, &r0), (2, &r1)])
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // q0 = (0.6, 0.8), q1 = (0, 1); r = (1, 0), (0, 1); sim = [[0.6, 0.8], [0, 1]] / 0.5.
    let ce = |own: f32, other: f32| -(own.exp() / (own.exp() + other.exp())).ln();
    let want = (ce(1.2, 1.6) + ce(2.0, 0.0)) / 2.0;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
}

fn scores_after(m: &mut dyn Recommender, data: &SplitData) -> Vec<f32> {
    testing::fit(m, data, 4, 2);
    testing::all_scores(m, data)
}

#[test]
fn lambda_changes_training_only_through_rationales() {
    let data = testing::sequential_data(3);
    let a = scores_after(pulse(fields(true, true), 0.5, &data).as_mut(), &data);
    let b = scores_after(pulse(fields(true, true), 0.0, &data).as_mut(), &data);
    assert_ne!(a, b, "the why loss must reach the weights");
    // λ = 0 is text + ids without rationales: the same network as text-seq with ids.
    let c = scores_after(text_seq(fields(true, true), &data).as_mut(), &data);
    assert_eq!(b, c);
}

#[test]
fn deterministic_and_restorable() {
    let data = testing::sequential_data(2);
    testing::check_determinism(|| pulse(fields(true, true), 0.5, &data), &data);
}

#[track_caller]
fn check_attach(m: &mut dyn Recommender, side: &SideInputs, err: Option<&str>) {
    match (m.attach(side), err) {
        (Ok(()), None) => {}
        (Err(e), Some(msg)) => assert!(e.to_string().contains(msg), "{e}"),
        (got, want) => panic!("{got:?}, expected {want:?}"),
    }
}

#[test]
fn side_inputs_are_requested_and_checked() {
    let data = testing::sequential_data(2);
    let mut f = fields(true, true);
    f.why_weight = Some(0.2);
    let mut m = build(PulseConfig(f).settings(), &TestLosses).unwrap();
    assert_eq!(
        m.inputs(),
        [
            InputRequest::ItemVectors("enc".into()),
            InputRequest::RationaleVectors("thought-space".into())
        ]
    );
    check_attach(
        m.as_mut(),
        &side(&data, false),
        Some("no rationale vectors from 'thought-space'"),
    );
    let ids_only = build(TextSeqConfig(fields(false, true)).settings(), &TestLosses).unwrap();
    assert!(ids_only.inputs().is_empty());

    let mut few = SideInputs::default();
    few.item_vectors
        .insert("enc".into(), Arc::new(item_vectors(100, 4, 1)));
    few.rationale_vectors.insert(
        "enc".into(),
        Arc::new(RationaleVectors {
            vectors: Vectors {
                dim: 4,
                data: vec![0.5; 4],
            },
            index: HashMap::from([((0, 1), 0)]),
        }),
    );
    let mut m = pulse(fields(true, true), 0.5, &data);
    check_attach(m.as_mut(), &few, Some("needs rationales, but 'enc' has 1"));

    let mut wrong = SideInputs::default();
    wrong
        .item_vectors
        .insert("enc".into(), Arc::new(item_vectors(7, 4, 1)));
    let mut m = build(TextSeqConfig(fields(true, false)).settings(), &TestLosses).unwrap();
    m.attach(&wrong).unwrap();
    let e = m.prepare(&data, 1).unwrap_err().to_string();
    assert!(e.contains("7 rows, the data set has 100 items"), "{e}");
}

#[track_caller]
fn check_config<C: PluginConfig>(json: &str, errors: &[&str]) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut got: Vec<String> = match pulse_api::plugin::decode_section::<C>(&v) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.iter().map(|e| e.dotted()).collect(),
    };
    got.sort();
    assert_eq!(got, errors, "{} {json}", C::TYPE);
}

#[test]
fn config_keys_and_defaults_per_type() {
    let example = |text: &str| -> String {
        let table: toml::Table = toml::from_str(text).unwrap();
        serde_json::to_value(table).unwrap().to_string()
    };
    check_config::<TextSeqConfig>(&example(TextSeqConfig::EXAMPLE), &[]);
    check_config::<SlmEmbConfig>(&example(SlmEmbConfig::EXAMPLE), &[]);
    check_config::<PulseConfig>(&example(PulseConfig::EXAMPLE), &[]);
    let documented: PulseConfig = pulse_api::plugin::decode_section(
        &serde_json::from_str(&example(PulseConfig::EXAMPLE)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        documented,
        PulseConfig(TextRecFields {
            item_vectors: Some("thought-space".into()),
            id_embeddings: Some(true),
            why_weight: Some(0.1),
            rationale_vectors: Some("thought-space".into()),
            why_loss: documented.0.why_loss.clone(),
            ..TextRecFields::default()
        }),
        "the documented keys are the defaults"
    );
    let s = PulseConfig::default().settings();
    assert_eq!(
        (
            s.item_vectors.as_str(),
            s.id_embeddings,
            s.why_weight,
            s.rationale_vectors.as_str()
        ),
        ("thought-space", true, 0.1, "thought-space")
    );
    let t = TextSeqConfig::default().settings();
    assert_eq!((t.id_embeddings, t.why_weight), (false, 0.0));
    check_config::<TextSeqConfig>(r#"{}"#, &["item_vectors"]);
    check_config::<TextSeqConfig>(r#"{"item_vectors": "enc"}"#, &[]);
    check_config::<TextSeqConfig>(
        r#"{"item_vectors": "enc", "why_weight": 0.1, "rationale_vectors": "x"}"#,
        &["rationale_vectors", "why_weight"],
    );
    check_config::<SlmEmbConfig>(r#"{"item_vectors": "slm", "heads": 3}"#, &["heads"]);
    check_config::<PulseConfig>(r#"{"why_weight": -1}"#, &["why_weight"]);
    check_config::<PulseConfig>(r#"{"text": false, "id_embeddings": false}"#, &["text"]);
    check_config::<PulseConfig>(
        r#"{"item_vectors": "minilm", "hiden_size": 3}"#,
        &["hiden_size"],
    );
    let refs = |c: PulseConfig| -> Vec<String> {
        c.references()
            .into_iter()
            .map(|r| format!("{}={}", r.key, r.name))
            .collect()
    };
    assert!(refs(PulseConfig::default()).is_empty());
    let f = TextRecFields {
        item_vectors: Some("minilm".into()),
        rationale_vectors: Some("minilm".into()),
        ..TextRecFields::default()
    };
    assert_eq!(
        refs(PulseConfig(f)),
        ["item_vectors=minilm", "rationale_vectors=minilm"]
    );
}
