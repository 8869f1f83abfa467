//! The batched generation loop.
//!
//! Prompts are taken longest first (so rows decoded together have similar lengths and little
//! padding) in groups that fill the batch. A group's shared token prefix — a chat template's
//! system turn, an instruction all prompts start with — is run once and forked; then each
//! prompt's own tokens are run against its fork, and the group's rows join the batch's cache.
//! Each decoding step feeds every row its last token. A row that finishes (end-of-generation
//! token, stop string, token budget) is reported at once; the rows themselves are dropped from
//! the cache in bulk, when enough have finished that the copy pays off or when waiting prompts
//! can take their places (continuous batching).

use super::cache::KvCache;
use super::model::Model;
use super::sampling::{argmax, Sampler};
use crate::tokenizer::Tokenizer;
use crate::{BackboneError, FinishReason, GenParams, Generation};
use candle_core::D;
use std::collections::VecDeque;
use std::time::Instant;

/// Where a generation call stands, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GenProgress {
    /// Prompts finished.
    pub finished: usize,
    pub total: usize,
    /// Prompt tokens run so far (a shared prefix counts once per prompt).
    pub prompt_tokens: usize,
    /// Tokens generated so far.
    pub new_tokens: usize,
}

/// Shortest shared prefix worth running once for a group.
const MIN_SHARED_PREFIX: usize = 8;

struct Row {
    index: usize,
    prompt_len: usize,
    /// Prompt and output tokens, kept only when a repetition penalty needs them.
    seen: Vec<u32>,
    new_tokens: usize,
    bytes: Vec<u8>,
    sampler: Sampler,
    last: u32,
    finished: bool,
}

pub(crate) struct Engine<'a> {
    pub(crate) model: &'a Model,
    pub(crate) tokenizer: &'a Tokenizer,
    pub(crate) params: &'a GenParams,
}

