//! Rank counting: the pessimistic rank of each target in one user's score row, by counting the
//! candidates that score at least as high as it — O(n_items) per target, no sorting of the row.
//!
//! Ranks are 1-based. A target's rank is `1 + #{other candidates c : score(c) >= score(target)}`,
//! so ties never count in the model's favour, and other targets are competitors like any item.

/// Above this many thresholds, [`count_at_least`] bins each score once (O(n·log T)) instead of
/// scanning the row once per threshold (O(n·T)); the scan vectorises well, so it wins for the
/// one-target-per-user case and a few targets.
const SCAN_MAX_THRESHOLDS: usize = 16;

/// What one user's ranking is about: the distinct targets, and the distinct items removed from
/// the ranking (never a target), both sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCase {
    pub targets: Vec<u32>,
    pub masked: Vec<u32>,
}

impl UserCase {
    /// Deduplicates `targets` (an item is relevant or not; repeats in the held-out part do not
    /// count twice) and builds the masked set: the distinct `known` items that are not targets
    /// (repeat consumption: an item seen before and held out again stays rankable).
    pub fn new(targets: &[u32], known: &[u32]) -> Self {
        let targets = sorted_distinct(targets);
        let masked = sorted_distinct(known)
            .into_iter()
            .filter(|i| targets.binary_search(i).is_err())
            .collect();
        Self { targets, masked }
    }
}

fn sorted_distinct(items: &[u32]) -> Vec<u32> {
    let mut v = items.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// For each threshold `t[i]`, how many of `scores` are `>= t[i]` (NaN scores count for none;
/// thresholds must not be NaN).
pub fn count_at_least(scores: &[f32], thresholds: &[f32]) -> Vec<usize> {
    if thresholds.len() <= SCAN_MAX_THRESHOLDS {
        count_by_scan(scores, thresholds)
    } else {
        count_by_bins(scores, thresholds)
    }
}

fn count_by_scan(scores: &[f32], thresholds: &[f32]) -> Vec<usize> {
    thresholds
        .iter()
        .map(|&t| scores.iter().map(|&s| usize::from(s >= t)).sum())
        .collect()
}

/// Sorts the thresholds, puts each score in the bin of "how many thresholds are <= it", and
/// reads each threshold's count as a suffix sum of the bins.
fn count_by_bins(scores: &[f32], thresholds: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..thresholds.len()).collect();
    order.sort_by(|&a, &b| thresholds[a].total_cmp(&thresholds[b]));
    let sorted: Vec<f32> = order.iter().map(|&i| thresholds[i]).collect();
    // bins[j] = number of scores s with exactly j sorted thresholds <= s
    let mut bins = vec![0usize; sorted.len() + 1];
    for &s in scores {
        bins[sorted.partition_point(|&t| t <= s)] += 1;
    }
    // s >= sorted[p] exactly when at least p + 1 thresholds are <= s
    let mut counts = vec![0usize; thresholds.len()];
    let mut above = 0;
    for p in (0..sorted.len()).rev() {
        above += bins[p + 1];
        counts[order[p]] = above;
    }
    counts
}

/// Pessimistic ranks (in the order of `targets`) under the full protocol: every item of `row`
/// is a candidate except `masked`.
///
/// Preconditions (met by [`UserCase`]): `targets` distinct, `masked` distinct and disjoint from
/// `targets`, every id `< row.len()`, no target score NaN.
pub fn compute_ranks(row: &[f32], targets: &[u32], masked: &[u32]) -> Vec<usize> {
    let t_scores: Vec<f32> = targets.iter().map(|&t| row[t as usize]).collect();
    let all = count_at_least(row, &t_scores);
    let m_scores: Vec<f32> = masked.iter().map(|&m| row[m as usize]).collect();
    let removed = count_at_least(&m_scores, &t_scores);
    // `all` counts the target itself (its score is >= itself), which is the `1 +` of the rank.
    all.iter().zip(&removed).map(|(a, r)| a - r).collect()
}

