//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`) on the `tokenizers` crate: vocabulary and
//! merges from the GGUF, and the normaliser and pre-tokenizer that `tokenizer.ggml.pre` names,
//! matching the model's original `tokenizer.json` (and llama.cpp's pre-tokenizer regexes).

use super::TokenKind;
use crate::BackboneError;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// Qwen2's split regex (its `tokenizer.json`, case-insensitive contractions spelled out).
const REGEX_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's: like Qwen2's but digits in groups of up to three.
const REGEX_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn err(e: impl std::fmt::Display) -> BackboneError {
    BackboneError::Tokenizer(e.to_string())
}

fn split(regex: &str) -> Result<PreTokenizerWrapper, BackboneError> {
    let split = Split::new(
        SplitPattern::Regex(regex.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(err)?;
    Ok(split.into())
}

pub(super) fn build(
    texts: &[String],
    kinds: &[TokenKind],
    merges: &[&str],
    pre: &str,
) -> Result<Tokenizer, BackboneError> {
    let vocab: Vocab = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| err(format!("merge `{m}` is not two pieces")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(err)?;
    let mut tok = Tokenizer::new(bpe);
    // Byte-level mapping only: the splitting is done by the step before it.
    let bytes_only = ByteLevel::new(false, false, false);
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        // SmolLM / StarCoder: every digit alone, then GPT-2's regex.
        "smollm" | "starcoder" | "codeshell" => Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ])
        .into(),
        "qwen2" => {
            tok.with_normalizer(Some(NFC)).map_err(err)?;
            Sequence::new(vec![split(REGEX_QWEN2)?, bytes_only.into()]).into()
        }
        "llama3" | "llama-bpe" | "smaug-bpe" => {
            Sequence::new(vec![split(REGEX_LLAMA3)?, bytes_only.into()]).into()
        }
        "gpt2" | "default" | "gpt-2" => ByteLevel::new(false, true, true).into(),
        other => {
            return Err(err(format!(
                "byte-level pre-tokenizer `{other}` is not supported \
                 (supported: smollm, starcoder, qwen2, llama3, gpt2)"
            )))
        }
    };
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    // Control and user-defined tokens are matched in the raw text before pre-tokenisation.
    let added: Vec<AddedToken> = texts
        .iter()
        .zip(kinds)
        .filter(|(t, k)| {
            !t.is_empty()
                && matches!(
                    k,
                    TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
                )
        })
        .map(|(t, _)| AddedToken::from(t.clone(), true))
        .collect();
    tok.add_special_tokens(added).map_err(err)?;
    Ok(tok)
}

/// GPT-2's reversible byte ↔ printable-character table: byte `b` is written as `table[b]`.
fn bytes_to_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = if printable {
            char::from(b)
        } else {
            n += 1;
            // invariant: 256 + n < 0x200 is always a valid scalar value.
            char::from_u32(255 + n).unwrap_or('\0')
        };
    }
    table
}

/// The bytes each token adds to text: byte-level pieces mapped back to bytes, user-defined
/// tokens as written, control tokens as nothing.
pub(super) fn token_bytes(texts: &[String], kinds: &[TokenKind]) -> Vec<Vec<u8>> {
    let table = bytes_to_chars();
    let mut inverse = std::collections::HashMap::with_capacity(256);
    for (b, c) in table.iter().enumerate() {
        inverse.insert(*c, b as u8);
    }
    texts
        .iter()
        .zip(kinds)
        .map(|(t, k)| match k {
            TokenKind::Control | TokenKind::Unknown => Vec::new(),
            TokenKind::UserDefined => t.as_bytes().to_vec(),
            _ => {
                let mut out = Vec::with_capacity(t.len());
                for c in t.chars() {
                    match inverse.get(&c) {
                        Some(&b) => out.push(b),
                        // Not byte-level text (should not happen): keep it as written.
                        None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
                out
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_table_is_gpt2s() {
        let t = super::bytes_to_chars();
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], '\u{120}'); // Ġ
        assert_eq!(t[b'\n' as usize], '\u{10A}'); // Ċ
        assert_eq!(t[0], '\u{100}');
        let mut all: Vec<char> = t.to_vec();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 256);
    }
}
