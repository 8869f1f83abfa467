//! The softmax cross-entropy over one positive and its sampled candidates that both
//! `sampled-softmax` and `infonce` are made of: row `i` has logits
//! `[pos_i, neg_i1, …, neg_ik] / τ` (optionally minus each candidate's log sampling
//! probability), the target is column 0, and the loss is the mean over rows of
//! `logsumexp(row) - row[0]`. The log-sum-exp subtracts the row maximum (treated as a constant,
//! which leaves value and gradient unchanged) so large scores never overflow.

use crate::common::sampled_shapes;
use candle_core::{Tensor, D};
use pulse_api::PluginError;

/// Log sampling probabilities of the positive `[n]` and negatives `[n, k]`.
pub(crate) struct LogQ<'a> {
    pub pos: &'a Tensor,
    pub neg: &'a Tensor,
}

/// Mean softmax cross-entropy with the positive in column 0; see the module docs.
pub(crate) fn candidate_ce(
    loss: &str,
    negatives: usize,
    pos: &Tensor,
    neg: &Tensor,
    inv_temperature: f64,
    log_q: Option<LogQ<'_>>,
) -> Result<Tensor, PluginError> {
    sampled_shapes(loss, negatives, pos, neg)?;
    let mut logits = Tensor::cat(&[&pos.unsqueeze(1)?, neg], 1)?;
    if inv_temperature != 1.0 {
        logits = logits.affine(inv_temperature, 0.0)?;
    }
    if let Some(q) = log_q {
        if q.pos.dims() != pos.dims() || q.neg.dims() != neg.dims() {
            return Err(PluginError::Other(format!(
                "loss '{loss}': log sampling probabilities {:?} / {:?} do not match the scores \
                 {:?} / {:?}",
                q.pos.dims(),
                q.neg.dims(),
                pos.dims(),
                neg.dims()
            )));
        }
        let lq = Tensor::cat(&[&q.pos.unsqueeze(1)?, q.neg], 1)?.detach();
        logits = (logits - lq)?;
    }
    full_ce(
        &logits,
        &Tensor::zeros(logits.dim(0)?, candle_core::DType::U32, logits.device())?,
    )
}

/// Mean softmax cross-entropy of `logits [n, c]` against `targets [n]` (u32), built from
/// differentiable ops.
pub(crate) fn full_ce(logits: &Tensor, targets: &Tensor) -> Result<Tensor, PluginError> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&targets.unsqueeze(1)?, 1)?;
    Ok((lse - picked)?.mean_all()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::testing::{assert_close, scalar, t1, t2};

    #[track_caller]
    fn check<const K: usize>(pos: &[f32], neg: &[[f32; K]], inv_t: f64, want: f32) {
        let got = candidate_ce("test", K, &t1(pos), &t2(neg), inv_t, None).unwrap();
        assert_close(&[scalar(&got)], &[want], 1e-5);
    }

    #[test]
    fn matches_hand_computed_values() {
        // equal logits over 1 + 3 candidates: ln 4 = 1.3862944
        check(&[0.0], &[[0.0, 0.0, 0.0]], 1.0, 1.386_294_4);
        // row [2, 0]: ln(e^2 + 1) - 2 = softplus(-2) = 0.1269280
        check(&[2.0], &[[0.0]], 1.0, 0.126_928);
        // temperature 0.5 doubles the logits: [2, 0] → same as above
        check(&[1.0], &[[0.0]], 2.0, 0.126_928);
        // huge scores stay finite: [1000, 0] → ~0; [0, 1000] → 1000
        check(&[1000.0, 0.0], &[[0.0], [1000.0]], 1.0, 500.0);
    }
}
