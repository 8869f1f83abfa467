//! CPU kernels for the steps of a batched forward pass that candle's generic operations do
//! slowly at these shapes. Measured on the 2-core machine with SmolLM2 at 64 rows × 300 slots,
//! per layer: the attention of one decoding step as candle ops (192 tiny batched matmuls, a
//! broadcast mask, softmax) took ~23 ms, against ~7 ms for the projections; the broadcast mask of
//! a prefill took ~9 ms per prompt and layer. Here the mask is never materialised: each
//! row's visible slots are computed from the row's start, the query's slot and the window.
//!
//! - [`MaskedSoftmax`]: softmax over each query's visible slots in place (prefill, where the
//!   scores come from a real matmul).
//! - [`DecodeAttention`]: one new token per row against the cache, reading each key/value head
//!   once for all query heads that share it.
//! - [`GatedActivation`]: `act(gate) * up` in one pass; [`Add`]: the residual sums. candle
//!   runs large element-wise operations on a spinning thread pool of its own, which on a
//!   shared machine spent more time waiting than computing; these use rayon's pool.
//!
//! Other devices keep the generic candle operations (see `model.rs`).

use super::simd::{axpy, dot, exp, max, multiversion, sum};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, InplaceOp1, Layout, Shape};
use rayon::prelude::*;
use std::ops::Range;

/// Which cache slots each query sees. Slots are relative to the start of the live view.
#[derive(Debug, Clone)]
pub(crate) struct Visibility {
    /// First real slot of each row.
    pub(crate) starts: Vec<usize>,
    /// Slot of the first new query token.
    pub(crate) base: usize,
    /// New tokens per row.
    pub(crate) len: usize,
    /// Sliding window, if the layer has one.
    pub(crate) window: Option<usize>,
}

impl Visibility {
    /// Slots query `l` of row `b` attends to.
    pub(crate) fn range(&self, b: usize, l: usize) -> Range<usize> {
        let q = self.base + l;
        let lo = self.starts[b].max(self.window.map_or(0, |w| (q + 1).saturating_sub(w)));
        lo..q + 1
    }

    /// Whether some query cannot see some live slot (else no mask is needed at all).
    pub(crate) fn masks_anything(&self) -> bool {
        let padded = self.starts.iter().any(|&s| s > 0);
        let causal = self.len > 1;
        let windowed = self.window.is_some_and(|w| self.base + self.len > w);
        padded || causal || windowed
    }
}

fn f32_slice<'a>(s: &'a CpuStorage, what: &str) -> candle_core::Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v),
        _ => candle_core::bail!("{what}: expected f32"),
    }
}

/// In-place softmax of attention scores `[rows, kv_heads, rep * len, live]` over each query's
/// visible slots; invisible slots become 0.
pub(crate) struct MaskedSoftmax<'a> {
    pub(crate) vis: &'a Visibility,
    /// Multiplies the scores first (the attention scale, folded in here).
    pub(crate) scale: f32,
}

impl InplaceOp1 for MaskedSoftmax<'_> {
    fn name(&self) -> &'static str {
        "masked-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("masked-softmax: expected f32");
        };
        let Some((o1, o2)) = layout.contiguous_offsets() else {
            candle_core::bail!("masked-softmax: input must be contiguous");
        };
        let dims = layout.dims();
        let (t, queries) = match dims {
            [_, _, q, t] => (*t, *q),
            _ => candle_core::bail!("masked-softmax: expected 4 dims, got {dims:?}"),
        };
        let per_row = dims[1] * queries;
        let len = self.vis.len;
        data[o1..o2]
            .par_chunks_mut(t)
            .enumerate()
            .for_each(|(i, scores)| {
                let b = i / per_row;
                let l = (i % queries) % len;
                let r = self.vis.range(b, l);
                let r = r.start.min(t)..r.end.min(t);
                softmax_range(scores, r, self.scale);
            });
        Ok(())
    }
}

/// Softmax of `scale * x` (`scale > 0`) in place. Inlined into the multiversioned kernels;
/// the reductions go through [`max`] and [`sum`], whose independent partial results let them
/// vectorize (a plain running sum is sequential, and would keep `exp` scalar too).
#[inline(always)]
fn softmax_in(x: &mut [f32], scale: f32) {
    if x.is_empty() {
        return;
    }
    let m = max(x);
    x.iter_mut().for_each(|v| *v = exp((*v - m) * scale));
    let inv = 1.0 / sum(x);
    x.iter_mut().for_each(|v| *v *= inv);
}

