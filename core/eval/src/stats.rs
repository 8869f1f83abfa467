//! Statistics for comparing runs: mean ± sample standard deviation over seeds, and paired
//! significance tests over per-user metrics (two models evaluated on the same users) — the
//! paired t-test and the Wilcoxon signed-rank test — with Holm's step-down correction across a
//! table of comparisons. Definitions follow SciPy (`ttest_rel`, `wilcoxon` with
//! `zero_method="wilcox"`, `correction=True`, normal approximation), and the tests pin SciPy's
//! outputs. Per-user samples are large (hundreds to thousands of users), where the normal
//! approximation of the Wilcoxon statistic is accurate.

/// Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value).
pub fn mean_sd(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() == 1 {
        return (mean, 0.0);
    }
    let ss: f64 = xs.iter().map(|x| (x - mean).powi(2)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// A test statistic and its two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
}

/// Paired t-test of `a - b` (two-sided). `None` when there are fewer than two pairs or the
/// lengths differ. Identical samples give t = 0, p = 1; a constant non-zero difference gives
/// p = 0.
pub fn paired_t(a: &[f64], b: &[f64]) -> Option<TestResult> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let (mean, sd) = mean_sd(&d);
    let n = d.len() as f64;
    if sd == 0.0 {
        let p = if mean == 0.0 { 1.0 } else { 0.0 };
        let t = if mean == 0.0 {
            0.0
        } else {
            mean.signum() * f64::INFINITY
        };
        return Some(TestResult {
            statistic: t,
            p_value: p,
        });
    }
    let t = mean / (sd / n.sqrt());
    Some(TestResult {
        statistic: t,
        p_value: student_t_two_sided(t, n - 1.0),
    })
}

/// Wilcoxon signed-rank test of `a - b` (two-sided): zero differences dropped, tied absolute
/// differences get their average rank, normal approximation with tie and continuity
/// corrections. The statistic is SciPy's: the smaller of the positive and negative rank sums.
/// `None` when the lengths differ or every difference is zero.
pub fn wilcoxon(a: &[f64], b: &[f64]) -> Option<TestResult> {
    if a.len() != b.len() {
        return None;
    }
    let mut d: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x - y)
        .filter(|d| *d != 0.0)
        .collect();
    if d.is_empty() {
        return None;
    }
    d.sort_by(|x, y| x.abs().total_cmp(&y.abs()));
    let n = d.len();
    let (mut r_plus, mut r_minus, mut tie_term) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && d[j + 1].abs() == d[i].abs() {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let rank = (i + j + 2) as f64 / 2.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        for x in &d[i..=j] {
            if *x > 0.0 {
                r_plus += rank;
            } else {
                r_minus += rank;
            }
        }
        i = j + 1;
    }
    let nf = n as f64;
    let stat = f64::min(r_plus, r_minus);
    let mean = nf * (nf + 1.0) / 4.0;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term / 48.0;
    if var <= 0.0 {
        return Some(TestResult {
            statistic: stat,
            p_value: 1.0,
        });
    }
    // Continuity correction towards the mean (stat <= mean always holds for the minimum).
    let z = (stat - mean + 0.5).min(0.0) / var.sqrt();
    Some(TestResult {
        statistic: stat,
        p_value: (2.0 * normal_cdf(z)).min(1.0),
    })
}

/// Holm's step-down adjustment of p-values (family-wise error control): sort ascending,
/// multiply the i-th smallest (0-based) by `m - i`, make the sequence non-decreasing, cap at 1.
/// Returned in the input order. NaN p-values are left out of the family and stay NaN.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    idx.sort_by(|&x, &y| p[x].total_cmp(&p[y]));
    let m = idx.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let adj = (p[i] * (m - rank) as f64).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// Two-sided p-value of Student's t with `df` degrees of freedom:
/// `P(|T| >= |t|) = I_{df/(df+t²)}(df/2, 1/2)`.
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    reg_inc_beta(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// Standard normal CDF through the complementary error function.
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// `erfc(x)` with relative error below 1.2e-7 everywhere (Numerical Recipes' Chebyshev fit).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Regularised incomplete beta `I_x(a, b)` by its continued fraction (Lentz's method), using
/// the symmetry `I_x(a, b) = 1 - I_{1-x}(b, a)` where the fraction converges slowly.
fn reg_inc_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, 1.0 - x) / b
    }
}

fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        d = if d.abs() < TINY { TINY } else { d };
        c = 1.0 + aa / c;
        c = if c.abs() < TINY { TINY } else { c };
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// `ln Γ(x)` for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection keeps the series in its accurate range.
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut acc = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        acc += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + acc.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn close(got: f64, want: f64, tol: f64) {
        assert!((got - want).abs() <= tol, "got {got}, want {want}");
    }

    // Reference values from SciPy 1.x (`scipy.stats`).
    const A: [f64; 10] = [0.1, 0.3, 0.25, 0.0, 0.5, 0.42, 0.33, 0.0, 0.12, 0.9];
    const B: [f64; 10] = [0.05, 0.2, 0.3, 0.0, 0.4, 0.40, 0.10, 0.1, 0.02, 0.7];

    #[test]
    fn t_distribution_matches_scipy() {
        // 2 * t.sf(2.0, 5), 2 * t.sf(0.5, 30), 2 * t.sf(10, 3)
        close(
            student_t_two_sided(2.0, 5.0),
            0.101_939_478_829_858_35,
            1e-10,
        );
        close(
            student_t_two_sided(-0.5, 30.0),
            0.620_723_004_885_127_2,
            1e-10,
        );
        close(
            student_t_two_sided(10.0, 3.0),
            0.002_128_399_058_414_150_3,
            1e-12,
        );
        close(normal_cdf(0.0), 0.5, 1e-7);
        close(normal_cdf(-1.959_964), 0.025, 1e-7);
    }

    #[test]
    fn paired_tests_match_scipy() {
        // ttest_rel(A, B): statistic 1.9896923344156705, p 0.0778351622272588
        let t = paired_t(&A, &B).unwrap();
        close(t.statistic, 1.989_692_334_415_670_5, 1e-10);
        close(t.p_value, 0.077_835_162_227_258_8, 1e-9);
        // wilcoxon(A, B, zero_method="wilcox", correction=True, method="approx"):
        // statistic 9.0, p 0.12320491142033999 (one zero difference dropped, tied ranks)
        let w = wilcoxon(&A, &B).unwrap();
        close(w.statistic, 9.0, 0.0);
        close(w.p_value, 0.123_204_911_420_34, 1e-6);
        // symmetric in sign
        close(wilcoxon(&B, &A).unwrap().p_value, w.p_value, 1e-12);
    }

    #[test]
    fn degenerate_samples() {
        assert_eq!(paired_t(&[1.0], &[0.0]), None);
        assert_eq!(paired_t(&[1.0, 2.0], &[0.0]), None);
        assert_eq!(paired_t(&[1.0, 2.0], &[1.0, 2.0]).unwrap().p_value, 1.0);
        assert_eq!(paired_t(&[1.0, 2.0], &[0.0, 1.0]).unwrap().p_value, 0.0);
        assert_eq!(wilcoxon(&[1.0, 2.0], &[1.0, 2.0]), None);
        assert_eq!(mean_sd(&[0.5]), (0.5, 0.0));
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0, 4.0]);
        close(m, 2.5, 1e-12);
        close(s, 1.290_994_448_735_805_6, 1e-12);
    }

    #[test]
    fn holm_steps_down_and_stays_monotone() {
        // sorted 0.01, 0.02, 0.03, 0.5 → ×4, ×3, ×2, ×1 = 0.04, 0.06, 0.06, 0.5
        let adj = holm(&[0.03, 0.01, 0.5, 0.02]);
        for (g, w) in adj.iter().zip([0.06, 0.04, 0.5, 0.06]) {
            close(*g, w, 1e-12);
        }
        let with_nan = holm(&[f64::NAN, 0.4, 0.9]);
        assert!(with_nan[0].is_nan());
        close(with_nan[1], 0.8, 1e-12);
        close(with_nan[2], 0.9, 1e-12);
    }
}
