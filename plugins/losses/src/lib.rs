//! `pulse-losses`: the built-in training objectives (`ce`, `bpr`, `bce`, `sampled-softmax`,
//! `infonce`) as loss plugins.
//!
//! Every loss is written with differentiable candle ops only, so a model's optimiser can call
//! `backward()` on the returned scalar. Each returns the mean over batch rows (see the module of
//! each loss for its exact normalisation). Shapes are checked up front so a model that hands the
//! wrong tensors gets a message naming the loss and the shapes, not a broadcasting error.

// Tests may panic on failure; library code may not (see the workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod bce;
mod bpr;
mod ce;
mod common;
mod fused_ce;
mod infonce;
mod sampled_softmax;
mod sampling;
mod softmax;

pub use bce::{Bce, BceConfig};
pub use bpr::{Bpr, BprConfig};
pub use ce::{CrossEntropy, CrossEntropyConfig};
pub use infonce::{InfoNce, InfoNceConfig};
pub use sampled_softmax::{SampledSoftmax, SampledSoftmaxConfig};

use pulse_api::Registrar;
use std::sync::Arc;

/// Adds every loss of this crate to `r`.
pub fn register(r: &mut Registrar) {
    r.loss::<CrossEntropyConfig>(|c| Ok(Arc::new(CrossEntropy::new(c))));
    r.loss::<BprConfig>(|c| Ok(Arc::new(Bpr::new(c))));
    r.loss::<BceConfig>(|c| Ok(Arc::new(Bce::new(c))));
    r.loss::<SampledSoftmaxConfig>(|c| Ok(Arc::new(SampledSoftmax::new(c))));
    r.loss::<InfoNceConfig>(|c| Ok(Arc::new(InfoNce::new(c))));
}

#[cfg(test)]
mod tests {
    use super::*;
    use pulse_api::plugin::Factory;
    use pulse_api::{Family, LossInput};

    #[track_caller]
    fn check(section: serde_json::Value, expected: Result<LossInput, &str>) {
        let mut r = Registrar::new("built-in");
        register(&mut r);
        let ty = section["type"].as_str().unwrap().to_string();
        let entry = r
            .into_entries()
            .into_iter()
            .find(|e| e.info.type_name == ty)
            .unwrap_or_else(|| panic!("no loss '{ty}' registered"));
        assert_eq!(entry.info.family, Family::Loss);
        let Factory::Loss(build) = &entry.factory else {
            panic!("'{ty}' is not registered as a loss")
        };
        match (build(&section), expected) {
            (Ok(loss), Ok(want)) => {
                assert_eq!(loss.type_name(), ty);
                assert_eq!(loss.input(), want);
            }
            (Err(errs), Err(want)) => {
                let text = errs.iter().map(|e| e.to_string()).collect::<Vec<_>>();
                assert!(text.iter().any(|t| t.contains(want)), "{text:?}");
            }
            (Ok(_), Err(want)) => panic!("built, but expected an error containing '{want}'"),
            (Err(errs), Ok(_)) => panic!("failed to build: {errs:?}"),
        }
    }

    #[test]
    fn registered_losses_build_from_sections() {
        use serde_json::json;
        check(json!({"type": "ce"}), Ok(LossInput::FullLogits));
        check(
            json!({"type": "ce", "label_smoothing": 0.1}),
            Ok(LossInput::FullLogits),
        );
        check(
            json!({"type": "ce", "label_smoothing": 1.0}),
            Err("label_smoothing: value 1 is out of range"),
        );
        check(
            json!({"type": "ce", "smoothing": 0.1}),
            Err("unknown field 'smoothing'"),
        );
        check(
            json!({"type": "bpr"}),
            Ok(LossInput::Sampled { negatives: 1 }),
        );
        check(
            json!({"type": "bpr", "negatives": 4}),
            Ok(LossInput::Sampled { negatives: 4 }),
        );
        check(
            json!({"type": "bpr", "negatives": 0}),
            Err("negatives: value 0 is out of range"),
        );
        check(
            json!({"type": "bce", "negatives": 8}),
            Ok(LossInput::Sampled { negatives: 8 }),
        );
        check(
            json!({"type": "bce", "negatives": -1}),
            Err("negatives: invalid value integer `-1`"),
        );
        check(
            json!({"type": "bpr", "sampler": "popularity", "alpha": 0.75}),
            Ok(LossInput::Sampled { negatives: 1 }),
        );
        check(
            json!({"type": "bce", "sampler": "zipf"}),
            Err("invalid value 'zipf'"),
        );
        check(
            json!({"type": "sampled-softmax"}),
            Ok(LossInput::Sampled { negatives: 100 }),
        );
        check(
            json!({"type": "sampled-softmax", "alpha": -1.0}),
            Err("alpha: value -1 is out of range"),
        );
        check(
            json!({"type": "infonce"}),
            Ok(LossInput::Sampled { negatives: 10 }),
        );
        check(
            json!({"type": "infonce", "temperature": 0.0}),
            Err("temperature: value 0 is out of range"),
        );
    }
}
