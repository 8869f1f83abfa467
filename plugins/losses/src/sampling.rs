//! The negative-sampling keys every sampled loss shares (`negatives`, `sampler`, `alpha`, `exclude`): their
//! checks and their translation into the [`SamplerSpec`] a model's sampler follows.

use crate::bpr::MAX_NEGATIVES;
use pulse_api::config::{check_range, ConfigError};
use pulse_api::{Exclude, SamplerKind, SamplerSpec};

/// Range checks for the shared keys.
pub(crate) fn check(errors: &mut Vec<ConfigError>, negatives: usize, alpha: f64) {
    check_range(errors, "negatives", negatives, 1, MAX_NEGATIVES);
    if !(0.0..=10.0).contains(&alpha) {
        errors.push(ConfigError::out_of_range(
            "alpha",
            "between 0 and 10",
            alpha,
        ));
    }
}

pub(crate) fn spec(kind: SamplerKind, alpha: f64, exclude: Exclude) -> SamplerSpec {
    SamplerSpec {
        kind,
        alpha,
        exclude,
    }
}
