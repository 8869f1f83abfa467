//! Tests of the sentence encoder on the real all-MiniLM-L6-v2 (fetched into `$PULSE_HOME` on
//! first use). Reference token ids and vectors come from `scripts/minilm_reference.py`: the
//! `tokenizers` Python package and an independent numpy forward pass in float64.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use candle_core::{Device, Tensor};
use std::sync::OnceLock;

/// Texts with their reference token ids and first 8 dimensions.
#[rustfmt::skip]
const REFERENCE: &[(&str, &[u32], [f32; 8])] = &[
    (
        "A spaceship crew fights an alien on a distant planet.",
        &[101, 1037, 25516, 3626, 9590, 2019, 7344, 2006, 1037, 6802, 4774, 1012, 102],
        [0.030142, 0.037242, -0.058091, 0.058294, 0.003363, 0.021117, -0.026364, 0.017743],
    ),
    (
        "Astronauts battle extraterrestrial monsters in outer space.",
        &[101, 25881, 2645, 4469, 3334, 28533, 14482, 9219, 1999, 6058, 2686, 1012, 102],
        [-0.007305, -0.009039, 0.00065, 0.059432, -0.07836, -0.035506, 0.011579, -0.02222],
    ),
    (
        "A romantic comedy about two strangers who fall in love in Paris.",
        &[101, 1037, 6298, 4038, 2055, 2048, 12358, 2040, 2991, 1999, 2293, 1999, 3000, 1012, 102],
        [-0.043266, -0.051858, 0.017406, -0.03214, 0.012666, 0.018934, 0.046533, 0.022652],
    ),
    (
        "Café déjà vu: naïve résumé, Ünïcödé & punctuation!!",
        &[101, 7668, 2139, 3900, 24728, 1024, 15743, 13746, 1010, 27260, 1004, 26136, 6593, 14505, 999, 999, 102],
        [-0.044119, 0.001975, 0.095765, 0.017143, -0.010586, 0.036275, 0.007217, -0.026965],
    ),
    (
        "Toy Story (1995)",
        &[101, 9121, 2466, 1006, 2786, 1007, 102],
        [-0.082835, 0.05303, 0.053577, -0.027935, 0.016134, 0.012132, 0.024147, 0.020295],
    ),
];

/// Reference cosines between REFERENCE texts `(i, j, cos)`.
const COSINES: &[(usize, usize, f32)] = &[
    (0, 1, 0.572677),
    (0, 2, 0.085639),
    (0, 4, 0.111354),
    (1, 2, 0.025349),
    (2, 4, 0.258966),
    (3, 4, 0.077200),
];

fn files() -> &'static EncoderFiles {
    static FILES: OnceLock<EncoderFiles> = OnceLock::new();
    FILES.get_or_init(|| {
        EncoderSource::asset(MINILM)
            .files()
            .expect("MiniLM fetches")
    })
}

fn encoder() -> &'static Encoder {
    static ENC: OnceLock<Encoder> = OnceLock::new();
    ENC.get_or_init(|| {
        Encoder::from_files(files(), &Device::Cpu, EncoderOptions::default()).unwrap()
    })
}

fn texts() -> Vec<&'static str> {
    REFERENCE.iter().map(|r| r.0).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[track_caller]
fn check_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, want {w}\n{got:?}"
        );
    }
}

#[test]
fn token_ids_match_the_reference_tokenizer() {
    let ids = encoder().tokenizer().encode(&texts()).unwrap();
    for ((text, want, _), got) in REFERENCE.iter().zip(&ids) {
        assert_eq!(got.as_slice(), *want, "{text}");
    }
    // Truncation at sentence-transformers' max_seq_length (256), [SEP] kept last.
    let long = "word ".repeat(400);
    let ids = encoder().tokenizer().encode(&[long.as_str()]).unwrap();
    assert_eq!(ids[0].len(), 256);
    assert_eq!((ids[0][0], ids[0][255]), (101, 102));
}

