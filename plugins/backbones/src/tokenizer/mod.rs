//! The tokenizer of a GGUF model, built from the file's own metadata (`tokenizer.ggml.*`): GGUF
//! files carry no `tokenizer.json`.
//!
//! Two model types occur: `gpt2` (byte-level BPE with merges; SmolLM2, Qwen2) is run by the
//! `tokenizers` crate with the pre-tokenizer that `tokenizer.ggml.pre` names ([`bpe`]); `llama`
//! (SentencePiece BPE with scores and byte fallback; Gemma 3) follows llama.cpp's SPM algorithm
//! ([`spm`]). Special tokens (control and user-defined) are recognised anywhere in the text, as
//! llama.cpp does with `parse_special`, because chat templates write them as text.
//!
//! Decoding is ours for both: every token's bytes are precomputed once, so the generation
//! engine can append a token's bytes as it goes and look for stop strings without re-decoding.

mod bpe;
mod spm;

use crate::gguf::meta::Meta;
use crate::BackboneError;
use candle_core::quantized::gguf_file::Content;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Normal,
    Unknown,
    /// `<|im_start|>`, `<eos>`: structure, never shown as text.
    Control,
    /// Added by the model's authors (`<tool_call>`, Gemma's runs of newlines): shown as text.
    UserDefined,
    Unused,
    /// `<0x0A>`: one raw byte (SentencePiece byte fallback).
    Byte,
}

impl TokenKind {
    fn from_gguf(t: i64) -> Self {
        match t {
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Normal,
        }
    }
}

/// Texts of control tokens that end a generation, besides `eos_token_id`. Mirrors llama.cpp's
/// end-of-generation detection, so a model stops where llama.cpp would stop it.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<|fim_pad|>",
    "<fim_pad>",
    "<|repo_name|>",
    "<repo_name>",
    "<reponame>",
    "<|file_sep|>",
    "<file_sep>",
];

enum Model {
    Bpe(Box<tokenizers::Tokenizer>),
    Spm(Box<spm::Spm>),
}

/// A GGUF model's tokenizer.
pub struct Tokenizer {
    model: Model,
    /// The raw token strings, as stored in the GGUF.
    texts: Vec<String>,
    kinds: Vec<TokenKind>,
    /// The bytes each token stands for in generated text (empty for control tokens).
    bytes: Vec<Vec<u8>>,
    bos: Option<u32>,
    eos: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field(
                "model",
                &match self.model {
                    Model::Bpe(_) => "bpe",
                    Model::Spm(_) => "spm",
                },
            )
            .field("vocab", &self.texts.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eog", &self.eog)
            .finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> BackboneError {
    BackboneError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(content: &Content) -> Result<Self, BackboneError> {
        let meta = Meta::new(content);
        let texts: Vec<String> = meta
            .str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_string)
            .collect();
        let n = texts.len();
        let kinds: Vec<TokenKind> = match meta.opt_int_array("tokenizer.ggml.token_type")? {
            Some(t) if t.len() == n => t.into_iter().map(TokenKind::from_gguf).collect(),
            Some(t) => {
                return Err(BackboneError::Metadata {
                    key: "tokenizer.ggml.token_type".into(),
                    reason: format!("{} entries for {n} tokens", t.len()),
                })
            }
            None => vec![TokenKind::Normal; n],
        };
        let id = |key: &str| -> Result<Option<u32>, BackboneError> {
            match meta.opt_uint(key)? {
                Some(v) if (v as usize) < n => Ok(Some(v as u32)),
                Some(v) => Err(BackboneError::Metadata {
                    key: key.into(),
                    reason: format!("id {v} is outside the vocabulary of {n}"),
                }),
                None => Ok(None),
            }
        };
        let bos = id("tokenizer.ggml.bos_token_id")?;
        let eos = id("tokenizer.ggml.eos_token_id")?;
        let eot = id("tokenizer.ggml.eot_token_id")?;
        let kind = meta.str("tokenizer.ggml.model")?;
        let (model, bytes) = match kind {
            "gpt2" => {
                let merges = meta.str_array("tokenizer.ggml.merges")?;
                let pre = meta.opt_str("tokenizer.ggml.pre")?.unwrap_or("default");
                let model = bpe::build(&texts, &kinds, &merges, pre)?;
                (
                    Model::Bpe(Box::new(model)),
                    bpe::token_bytes(&texts, &kinds),
                )
            }
            "llama" => {
                let scores = meta
                    .opt_f32_array("tokenizer.ggml.scores")?
                    .unwrap_or_else(|| vec![0.0; n]);
                let add_space_prefix = meta
                    .opt_bool("tokenizer.ggml.add_space_prefix")?
                    .unwrap_or(true);
                let unk = id("tokenizer.ggml.unknown_token_id")?;
                let model = spm::Spm::new(&texts, &kinds, scores, unk, add_space_prefix)?;
                (
                    Model::Spm(Box::new(model)),
                    spm::token_bytes(&texts, &kinds),
                )
            }
            other => {
                return Err(BackboneError::Tokenizer(format!(
                    "tokenizer model `{other}` is not supported (supported: gpt2, llama)"
                )))
            }
        };
        let add_bos = meta
            .opt_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(kind == "llama");
        let mut eog: Vec<u32> = eos.into_iter().chain(eot).collect();
        for (i, (t, k)) in texts.iter().zip(&kinds).enumerate() {
            if *k == TokenKind::Control && EOG_TEXTS.contains(&t.as_str()) {
                eog.push(i as u32);
            }
        }
        eog.sort_unstable();
        eog.dedup();
        Ok(Self {
            model,
            texts,
            kinds,
            bytes,
            bos,
            eos,
            eog,
            add_bos,
        })
    }

    /// Token ids of `text`, special tokens written as text (`<|im_start|>`) included, without
    /// adding a beginning-of-sequence token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, BackboneError> {
        match &self.model {
            Model::Bpe(t) => t
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(tok_err),
            Model::Spm(s) => Ok(s.encode(text)),
        }
    }

    /// Token ids of a whole prompt: [`Self::encode`], with the beginning-of-sequence token in
    /// front when the model wants one and the text (e.g. a rendered chat template) does not
    /// already start with it.
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, BackboneError> {
        let mut ids = self.encode(text)?;
        if let (true, Some(bos)) = (self.add_bos, self.bos) {
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// The text of `ids`; control tokens are left out, invalid UTF-8 is replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id));
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The bytes token `id` adds to generated text (empty for control and unknown ids).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The token's string as stored in the GGUF (`Ġthe`, `▁the`, `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    pub fn token_kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    pub fn vocab_size(&self) -> usize {
        self.texts.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Ids that end a generation (sorted).
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
}

#[cfg(test)]
mod tests;