multiversion! {
/// Softmax of `scale * x[r]` (`scale > 0`) in place, zeros outside `r`.
fn softmax_range(x: &mut [f32], r: Range<usize>, scale: f32) {
    softmax_in(&mut x[r.clone()], scale);
    x[..r.start].iter_mut().for_each(|v| *v = 0.0);
    x[r.end..].iter_mut().for_each(|v| *v = 0.0);
}
}

/// Attention of one new token per row: `q` `[rows, heads, 1, d]` (contiguous), `k`, `v`
/// `[rows, kv_heads, live, d]` (views into the cache, strided) → `[rows, 1, heads * d]`.
pub(crate) struct DecodeAttention<'a> {
    pub(crate) vis: &'a Visibility,
    /// Multiplies the scores (the attention scale).
    pub(crate) scale: f32,
}

/// Strides of a `[rows, kv_heads, live, d]` view with contiguous `[live, d]` blocks.
fn head_blocks(l: &Layout, what: &str) -> candle_core::Result<(usize, usize, usize)> {
    let st = l.stride();
    let dims = l.dims();
    if dims.len() != 4 || st[3] != 1 || st[2] != dims[3] {
        candle_core::bail!("{what}: unsupported layout {dims:?} / {st:?}");
    }
    Ok((l.start_offset(), st[0], st[1]))
}

impl CustomOp3 for DecodeAttention<'_> {
    fn name(&self) -> &'static str {
        "decode-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let q = f32_slice(s1, "decode-attention q")?;
        let k = f32_slice(s2, "decode-attention k")?;
        let v = f32_slice(s3, "decode-attention v")?;
        let Some((q0, _)) = l1.contiguous_offsets() else {
            candle_core::bail!("decode-attention: q must be contiguous");
        };
        let (rows, heads, one, d) = l1.shape().dims4()?;
        let (_, kv_heads, live, _) = l2.shape().dims4()?;
        if one != 1 || heads % kv_heads != 0 || l3.dims() != l2.dims() {
            candle_core::bail!(
                "decode-attention: shapes {:?} {:?} {:?}",
                l1.dims(),
                l2.dims(),
                l3.dims()
            );
        }
        let rep = heads / kv_heads;
        let (k0, ksb, ksh) = head_blocks(l2, "decode-attention k")?;
        let (v0, vsb, vsh) = head_blocks(l3, "decode-attention v")?;
        let mut out = vec![0f32; rows * heads * d];
        // One task per (row, kv head): its keys and values are read once for `rep` queries.
        out.par_chunks_mut(rep * d)
            .enumerate()
            .for_each(|(task, out)| {
                let (b, g) = (task / kv_heads, task % kv_heads);
                let r = self.vis.range(b, 0);
                let r = r.start.min(live)..r.end.min(live);
                let kb = &k[k0 + b * ksb + g * ksh..][..live * d];
                let vb = &v[v0 + b * vsb + g * vsh..][..live * d];
                let qs = &q[q0 + (b * heads + g * rep) * d..][..rep * d];
                decode_task(qs, kb, vb, r, rep, d, self.scale, out);
            });
        Ok((CpuStorage::F32(out), Shape::from((rows, 1, heads * d))))
    }
}

multiversion! {
/// One (row, key/value head) of [`DecodeAttention`]: `rep` queries of width `d` against the
/// visible slots `r` of the head's keys `kb` and values `vb`, into `out` (`rep * d`).
fn decode_task(
    qs: &[f32],
    kb: &[f32],
    vb: &[f32],
    r: Range<usize>,
    rep: usize,
    d: usize,
    scale: f32,
    out: &mut [f32],
) {
    let n = r.len();
    let mut scores = vec![0f32; rep * n];
    for (j, s) in r.clone().enumerate() {
        let key = &kb[s * d..(s + 1) * d];
        for h in 0..rep {
            scores[h * n + j] = dot(&qs[h * d..(h + 1) * d], key);
        }
    }
    for h in 0..rep {
        let p = &mut scores[h * n..(h + 1) * n];
        softmax_in(p, scale);
        let o = &mut out[h * d..(h + 1) * d];
        for (j, s) in r.clone().enumerate() {
            axpy(o, p[j], &vb[s * d..(s + 1) * d]);
        }
    }
}
}

