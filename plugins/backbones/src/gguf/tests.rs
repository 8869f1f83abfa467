//! End-to-end tests of the GGUF backbone on the real models of the asset catalog, against
//! llama.cpp's greedy outputs for the same files and prompts (llama-cpp-python 0.3.36,
//! `top_k=1`; the margins between the top two logits were checked to be wide at every pinned
//! step, so rounding differences between the two implementations cannot flip them).

use super::*;
use crate::testing::backbone;
use crate::FinishReason;

const SMOL: &str = "smollm2-135m-instruct";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct";
const GEMMA: &str = "gemma3-270m";

fn chat(m: &GgufBackbone, user: &str) -> String {
    m.apply_chat_template(&[Message::user(user)], true).unwrap()
}

/// Greedy continuation of `prompt` must be llama.cpp's `expected` tokens.
#[track_caller]
fn check_greedy(m: &GgufBackbone, prompt: &str, expected: &[u32], reason: FinishReason) {
    let out = m
        .generate(&[prompt.to_string()], &GenParams::greedy(expected.len()))
        .unwrap();
    let text_ids: Vec<u32> = expected
        .iter()
        .copied()
        .filter(|&t| !m.tokenizer().is_eog(t))
        .collect();
    assert_eq!(out[0].text, m.tokenizer().decode(&text_ids), "{out:?}");
    assert_eq!(out[0].new_tokens, expected.len());
    assert_eq!(out[0].finish_reason, reason);
    assert_eq!(out[0].prompt_tokens, m.encode_prompt(prompt).unwrap().len());
}

#[test]
fn smollm2_follows_llama_cpp() {
    let m = backbone(SMOL, WeightFormat::Quantized);
    let c = m.config();
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(
        (c.n_layer, c.n_embd, c.n_head, c.n_head_kv, c.head_dim),
        (30, 576, 9, 3, 64)
    );
    assert_eq!(m.weight_format(), WeightFormat::Quantized);
    // "L'Étoile, la" — the Q4_1 model's own answer, token for token.
    check_greedy(
        m,
        &chat(m, "What is the capital of France?"),
        &[60, 23, 39614, 1141, 552, 28, 2618],
        FinishReason::Length,
    );
}

#[test]
fn qwen2_follows_llama_cpp() {
    let m = backbone(QWEN, WeightFormat::Quantized);
    assert_eq!(m.config().arch, Arch::Qwen2);
    // "The capital of France is Paris." then <|im_end|>.
    check_greedy(
        m,
        &chat(m, "What is the capital of France?"),
        &[785, 6722, 315, 9625, 374, 12095, 13, 151645],
        FinishReason::Eos,
    );
}

#[test]
fn gemma3_follows_llama_cpp() {
    let m = backbone(GEMMA, WeightFormat::Quantized);
    let c = m.config();
    assert_eq!(c.arch, Arch::Gemma3);
    assert_eq!((c.n_layer, c.head_dim, c.n_head_kv), (18, 256, 1));
    assert!(c.is_local_layer(0) && !c.is_local_layer(5));
    // A base model: no chat template in the file.
    let e = m
        .apply_chat_template(&[Message::user("x")], true)
        .unwrap_err();
    assert!(matches!(e, BackboneError::NoChatTemplate { .. }), "{e}");
    // " the capital of the" (the BOS is added by the tokenizer).
    check_greedy(
        m,
        "The capital of France is",
        &[506, 5279, 529, 506],
        FinishReason::Length,
    );
}

/// Short, different prompts: the batch sees different lengths, a shared chat prefix, and rows
/// finishing at different steps.
fn prompts(m: &GgufBackbone) -> Vec<String> {
    [
        "Name a famous science fiction film.",
        "Why do people like comedies?",
        "Recommend a movie for a rainy day, in one sentence.",
        "What is 2 + 2?",
    ]
    .iter()
    .map(|q| chat(m, q))
    .collect()
}

#[test]
fn batching_does_not_change_greedy_results() {
    let m = backbone(SMOL, WeightFormat::F32);
    let ps = prompts(m);
    let alone: Vec<Generation> = ps
        .iter()
        .map(|p| {
            m.generate(&[p.clone()], &GenParams::greedy(20))
                .unwrap()
                .remove(0)
        })
        .collect();
    // All at once (shared prefix, padding), and two at a time (rows leave, others join).
    for batch_size in [4, 2] {
        let params = GenParams {
            batch_size,
            ..GenParams::greedy(20)
        };
        assert_eq!(
            m.generate(&ps, &params).unwrap(),
            alone,
            "batch {batch_size}"
        );
    }
    assert!(alone.iter().all(|g| !g.text.is_empty()), "{alone:?}");
}

