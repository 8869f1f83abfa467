//! Built-in recommenders of pulse: `pop` (item popularity), `bpr-mf` (matrix factorisation),
//! `itemknn` (item-item cosine neighbours), `lightgcn` (graph-propagated embeddings),
//! `sasrec` (self-attentive sequential recommendation), `gru4rec` (a GRU over the history) and
//! `bert4rec` (bidirectional self-attention trained by cloze masking). Each is a typed config (the
//! factory input, with defaults and range checks) plus a [`pulse_api::Recommender`]; the core
//! runs their training loop. Trained models take their loss as a plugin and produce either full
//! logits or sampled scores for it. Everything runs on the CPU through candle, with every
//! random draw (initial weights, shuffling, dropout, negatives) from `pulse_api::rng`, so a
//! seed reproduces a run bit for bit.

pub mod bert4rec;
pub mod bpr_mf;
mod common;
pub mod gru4rec;
pub mod itemknn;
pub mod lightgcn;
mod ops;
pub mod pop;
pub mod sasrec;
#[cfg(test)]
mod testing;
pub mod text;
mod transformer;

pub use bert4rec::Bert4RecConfig;
pub use bpr_mf::BprMfConfig;
pub use gru4rec::Gru4RecConfig;
pub use itemknn::ItemKnnConfig;
pub use lightgcn::LightGcnConfig;
pub use pop::PopConfig;
pub use sasrec::SasRecConfig;
pub use text::{PulseConfig, SlmEmbConfig, TextSeqConfig};

/// Registers `pop`, `bpr-mf`, `sasrec`, `itemknn`, `lightgcn`, `gru4rec` and `bert4rec`.
pub fn register(r: &mut pulse_api::Registrar) {
    r.recommender::<PopConfig>(pop::build);
    r.recommender::<BprMfConfig>(bpr_mf::build);
    r.recommender::<SasRecConfig>(sasrec::build);
    r.recommender::<ItemKnnConfig>(itemknn::build);
    r.recommender::<LightGcnConfig>(lightgcn::build);
    r.recommender::<Gru4RecConfig>(gru4rec::build);
    r.recommender::<Bert4RecConfig>(bert4rec::build);
    r.recommender::<TextSeqConfig>(|c, l| text::build(c.settings(), l));
    r.recommender::<SlmEmbConfig>(|c, l| text::build(c.settings(), l));
    r.recommender::<PulseConfig>(|c, l| text::build(c.settings(), l));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestLosses;
    use pulse_api::plugin::Factory;
    use pulse_api::{Family, ModelKind, Registrar};
    use serde_json::json;

    #[track_caller]
    fn check(section: serde_json::Value, expected: Result<ModelKind, &str>) {
        let mut r = Registrar::new("built-in");
        register(&mut r);
        let entries = r.into_entries();
        let ty = section["type"].as_str().unwrap();
        let entry = entries.iter().find(|e| e.info.type_name == ty).unwrap();
        assert_eq!(entry.info.family, Family::Recommender);
        let Factory::Recommender(build) = &entry.factory else {
            panic!("{ty} is not registered as a recommender")
        };
        match (build(&section, &TestLosses), expected) {
            (Ok(m), Ok(kind)) => {
                assert_eq!(m.kind(), kind);
                assert!((entry.check)(&section).is_ok());
            }
            (Err(errs), Err(key)) => {
                assert_eq!(errs[0].dotted(), key, "{errs:?}");
            }
            (Ok(_), Err(key)) => panic!("{ty}: expected an error at {key}"),
            (Err(errs), Ok(_)) => panic!("{ty}: {errs:?}"),
        }
    }

    #[test]
    fn registers_all_three() {
        let mut r = Registrar::new("built-in");
        register(&mut r);
        let names: Vec<String> = r
            .into_entries()
            .into_iter()
            .map(|e| e.info.type_name)
            .collect();
        assert_eq!(
            names,
            [
                "pop", "bpr-mf", "sasrec", "itemknn", "lightgcn", "gru4rec", "bert4rec",
                "text-seq", "slm-emb", "pulse"
            ]
        );

        check(json!({"type": "pop"}), Ok(ModelKind::General));
        check(json!({"type": "bpr-mf"}), Ok(ModelKind::General));
        check(json!({"type": "sasrec"}), Ok(ModelKind::Sequential));
        check(
            json!({"type": "sasrec", "loss": {"type": "bpr"}}),
            Ok(ModelKind::Sequential),
        );
        check(
            json!({"type": "bpr-mf", "loss": {"type": "ce"}}),
            Ok(ModelKind::General),
        );
        check(json!({"type": "pop", "size": 3}), Err("size"));
        check(json!({"type": "gru4rec"}), Ok(ModelKind::Sequential));
        check(
            json!({"type": "gru4rec", "loss": {"type": "bpr"}}),
            Ok(ModelKind::Sequential),
        );
        check(json!({"type": "gru4rec", "layers": 0}), Err("layers"));
        check(json!({"type": "bert4rec"}), Ok(ModelKind::Sequential));
        check(
            json!({"type": "bert4rec", "loss": {"type": "bpr"}}),
            Ok(ModelKind::Sequential),
        );
        check(
            json!({"type": "bert4rec", "mask_ratio": 0.0}),
            Err("mask_ratio"),
        );
        check(json!({"type": "itemknn", "k": 20}), Ok(ModelKind::General));
        check(json!({"type": "itemknn", "shrink": -1.0}), Err("shrink"));
        check(
            json!({"type": "lightgcn", "loss": {"type": "ce"}}),
            Ok(ModelKind::General),
        );
        check(
            json!({"type": "lightgcn", "loss": {"type": "zero-negatives"}}),
            Err("loss.type"),
        );
        check(
            json!({"type": "sasrec", "hiden_size": 3}),
            Err("hiden_size"),
        );
        check(
            json!({"type": "bpr-mf", "loss": {"type": "zero-negatives"}}),
            Err("loss.type"),
        );
    }
}
