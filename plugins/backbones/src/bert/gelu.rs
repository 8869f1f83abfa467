//! BERT's exact GELU, `x·Φ(x) = ½x(1 + erf(x/√2))`, for the inference path on CPU. candle's
//! `gelu_erf` calls a scalar libm `erf` per element, a tenth of the encoder's time on the
//! 1,536-wide intermediate layer; this one uses the rational approximation of erf from Eigen
//! and XLA (clamped to ±4, a few ULP of f32 off), which compiles to branch-free vector code.
//! Other devices and dtypes, and anything that needs gradients, use candle's op.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};

#[derive(Debug)]
struct GeluErf;

const ALPHA: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906_3e-4,
    -2.954_600_2e-3,
    -1.609_603_3e-2,
];
const BETA: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329_3e-3,
    -1.426_474e-2,
];

#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = ALPHA[0];
    for a in &ALPHA[1..] {
        p = p * x2 + a;
    }
    let mut q = BETA[0];
    for b in &BETA[1..] {
        q = q * x2 + b;
    }
    x * p / q
}

fn gelu_slice(src: &[f32], dst: &mut [f32]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf-fast"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gelu-erf-fast needs a contiguous input");
        };
        let src = &storage.as_slice::<f32>()?[start..end];
        let mut out = vec![0f32; src.len()];
        gelu_slice(src, &mut out);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// GELU with the exact (erf) form; fast on CPU f32 when no gradient is needed.
pub(crate) fn gelu_erf(x: &Tensor, need_grad: bool) -> candle_core::Result<Tensor> {
    let fast = !need_grad
        && matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && x.is_contiguous();
    if fast {
        x.apply_op1_no_bwd(&GeluErf)
    } else {
        x.gelu_erf()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    #[track_caller]
    fn check(xs: &[f32]) {
        let t = Tensor::new(xs, &Device::Cpu).unwrap();
        let fast: Vec<f32> = super::gelu_erf(&t, false).unwrap().to_vec1().unwrap();
        let exact: Vec<f32> = t.gelu_erf().unwrap().to_vec1().unwrap();
        for ((x, f), e) in xs.iter().zip(&fast).zip(&exact) {
            assert!(
                (f - e).abs() <= 1e-6 * (1.0 + e.abs()),
                "gelu({x}): {f} vs {e}"
            );
        }
    }

    #[test]
    fn matches_the_libm_erf_form() {
        check(&[
            0.0, 1e-4, -1e-4, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 3.3, -3.3, 5.7, -5.7, 12.0, -12.0,
        ]);
        let grid: Vec<f32> = (-800..=800).map(|i| i as f32 / 100.0).collect();
        check(&grid);
    }
}