#[test]
fn stop_strings_eos_and_budgets_end_generations() {
    let m = backbone(SMOL, WeightFormat::F32);
    let p = chat(m, "Recommend a movie for a rainy day, in one sentence.");
    let full = m
        .generate(&[p.clone()], &GenParams::greedy(24))
        .unwrap()
        .remove(0);
    // Cut at the first space after the 5th character: the text stops just before it.
    let cut = full.text[5..].find(' ').map(|i| i + 5).unwrap();
    let params = GenParams {
        stop: vec![full.text[cut..cut + 2].to_string()],
        ..GenParams::greedy(24)
    };
    let stopped = m.generate(&[p.clone()], &params).unwrap().remove(0);
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    assert!(
        full.text.starts_with(&stopped.text),
        "{stopped:?} vs {full:?}"
    );
    assert!(
        stopped.text.len() <= cut && stopped.new_tokens < 24,
        "{stopped:?}"
    );

    let short = m
        .generate(&[p.clone()], &GenParams::greedy(3))
        .unwrap()
        .remove(0);
    assert_eq!(
        (short.new_tokens, short.finish_reason),
        (3, FinishReason::Length)
    );
    assert!(full.text.starts_with(&short.text));

    let none = m.generate(&[p], &GenParams::greedy(0)).unwrap().remove(0);
    assert_eq!((none.new_tokens, none.text.as_str()), (0, ""));
}

#[test]
fn sampling_is_seeded_per_prompt() {
    let m = backbone(SMOL, WeightFormat::F32);
    let ps = prompts(m);
    let params = |seed| GenParams {
        temperature: 0.9,
        top_k: Some(50),
        top_p: Some(0.95),
        repetition_penalty: 1.1,
        seed,
        ..GenParams::greedy(16)
    };
    let a = m.generate(&ps, &params(7)).unwrap();
    assert_eq!(a, m.generate(&ps, &params(7)).unwrap());
    assert_ne!(a, m.generate(&ps, &params(8)).unwrap());
    // A prompt's draws do not depend on its batch companions.
    let alone = m.generate(&ps[..1], &params(7)).unwrap();
    assert_eq!(alone[0], a[0]);
}

