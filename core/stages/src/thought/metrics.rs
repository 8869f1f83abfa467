//! Held-out retrieval in the thought space: each held-out behaviour is scored against every
//! held-out rationale, and what counts is where its own rationale ranks. Ties count against:
//! the rank is one plus the number of other rationales scoring at least as high as its own,
//! so a space that maps everything to one point scores as badly as it should.

use serde::{Deserialize, Serialize};

/// Recall@1, Recall@10 and MRR of the own rationale, means over behaviours.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Retrieval {
    pub recall_at_1: f64,
    pub recall_at_10: f64,
    pub mrr: f64,
}

/// The metrics of a square similarity matrix given by rows, where row `i` is behaviour `i` and
/// column `i` its own rationale. A NaN score counts against, as a tie does; an empty matrix
/// scores 0.
pub fn retrieval(sim: &[Vec<f32>]) -> Retrieval {
    let n = sim.len();
    if n == 0 {
        return Retrieval::default();
    }
    let mut out = Retrieval::default();
    for (i, row) in sim.iter().enumerate() {
        let rank = match row.get(i) {
            Some(&own) if !own.is_nan() => {
                1 + row
                    .iter()
                    .enumerate()
                    .filter(|&(j, &s)| j != i && (s >= own || s.is_nan()))
                    .count()
            }
            _ => n.max(row.len()),
        };
        out.recall_at_1 += f64::from(u8::from(rank <= 1));
        out.recall_at_10 += f64::from(u8::from(rank <= 10));
        out.mrr += 1.0 / rank as f64;
    }
    let n = n as f64;
    Retrieval {
        recall_at_1: out.recall_at_1 / n,
        recall_at_10: out.recall_at_10 / n,
        mrr: out.mrr / n,
    }
}
