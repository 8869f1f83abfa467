//! Pieces shared by the losses: numerically stable softplus / log-sigmoid built from
//! differentiable candle ops, the shape checks of the sampled-input losses, and the helper that
//! checks a config's EXAMPLE in tests.

use candle_core::Tensor;
use pulse_api::PluginError;

/// `softplus(x) = log(1 + e^x)`, computed as `max(x, 0) + log(1 + e^{-|x|})` so that it neither
/// overflows for large `x` nor loses everything to rounding for very negative `x`. Every op in it
/// has a candle backward pass (relu and abs have the usual subgradient at 0).
pub(crate) fn softplus(x: &Tensor) -> Result<Tensor, PluginError> {
    let tail = x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?;
    Ok(x.relu()?.add(&tail)?)
}

/// `log σ(x) = -softplus(-x)`.
pub(crate) fn log_sigmoid(x: &Tensor) -> Result<Tensor, PluginError> {
    Ok(softplus(&x.neg()?)?.neg()?)
}

/// Checks `pos: [n]`, `neg: [n, k]` with `k == negatives` and `n > 0`, and returns `(n, k)`.
pub(crate) fn sampled_shapes(
    loss: &str,
    negatives: usize,
    pos: &Tensor,
    neg: &Tensor,
) -> Result<(usize, usize), PluginError> {
    let bad = |why: String| {
        PluginError::Other(format!(
            "loss '{loss}': {why} (got positive scores {:?}, negative scores {:?})",
            pos.dims(),
            neg.dims()
        ))
    };
    let (&[n], &[m, k]) = (pos.dims(), neg.dims()) else {
        return Err(bad(
            "expected positive scores [n] and negative scores [n, k]".into(),
        ));
    };
    if n != m {
        return Err(bad(format!("{n} positive rows but {m} negative rows")));
    }
    if n == 0 {
        return Err(bad("empty batch".into()));
    }
    if k != negatives {
        return Err(bad(format!(
            "configured for {negatives} negatives per positive, but {k} were given"
        )));
    }
    Ok((n, k))
}

#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Device, Tensor};
    use pulse_api::PluginConfig;
    use std::fmt::Debug;

    /// The EXAMPLE of `C` must be valid TOML that decodes (as a spec section would) to exactly
    /// `C::default()`, so `pulse example` never prints something that disagrees with the code.
    #[track_caller]
    pub fn check_example<C: PluginConfig + PartialEq + Debug>() {
        let table: toml::Table = toml::from_str(C::EXAMPLE)
            .unwrap_or_else(|e| panic!("EXAMPLE of '{}' is not TOML: {e}", C::TYPE));
        let mut json = serde_json::to_value(table).unwrap();
        json["type"] = serde_json::Value::String(C::TYPE.into());
        let decoded = pulse_api::plugin::decode_section::<C>(&json)
            .unwrap_or_else(|e| panic!("EXAMPLE of '{}' does not decode: {e:?}", C::TYPE));
        assert_eq!(decoded, C::default());
        // Commented: every key line follows a comment line that explains it.
        let lines: Vec<&str> = C::EXAMPLE.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.trim().is_empty() && !line.starts_with('#') {
                assert!(
                    i > 0 && lines[i - 1].starts_with('#'),
                    "EXAMPLE line '{line}' of '{}' has no comment above it",
                    C::TYPE
                );
            }
        }
        // Every field of the struct appears in the example.
        let fields = serde_json::to_value(C::default()).unwrap();
        for key in fields.as_object().unwrap().keys() {
            assert!(
                C::EXAMPLE
                    .lines()
                    .any(|l| l.starts_with(&format!("{key} ="))),
                "EXAMPLE of '{}' lacks field '{key}'",
                C::TYPE
            );
        }
    }

    pub fn t1(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    pub fn t2<const K: usize>(rows: &[[f32; K]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), K), &Device::Cpu).unwrap()
    }

    pub fn scalar(t: &Tensor) -> f32 {
        assert_eq!(t.dims(), &[] as &[usize], "loss must be a scalar");
        t.to_scalar::<f32>().unwrap()
    }

    #[track_caller]
    pub fn assert_close(got: &[f32], want: &[f32], tol: f32) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() <= tol, "got {got:?}, want {want:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{assert_close, t1};
    use super::*;

    #[track_caller]
    fn check(x: &[f32], want_softplus: &[f32]) {
        let got = softplus(&t1(x)).unwrap().to_vec1::<f32>().unwrap();
        assert_close(&got, want_softplus, 1e-6);
        let ls = log_sigmoid(&t1(x)).unwrap().to_vec1::<f32>().unwrap();
        // log σ(x) = -softplus(-x) = x - softplus(x)
        let want_ls: Vec<f32> = x.iter().zip(want_softplus).map(|(x, s)| x - s).collect();
        assert_close(&ls, &want_ls, 1e-5);
    }

    #[test]
    fn softplus_is_stable() {
        // softplus(0) = ln 2 = 0.6931472; softplus(1) = ln(1 + e) = 1.3132616;
        // softplus(-1) = ln(1 + 1/e) = 0.3132617; softplus(100) = 100 (+ e^-100);
        // softplus(-100) = e^-100 ≈ 3.7e-44 (a naive ln(1 + e^x) gives 0, fine; e^x overflow for
        // +100 in the naive form would give inf, which this form avoids).
        check(
            &[0.0, 1.0, -1.0, 100.0, -100.0],
            &[std::f32::consts::LN_2, 1.313_261_6, 0.313_261_7, 100.0, 0.0],
        );
    }
}
