//! SentencePiece BPE as llama.cpp runs it for `tokenizer.ggml.model = "llama"` (Gemma 3): spaces
//! become `▁`, the text starts as one symbol per character, and the adjacent pair whose
//! concatenation is the highest-scoring vocabulary piece is merged until no pair is a piece;
//! characters that are no piece fall back to `<0xXX>` byte tokens. Control, user-defined and
//! unknown tokens written in the text are cut out first, longest first.

use super::TokenKind;
use crate::BackboneError;
use aho_corasick::{AhoCorasick, MatchKind};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

const SPACE: &str = "\u{2581}";

pub(super) struct Spm {
    piece_to_id: HashMap<String, u32>,
    scores: Vec<f32>,
    byte_ids: [Option<u32>; 256],
    unk: Option<u32>,
    add_space_prefix: bool,
    specials: Option<(AhoCorasick, Vec<u32>)>,
}

impl Spm {
    pub(super) fn new(
        texts: &[String],
        kinds: &[TokenKind],
        scores: Vec<f32>,
        unk: Option<u32>,
        add_space_prefix: bool,
    ) -> Result<Self, BackboneError> {
        if scores.len() != texts.len() {
            return Err(BackboneError::Metadata {
                key: "tokenizer.ggml.scores".into(),
                reason: format!("{} scores for {} tokens", scores.len(), texts.len()),
            });
        }
        let mut piece_to_id = HashMap::with_capacity(texts.len());
        let mut byte_ids = [None; 256];
        let mut special_texts = Vec::new();
        let mut special_ids = Vec::new();
        for (i, (t, k)) in texts.iter().zip(kinds).enumerate() {
            let id = i as u32;
            // The first of duplicate pieces wins, as in llama.cpp's map.
            piece_to_id.entry(t.clone()).or_insert(id);
            match k {
                TokenKind::Byte => {
                    if let Some(b) = parse_byte_piece(t) {
                        byte_ids[b as usize] = Some(id);
                    }
                }
                TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
                    if !t.is_empty() =>
                {
                    special_texts.push(t.clone());
                    special_ids.push(id);
                }
                _ => {}
            }
        }
        let specials = if special_texts.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&special_texts)
                .map_err(|e| BackboneError::Tokenizer(e.to_string()))?;
            Some((ac, special_ids))
        };
        Ok(Self {
            piece_to_id,
            scores,
            byte_ids,
            unk,
            add_space_prefix,
            specials,
        })
    }

    pub(super) fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut prev_special = true;
        let raw = |s: &str, prev_special: bool, out: &mut Vec<u32>| {
            let mut t = String::with_capacity(s.len() + 3);
            if self.add_space_prefix && prev_special {
                t.push(' ');
            }
            t.push_str(s);
            self.encode_fragment(&t.replace(' ', SPACE), out);
        };
        let mut at = 0;
        if let Some((ac, ids)) = &self.specials {
            for m in ac.find_iter(text) {
                if m.start() > at {
                    raw(&text[at..m.start()], prev_special, &mut out);
                }
                out.push(ids[m.pattern().as_usize()]);
                prev_special = true;
                at = m.end();
            }
        }
        if at < text.len() {
            raw(&text[at..], prev_special, &mut out);
        }
        out
    }

    fn encode_fragment(&self, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (start, c) in text.char_indices() {
            let i = symbols.len() as isize;
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i - 1,
                next: i + 1,
            });
        }
        let Some(last) = symbols.last_mut() else {
            return;
        };
        last.next = -1;

        let mut queue = BinaryHeap::new();
        let mut rev_merge: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut try_add =
            |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: isize, right: isize| {
                if left < 0 || right < 0 {
                    return;
                }
                let (l, r) = (&symbols[left as usize], &symbols[right as usize]);
                let piece = &text[l.start..l.start + l.len + r.len];
                if let Some(&id) = self.piece_to_id.get(piece) {
                    queue.push(Bigram {
                        score: self.scores[id as usize],
                        left: left as usize,
                        right: right as usize,
                        size: piece.len(),
                    });
                    rev_merge.insert(piece, (left as usize, right as usize));
                }
            };
        for i in 1..symbols.len() as isize {
            try_add(&symbols, &mut queue, i - 1, i);
        }
        while let Some(b) = queue.pop() {
            let (ln, rn) = (symbols[b.left].len, symbols[b.right].len);
            // Stale: one side was merged into something else since this pair was queued.
            if ln == 0 || rn == 0 || ln + rn != b.size {
                continue;
            }
            symbols[b.left].len += rn;
            symbols[b.right].len = 0;
            let next = symbols[b.right].next;
            symbols[b.left].next = next;
            if next >= 0 {
                symbols[next as usize].prev = b.left as isize;
            }
            let prev = symbols[b.left].prev;
            try_add(&symbols, &mut queue, prev, b.left as isize);
            try_add(&symbols, &mut queue, b.left as isize, next);
        }
        let mut i = 0isize;
        while i >= 0 {
            self.resegment(text, &symbols, &rev_merge, i as usize, out);
            i = symbols[i as usize].next;
        }
    }

    fn resegment(
        &self,
        text: &str,
        symbols: &[Symbol],
        rev_merge: &HashMap<&str, (usize, usize)>,
        i: usize,
        out: &mut Vec<u32>,
    ) {
        let s = &symbols[i];
        let piece = &text[s.start..s.start + s.len];
        if let Some(&id) = self.piece_to_id.get(piece) {
            out.push(id);
            return;
        }
        if let Some(&(l, r)) = rev_merge.get(piece) {
            self.resegment(text, symbols, rev_merge, l, out);
            self.resegment(text, symbols, rev_merge, r, out);
            return;
        }
        for b in piece.bytes() {
            if let Some(id) = self.byte_ids[b as usize].or(self.unk) {
                out.push(id);
            }
        }
    }
}

struct Symbol {
    start: usize,
    len: usize,
    prev: isize,
    next: isize,
}

/// A candidate merge; the heap pops the highest score first, then the leftmost pair.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// `<0x0A>` → `0x0A`.
fn parse_byte_piece(t: &str) -> Option<u8> {
    let hex = t.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// The bytes each token adds to text: `▁` is a space, byte tokens are their byte, control and
/// unknown tokens are nothing.
pub(super) fn token_bytes(texts: &[String], kinds: &[TokenKind]) -> Vec<Vec<u8>> {
    texts
        .iter()
        .zip(kinds)
        .map(|(t, k)| match k {
            TokenKind::Control | TokenKind::Unknown => Vec::new(),
            TokenKind::Byte => parse_byte_piece(t).map(|b| vec![b]).unwrap_or_default(),
            TokenKind::UserDefined => t.as_bytes().to_vec(),
            TokenKind::Normal | TokenKind::Unused => t.replace(SPACE, " ").into_bytes(),
        })
        .collect()
}