#[test]
fn embeddings_match_the_reference_forward_pass() {
    let enc = encoder();
    assert_eq!((enc.dim(), enc.pooling()), (384, Pooling::Mean));
    let v = enc.encode(&texts()).unwrap();
    for ((text, _, head), got) in REFERENCE.iter().zip(&v) {
        check_close(&got[..8], head, 2e-5, text);
        let norm = dot(got, got).sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text}: norm {norm}");
    }
    for &(i, j, cos) in COSINES {
        check_close(&[dot(&v[i], &v[j])], &[cos], 2e-5, &format!("cos({i},{j})"));
    }
    // What any sentence encoder must get right: the two space stories are closer to each other
    // than to the romance.
    assert!(dot(&v[0], &v[1]) > 2.0 * dot(&v[0], &v[2]).max(dot(&v[1], &v[2])));
}

#[test]
fn batching_and_padding_do_not_change_vectors() {
    let enc = encoder();
    let all = enc.encode(&texts()).unwrap();
    // Each text alone (no padding at all) …
    for (i, t) in texts().iter().enumerate() {
        let alone = enc.encode(&[t]).unwrap();
        check_close(&alone[0], &all[i], 1e-5, t);
    }
    // … and in buckets of two, where short texts share a batch with longer ones.
    let opts = EncoderOptions {
        batch_size: 2,
        ..EncoderOptions::default()
    };
    let small = Encoder::from_files(files(), &Device::Cpu, opts).unwrap();
    let mut shuffled = texts();
    shuffled.reverse();
    let v = small.encode(&shuffled).unwrap();
    for (k, got) in v.iter().enumerate() {
        check_close(got, &all[texts().len() - 1 - k], 1e-5, shuffled[k]);
    }
    // Padding the batch by hand (no bucketing) gives the same vectors too.
    let batch = enc.batch(&texts()).unwrap();
    assert_eq!(batch.ids.dims2().unwrap(), (5, 17));
    assert!(enc.encode(&[]).unwrap().is_empty());
}

#[test]
fn local_directories_load_and_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = EncoderSource::Dir(dir.path().into()).files().unwrap_err();
    assert!(
        err.to_string().contains("has no model.safetensors"),
        "{err}"
    );

    let f = files();
    std::fs::write(dir.path().join("model.safetensors"), &f.weights).unwrap();
    std::fs::write(dir.path().join("tokenizer.json"), &f.tokenizer).unwrap();
    std::fs::write(dir.path().join("config.json"), &f.config).unwrap();
    // Without sentence_bert_config.json the limit is the position table (512); pooling is mean.
    let enc = Encoder::load(&EncoderSource::Dir(dir.path().into()), &Device::Cpu).unwrap();
    let long = "word ".repeat(600);
    assert_eq!(
        enc.tokenizer().encode(&[long.as_str()]).unwrap()[0].len(),
        512
    );
    let v = enc.encode(&[REFERENCE[4].0]).unwrap();
    check_close(&v[0][..8], &REFERENCE[4].2, 2e-5, "dir load");

    let err = EncoderSource::asset("no-such-encoder").files().unwrap_err();
    assert!(err.to_string().contains("known: all-minilm-l6-v2"), "{err}");
}

/// Mean squared distance between paired rows, a stand-in for a fine-tuning objective.
fn pair_loss(enc: &TrainableEncoder, a: &[&str], b: &[&str]) -> Tensor {
    let x = enc.forward(&enc.batch(a).unwrap()).unwrap();
    let y = enc.forward(&enc.batch(b).unwrap()).unwrap();
    (x - y).unwrap().sqr().unwrap().mean_all().unwrap()
}