#[test]
fn bad_requests_are_refused() {
    let m = backbone(SMOL, WeightFormat::F32);
    let e = m
        .generate(&[String::new()], &GenParams::greedy(4))
        .unwrap_err();
    assert!(
        matches!(e, BackboneError::PromptTooLong { tokens: 0, .. }),
        "{e}"
    );
    let bad = GenParams {
        top_p: Some(2.0),
        ..GenParams::greedy(4)
    };
    let e = m.generate(&["x".to_string()], &bad).unwrap_err();
    assert!(e.to_string().contains("top_p"), "{e}");
    let e = GgufBackbone::load(
        std::path::Path::new("/nonexistent.gguf"),
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent.gguf"), "{e}");
}
#[test]
#[ignore]
fn scratch_logits() {
    for fmt in [WeightFormat::Quantized, WeightFormat::F32] {
        let m = backbone(SMOL, fmt);
        let prompt = m
            .apply_chat_template(&[Message::user("What is the capital of France?")], true)
            .unwrap();
        let mut ids = m.encode_prompt(&prompt).unwrap();
        for _ in 0..8 {
            let mut c = m.model.new_cache(1, ids.len()).unwrap();
            let l = m
                .model
                .forward(&ids, &mut c)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let mut idx: Vec<usize> = (0..l.len()).collect();
            idx.sort_by(|a, b| l[*b].total_cmp(&l[*a]));
            eprintln!(
                "{:?}",
                idx[..4].iter().map(|&i| (i, l[i])).collect::<Vec<_>>()
            );
            ids.push(idx[0] as u32);
        }
    }
}

#[test]
#[ignore]
fn scratch_timing() {
    use candle_core::{Device, Module, Tensor};
    use std::time::Instant;
    let dev = Device::Cpu;
    for (mm, k, n) in [
        (1usize, 576usize, 1536usize),
        (8, 576, 1536),
        (64, 576, 1536),
        (300, 576, 1536),
        (64, 576, 49152),
    ] {
        let x = Tensor::randn(0f32, 1., (mm, k), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., (n, k), &dev).unwrap();
        let wt = w.t().unwrap().contiguous().unwrap();
        let q =
            candle_core::quantized::QTensor::quantize(&w, candle_core::quantized::GgmlDType::Q4_1)
                .unwrap();
        let qm = candle_core::quantized::QMatMul::from_qtensor(q).unwrap();
        let q8 =
            candle_core::quantized::QTensor::quantize(&w, candle_core::quantized::GgmlDType::Q8_0)
                .unwrap();
        let qm8 = candle_core::quantized::QMatMul::from_qtensor(q8).unwrap();
        let reps = (2e9 / (2.0 * (mm * k * n) as f64)).clamp(2.0, 200.0) as usize;
        let time = |f: &dyn Fn()| {
            f();
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        };
        let tq = time(&|| {
            qm.forward(&x).unwrap();
        });
        let tq8 = time(&|| {
            qm8.forward(&x).unwrap();
        });
        let tf = time(&|| {
            x.matmul(&w.t().unwrap()).unwrap();
        });
        let tft = time(&|| {
            x.matmul(&wt).unwrap();
        });
        let gf = |t: f64| 2.0 * (mm * k * n) as f64 / t / 1e9;
        eprintln!("matmul {mm}x{k}x{n}: q4_1 {:.1} GF/s  q8_0 {:.1} GF/s  f32(w.t) {:.1} GF/s  f32(wt contig) {:.1} GF/s", gf(tq), gf(tq8), gf(tf), gf(tft));
    }
}

#[test]
#[ignore]
fn scratch_decode() {
    use std::time::Instant;
    let m = backbone(SMOL, WeightFormat::F32);
    for b in [1usize, 16, 64] {
        let mut c = m.model.new_cache(b, 400).unwrap();
        let ids: Vec<u32> = (0..b as u32 * 300).map(|i| 100 + i % 1000).collect();
        let t = Instant::now();
        m.model.forward(&ids, &mut c).unwrap();
        eprintln!("batch prefill {b}x300: {:.3}s", t.elapsed().as_secs_f64());
        let step: Vec<u32> = vec![500; b];
        let t = Instant::now();
        for _ in 0..5 {
            m.model.forward(&step, &mut c).unwrap();
        }
        eprintln!("decode step b={b}: {:.4}s", t.elapsed().as_secs_f64() / 5.0);
    }
}

#[test]
#[ignore]
fn scratch_ops() {
    use candle_core::{DType, Device, Tensor};
    use std::time::Instant;
    let dev = Device::Cpu;
    let (b, hkv, rep, d, cap, t) = (64usize, 3usize, 3usize, 64usize, 400usize, 300usize);
    let kc = Tensor::randn(0f32, 1., (b, hkv, cap, d), &dev).unwrap();
    let q = Tensor::randn(0f32, 1., (b, hkv, rep, d), &dev).unwrap();
    let mask = Tensor::zeros((b, 1, 1, 1, t), DType::F32, &dev).unwrap();
    let time = |name: &str, f: &dyn Fn()| {
        f();
        let s = Instant::now();
        for _ in 0..30 {
            f();
        }
        eprintln!("{name}: {:.3} ms", s.elapsed().as_secs_f64() / 30.0 * 1e3);
    };
    let kv = kc.narrow(2, 0, t).unwrap();
    time("qk matmul (narrow view)", &|| {
        q.matmul(&kv.t().unwrap()).unwrap();
    });
    let kvc = kv.contiguous().unwrap();
    time("qk matmul (contiguous)", &|| {
        q.matmul(&kvc.t().unwrap()).unwrap();
    });
    let att = q.matmul(&kvc.t().unwrap()).unwrap();
    time("mask broadcast_add", &|| {
        att.reshape((b, hkv, rep, 1, t))
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
    });
    time("softmax", &|| {
        candle_nn::ops::softmax_last_dim(&att).unwrap();
    });
    time("av matmul (narrow view)", &|| {
        att.matmul(&kv).unwrap();
    });
    let x = Tensor::randn(0f32, 1., (b, 1, 576), &dev).unwrap();
    let w = Tensor::ones(576, DType::F32, &dev).unwrap();
    time("rms_norm", &|| {
        candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap();
    });
    let g = Tensor::randn(0f32, 1., (b, 1, 1536), &dev).unwrap();
    time("silu", &|| {
        candle_nn::ops::silu(&g).unwrap();
    });
    time("mul", &|| {
        (&g * &g).unwrap();
    });
    let newk = Tensor::randn(0f32, 1., (b, hkv, 1, d), &dev).unwrap();
    time("slice_set", &|| {
        kc.slice_set(&newk, 2, 350).unwrap();
    });
    let qq = Tensor::randn(0f32, 1., (b, 9, 1, d), &dev).unwrap();
    let cs = Tensor::randn(0f32, 1., (b, 1, d / 2), &dev).unwrap();
    time("rope_i", &|| {
        candle_nn::rotary_emb::rope_i(&qq, &cs, &cs).unwrap();
    });
    let y = Tensor::randn(0f32, 1., (b, 9, 1, d), &dev).unwrap();
    time("transpose+reshape", &|| {
        y.transpose(1, 2).unwrap().reshape((b, 1, 576)).unwrap();
    });
    let big = Tensor::randn(0f32, 1., (16, 3, 3, 300, 300), &dev).unwrap();
    let bm = Tensor::zeros((16, 1, 1, 300, 300), DType::F32, &dev).unwrap();
    time("prefill-size mask add 16x9x300x300", &|| {
        big.broadcast_add(&bm).unwrap();
    });
}
