//! A fused softmax cross-entropy kernel for CPU tensors: one pass per row computes the
//! log-sum-exp and the loss, and the backward pass writes `softmax − target distribution`
//! directly. candle's composite path (log_softmax → gather → mean, and their gradients) makes
//! several full passes and allocations over the `[n, n_items]` logits; on SASRec/ml-100k the
//! fused kernel saved about a fifth of each training epoch. Rows are split over threads.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

/// Per-row loss `lse(x) − (1−ε)·x_t − (ε/C)·Σ_j x_j` (label smoothing ε).
pub(crate) struct FusedCe {
    pub smoothing: f32,
}

fn lse(row: &[f32]) -> f32 {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    m + row.iter().map(|v| (v - m).exp()).sum::<f32>().ln()
}

/// Runs `f(row_index_offset, rows_chunk, out_chunk)` over row blocks on all available threads.
fn par_rows<F>(x: &[f32], c: usize, out: &mut [f32], out_per_row: usize, f: F)
where
    F: Fn(usize, &[f32], &mut [f32]) + Sync,
{
    let n = x.len() / c.max(1);
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(8);
    if threads <= 1 || x.len() < 1 << 20 {
        f(0, x, out);
        return;
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        for (k, (xs, os)) in x
            .chunks(per * c)
            .zip(out.chunks_mut(per * out_per_row))
            .enumerate()
        {
            let f = &f;
            s.spawn(move || f(k * per, xs, os));
        }
    });
}

fn parts<'a>(
    s1: &'a CpuStorage,
    l1: &Layout,
    s2: &'a CpuStorage,
    l2: &Layout,
) -> candle_core::Result<(&'a [f32], &'a [u32])> {
    match (s1, s2, l1.contiguous_offsets(), l2.contiguous_offsets()) {
        (CpuStorage::F32(x), CpuStorage::U32(t), Some((a, b)), Some((c, d))) => {
            Ok((&x[a..b], &t[c..d]))
        }
        _ => candle_core::bail!("fused ce: needs contiguous f32 logits and u32 targets"),
    }
}

impl CustomOp2 for FusedCe {
    fn name(&self) -> &'static str {
        "pulse-fused-ce"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, t) = parts(s1, l1, s2, l2)?;
        let c = l1.dims()[1];
        let n = t.len();
        if let Some(&bad) = t.iter().find(|&&t| t as usize >= c) {
            candle_core::bail!("fused ce: target id {bad} out of range for {c} classes");
        }
        let eps = self.smoothing;
        let mut out = vec![0f32; n];
        par_rows(x, c, &mut out, 1, |first, xs, os| {
            for (k, (row, o)) in xs.chunks(c).zip(os.iter_mut()).enumerate() {
                let target = row[t[first + k] as usize];
                let mut loss = lse(row) - (1.0 - eps) * target;
                if eps > 0.0 {
                    loss -= eps / c as f32 * row.iter().sum::<f32>();
                }
                *o = loss;
            }
        });
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_vec1::<f32>()?;
        let t = targets.to_vec1::<u32>()?;
        let x = logits.flatten_all()?.to_vec1::<f32>()?;
        let c = logits.dims()[1];
        let eps = self.smoothing;
        let mut out = vec![0f32; x.len()];
        par_rows(&x, c, &mut out, c, |first, xs, os| {
            for (k, (row, o)) in xs.chunks(c).zip(os.chunks_mut(c)).enumerate() {
                let gi = g[first + k];
                let l = lse(row);
                let uniform = eps / c as f32;
                for (o, &v) in o.iter_mut().zip(row) {
                    *o = gi * ((v - l).exp() - uniform);
                }
                o[t[first + k] as usize] -= gi * (1.0 - eps);
            }
        });
        Ok((
            Some(Tensor::from_vec(out, logits.dims(), logits.device())?),
            None,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The composite definition the kernel replaces, with candle's autograd.
    fn composite(x: &Var, t: &Tensor, eps: f64) -> Tensor {
        let log_p = candle_nn::ops::log_softmax(x.as_tensor(), 1).unwrap();
        let nll = log_p
            .gather(&t.unsqueeze(1).unwrap(), 1)
            .unwrap()
            .squeeze(1)
            .unwrap()
            .neg()
            .unwrap();
        let uniform = log_p.mean(1).unwrap().neg().unwrap();
        let rows =
            (nll.affine(1.0 - eps, 0.0).unwrap() + uniform.affine(eps, 0.0).unwrap()).unwrap();
        rows.mean_all().unwrap()
    }

    #[track_caller]
    fn check(n: usize, c: usize, eps: f32) {
        let dev = Device::Cpu;
        let data: Vec<f32> = (0..n * c)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let targets: Vec<u32> = (0..n).map(|i| (i * 31 % c) as u32).collect();
        let t = Tensor::from_vec(targets, n, &dev).unwrap();
        let a = Var::from_vec(data.clone(), (n, c), &dev).unwrap();
        let b = Var::from_vec(data, (n, c), &dev).unwrap();
        let fused = a
            .as_tensor()
            .apply_op2(&t, FusedCe { smoothing: eps })
            .unwrap()
            .mean_all()
            .unwrap();
        let slow = composite(&b, &t, eps as f64);
        let (fv, sv) = (
            fused.to_scalar::<f32>().unwrap(),
            slow.to_scalar::<f32>().unwrap(),
        );
        assert!((fv - sv).abs() < 1e-4 * sv.abs().max(1.0), "{fv} vs {sv}");
        let ga = fused
            .backward()
            .unwrap()
            .get(a.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let gb = slow
            .backward()
            .unwrap()
            .get(b.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let worst = ga
            .iter()
            .zip(&gb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "gradient differs by {worst}");
    }

    #[test]
    fn matches_the_composite_definition() {
        check(3, 5, 0.0);
        check(4, 7, 0.1);
        // Large enough to take the multi-threaded path.
        check(600, 2000, 0.0);
        check(600, 2000, 0.2);
    }

    #[test]
    fn out_of_range_target_is_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
        let t = Tensor::new(&[0u32, 3], &dev).unwrap();
        let err = x.apply_op2(&t, FusedCe { smoothing: 0.0 }).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}