#[test]
fn gradients_flow_through_the_trainable_layers_only() {
    let enc = TrainableEncoder::from_files(
        files(),
        &Device::Cpu,
        EncoderOptions::default(),
        Freeze::Layers(4),
    )
    .unwrap();
    // With the checkpoint's weights it is the same model as the inference encoder.
    let v = enc.encoder().encode(&texts()).unwrap();
    check_close(
        &v[0],
        &encoder().encode(&texts()).unwrap()[0],
        1e-5,
        "trainable",
    );

    let trainable = enc.trainable_vars();
    // Layers 4 and 5, 16 tensors each.
    assert_eq!(trainable.len(), 32);
    assert_eq!(enc.varmap().all_vars().len(), 5 + 6 * 16);

    let (a, b) = (
        &["Toy Story (1995)", "Heat (1995)"],
        &["Jumanji (1995)", "Casino (1995)"],
    );
    let loss = pair_loss(&enc, a, b);
    let grads = loss.backward().unwrap();
    let data = enc.varmap().data().lock().unwrap();
    for (name, var) in data.iter() {
        let g = grads.get(var.as_tensor());
        let frozen = name.starts_with("embeddings.")
            || ["0", "1", "2", "3"]
                .iter()
                .any(|i| name.starts_with(&format!("encoder.layer.{i}.")));
        if frozen {
            assert!(g.is_none(), "{name} is frozen but got a gradient");
        } else {
            let g = g.unwrap_or_else(|| panic!("{name} got no gradient"));
            let n = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n.is_finite(), "{name}: {n}");
        }
    }
    // The query weight of the top layer matters for the loss.
    let q = &data["encoder.layer.5.attention.self.query.weight"];
    let n = grads
        .get(q.as_tensor())
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert!(n.to_scalar::<f32>().unwrap() > 0.0);
}

#[test]
fn unfrozen_embeddings_get_gradients_for_the_tokens_used() {
    let enc = TrainableEncoder::from_files(
        files(),
        &Device::Cpu,
        EncoderOptions::default(),
        Freeze::Nothing,
    )
    .unwrap();
    assert_eq!(enc.trainable_vars().len(), 5 + 6 * 16);
    let grads = pair_loss(&enc, &["Toy Story (1995)"], &["Heat (1995)"])
        .backward()
        .unwrap();
    let data = enc.varmap().data().lock().unwrap();
    let g = grads
        .get(data["embeddings.word_embeddings.weight"].as_tensor())
        .expect("word embeddings get a gradient")
        .abs()
        .unwrap()
        .sum(1)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    // "toy" (9121) occurs in the input, "paris" (3000) does not.
    assert!(g[9121] > 0.0 && g[3000] == 0.0, "{} {}", g[9121], g[3000]);
}

#[test]
fn fine_tuning_moves_paired_texts_together() {
    use candle_nn::Optimizer;
    let enc = TrainableEncoder::from_files(
        files(),
        &Device::Cpu,
        EncoderOptions::default(),
        Freeze::Embeddings,
    )
    .unwrap();
    let (a, b) = (
        &["Toy Story (1995)", "Heat (1995)"],
        &["a film about a bank robbery", "animated toys come to life"],
    );
    let mut opt = candle_nn::AdamW::new_lr(enc.trainable_vars(), 1e-3).unwrap();
    let first = pair_loss(&enc, a, b).to_scalar::<f32>().unwrap();
    let mut last = first;
    for _ in 0..5 {
        let loss = pair_loss(&enc, a, b);
        opt.backward_step(&loss).unwrap();
        last = pair_loss(&enc, a, b).to_scalar::<f32>().unwrap();
    }
    assert!(last < 0.5 * first, "loss {first} → {last}");
    // The frozen embedding table is untouched.
    let emb = &enc.varmap().data().lock().unwrap()["embeddings.word_embeddings.weight"];
    let original = candle_core::safetensors::load_buffer(&files().weights, &Device::Cpu).unwrap();
    let diff = (emb.as_tensor() - &original["embeddings.word_embeddings.weight"])
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
}

#[test]
fn freezing_more_layers_than_exist_is_an_error() {
    let err = TrainableEncoder::from_files(
        files(),
        &Device::Cpu,
        EncoderOptions::default(),
        Freeze::Layers(7),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot freeze 7 layers of a 6-layer"),
        "{err}"
    );
}