/// Pessimistic ranks (in the order of `targets`) under the sampled protocol: the candidates
/// are the targets and `negatives` only. Same preconditions as [`compute_ranks`], and
/// `negatives` disjoint from `targets`.
pub fn sampled_ranks(row: &[f32], targets: &[u32], negatives: &[u32]) -> Vec<usize> {
    let t_scores: Vec<f32> = targets.iter().map(|&t| row[t as usize]).collect();
    let candidates: Vec<f32> = targets
        .iter()
        .chain(negatives)
        .map(|&i| row[i as usize])
        .collect();
    count_at_least(&candidates, &t_scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[track_caller]
    fn check(row: &[f32], targets: &[u32], known: &[u32], expected: &[usize]) {
        let case = UserCase::new(targets, known);
        let ranks = compute_ranks(row, &case.targets, &case.masked);
        assert_eq!(
            ranks, expected,
            "row {row:?} targets {targets:?} known {known:?}"
        );
        // The binned counter must agree with the scan on the same case.
        let t: Vec<f32> = case.targets.iter().map(|&i| row[i as usize]).collect();
        assert_eq!(count_by_bins(row, &t), count_by_scan(row, &t));
    }

    #[test]
    fn ranks_by_hand() {
        let row = [0.9, 0.8, 0.5, 0.7, 0.5, 0.1];
        // item 3 (0.7): only items 0 and 1 score higher → rank 3
        check(&row, &[3], &[], &[3]);
        // best item → rank 1; worst item → rank 6
        check(&row, &[0], &[], &[1]);
        check(&row, &[5], &[], &[6]);
        // masking items 0 and 1 removes both competitors above item 3 → rank 1
        check(&row, &[3], &[0, 1], &[1]);
    }

    #[test]
    fn ties_count_against_the_target() {
        let row = [0.9, 0.8, 0.5, 0.7, 0.5, 0.1];
        // item 2 (0.5) ties with item 4: 0, 1, 3 above + 4 tied → rank 5 (not 4)
        check(&row, &[2], &[], &[5]);
        check(&row, &[4], &[], &[5]);
        // a constant model ranks every target last
        check(&[1.0; 4], &[2], &[], &[4]);
        check(&[1.0; 4], &[2], &[0], &[3]);
    }

    #[test]
    fn several_targets_compete_with_each_other() {
        let row = [0.9, 0.8, 0.5, 0.7, 0.5, 0.1];
        // targets 2 and 4 tie: each has 0, 1, 3 above and the other target tied → 5 and 5
        check(&row, &[2, 4], &[], &[5, 5]);
        // targets 0 and 3: 0 is first; 3 has 0 and 1 above → 1 and 3
        check(&row, &[0, 3], &[], &[1, 3]);
        // order of the output follows the (sorted, deduplicated) targets
        check(&row, &[3, 0, 3], &[], &[1, 3]);
    }

    #[test]
    fn masking_never_removes_targets() {
        let row = [0.9, 0.8, 0.5, 0.7, 0.5, 0.1];
        // item 0 is known and also a target (repeat consumption): it stays, ranked 1;
        // item 1 is masked, so target 3 has only target 0 above it → 2
        check(&row, &[0, 3], &[0, 1, 1], &[1, 2]);
        let case = UserCase::new(&[3, 0], &[1, 0, 1, 5]);
        assert_eq!(
            case,
            UserCase {
                targets: vec![0, 3],
                masked: vec![1, 5]
            }
        );
    }

    #[test]
    fn sampled_candidates_are_targets_and_negatives() {
        let row = [0.9, 0.8, 0.5, 0.7, 0.5, 0.1];
        // target 3 (0.7) among negatives 1 (0.8), 4, 5 → only item 1 above → 2
        assert_eq!(sampled_ranks(&row, &[3], &[1, 4, 5]), vec![2]);
        // target 2 (0.5) ties with negative 4 → 2
        assert_eq!(sampled_ranks(&row, &[2], &[4, 5]), vec![2]);
        // two targets 0 and 3 with negatives 4 and 5: 0 first, 3 second
        assert_eq!(sampled_ranks(&row, &[0, 3], &[4, 5]), vec![1, 2]);
    }

    /// Against the definition, on random rows with many ties and many targets (both counters).
    #[test]
    fn agrees_with_the_definition_on_random_rows() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for round in 0..200 {
            let n = rng.random_range(1..80usize);
            // few distinct values → many ties
            let row: Vec<f32> = (0..n).map(|_| rng.random_range(0..6) as f32).collect();
            let mut pick = |max: usize| -> Vec<u32> {
                (0..rng.random_range(0..=max))
                    .map(|_| rng.random_range(0..n as u32))
                    .collect()
            };
            let targets = pick(if round % 2 == 0 { 3 } else { 40 });
            let known = pick(30);
            let case = UserCase::new(&targets, &known);
            let got = compute_ranks(&row, &case.targets, &case.masked);
            let want: Vec<usize> = case
                .targets
                .iter()
                .map(|&t| {
                    1 + (0..n as u32)
                        .filter(|&c| c != t && !case.masked.contains(&c))
                        .filter(|&c| row[c as usize] >= row[t as usize])
                        .count()
                })
                .collect();
            assert_eq!(got, want, "row {row:?} case {case:?}");
        }
    }
}
