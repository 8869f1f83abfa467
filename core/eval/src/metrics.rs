//! Ranking metrics of one user from the pessimistic ranks of that user's distinct targets.
//!
//! With `T` the targets, `hits` those ranked `<= K`:
//! HR@K = 1 if any hit; Recall@K = hits / |T|; Precision@K = hits / K;
//! NDCG@K = Σ_hits 1/log2(rank + 1) / Σ_{i=1..min(|T|, K)} 1/log2(i + 1);
//! MRR@K = 1 / (best rank) if it is `<= K`, else 0. Values are not rounded.

use pulse_api::sections::{MetricName, MetricSpec};

/// The value of `spec` for one user whose targets were ranked at `ranks` (one rank per distinct
/// target; at least one).
pub fn metric_value(spec: MetricSpec, ranks: &[usize]) -> f64 {
    let k = spec.k;
    let hits = ranks.iter().filter(|&&r| r <= k).count();
    match spec.name {
        MetricName::Hr => f64::from(u8::from(hits > 0)),
        MetricName::Recall => hits as f64 / ranks.len() as f64,
        MetricName::Precision => hits as f64 / k as f64,
        MetricName::Ndcg => {
            let dcg: f64 = ranks
                .iter()
                .filter(|&&r| r <= k)
                .map(|&r| discount(r))
                .sum();
            let ideal: f64 = (1..=ranks.len().min(k)).map(discount).sum();
            dcg / ideal
        }
        MetricName::Mrr => match ranks.iter().min() {
            Some(&best) if best <= k => 1.0 / best as f64,
            _ => 0.0,
        },
    }
}

/// `1 / log2(rank + 1)`.
fn discount(rank: usize) -> f64 {
    1.0 / ((rank + 1) as f64).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(metric: &str, ranks: &[usize], expected: f64) {
        let spec = MetricSpec::parse(metric).unwrap();
        let got = metric_value(spec, ranks);
        assert!(
            (got - expected).abs() < 1e-9,
            "{metric} of {ranks:?}: got {got}, want {expected}"
        );
    }

    #[test]
    fn one_target() {
        // rank 1: everything is perfect; precision@10 = 1 hit / 10
        for m in ["hr@10", "ndcg@10", "mrr@10", "recall@10"] {
            check(m, &[1], 1.0);
        }
        check("precision@10", &[1], 0.1);
        // rank 3: ndcg = 1 / log2(4) = 0.5; mrr = 1/3
        check("ndcg@10", &[3], 0.5);
        check("mrr@10", &[3], 1.0 / 3.0);
        check("hr@3", &[3], 1.0);
        // rank 2: ndcg = 1 / log2(3) = 0.6309297535714575
        check("ndcg@5", &[2], 0.630_929_753_571_457_5);
        // rank just past the cut-off: nothing counts
        for m in ["hr@2", "ndcg@2", "mrr@2", "recall@2", "precision@2"] {
            check(m, &[3], 0.0);
        }
    }

    #[test]
    fn several_targets() {
        // ranks 3 and 7 at K = 5: one hit
        check("hr@5", &[3, 7], 1.0);
        check("recall@5", &[3, 7], 0.5); // 1 / 2
        check("precision@5", &[3, 7], 0.2); // 1 / 5
        check("mrr@5", &[3, 7], 1.0 / 3.0);
        // DCG = 1/log2(4) = 0.5; IDCG = 1 + 1/log2(3) = 1.6309297535714575
        // → 0.5 / 1.6309297535714575 = 0.3065735963827292
        check("ndcg@5", &[3, 7], 0.306_573_596_382_729_2);
        // ranks 2, 1, 4 at K = 2: hits are ranks 1 and 2, the ideal list → ndcg 1;
        // recall 2/3; precision 2/2
        check("ndcg@2", &[2, 1, 4], 1.0);
        check("recall@2", &[2, 1, 4], 2.0 / 3.0);
        check("precision@2", &[2, 1, 4], 1.0);
        // tied targets both at rank 2 (pessimistic): DCG = 2/log2(3) = 1.2618595071429148,
        // IDCG = 1.6309297535714575 → 0.7737056144690833; MRR = 1/2
        check("ndcg@10", &[2, 2], 0.773_705_614_469_083_3);
        check("mrr@10", &[2, 2], 0.5);
        // no hit at K = 1 although the best rank is 2
        check("mrr@1", &[2, 3], 0.0);
        check("hr@1", &[2, 3], 0.0);
        // more targets than K: IDCG stops at K. ranks 1..3 of 4 targets at K = 3 → ndcg 1
        check("ndcg@3", &[1, 2, 3, 9], 1.0);
        check("recall@3", &[1, 2, 3, 9], 0.75);
    }
}