impl Engine<'_> {
    /// Generates for every prompt; `on_done(index, generation)` is called as each finishes,
    /// `on_progress` after every step.
    pub(crate) fn run(
        &self,
        prompts: &[Vec<u32>],
        on_done: &mut dyn FnMut(usize, Generation),
        on_progress: &mut dyn FnMut(GenProgress),
    ) -> Result<(), BackboneError> {
        let p = self.params;
        p.validate().map_err(BackboneError::Params)?;
        let max_pos = self.model.max_positions();
        for (index, ids) in prompts.iter().enumerate() {
            if ids.is_empty() || ids.len() >= max_pos {
                return Err(BackboneError::PromptTooLong {
                    index,
                    tokens: ids.len(),
                    max_new: p.max_new_tokens,
                    context: max_pos,
                });
            }
        }
        let mut progress = GenProgress {
            total: prompts.len(),
            ..GenProgress::default()
        };
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
        let mut pending: VecDeque<usize> = order.into();
        if p.max_new_tokens == 0 {
            for i in pending {
                progress.finished += 1;
                on_done(i, finished(prompts[i].len(), 0, &[], FinishReason::Length));
            }
            on_progress(progress);
            return Ok(());
        }

        let mut rows: Vec<Row> = Vec::new();
        let mut cache: Option<KvCache> = None;
        // Refill only when a quarter of the batch is free: every refill copies the cache.
        let refill_at = (p.batch_size / 4).max(1);
        loop {
            let alive = rows.iter().filter(|r| !r.finished).count();
            let dead = rows.len() - alive;
            let free = p.batch_size.saturating_sub(alive);
            let admit = !pending.is_empty() && (alive == 0 || free >= refill_at);
            if admit || dead * 4 >= rows.len().max(1) && dead > 0 {
                if let Some(c) = cache.as_mut() {
                    let keep: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].finished).collect();
                    if keep.is_empty() {
                        cache = None;
                    } else if keep.len() < rows.len() {
                        c.keep_rows(&keep)?;
                    }
                    rows.retain(|r| !r.finished);
                }
            }
            if admit {
                let group: Vec<usize> = pending.drain(..free.min(pending.len())).collect();
                let t0 = Instant::now();
                let (new_rows, new_cache) =
                    self.prefill(prompts, &group, &mut progress, on_done)?;
                tracing::debug!(
                    prompts = group.len(),
                    secs = t0.elapsed().as_secs_f64(),
                    "prefill"
                );
                if let Some(nc) = new_cache {
                    let parts = cache.take().into_iter().chain(Some(nc)).collect();
                    cache = Some(KvCache::concat(parts, p.max_new_tokens)?);
                    rows.extend(new_rows);
                }
                on_progress(progress);
                continue;
            }
            let Some(c) = cache.as_mut() else {
                break;
            };
            let tokens: Vec<u32> = rows.iter().map(|r| r.last).collect();
            let logits = self.model.forward(&tokens, c)?;
            let picks = self.pick_all(&logits, &mut rows)?;
            for (row, t) in rows.iter_mut().zip(picks) {
                if row.finished {
                    continue;
                }
                if let Some(g) = self.accept(row, t, max_pos) {
                    progress.finished += 1;
                    on_done(row.index, g);
                }
                progress.new_tokens += 1;
            }
            on_progress(progress);
        }
        Ok(())
    }

    /// Runs the prompts of `group` and picks each one's first token; returns the rows still
    /// generating and their cache (`None` if all finished at once).
    fn prefill(
        &self,
        prompts: &[Vec<u32>],
        group: &[usize],
        progress: &mut GenProgress,
        on_done: &mut dyn FnMut(usize, Generation),
    ) -> Result<(Vec<Row>, Option<KvCache>), BackboneError> {
        let p = self.params;
        let max_pos = self.model.max_positions();
        let shared = shared_prefix(group.iter().map(|&i| prompts[i].as_slice()));
        let prefix = if group.len() > 1 && shared >= MIN_SHARED_PREFIX {
            let ids = &prompts[group[0]][..shared];
            let mut c = self.model.new_cache(1, shared)?;
            self.model.forward(ids, &mut c)?;
            Some(c)
        } else {
            None
        };
        let mut rows = Vec::with_capacity(group.len());
        let mut caches = Vec::with_capacity(group.len());
        for &i in group {
            let ids = &prompts[i];
            let (mut c, own) = match &prefix {
                Some(pc) => (pc.fork(ids.len() - shared)?, &ids[shared..]),
                None => (self.model.new_cache(1, ids.len())?, &ids[..]),
            };
            let logits = self.model.forward(own, &mut c)?;
            progress.prompt_tokens += ids.len();
            let mut row = Row {
                index: i,
                prompt_len: ids.len(),
                seen: if p.repetition_penalty != 1.0 {
                    ids.clone()
                } else {
                    Vec::new()
                },
                new_tokens: 0,
                bytes: Vec::new(),
                sampler: Sampler::new(p.seed, i),
                last: 0,
                finished: false,
            };
            let mut l = logits.squeeze(0)?.to_vec1::<f32>()?;
            let t = row.sampler.pick(&mut l, &row.seen, p);
            progress.new_tokens += 1;
            match self.accept(&mut row, t, max_pos) {
                Some(g) => {
                    progress.finished += 1;
                    on_done(i, g);
                }
                None => {
                    rows.push(row);
                    caches.push(c);
                }
            }
        }
        let cache = if caches.is_empty() {
            None
        } else {
            Some(KvCache::concat(caches, 0)?)
        };
        Ok((rows, cache))
    }

    /// The next token of every row, from `[rows, vocab]` logits.
    fn pick_all(
        &self,
        logits: &candle_core::Tensor,
        rows: &mut [Row],
    ) -> Result<Vec<u32>, BackboneError> {
        let p = self.params;
        if p.is_greedy() && p.repetition_penalty == 1.0 {
            // Only the indices leave the device.
            return Ok(logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
        }
        let all = logits.to_vec2::<f32>()?;
        Ok(rows
            .iter_mut()
            .zip(all)
            .map(|(row, mut l)| {
                if row.finished {
                    argmax(&l)
                } else {
                    row.sampler.pick(&mut l, &row.seen, p)
                }
            })
            .collect())
    }

    /// Takes token `t` into `row`; returns the finished generation if the row is done.
    fn accept(&self, row: &mut Row, t: u32, max_pos: usize) -> Option<Generation> {
        let p = self.params;
        row.new_tokens += 1;
        let reason = if self.tokenizer.is_eog(t) {
            Some(FinishReason::Eos)
        } else {
            let before = row.bytes.len();
            row.bytes.extend_from_slice(self.tokenizer.token_bytes(t));
            if let Some(cut) = find_stop(&row.bytes, before, &p.stop) {
                row.bytes.truncate(cut);
                Some(FinishReason::Stop)
            } else if row.new_tokens >= p.max_new_tokens
                || row.prompt_len + row.new_tokens >= max_pos
            {
                Some(FinishReason::Length)
            } else {
                None
            }
        };
        match reason {
            Some(r) => {
                row.finished = true;
                Some(finished(row.prompt_len, row.new_tokens, &row.bytes, r))
            }
            None => {
                row.last = t;
                if p.repetition_penalty != 1.0 {
                    row.seen.push(t);
                }
                None
            }
        }
    }
}

