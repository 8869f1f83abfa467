//! The GRU recurrence as one candle op with a hand-written backward pass (backpropagation
//! through time). Built from candle primitives, every time step would cost a dozen small graph
//! nodes whose slices (`narrow`) have zero-padded, full-size gradients, and each step's small
//! product would synchronise candle's worker threads. Here the rows of the batch (independent
//! sequences) are split into one block per thread, and each thread runs the whole recurrence
//! of its block: per step one `[block, hidden] × [hidden, 3·hidden]` product and one fused gate
//! pass forward; one product back, without exponentials (the forward pass keeps its gate
//! values for the backward pass). The weight gradient is one large product at the end.
//!
//! Equations (PyTorch's `nn.GRU` without biases, as RecBole's GRU4Rec uses it), with the input
//! projections `gi = x · W_ih` of every step computed up front by the caller in one product:
//!
//! ```text
//! gh = h · W_hh                       (gate order r, z, n along the 3·hidden columns)
//! r  = σ(gi_r + gh_r)    z = σ(gi_z + gh_z)    n = tanh(gi_n + r ⊙ gh_n)
//! h' = (1 − z) ⊙ n + z ⊙ h            (h = 0 before the first step)
//! ```

use crate::ops::{self, f32s};
use candle_core::{bail, CpuStorage, CustomOp2, Device, Layout, Shape, Tensor};
use std::sync::Mutex;

type CResult<T> = candle_core::Result<T>;

/// Rows per thread below which a second thread costs more than it saves.
const MIN_ROWS_PER_THREAD: usize = 8;

/// Hidden states `[rows, steps, hidden]` of a GRU layer from its input projections
/// `gi: [rows, steps, 3·hidden]` and recurrent weights `w_hh: [hidden, 3·hidden]`.
pub(super) fn gru(gi: &Tensor, w_hh: &Tensor) -> CResult<Tensor> {
    gi.contiguous()?.apply_op2(
        &w_hh.contiguous()?,
        Gru {
            gates: Mutex::new(Vec::new()),
        },
    )
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + ops::exp(-x))
}

#[inline(always)]
fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// `out = a · b` for row-major `a: [n, inner]`, `b: [inner, cols]`, `out: [n, cols]`. Four
/// rows of `b` per pass over an output row keep the loads and stores of `out` low; the inner
/// loop vectorises.
fn matmul_into(a: &[f32], b: &[f32], cols: usize, out: &mut [f32]) {
    let inner = b.len() / cols;
    for (ar, or) in a.chunks_exact(inner).zip(out.chunks_exact_mut(cols)) {
        or.fill(0.0);
        let mut quads = b.chunks_exact(4 * cols);
        for (k, quad) in (&mut quads).enumerate() {
            let x = &ar[4 * k..][..4];
            let (b0, rest) = quad.split_at(cols);
            let (b1, rest) = rest.split_at(cols);
            let (b2, b3) = rest.split_at(cols);
            for ((((o, &y0), &y1), &y2), &y3) in or.iter_mut().zip(b0).zip(b1).zip(b2).zip(b3) {
                *o += x[0] * y0 + x[1] * y1 + x[2] * y2 + x[3] * y3;
            }
        }
        let done = inner - quads.remainder().len() / cols;
        for (&x, br) in ar[done..].iter().zip(quads.remainder().chunks_exact(cols)) {
            for (o, &y) in or.iter_mut().zip(br) {
                *o += x * y;
            }
        }
    }
}

/// Calls `f(first_row, a_block, b_block)` on matching blocks of whole rows of `a` and `b`
/// (`ua` and `ub` values per row), one block per thread (as many as candle uses). Every row
/// belongs to exactly one block, so results do not depend on the number of threads.
fn par_row_blocks(
    rows: usize,
    (a, ua): (&mut [f32], usize),
    (b, ub): (&mut [f32], usize),
    f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) {
    let threads = candle_core::utils::get_num_threads()
        .min(rows / MIN_ROWS_PER_THREAD)
        .max(1);
    if threads == 1 {
        f(0, a, b);
        return;
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, (ab, bb)) in a
            .chunks_mut(per * ua)
            .zip(b.chunks_mut(per * ub))
            .enumerate()
        {
            let f = &f;
            s.spawn(move || f(i * per, ab, bb));
        }
    });
}

