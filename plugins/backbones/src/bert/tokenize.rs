//! Text → token ids with the model's own `tokenizer.json` (BERT: lower-casing, accent
//! stripping, punctuation splitting, WordPiece with `##` continuations, `[CLS] … [SEP]`), and the
//! length-bucketed batching plan: sorting by length before cutting batches keeps padding, and so
//! wasted attention and matmul work, close to zero.

use super::BertError;
use tokenizers::{Tokenizer, TruncationParams};

/// A loaded `tokenizer.json`, with padding off (batches pad themselves) and truncation at the
/// model's sequence length.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    pad_id: u32,
}

impl TextTokenizer {
    /// Parses `tokenizer.json`; sequences longer than `max_len` tokens (specials included) are
    /// cut, as sentence-transformers does.
    pub fn from_json(bytes: &[u8], max_len: usize) -> Result<Self, BertError> {
        let mut inner =
            Tokenizer::from_bytes(bytes).map_err(|e| BertError::Tokenizer(e.to_string()))?;
        // The file may ask for fixed-length padding (MiniLM's pads everything to 128); batches
        // are padded to their own longest member instead.
        let pad_id = inner.get_padding().map_or(0, |p| p.pad_id);
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| BertError::Tokenizer(e.to_string()))?;
        Ok(Self { inner, pad_id })
    }

    /// The id padding positions carry.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Token ids of each text, with the model's special tokens.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, BertError> {
        let encodings = self
            .inner
            .encode_batch_fast(texts.to_vec(), true)
            .map_err(|e| BertError::Tokenizer(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

/// Batches of indices into `lengths`: sorted by length (longest first, ties in input order),
/// cut every `batch_size`, so each batch pads to a length close to all of its members'.
pub fn length_buckets(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::length_buckets;

    #[track_caller]
    fn check(lengths: &[usize], batch: usize, expected: &[&[usize]]) {
        let got = length_buckets(lengths, batch);
        let want: Vec<Vec<usize>> = expected.iter().map(|b| b.to_vec()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn buckets_group_similar_lengths() {
        check(&[3, 9, 4, 9, 1], 2, &[&[1, 3], &[2, 0], &[4]]);
        check(&[5, 5, 5], 64, &[&[0, 1, 2]]);
        check(&[], 4, &[]);
        // A zero batch size is treated as one rather than looping forever.
        check(&[2, 1], 0, &[&[0], &[1]]);
    }
}
