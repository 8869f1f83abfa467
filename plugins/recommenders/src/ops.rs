//! Fused CPU kernels with gradients for the transformer models. candle 0.11's fast
//! `softmax_last_dim` and `layer_norm` have no backward pass; its composite versions, the
//! gradients of `gelu_erf` and `broadcast_add`, and the zero-padded gradients of narrow/cat
//! cost many single-threaded passes over the activations each, and on two cores those passes
//! dominated an epoch. Each op here (masked softmax, layer norm, GELU, row-tiled add, head
//! split/merge) is one forward pass and one or two backward passes, f32 only, on contiguous
//! inputs (the wrappers make them contiguous), with a vectorisable `exp`. Dropout lives here
//! too: its masks come from a seeded `pulse_api` generator, because candle's CPU random numbers
//! are not reproducible.

use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor, D};
use pulse_api::rng::Rng;
use rand::Rng as _;

type CResult<T> = candle_core::Result<T>;

pub(crate) fn f32s<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> CResult<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        bail!("{op}: only f32 tensors are supported")
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{op}: input must be contiguous"),
    }
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1)
}

/// `e^x` in f32 without a libm call, so loops over it vectorise: `x = k·ln2 + r` with `k`
/// rounded to nearest, then Cephes' degree-6 polynomial for `e^r` (a few ulp of error) times
/// `2^k` built from its bits. Underflows to exactly 0 below −87 (masked attention scores).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and removing 1.5·2^23 rounds to the nearest integer under the default rounding.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let t = xc * LOG2E + ROUND;
    let k = t - ROUND;
    let r = xc - k * LN2_HI - k * LN2_LO;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // The low bits of `t` hold `k` offset by the bits of ROUND (k is in -126..=127 after the
    // clamp), so `2^k` is built with integer ops only: no float-to-int conversion.
    let scale = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23);
    if x < -87.0 {
        0.0
    } else {
        er * scale
    }
}

/// `softmax(scale · scores + mask)` over the last dimension, where `scores` is
/// `[groups · rows, cols]`-shaped (any leading dims) and `mask` holds `rows · cols` additive
/// values reused by every group (the attention heads share one padding/causal mask).
pub(crate) fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f32) -> CResult<Tensor> {
    scores
        .contiguous()?
        .apply_op2(&mask.contiguous()?, MaskedSoftmax { scale })
}

struct MaskedSoftmax {
    scale: f32,
}

