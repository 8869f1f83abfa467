//! Running the CPU kernels with the vector width the machine has. The crate is compiled for
//! baseline x86-64 (SSE2), where the compiler vectorizes loops 4 floats wide; functions
//! defined with [`multiversion!`] also exist compiled for AVX-512 and AVX2 + FMA, and the
//! widest the CPU supports runs, so their loops are vectorized 16 (or 8) wide.
//!
//! Also: [`exp`], a polynomial `e^x` that vectorizes (the C library's `expf` is a call per
//! element), for softmax and the MLP activations.

/// Defines a function whose body is compiled three times — for AVX-512, for AVX2 + FMA and for
/// the baseline — and picks the widest the CPU supports at each call (a cached check). The body
/// and the `#[inline(always)]` helpers it calls are vectorized at that width.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        // The wrapper only forwards its arguments: kernels take as many as they need.
        #[allow(unsafe_code, clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) $(-> $ret)? { inner($($arg),*) }
                match $crate::gguf::simd::level() {
                    // SAFETY: `level()` checked that the CPU has these features.
                    2 => return unsafe { v4($($arg),*) },
                    // SAFETY: as above.
                    1 => return unsafe { v3($($arg),*) },
                    _ => {}
                }
            }
            inner($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// 2: AVX-512, 1: AVX2 + FMA, 0: baseline. Detected once.
pub(crate) fn level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static LEVEL: OnceLock<u8> = OnceLock::new();
        *LEVEL.get_or_init(|| {
            let fma = std::is_x86_feature_detected!("fma");
            if fma
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vl")
            {
                2
            } else if fma && std::is_x86_feature_detected!("avx2") {
                1
            } else {
                0
            }
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// `e^x` to within ~2 ulp for `x` in [-87, 88] (clamped outside), branch-free so that loops
/// over it vectorize: `e^x = 2^n · e^r` with `|r| ≤ ln2 / 2` and a degree-6 polynomial for e^r.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding and removing 1.5 · 2^23 (no rounding instruction needed).
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * std::f32::consts::LOG2_E + MAGIC) - MAGIC;
    // ln 2 split in two parts so that `x - n ln2` is exact to f32 precision.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67 + r * (0.041_666_6 + r * (0.008_333_5 + r * 0.001_388_9)))));
    // 2^n through the exponent bits; n is in [-126, 127] after the clamp.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// Dot product with sixteen partial sums (one 512-bit register of them).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let n = a.len().min(b.len()) / 16 * 16;
    for (x, y) in a[..n].chunks_exact(16).zip(b[..n].chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in a[n..].iter().zip(&b[n..]) {
        s += x * y;
    }
    s
}

/// Sum with sixteen partial sums.
#[inline(always)]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let n = x.len() / 16 * 16;
    for c in x[..n].chunks_exact(16) {
        for i in 0..16 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + x[n..].iter().sum::<f32>()
}

/// Largest element (`-inf` for an empty slice), sixteen lanes at a time.
#[inline(always)]
pub(crate) fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let n = x.len() / 16 * 16;
    for c in x[..n].chunks_exact(16) {
        for i in 0..16 {
            // `if` rather than `f32::max`: no NaN bookkeeping, so it maps to `vmaxps`.
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    x[n..]
        .iter()
        .chain(&acc)
        .fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// `o += a * x`.
#[inline(always)]
pub(crate) fn axpy(o: &mut [f32], a: f32, x: &[f32]) {
    for (o, x) in o.iter_mut().zip(x) {
        *o += a * x;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_accurate() {
        #[track_caller]
        fn check(x: f32) {
            let (got, want) = (super::exp(x), x.exp());
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want.max(f32::MIN_POSITIVE),
                "exp({x}) = {got}, want {want}"
            );
        }
        for i in -870..=880 {
            check(i as f32 * 0.1);
        }
        for x in [0.0, -0.0, 1e-8, -1e-8, 0.3466, -0.3466] {
            check(x);
        }
        assert_eq!(super::exp(-1000.0), super::exp(-87.0));
        assert!(super::exp(f32::NEG_INFINITY) < 1e-37);
    }

    super::multiversion! {
        fn dot_axpy(a: &[f32], b: &[f32], o: &mut [f32]) -> f32 {
            super::axpy(o, 2.0, a);
            super::dot(a, b)
        }
    }

    #[test]
    fn multiversioned_code_computes_the_same() {
        let a: Vec<f32> = (0..100).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..100).map(|i| 1.0 - i as f32 * 0.01).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let mut o = vec![1.0; 100];
        let got = dot_axpy(&a, &b, &mut o);
        assert!((got - want).abs() < 1e-2, "{got} vs {want}");
        assert_eq!(o[3], 4.0);
        assert_eq!(super::sum(&a), 2475.0);
        assert_eq!(super::max(&b[..37]), 1.0);
        assert_eq!(super::max(&a), 49.5);
        assert_eq!(super::max(&[]), f32::NEG_INFINITY);
    }
}
