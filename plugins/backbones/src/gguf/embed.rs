//! Text vectors from a GGUF language model (the `embed` capability of the `gguf` backbone,
//! used by the `slm-emb` baseline): the mean of the model's final hidden states — after the
//! output norm, before the LM head — over a text's tokens, L2-normalised.
//!
//! Texts are tokenized as plain text (no chat template; the beginning-of-sequence token is
//! added where the model's metadata asks for it, as for generation) and cut to
//! [`EmbedParams::max_tokens`]. They run through the same forward pass as generation, longest
//! first, in batches of similar lengths padded on the right: attention is causal, so padding
//! after a text never reaches its tokens, its positions are unchanged, and the pooling weights
//! leave the padded slots out. A leading beginning-of-sequence token is not pooled: it attends
//! only to itself, so its state is the same for every text and would only pull all vectors
//! towards one point.

use super::model::Model;
use crate::tokenizer::Tokenizer;
use crate::BackboneError;
use candle_core::{DType, Tensor};

/// How texts become vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedParams {
    /// Tokens kept per text (a beginning-of-sequence token included); longer texts are cut
    /// to their first `max_tokens` tokens. Also capped by the model's context.
    pub max_tokens: usize,
    /// Most tokens (rows × padded length) run in one forward pass; a text longer than this
    /// runs alone. Bounds the memory of a pass (key/value cache and attention scores).
    pub batch_tokens: usize,
    /// Divide each vector by its L2 norm.
    pub normalize: bool,
}

impl Default for EmbedParams {
    fn default() -> Self {
        Self {
            max_tokens: 512,
            // SmolLM2 over the MovieLens titles, int8, one thread: ~72 titles per CPU-second
            // from 128 to 1024 tokens a pass, 63 at 2048, 37 at 8192 (activations outgrow the
            // caches).
            batch_tokens: 1024,
            normalize: true,
        }
    }
}

impl EmbedParams {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_tokens == 0 {
            return Err("embedding max_tokens must be at least 1".into());
        }
        if self.batch_tokens == 0 {
            return Err("embedding batch_tokens must be at least 1".into());
        }
        Ok(())
    }
}

/// One text ready to run: its tokens and the range of them that is pooled.
struct Encoded {
    ids: Vec<u32>,
    pooled: std::ops::Range<usize>,
}

fn encode(tokenizer: &Tokenizer, text: &str, max_tokens: usize) -> Result<Encoded, BackboneError> {
    let mut ids = tokenizer.encode_prompt(text)?;
    ids.truncate(max_tokens);
    if ids.is_empty() {
        // An empty text of a model that adds no beginning-of-sequence token: a control token
        // stands for "no text", so that every text still gets a (unit) vector.
        let stand_in = tokenizer.bos_id().or(tokenizer.eos_id()).ok_or_else(|| {
            BackboneError::Tokenizer("an empty text, and no BOS or EOS token to embed".into())
        })?;
        ids.push(stand_in);
    }
    let skip = usize::from(ids.len() > 1 && Some(ids[0]) == tokenizer.bos_id());
    let pooled = skip..ids.len();
    Ok(Encoded { ids, pooled })
}

/// One vector per text, in input order (see the module docs).
pub(crate) fn embed(
    model: &Model,
    tokenizer: &Tokenizer,
    texts: &[&str],
    params: &EmbedParams,
) -> Result<Vec<Vec<f32>>, BackboneError> {
    params.validate().map_err(BackboneError::Params)?;
    let max_tokens = params.max_tokens.min(model.max_positions());
    let encoded = texts
        .iter()
        .map(|t| encode(tokenizer, t, max_tokens))
        .collect::<Result<Vec<_>, _>>()?;
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
    // Any valid id: padded slots are never seen by the real tokens nor pooled.
    let pad = tokenizer.eos_id().unwrap_or(0);
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); encoded.len()];
    let mut rest = order.as_slice();
    while let Some(&longest) = rest.first() {
        let len = encoded[longest].ids.len();
        let rows = (params.batch_tokens / len).clamp(1, rest.len());
        let (batch, later) = rest.split_at(rows);
        rest = later;
        let group: Vec<&Encoded> = batch.iter().map(|&i| &encoded[i]).collect();
        for (&i, v) in batch.iter().zip(pool_batch(model, &group, len, pad)?) {
            out[i] = v;
        }
    }
    if params.normalize {
        out.iter_mut().for_each(|v| l2_normalize(v));
    }
    Ok(out)
}

/// The mean pooled states of `group`, right-padded to `len` tokens.
fn pool_batch(
    model: &Model,
    group: &[&Encoded],
    len: usize,
    pad: u32,
) -> Result<Vec<Vec<f32>>, BackboneError> {
    let rows = group.len();
    let mut tokens = vec![pad; rows * len];
    let mut weights = vec![0f32; rows * len];
    for (r, e) in group.iter().enumerate() {
        tokens[r * len..r * len + e.ids.len()].copy_from_slice(&e.ids);
        let share = 1.0 / e.pooled.len() as f32;
        weights[r * len + e.pooled.start..r * len + e.pooled.end].fill(share);
    }
    let h = model.hidden_states(&tokens, rows)?.to_dtype(DType::F32)?;
    let w = Tensor::from_vec(weights, (rows, len, 1), h.device())?;
    Ok(h.broadcast_mul(&w)?.sum(1)?.to_vec2::<f32>()?)
}

fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{GgufBackbone, WeightFormat};
    use crate::testing::backbone;

    const SMOL: &str = "smollm2-135m-instruct";
    const TOY_STORY: &str = "Toy Story (1995). Animation|Children's|Comedy";
    const ALADDIN: &str = "Aladdin (1992). Animation|Children's|Comedy|Musical";
    const SCHINDLER: &str = "Schindler's List (1993). Drama|War";
    /// From 1 to ~20 tokens, so that a batch pads all but the longest.
    const TEXTS: [&str; 4] = [TOY_STORY, "Heat", SCHINDLER, ALADDIN];

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        dot / (norm(a) * norm(b))
    }

    /// Both sets of vectors are equal within `tol` in every coordinate.
    #[track_caller]
    fn check_close(got: &[Vec<f32>], want: &[Vec<f32>], tol: f32) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g.len(), w.len());
            let worst = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= tol, "text {i}: differs by {worst}");
        }
    }

    #[track_caller]
    fn check_unit_vectors(m: &GgufBackbone, texts: &[&str], dim: usize) {
        let out = m.embed(texts).unwrap();
        assert_eq!(out.len(), texts.len());
        for v in &out {
            assert_eq!(v.len(), dim);
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
    }

    #[test]
    fn vectors_are_unit_and_hidden_size_wide() {
        let smol = backbone(SMOL, WeightFormat::F32);
        check_unit_vectors(smol, &TEXTS, 576);
        // An empty text still gets a vector (SmolLM2 adds no BOS: a stand-in token runs), and
        // a text far over the token cap is cut rather than refused.
        let long = "a very long movie description ".repeat(300);
        assert!(smol.encode_prompt(&long).unwrap().len() > 1000);
        check_unit_vectors(smol, &["", &long], 576);
        assert!(smol.embed(&[]).unwrap().is_empty());
        check_unit_vectors(backbone(SMOL, WeightFormat::Int8), &TEXTS, 576);
        // Gemma 3 adds a BOS token (not pooled, see the module docs).
        check_unit_vectors(backbone("gemma3-270m", WeightFormat::Int8), &TEXTS, 640);
    }

    #[test]
    fn batching_and_padding_do_not_change_vectors() {
        for format in [
            WeightFormat::F32,
            WeightFormat::Int8,
            WeightFormat::Quantized,
        ] {
            let m = backbone(SMOL, format);
            let alone: Vec<Vec<f32>> = TEXTS
                .iter()
                .map(|t| m.embed(&[t]).unwrap().remove(0))
                .collect();
            // All in one padded pass, and in passes of two rows.
            let all = m.embed(&TEXTS).unwrap();
            check_close(&all, &alone, 1e-4);
            let small = EmbedParams {
                batch_tokens: 40,
                ..EmbedParams::default()
            };
            check_close(&m.embed_with(&TEXTS, &small).unwrap(), &alone, 1e-4);
            assert_eq!(
                m.embed(&TEXTS).unwrap(),
                all,
                "{format:?} is not deterministic"
            );
        }
    }

    #[test]
    fn texts_over_the_cap_are_cut() {
        let m = backbone(SMOL, WeightFormat::F32);
        let texts = [
            "The quick brown fox jumps over the lazy dog and then runs away.",
            "The quick brown fox jumps over the lazy dog and then sleeps all day long.",
        ];
        let cut = EmbedParams {
            max_tokens: 8,
            ..EmbedParams::default()
        };
        let v = m.embed_with(&texts, &cut).unwrap();
        check_close(&v[..1], &v[1..], 1e-6);
        let v = m.embed(&texts).unwrap();
        assert!(cos(&v[0], &v[1]) < 0.999);
        let e = m
            .embed_with(
                &texts,
                &EmbedParams {
                    max_tokens: 0,
                    ..cut
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("max_tokens"), "{e}");
    }

    /// `anchor` is closer to `near` than to `far`.
    #[track_caller]
    fn check_closer(m: &GgufBackbone, anchor: &str, near: &str, far: &str) {
        let v = m.embed(&[anchor, near, far]).unwrap();
        let (n, f) = (cos(&v[0], &v[1]), cos(&v[0], &v[2]));
        assert!(n > f, "{anchor}: {n} to {near}, {f} to {far}");
    }

    /// SmolLM2's mean states are very anisotropic (cosines of unrelated titles ≈ 0.94), and the
    /// ordering holds for some triples only: these hold in every weight format; others do not
    /// (Scream is closer to Babe than to Halloween; bare titles without genres put Toy Story
    /// nearer Schindler's List than Aladdin). Qwen2.5 orders all of those correctly.
    #[test]
    fn similar_items_are_closer() {
        for format in [WeightFormat::F32, WeightFormat::Int8] {
            let m = backbone(SMOL, format);
            check_closer(m, TOY_STORY, ALADDIN, SCHINDLER);
            check_closer(
                m,
                "Star Wars (1977). Action|Adventure|Romance|Sci-Fi|War",
                "Return of the Jedi (1983). Action|Adventure|Romance|Sci-Fi|War",
                "Sense and Sensibility (1995). Drama|Romance",
            );
            check_closer(
                m,
                "A film about space travel.",
                "An astronaut journeys to Mars.",
                "A recipe for apple pie.",
            );
        }
    }
}
