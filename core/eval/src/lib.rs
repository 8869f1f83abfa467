//! `pulse-eval`: ranking evaluation of a trained [`pulse_api::Recommender`] on the validation or
//! test part of a split, under the full or the sampled protocol.
//!
//! **Users.** Every user with at least one target in the phase is evaluated
//! ([`pulse_api::SplitData::targets`]); targets are the phase's *distinct* items. Users are
//! scored in batches of `batch_users` through [`pulse_api::Recommender::score`]; a wrong-sized
//! score table or a NaN score is an error.
//!
//! **Candidates.** `full`: every item, minus the masked ones. `sampled`: the user's targets plus
//! `negatives` distinct sampled items that are neither targets nor (when masking) known items
//! (uniform or popularity-proportional, seeded; see [`sampling`]). Other targets are candidates
//! in both protocols — they compete with each other like any item, which keeps NDCG <= 1.
//!
//! **Masking.** [`Mask::Known`](pulse_api::sections::Mask) removes the user's known items — the
//! phase's history ([`pulse_api::SplitData::history`]: training items for `valid`, training and
//! validation items for `test`) — from the candidates, *except items that are themselves
//! targets* (with repeat consumption an item can be known and held out again; it stays
//! rankable). `Mask::None` removes nothing; `Mask::ByKind` (RecBole's behaviour) is `Known` for general
//! models and `None` for sequential ones, resolved from [`pulse_api::Recommender::kind`].
//!
//! **Ties.** Ties never count in the model's favour: a target's rank is
//! `1 + #{other candidates whose score >= the target's score}` (pessimistic). A constant model
//! therefore ranks every target last, never first.
//!
//! **Metrics** (per user, then the plain mean over evaluated users, unrounded) are defined in
//! [`metrics`]. Counting is O(n_items) per target on the score rows the model returns — no
//! per-user sorting ([`rank`]).

// Tests may panic on failure; library code may not (see the workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod evaluate;
pub mod metrics;
pub mod rank;
pub mod sampling;
pub mod stats;

pub use evaluate::{evaluate, EvalError, EvalResult};
pub use metrics::metric_value;
pub use rank::{compute_ranks, sampled_ranks, UserCase};