/// One application of the op. `gates` holds, after the forward pass, `[r, z, n, gh_n]` of
/// every unit per `(row, step)` (`4 · hidden` values each), which the backward pass takes.
struct Gru {
    gates: Mutex<Vec<f32>>,
}

fn dims(gi: &[usize], w: &[usize]) -> CResult<(usize, usize, usize)> {
    if let (&[rows, steps, g], &[hidden, g2]) = (gi, w) {
        if g == 3 * hidden && g2 == g {
            return Ok((rows, steps, hidden));
        }
    }
    bail!("gru: inputs {gi:?} and weights {w:?} are not [rows, steps, 3h] and [h, 3h]")
}

fn poisoned<T>(_: T) -> candle_core::Error {
    candle_core::Error::Msg("gru: gate cache poisoned by a panic".into())
}

impl CustomOp2 for Gru {
    fn name(&self) -> &'static str {
        "gru"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let gi = f32s(s1, l1, self.name())?;
        let w = f32s(s2, l2, self.name())?;
        let (rows, steps, hd) = dims(l1.dims(), l2.dims())?;
        let g = 3 * hd;
        let mut out = vec![0f32; rows * steps * hd];
        let mut gates = vec![0f32; rows * steps * 4 * hd];
        par_row_blocks(
            rows,
            (&mut out, steps * hd),
            (&mut gates, steps * 4 * hd),
            |first, out, gates| {
                let n = out.len() / (steps * hd).max(1);
                let gi = &gi[first * steps * g..][..n * steps * g];
                let mut h = vec![0f32; n * hd];
                let mut gh = vec![0f32; n * g];
                for t in 0..steps {
                    if t > 0 {
                        matmul_into(&h, w, g, &mut gh);
                    }
                    for b in 0..n {
                        let at = b * steps + t;
                        let gi_row = &gi[at * g..][..g];
                        let gh_row = &gh[b * g..][..g];
                        let h_row = &mut h[b * hd..][..hd];
                        let (r_out, rest) = gates[at * 4 * hd..][..4 * hd].split_at_mut(hd);
                        let (z_out, rest) = rest.split_at_mut(hd);
                        let (n_out, ghn_out) = rest.split_at_mut(hd);
                        for j in 0..hd {
                            let r = sigmoid(gi_row[j] + gh_row[j]);
                            let z = sigmoid(gi_row[hd + j] + gh_row[hd + j]);
                            let ghn = gh_row[2 * hd + j];
                            let n = tanh(gi_row[2 * hd + j] + r * ghn);
                            h_row[j] = (1.0 - z) * n + z * h_row[j];
                            (r_out[j], z_out[j], n_out[j], ghn_out[j]) = (r, z, n, ghn);
                        }
                        out[at * hd..][..hd].copy_from_slice(h_row);
                    }
                }
            },
        );
        *self.gates.lock().map_err(poisoned)? = gates;
        Ok((CpuStorage::F32(out), Shape::from((rows, steps, hd))))
    }

    fn bwd(
        &self,
        gi: &Tensor,
        w_hh: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let (rows, steps, hd) = dims(gi.dims(), w_hh.dims())?;
        let g = 3 * hd;
        let gates = std::mem::take(&mut *self.gates.lock().map_err(poisoned)?);
        if gates.len() != rows * steps * 4 * hd {
            bail!("gru: backward pass without (or after a second) forward pass");
        }
        let hs = res.flatten_all()?.to_vec1::<f32>()?;
        // The state each step started from: 0, then the outputs shifted by one step.
        let mut hp = vec![0f32; rows * steps * hd];
        if steps > 0 {
            let row = steps * hd;
            for (dst, src) in hp.chunks_exact_mut(row).zip(hs.chunks_exact(row)) {
                dst[hd..].copy_from_slice(&src[..row - hd]);
            }
        }
        let d_out = grad.flatten_all()?.to_vec1::<f32>()?;
        let w_t = w_hh.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;

        let mut d_gi = vec![0f32; rows * steps * g];
        let mut d_gh = vec![0f32; rows * steps * g];
        par_row_blocks(
            rows,
            (&mut d_gi, steps * g),
            (&mut d_gh, steps * g),
            |first, d_gi, d_gh| {
                let n = d_gi.len() / (steps * g).max(1);
                let (gates, hp) = (&gates[first * steps * 4 * hd..], &hp[first * steps * hd..]);
                let d_out = &d_out[first * steps * hd..];
                let mut d_gh_step = vec![0f32; n * g];
                let mut dh = vec![0f32; n * hd];
                let mut back = vec![0f32; n * hd];
                for t in (0..steps).rev() {
                    for b in 0..n {
                        let at = b * steps + t;
                        let gate = &gates[at * 4 * hd..][..4 * hd];
                        let (hp_row, d_out_row) = (&hp[at * hd..][..hd], &d_out[at * hd..][..hd]);
                        let d_gi_row = &mut d_gi[at * g..][..g];
                        let d_gh_row = &mut d_gh_step[b * g..][..g];
                        let dh_row = &mut dh[b * hd..][..hd];
                        for j in 0..hd {
                            let (r, z) = (gate[j], gate[hd + j]);
                            let (n, ghn) = (gate[2 * hd + j], gate[3 * hd + j]);
                            let dhj = dh_row[j] + d_out_row[j];
                            let d_n = dhj * (1.0 - z) * (1.0 - n * n);
                            let d_z = dhj * (hp_row[j] - n) * z * (1.0 - z);
                            let d_r = d_n * ghn * r * (1.0 - r);
                            d_gi_row[j] = d_r;
                            d_gi_row[hd + j] = d_z;
                            d_gi_row[2 * hd + j] = d_n;
                            d_gh_row[j] = d_r;
                            d_gh_row[hd + j] = d_z;
                            d_gh_row[2 * hd + j] = d_n * r;
                            // The path through `z ⊙ h`; the one through `gh` is added below.
                            dh_row[j] = dhj * z;
                        }
                        d_gh[at * g..][..g].copy_from_slice(d_gh_row);
                    }
                    if t > 0 {
                        matmul_into(&d_gh_step, &w_t, hd, &mut back);
                        for (a, b) in dh.iter_mut().zip(&back) {
                            *a += b;
                        }
                    }
                }
            },
        );
        let hp = Tensor::from_vec(hp, (rows * steps, hd), &Device::Cpu)?;
        let d_gh = Tensor::from_vec(d_gh, (rows * steps, g), &Device::Cpu)?;
        let d_w = hp.t()?.matmul(&d_gh)?;
        let d_gi = Tensor::from_vec(d_gi, (rows, steps, g), &Device::Cpu)?;
        Ok((Some(d_gi), Some(d_w)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Var, D};

    /// The GRU built from candle's differentiable primitives, one step at a time.
    fn reference(gi: &Tensor, w: &Tensor) -> CResult<Tensor> {
        let (rows, steps, g) = gi.dims3()?;
        let hd = g / 3;
        let mut h = Tensor::zeros((rows, hd), gi.dtype(), gi.device())?;
        let mut outs = Vec::new();
        for t in 0..steps {
            let x = gi.narrow(1, t, 1)?.squeeze(1)?;
            let gh = h.matmul(w)?;
            let part = |a: &Tensor, k: usize| a.narrow(D::Minus1, k * hd, hd);
            let r = candle_nn::ops::sigmoid(&(part(&x, 0)? + part(&gh, 0)?)?)?;
            let z = candle_nn::ops::sigmoid(&(part(&x, 1)? + part(&gh, 1)?)?)?;
            let n = (part(&x, 2)? + (&r * part(&gh, 2)?)?)?.tanh()?;
            h = ((z.affine(-1.0, 1.0)? * n)? + (&z * &h)?)?;
            outs.push(h.unsqueeze(1)?);
        }
        Tensor::cat(&outs, 1)
    }

    #[track_caller]
    fn check(rows: usize, steps: usize, hd: usize) {
        let g = 3 * hd;
        let vals = |n: usize, k: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * k % 29) as f32 - 14.0) / 10.0)
                .collect()
        };
        let gi = Var::from_vec(vals(rows * steps * g, 7), (rows, steps, g), &Device::Cpu).unwrap();
        let w = Var::from_vec(vals(hd * g, 11), (hd, g), &Device::Cpu).unwrap();
        let out_w =
            Tensor::from_vec(vals(rows * steps * hd, 5), (rows, steps, hd), &Device::Cpu).unwrap();
        let run = |f: &dyn Fn(&Tensor, &Tensor) -> CResult<Tensor>| {
            let y = f(gi.as_tensor(), w.as_tensor()).unwrap();
            let grads = (&y * &out_w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            [&y, grads.get(&gi).unwrap(), grads.get(&w).unwrap()]
                .map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        };
        let fused = run(&gru);
        let composite = run(&reference);
        for (name, (a, b)) in ["output", "d_gi", "d_w_hh"]
            .iter()
            .zip(fused.iter().zip(&composite))
        {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-4 * (1.0 + y.abs()), "{name}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn matches_the_composite_gru_and_its_gradients() {
        check(2, 4, 3);
        check(3, 1, 2);
        check(1, 6, 5);
        // Enough rows for several threads, with a block that is not full.
        check(4 * MIN_ROWS_PER_THREAD + 3, 5, 6);
    }

    #[test]
    fn hand_product_matches_candle() {
        for (n, inner, cols) in [(3, 8, 5), (2, 7, 4), (1, 1, 3), (4, 3, 2)] {
            let a: Vec<f32> = (0..n * inner).map(|i| (i % 5) as f32 - 2.0).collect();
            let b: Vec<f32> = (0..inner * cols).map(|i| (i % 7) as f32 * 0.5).collect();
            let mut out = vec![f32::NAN; n * cols];
            matmul_into(&a, &b, cols, &mut out);
            let ta = Tensor::from_slice(&a, (n, inner), &Device::Cpu).unwrap();
            let tb = Tensor::from_slice(&b, (inner, cols), &Device::Cpu).unwrap();
            let want = ta.matmul(&tb).unwrap().flatten_all().unwrap();
            assert_eq!(out, want.to_vec1::<f32>().unwrap(), "{n}x{inner}x{cols}");
        }
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let gi = Tensor::zeros((2, 3, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((3, 6), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(gru(&gi, &w).is_err());
    }
}
#[cfg(test)]
mod tmp_bench {
    use super::*;
    use candle_core::Var;
    #[test]
    #[ignore]
    fn tmp_time_gru() {
        let (rows, steps, hd) = (64, 99, 128);
        let g = 3 * hd;
        let gi = Var::from_vec(
            (0..rows * steps * g)
                .map(|i| ((i % 17) as f32 - 8.0) / 10.0)
                .collect::<Vec<_>>(),
            (rows, steps, g),
            &Device::Cpu,
        )
        .unwrap();
        let w = Var::from_vec(
            (0..hd * g)
                .map(|i| ((i % 13) as f32 - 6.0) / 50.0)
                .collect::<Vec<_>>(),
            (hd, g),
            &Device::Cpu,
        )
        .unwrap();
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let y = gru(gi.as_tensor(), w.as_tensor()).unwrap();
            let f = t.elapsed();
            let gr = y.sum_all().unwrap().backward().unwrap();
            let _ = gr.get(&w).unwrap();
            eprintln!("fwd {:?} total {:?}", f, t.elapsed());
        }
    }
}