/// `a + b` for two contiguous f32 tensors of the same shape (the residual connections).
pub(crate) struct Add;

impl CustomOp2 for Add {
    fn name(&self) -> &'static str {
        "add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let a = f32_slice(s1, "add")?;
        let b = f32_slice(s2, "add")?;
        let (Some((a0, a1)), Some((b0, b1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("add: inputs must be contiguous");
        };
        if l1.dims() != l2.dims() {
            candle_core::bail!("add: shapes {:?} {:?}", l1.dims(), l2.dims());
        }
        let (a, b) = (&a[a0..a1], &b[b0..b1]);
        let mut out = vec![0f32; a.len()];
        out.par_chunks_mut(16_384)
            .zip(a.par_chunks(16_384).zip(b.par_chunks(16_384)))
            .for_each(|(o, (a, b))| add_into(o, a, b));
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The activation of a gated MLP.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Gate {
    Silu,
    GeluTanh,
}

/// `act(gate) * up` for two contiguous tensors of the same shape.
pub(crate) struct GatedActivation(pub(crate) Gate);

impl CustomOp2 for GatedActivation {
    fn name(&self) -> &'static str {
        "gated-activation"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = f32_slice(s1, "gated-activation gate")?;
        let u = f32_slice(s2, "gated-activation up")?;
        let (Some((g0, g1)), Some((u0, u1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("gated-activation: inputs must be contiguous");
        };
        if l1.dims() != l2.dims() {
            candle_core::bail!("gated-activation: shapes {:?} {:?}", l1.dims(), l2.dims());
        }
        let (g, u) = (&g[g0..g1], &u[u0..u1]);
        let mut out = vec![0f32; g.len()];
        let gate = self.0;
        out.par_chunks_mut(4096)
            .zip(g.par_chunks(4096).zip(u.par_chunks(4096)))
            .for_each(|(o, (g, u))| match gate {
                Gate::Silu => silu_mul(o, g, u),
                Gate::GeluTanh => gelu_mul(o, g, u),
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

multiversion! {
    fn add_into(o: &mut [f32], a: &[f32], b: &[f32]) {
        for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
            *o = a + b;
        }
    }
}

multiversion! {
    fn silu_mul(o: &mut [f32], g: &[f32], u: &[f32]) {
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            *o = act(Gate::Silu, g) * u;
        }
    }
}

multiversion! {
    fn gelu_mul(o: &mut [f32], g: &[f32], u: &[f32]) {
        for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
            *o = act(Gate::GeluTanh, g) * u;
        }
    }
}

#[inline(always)]
fn act(gate: Gate, x: f32) -> f32 {
    match gate {
        Gate::Silu => x / (1.0 + exp(-x)),
        Gate::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2 / pi)
            let y = C * (x + 0.044_715 * x * x * x);
            // tanh(y) = 1 - 2 / (e^{2y} + 1), exact at both ends of the clamped exp.
            0.5 * x * (2.0 - 2.0 / (exp(2.0 * y) + 1.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, D};

    fn vis(starts: Vec<usize>, base: usize, len: usize, window: Option<usize>) -> Visibility {
        Visibility {
            starts,
            base,
            len,
            window,
        }
    }

    #[test]
    fn visibility_is_causal_padded_and_windowed() {
        #[track_caller]
        fn check(v: &Visibility, b: usize, l: usize, expected: Range<usize>) {
            assert_eq!(v.range(b, l), expected);
        }
        let v = vis(vec![0, 2], 3, 2, None);
        check(&v, 0, 0, 0..4);
        check(&v, 0, 1, 0..5);
        check(&v, 1, 1, 2..5);
        let w = vis(vec![0, 2], 3, 2, Some(2));
        check(&w, 0, 1, 3..5);
        check(&w, 1, 0, 2..4);
        assert!(!vis(vec![0, 0], 5, 1, None).masks_anything());
        assert!(vis(vec![0, 1], 5, 1, None).masks_anything());
        assert!(vis(vec![0], 0, 3, None).masks_anything());
        assert!(vis(vec![0], 5, 1, Some(4)).masks_anything());
    }

    /// The reference: scores, additive mask, softmax and values as plain candle operations.
    fn reference(q: &Tensor, k: &Tensor, v: &Tensor, vis: &Visibility) -> Tensor {
        let (rows, heads, len, d) = q.dims4().unwrap();
        let (_, kvh, live, _) = k.dims4().unwrap();
        let rep = heads / kvh;
        let mut m = vec![f32::NEG_INFINITY; rows * len * live];
        for b in 0..rows {
            for l in 0..len {
                for s in vis.range(b, l) {
                    m[(b * len + l) * live + s] = 0.0;
                }
            }
        }
        let mask = Tensor::from_vec(m, (rows, 1, 1, len, live), &Device::Cpu).unwrap();
        let att = q
            .reshape((rows, kvh, rep * len, d))
            .unwrap()
            .matmul(&k.t().unwrap())
            .unwrap()
            .reshape((rows, kvh, rep, len, live))
            .unwrap()
            .broadcast_add(&mask)
            .unwrap();
        let att = candle_nn::ops::softmax(&att, D::Minus1)
            .unwrap()
            .reshape((rows, kvh, rep * len, live))
            .unwrap();
        att.matmul(&v.contiguous().unwrap())
            .unwrap()
            .reshape((rows, heads, len, d))
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn kernels_match_plain_candle_operations() {
        let dev = Device::Cpu;
        let (rows, kvh, rep, d, cap) = (3, 2, 3, 16, 12);
        let kc = Tensor::randn(0f32, 1., (rows, kvh, cap, d), &dev).unwrap();
        let vc = Tensor::randn(0f32, 1., (rows, kvh, cap, d), &dev).unwrap();
        // A live view of 9 slots starting at slot 1, as the cache hands it out.
        let (k, v) = (kc.narrow(2, 1, 9).unwrap(), vc.narrow(2, 1, 9).unwrap());
        for window in [None, Some(4)] {
            // Decoding: one query per row at slot 8, rows starting at 0, 3 and 6.
            let vis1 = vis(vec![0, 3, 6], 8, 1, window);
            let q = Tensor::randn(0f32, 1., (rows, kvh * rep, 1, d), &dev).unwrap();
            let got = q
                .apply_op3_no_bwd(
                    &k,
                    &v,
                    &DecodeAttention {
                        vis: &vis1,
                        scale: 0.25,
                    },
                )
                .unwrap()
                .reshape((rows, kvh * rep, 1, d))
                .unwrap();
            let want = reference(&(&q * 0.25).unwrap(), &k, &v, &vis1);
            assert!(max_diff(&got, &want) < 1e-5, "{window:?}");

            // Prefill-like: 4 queries per row at slots 5..9.
            let vis4 = vis(vec![0, 3, 6], 5, 4, window);
            let q = Tensor::randn(0f32, 1., (rows, kvh * rep, 4, d), &dev).unwrap();
            let att = q
                .reshape((rows, kvh, rep * 4, d))
                .unwrap()
                .matmul(&k.t().unwrap())
                .unwrap();
            att.inplace_op1(&MaskedSoftmax {
                vis: &vis4,
                scale: 0.25,
            })
            .unwrap();
            let got = att
                .matmul(&v)
                .unwrap()
                .reshape((rows, kvh * rep, 4, d))
                .unwrap();
            let want = reference(&(&q * 0.25).unwrap(), &k, &v, &vis4);
            assert!(max_diff(&got, &want) < 1e-5, "{window:?}");
        }
    }

    #[test]
    fn gated_activations_match_candle() {
        let dev = Device::Cpu;
        let g = Tensor::randn(0f32, 2., (3, 5000), &dev).unwrap();
        let u = Tensor::randn(0f32, 1., (3, 5000), &dev).unwrap();
        let silu = g
            .apply_op2_no_bwd(&u, &GatedActivation(Gate::Silu))
            .unwrap();
        let want = (candle_nn::ops::silu(&g).unwrap() * &u).unwrap();
        assert!(max_diff(&silu, &want) < 1e-5);
        let gelu = g
            .apply_op2_no_bwd(&u, &GatedActivation(Gate::GeluTanh))
            .unwrap();
        let want = (g.gelu().unwrap() * &u).unwrap();
        assert!(max_diff(&gelu, &want) < 1e-5);
    }
}