fn finished(prompt_tokens: usize, new_tokens: usize, bytes: &[u8], r: FinishReason) -> Generation {
    Generation {
        text: String::from_utf8_lossy(bytes).into_owned(),
        prompt_tokens,
        new_tokens,
        finish_reason: r,
    }
}

/// Where the earliest stop string that ends in the bytes appended since `before` starts.
fn find_stop(bytes: &[u8], before: usize, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter_map(|s| {
            let s = s.as_bytes();
            // Only matches ending in the new bytes are new.
            let from = before.saturating_sub(s.len() - 1);
            bytes[from..]
                .windows(s.len())
                .position(|w| w == s)
                .map(|i| from + i)
        })
        .min()
}

/// Length of the longest prefix all sequences share, leaving every sequence at least one
/// token of its own (its last token's logits are needed).
fn shared_prefix<'a>(mut seqs: impl Iterator<Item = &'a [u32]>) -> usize {
    let Some(first) = seqs.next() else {
        return 0;
    };
    let mut n = first.len().saturating_sub(1);
    for s in seqs {
        n = n.min(s.len().saturating_sub(1));
        n = first[..n].iter().zip(s).take_while(|(a, b)| a == b).count();
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_found_once_complete() {
        #[track_caller]
        fn check(text: &str, before: usize, stops: &[&str], expected: Option<usize>) {
            let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
            assert_eq!(
                find_stop(text.as_bytes(), before, &stops),
                expected,
                "{text:?}"
            );
        }
        check("a}b", 2, &["}"], None);
        check("a}b", 1, &["}"], Some(1));
        // A stop string split over two tokens is found when its last part arrives.
        check("ab\n\nUser", 3, &["\n\n"], Some(2));
        check("ab\n\nUser", 4, &["\n\n"], None);
        // The earliest of several.
        check("xy END STOP", 2, &["STOP", "END"], Some(3));
    }

    #[test]
    fn shared_prefixes_leave_a_token_each() {
        #[track_caller]
        fn check(seqs: &[&[u32]], expected: usize) {
            assert_eq!(shared_prefix(seqs.iter().copied()), expected);
        }
        check(&[&[1, 2, 3, 4], &[1, 2, 3, 5]], 3);
        check(&[&[1, 2, 3], &[1, 2, 3]], 2);
        check(&[&[1, 2, 3, 4], &[1, 2], &[1, 2, 9, 9]], 1);
        check(&[&[7, 2], &[1, 2]], 0);
        check(&[&[1, 2, 3]], 2);
        check(&[], 0);
    }
}
