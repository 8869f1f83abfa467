//! The texts of the thought space: a behaviour (`[CONTEXT] History: … [CHOSEN_ITEM] …`) and its
//! rationale per usable rationale row, the item texts the item table is encoded from, the
//! held-out split (by user) and the token sequences. A behaviour longer than the token limit
//! loses its oldest history entries rather than its end, so the chosen item is always seen.

use crate::embed::item_text;
use crate::json::ParseStatus;
use crate::rationale::RationaleRow;
use crate::StageError;
use pulse_api::SplitData;
use pulse_backbones::bert::{BertError, TextTokenizer};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// One (behaviour, rationale) training pair.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pair {
    /// `RAWUSER:POSITION`, the rationale table's key.
    pub key: String,
    pub user: String,
    /// The last history entries shown (oldest first), at most `history` of them.
    pub history: Vec<String>,
    /// The chosen item's text fields, joined.
    pub item_text: String,
    pub rationale: String,
}

/// The history separator of a rationale row.
const HISTORY_SEP: &str = " | ";

/// The behaviour text of `history` and the chosen item's text.
pub(crate) fn behaviour_text(history: &[String], item_text: &str) -> String {
    if history.is_empty() {
        format!("[CONTEXT] History: [CHOSEN_ITEM] {item_text}")
    } else {
        format!(
            "[CONTEXT] History: {} [CHOSEN_ITEM] {item_text}",
            history.join(HISTORY_SEP)
        )
    }
}

/// The text an item is encoded from for the item table: the behaviour side's item part.
pub(crate) fn item_query_text(data: &SplitData, item: u32, fields: &[String]) -> String {
    format!("[CHOSEN_ITEM] {}", item_text(data, item, fields))
}

/// Every item text field of the data set, in its order.
pub(crate) fn item_fields(data: &SplitData) -> Vec<String> {
    data.item_text.iter().map(|(f, _)| f.clone()).collect()
}

/// Whether a row takes part: it has a rationale.
pub(crate) fn usable(row: &RationaleRow) -> bool {
    row.parse != ParseStatus::Failed && !row.rationale.trim().is_empty()
}

/// The pairs of the usable rows, in row order; the last `history` entries of each row's
/// history are kept. Fails on a chosen item the data set does not have (rows of another data
/// set).
pub(crate) fn pairs(
    data: &SplitData,
    rows: &[RationaleRow],
    history: usize,
) -> Result<Vec<Pair>, StageError> {
    let dense: HashMap<&str, u32> = data
        .item_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as u32))
        .collect();
    let fields = item_fields(data);
    let mut out = Vec::new();
    for row in rows.iter().filter(|r| usable(r)) {
        let Some(&item) = dense.get(row.item.as_str()) else {
            return Err(StageError::Invalid(format!(
                "thought space: rationale row of user {} (position {}) chose item '{}', which \
                 data set '{}' does not have; were the rationales made for another data set?",
                row.user, row.position, row.item, data.dataset
            )));
        };
        let all: Vec<&str> = if row.history.is_empty() {
            Vec::new()
        } else {
            row.history.split(HISTORY_SEP).collect()
        };
        let kept = &all[all.len().saturating_sub(history)..];
        out.push(Pair {
            key: format!("{}:{}", row.user, row.position),
            user: row.user.clone(),
            history: kept.iter().map(|s| s.to_string()).collect(),
            item_text: item_text(data, item, &fields),
            rationale: row.rationale.clone(),
        });
    }
    Ok(out)
}

/// SHA-256 over what decides the pairs' texts (key, history, chosen item, rationale), so new
/// or changed rows give a new stage key.
pub(crate) fn content_hash(pairs: &[Pair]) -> String {
    let mut h = Sha256::new();
    for p in pairs {
        for part in [
            &p.key,
            &p.history.join(HISTORY_SEP),
            &p.item_text,
            &p.rationale,
        ] {
            h.update(part.as_bytes());
            h.update(b"\0");
        }
    }
    hex::encode(h.finalize())
}

/// Indices of the training and the held-out pairs. Users are drawn (seeded) into the held-out
/// part until it has `fraction` of the pairs (at least 2), so no user straddles the two.
pub(crate) fn split(
    pairs: &[Pair],
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), StageError> {
    let mut users: Vec<&str> = Vec::new();
    let mut seen = HashSet::new();
    for p in pairs {
        if seen.insert(p.user.as_str()) {
            users.push(&p.user);
        }
    }
    users.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let want = ((pairs.len() as f64 * fraction).ceil() as usize).max(2);
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for p in pairs {
        *per_user.entry(&p.user).or_default() += 1;
    }
    let mut held_users = HashSet::new();
    let mut held = 0;
    for u in users {
        if held >= want {
            break;
        }
        held += per_user[u];
        held_users.insert(u);
    }
    let (mut train, mut held_out) = (Vec::new(), Vec::new());
    for (i, p) in pairs.iter().enumerate() {
        if held_users.contains(p.user.as_str()) {
            held_out.push(i);
        } else {
            train.push(i);
        }
    }
    if held_out.len() < 2 || train.len() < 2 {
        return Err(StageError::Invalid(format!(
            "thought space: {} usable rationale pairs give {} to train on and {} held out; \
             both need at least 2 (generate rationales for more users)",
            pairs.len(),
            train.len(),
            held_out.len()
        )));
    }
    Ok((train, held_out))
}

/// Token ids of each pair's behaviour text within `max_tokens` (special tokens included): a
/// text the tokenizer had to cut is rebuilt without its oldest history entry until it fits or
/// has no history left. `tok` must cut at `max_tokens`.
pub(crate) fn behaviour_tokens(
    tok: &TextTokenizer,
    pairs: &[Pair],
    max_tokens: usize,
) -> Result<Vec<Vec<u32>>, BertError> {
    let full: Vec<String> = pairs
        .iter()
        .map(|p| behaviour_text(&p.history, &p.item_text))
        .collect();
    let refs: Vec<&str> = full.iter().map(String::as_str).collect();
    let mut ids = tok.encode(&refs)?;
    for (p, out) in pairs.iter().zip(ids.iter_mut()) {
        // A sequence at the limit may have been cut (or fit exactly: then one entry too many
        // goes, which costs little).
        let mut start = 0;
        while out.len() >= max_tokens && start < p.history.len() {
            start += 1;
            let text = behaviour_text(&p.history[start..], &p.item_text);
            // invariant: one text in, one sequence out.
            *out = tok.encode(&[text.as_str()])?.pop().unwrap_or_default();
        }
    }
    Ok(ids)
}

/// Token ids of `texts`, cut at the tokenizer's limit.
pub(crate) fn tokens(tok: &TextTokenizer, texts: &[String]) -> Result<Vec<Vec<u32>>, BertError> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    tok.encode(&refs)
}