impl CustomOp2 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let m = f32s(s2, l2, self.name())?;
        let cols = last_dim(l1);
        if m.is_empty() || !x.len().is_multiple_of(m.len()) || !m.len().is_multiple_of(cols) {
            bail!(
                "masked-softmax: mask {:?} does not tile scores {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let mut out = Vec::with_capacity(x.len());
        let mut row = vec![0f32; cols];
        for xg in x.chunks(m.len()) {
            for (xr, mr) in xg.chunks(cols).zip(m.chunks(cols)) {
                for ((o, &a), &b) in row.iter_mut().zip(xr).zip(mr) {
                    *o = a * self.scale + b;
                }
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                for o in row.iter_mut() {
                    *o = exp(*o - max);
                }
                let inv = 1.0 / row.iter().sum::<f32>();
                out.extend(row.iter().map(|v| v * inv));
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _: &Tensor,
        _: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let g = res.apply_op2_no_bwd(&grad.contiguous()?, &SoftmaxGrad { scale: self.scale })?;
        Ok((Some(g), None))
    }
}

/// Gradient of `softmax(scale · x)` given its output `y` and the output gradient `g`:
/// `scale · y ⊙ (g − Σ g ⊙ y)` per row.
struct SoftmaxGrad {
    scale: f32,
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "softmax-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let y = f32s(s1, l1, self.name())?;
        let g = f32s(s2, l2, self.name())?;
        let cols = last_dim(l1);
        let mut out = Vec::with_capacity(y.len());
        for (yr, gr) in y.chunks(cols).zip(g.chunks(cols)) {
            let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
            out.extend(yr.iter().zip(gr).map(|(&a, &b)| self.scale * a * (b - dot)));
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// Layer normalisation over the last dimension of a 2-D `[rows, dim]` tensor.
pub(crate) fn layer_norm(x: &Tensor, gain: &Tensor, bias: &Tensor, eps: f32) -> CResult<Tensor> {
    x.contiguous()?.apply_op3(gain, bias, LayerNorm { eps })
}

struct LayerNorm {
    eps: f32,
}

/// Mean and reciprocal standard deviation of one row.
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let n = row.len() as f32;
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let gain = f32s(s2, l2, self.name())?;
        let bias = f32s(s3, l3, self.name())?;
        let dim = last_dim(l1);
        if gain.len() != dim || bias.len() != dim {
            bail!(
                "layer-norm: gain/bias of length {} for rows of {dim}",
                gain.len()
            );
        }
        let mut out = Vec::with_capacity(x.len());
        for xr in x.chunks(dim) {
            let (mean, rstd) = moments(xr, self.eps);
            out.extend(
                xr.iter()
                    .zip(gain)
                    .zip(bias)
                    .map(|((&v, &g), &b)| (v - mean) * rstd * g + b),
            );
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let params = x.apply_op2_no_bwd(&grad, &LayerNormGradParams { eps: self.eps })?;
        let d_gain = params.get(0)?;
        let d_bias = params.get(1)?;
        let d_x = x.apply_op3_no_bwd(gain, &grad, &LayerNormGradX { eps: self.eps })?;
        Ok((Some(d_x), Some(d_gain), Some(d_bias)))
    }
}

/// The gain and bias gradients of layer norm as one `[2, dim]` tensor: `Σ g·x̂` and `Σ g` over
/// rows, accumulated row by row (one pass, vectorisable, fixed order).
struct LayerNormGradParams {
    eps: f32,
}

impl CustomOp2 for LayerNormGradParams {
    fn name(&self) -> &'static str {
        "layer-norm-grad-params"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let g = f32s(s2, l2, self.name())?;
        let dim = last_dim(l1);
        let mut out = vec![0f32; 2 * dim];
        let (d_gain, d_bias) = out.split_at_mut(dim);
        for (xr, gr) in x.chunks(dim).zip(g.chunks(dim)) {
            let (mean, rstd) = moments(xr, self.eps);
            for (((dg, db), &v), &gv) in d_gain.iter_mut().zip(d_bias.iter_mut()).zip(xr).zip(gr) {
                *dg += gv * (v - mean) * rstd;
                *db += gv;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((2, dim))))
    }
}

/// The input gradient of layer norm: `rstd · (g·γ − mean(g·γ) − x̂ · mean(g·γ·x̂))` per row.
struct LayerNormGradX {
    eps: f32,
}

impl CustomOp3 for LayerNormGradX {
    fn name(&self) -> &'static str {
        "layer-norm-grad-x"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let gain = f32s(s2, l2, self.name())?;
        let g = f32s(s3, l3, self.name())?;
        let dim = last_dim(l1);
        let n = dim as f32;
        let mut out = Vec::with_capacity(x.len());
        for (xr, gr) in x.chunks(dim).zip(g.chunks(dim)) {
            let (mean, rstd) = moments(xr, self.eps);
            let (mut a, mut b) = (0f32, 0f32);
            for ((&v, &gv), &w) in xr.iter().zip(gr).zip(gain) {
                let gw = gv * w;
                a += gw;
                b += gw * (v - mean) * rstd;
            }
            let (a, b) = (a / n, b / n);
            out.extend(
                xr.iter()
                    .zip(gr)
                    .zip(gain)
                    .map(|((&v, &gv), &w)| rstd * (gv * w - a - (v - mean) * rstd * b)),
            );
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// GELU in its erf form, as BERT and RecBole use: `x · Φ(x)`.
pub(crate) fn gelu(x: &Tensor) -> CResult<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

struct Gelu;

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1 / √(2π)
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `(Φ(x), e^(−x²/2))`, with erf from Abramowitz & Stegun 7.1.26 (absolute error below
/// 1.5e-7, under f32 resolution of Φ) so that the gradient reuses the same exponential.
#[inline]
fn normal_cdf(x: f32) -> (f32, f32) {
    let z = x.abs() * FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let e = exp(-z * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let erf = 1.0 - poly * e;
    let erf = if x < 0.0 { -erf } else { erf };
    (0.5 * (1.0 + erf), e)
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32s(s, l, self.name())?;
        let out = x.iter().map(|&v| v * normal_cdf(v).0).collect();
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad.contiguous()?, &GeluGrad)?))
    }
}

/// `g · (Φ(x) + x·φ(x))`.
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "gelu-erf-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let g = f32s(s2, l2, self.name())?;
        let out = x
            .iter()
            .zip(g)
            .map(|(&v, &gv)| {
                let (cdf, e) = normal_cdf(v);
                gv * (cdf + v * INV_SQRT_2PI * e)
            })
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `x[r] + table[r mod P]` for `x: [N, D]` and a table of `P` rows of `D` (given as `[P, D]` or,
/// for a bias, `[D]`). Replaces `broadcast_add`, whose backward reduces over the broadcast
/// dimension with a slow strided sum; here the table's gradient is one row-accumulating pass.
pub(crate) fn add_rows(x: &Tensor, table: &Tensor) -> CResult<Tensor> {
    x.contiguous()?.apply_op2(&table.contiguous()?, AddRows)
}

struct AddRows;

impl CustomOp2 for AddRows {
    fn name(&self) -> &'static str {
        "add-rows"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32s(s1, l1, self.name())?;
        let t = f32s(s2, l2, self.name())?;
        let dim = last_dim(l1);
        if t.is_empty()
            || !t.len().is_multiple_of(dim)
            || !(x.len() / dim).is_multiple_of(t.len() / dim)
        {
            bail!(
                "add-rows: table {:?} does not tile {:?}",
                l2.dims(),
                l1.dims()
            );
        }
        let mut out = x.to_vec();
        for (or, tr) in out.chunks_mut(dim).zip(t.chunks(dim).cycle()) {
            for (a, &b) in or.iter_mut().zip(tr) {
                *a += b;
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        table: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let rows = table.elem_count() / grad.dim(D::Minus1)?;
        let d_table = grad
            .apply_op1_no_bwd(&RowSums { rows })?
            .reshape(table.dims())?;
        Ok((Some(grad), Some(d_table)))
    }
}

/// `out[r mod rows] += x[r]` over the rows of `x`, in order.
struct RowSums {
    rows: usize,
}

impl CustomOp1 for RowSums {
    fn name(&self) -> &'static str {
        "row-sums"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32s(s, l, self.name())?;
        let dim = last_dim(l);
        let mut out = vec![0f32; self.rows * dim];
        for (k, xr) in x.chunks(dim).enumerate() {
            let o = &mut out[(k % self.rows) * dim..][..dim];
            for (a, &b) in o.iter_mut().zip(xr) {
                *a += b;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((self.rows, dim))))
    }
}

/// `[rows · len, heads · dh]` → `[heads · rows, len, dh]`: attention heads moved into the batch
/// dimension (head `h` of row `r` becomes batch entry `h · rows + r`) in one copy.
pub(crate) fn split_heads(x: &Tensor, rows: usize, heads: usize) -> CResult<Tensor> {
    x.contiguous()?.apply_op1(Heads {
        rows,
        heads,
        split: true,
    })
}

/// The inverse of [`split_heads`].
pub(crate) fn merge_heads(x: &Tensor, rows: usize, heads: usize) -> CResult<Tensor> {
    x.contiguous()?.apply_op1(Heads {
        rows,
        heads,
        split: false,
    })
}

struct Heads {
    rows: usize,
    heads: usize,
    split: bool,
}

impl CustomOp1 for Heads {
    fn name(&self) -> &'static str {
        if self.split {
            "split-heads"
        } else {
            "merge-heads"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32s(s, l, self.name())?;
        let (b, h) = (self.rows, self.heads);
        let (len, dh, shape) = if self.split {
            let d = last_dim(l);
            if !d.is_multiple_of(h) || !x.len().is_multiple_of(b * d) {
                bail!("split-heads: {:?} into {h} heads of {b} rows", l.dims());
            }
            let len = x.len() / (b * d);
            (len, d / h, Shape::from((h * b, len, d / h)))
        } else {
            let dims = l.dims();
            if dims.len() != 3 || dims[0] != h * b {
                bail!("merge-heads: {dims:?} is not [{h} · {b}, len, dh]");
            }
            (dims[1], dims[2], Shape::from((b * dims[1], h * dims[2])))
        };
        let mut out = Vec::with_capacity(x.len());
        let merged = |row: usize, i: usize, head: usize| (row * len + i) * h * dh + head * dh;
        let split = |row: usize, i: usize, head: usize| ((head * b + row) * len + i) * dh;
        // The same permutation read in opposite directions, written in destination order.
        if self.split {
            for head in 0..h {
                for row in 0..b {
                    for i in 0..len {
                        out.extend_from_slice(&x[merged(row, i, head)..][..dh]);
                    }
                }
            }
        } else {
            for row in 0..b {
                for i in 0..len {
                    for head in 0..h {
                        out.extend_from_slice(&x[split(row, i, head)..][..dh]);
                    }
                }
            }
        }
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let inverse = Heads {
            split: !self.split,
            ..*self
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

/// Inverted dropout with a mask drawn from `rng`: each element is zeroed with probability `p`
/// and the survivors are scaled by `1 / (1 − p)`.
pub(crate) fn dropout(x: &Tensor, p: f32, rng: &mut Rng) -> CResult<Tensor> {
    if p <= 0.0 {
        return Ok(x.clone());
    }
    // Compare raw 32-bit draws with a threshold: one bulk draw, no float conversion.
    let threshold = (f64::from(p) * 4_294_967_296.0) as u64;
    let keep = 1.0 / (1.0 - p);
    let mut bits = vec![0u32; x.elem_count()];
    rng.fill(&mut bits[..]);
    let mask: Vec<f32> = bits
        .into_iter()
        .map(|r| if u64::from(r) < threshold { 0.0 } else { keep })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
    x.mul(&mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Compares an op's output and input gradients with a composite reference built from
    /// candle's differentiable primitives.
    #[track_caller]
    fn check(
        dims: (usize, usize),
        fused: impl Fn(&Tensor) -> CResult<Tensor>,
        reference: impl Fn(&Tensor) -> CResult<Tensor>,
    ) {
        let n = dims.0 * dims.1;
        let values: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 4.0)
            .collect();
        let x = Var::from_vec(values, dims, &Device::Cpu).unwrap();
        let w: Vec<f32> = (0..n).map(|i| ((i * 13 % 7) as f32 - 3.0) / 3.0).collect();
        let w = Tensor::from_vec(w, dims, &Device::Cpu).unwrap();
        let run = |f: &dyn Fn(&Tensor) -> CResult<Tensor>| {
            let y = f(x.as_tensor()).unwrap();
            let loss = (y.flatten_all().unwrap() * w.flatten_all().unwrap())
                .unwrap()
                .sum_all()
                .unwrap();
            let g = loss.backward().unwrap();
            let gx = g.get(x.as_tensor()).unwrap().flatten_all().unwrap();
            (
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                gx.to_vec1::<f32>().unwrap(),
            )
        };
        let (y1, g1) = run(&fused);
        let (y2, g2) = run(&reference);
        for (a, b) in y1.iter().zip(&y2).chain(g1.iter().zip(&g2)) {
            assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn fused_ops_match_composite_references() {
        let mask_vals: Vec<f32> = (0..12)
            .map(|i| if i % 4 == 3 { -10000.0 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(mask_vals, (3, 4), &Device::Cpu).unwrap();
        check(
            (6, 4),
            |x| masked_softmax(x, &mask, 0.5),
            |x| {
                let m = Tensor::cat(&[&mask, &mask], 0)?;
                candle_nn::ops::softmax(&((x * 0.5)? + m)?, D::Minus1)
            },
        );
        let gain = Tensor::new(&[0.5f32, 1.0, 1.5, 2.0, -1.0], &Device::Cpu).unwrap();
        let bias = Tensor::new(&[0.1f32, 0.0, -0.1, 0.2, 0.3], &Device::Cpu).unwrap();
        check(
            (4, 5),
            |x| layer_norm(x, &gain, &bias, 1e-12),
            |x| candle_nn::ops::layer_norm_slow(x, &gain, &bias, 1e-12),
        );
        check((3, 7), gelu, |x| x.gelu_erf());
        let table = Tensor::new(
            &[[1f32, 2.0, 3.0, 4.0], [-1.0, 0.5, 0.0, 2.0]],
            &Device::Cpu,
        )
        .unwrap();
        check(
            (6, 4),
            |x| add_rows(x, &table),
            |x| x.reshape((3, 2, 4))?.broadcast_add(&table)?.reshape((6, 4)),
        );
        // 2 rows × 3 positions, 2 heads of 2
        check(
            (6, 4),
            |x| split_heads(x, 2, 2),
            |x| {
                x.reshape((2, 3, 2, 2))?
                    .permute((2, 0, 1, 3))?
                    .reshape((4, 3, 2))
            },
        );
        check(
            (12, 2),
            |x| merge_heads(&x.reshape((4, 3, 2))?, 2, 2),
            |x| {
                x.reshape((2, 2, 3, 2))?
                    .permute((1, 2, 0, 3))?
                    .reshape((6, 4))
            },
        );
    }

    #[test]
    fn add_rows_table_gradient_matches_broadcast() {
        let x = Tensor::new(
            &[[1f32, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 9.0]],
            &Device::Cpu,
        )
        .unwrap();
        let w = Tensor::new(
            &[[1f32, -2.0], [3.0, 0.5], [0.5, 0.25], [-1.0, 2.0]],
            &Device::Cpu,
        )
        .unwrap();
        for rows in [1, 2] {
            let grad = |fused: bool| {
                let t = Var::ones((rows, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
                let y = if fused {
                    add_rows(&x, &t).unwrap()
                } else {
                    x.reshape((4 / rows, rows, 2))
                        .unwrap()
                        .broadcast_add(&t)
                        .unwrap()
                        .reshape((4, 2))
                        .unwrap()
                };
                let g = (y * &w).unwrap().sum_all().unwrap().backward().unwrap();
                g.get(t.as_tensor()).unwrap().to_vec2::<f32>().unwrap()
            };
            assert_eq!(grad(true), grad(false), "{rows} table rows");
        }
    }

    #[test]
    fn layer_norm_parameter_gradients_match() {
        let x = Tensor::new(&[[1f32, 2.0, 4.0], [0.5, -1.0, 3.0]], &Device::Cpu).unwrap();
        let grads = |fused: bool| {
            let g = Var::new(&[1.0f32, 0.5, 2.0], &Device::Cpu).unwrap();
            let b = Var::new(&[0.0f32, 0.1, 0.2], &Device::Cpu).unwrap();
            let y = if fused {
                layer_norm(&x, &g, &b, 1e-5).unwrap()
            } else {
                candle_nn::ops::layer_norm_slow(&x, &g, &b, 1e-5).unwrap()
            };
            let w = Tensor::new(&[[1f32, -2.0, 3.0], [0.5, 0.5, -1.0]], &Device::Cpu).unwrap();
            let gs = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
            [g.as_tensor(), b.as_tensor()].map(|v| gs.get(v).unwrap().to_vec1::<f32>().unwrap())
        };
        let (a, b) = (grads(true), grads(false));
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }

    #[test]
    fn fast_exp_is_accurate() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (a, b) = (exp(x), x.exp());
            assert!(
                (a - b).abs() <= 4.0 * f32::EPSILON * b,
                "exp({x}) = {a}, want {b}"
            );
        }
        assert_eq!(exp(-10_000.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn dropout_keeps_expectation_and_is_seeded() {
        let x = Tensor::ones(10_000, candle_core::DType::F32, &Device::Cpu).unwrap();
        let draw = || {
            let mut rng = pulse_api::rng::derive(5, "dropout");
            dropout(&x, 0.25, &mut rng)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let a = draw();
        assert_eq!(a, draw());
        let zeros = a.iter().filter(|v| **v == 0.0).count();
        assert!((2300..2700).contains(&zeros), "{zeros} zeros");
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
    }
}
