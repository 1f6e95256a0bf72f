//! KL, χ² and total variation between a target with a known density p and a model density q,
//! each with an error estimate: by quadrature on a grid in 1-D and 2-D, by Monte Carlo over
//! draws from the target above that. When the model has no density of its own (a diffusion
//! model), q is a Gaussian KDE fitted to its samples ([`scott_bandwidth`]).
//!
//! Conventions: KL(p ‖ q) = ∫ p ln(p/q) (nats; the direction maximum likelihood minimises),
//! χ²(q ‖ p) = ∫ (q − p)²/p = E_p[(q/p − 1)²] (Pearson), TV = ½ ∫ |p − q|.

use ndarray::{Array1, Array2, ArrayView2};

/// A value with its error estimate (one standard error for Monte Carlo; the difference from
/// the half-resolution grid for quadrature).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The estimate.
    pub value: f64,
    /// Its error estimate.
    pub error: f64,
}

/// KL(p ‖ q), χ²(q ‖ p) and TV(p, q).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Divergences {
    /// KL(p ‖ q), nats.
    pub kl: Estimate,
    /// Pearson χ²(q ‖ p).
    pub chi2: Estimate,
    /// Total variation distance.
    pub tv: Estimate,
}

/// Log densities (nats) of the rows of a point set.
pub type LogDensity<'a> = &'a (dyn Fn(ArrayView2<f32>) -> Array1<f64> + Sync);

/// The three integrands at one point, from ln p and ln q: p ln(p/q), p (q/p − 1)², ½|p − q|.
fn integrands(lp: f64, lq: f64) -> [f64; 3] {
    let p = lp.exp();
    if p == 0.0 {
        let q = lq.exp();
        let chi = if q == 0.0 { 0.0 } else { f64::INFINITY };
        return [0.0, chi, 0.5 * q];
    }
    let r = (lq - lp).exp();
    [
        p * (lp - lq),
        p * (r - 1.0) * (r - 1.0),
        0.5 * p * (r - 1.0).abs(),
    ]
}

/// The divergences by the trapezoid rule on a grid of `points` (odd, ≥ 5) nodes per axis over
/// the box [lo, hi] (1-D or 2-D). The error estimate is |I_h − I_2h| (the same rule on every
/// other node) plus, for TV, half the mass of p and q missing from the box.
pub fn by_quadrature(
    log_p: LogDensity,
    log_q: LogDensity,
    lo: &[f64],
    hi: &[f64],
    points: usize,
) -> Divergences {
    let d = lo.len();
    assert!(d == 1 || d == 2, "quadrature is for 1-D and 2-D");
    assert!(points >= 5 && points % 2 == 1, "an odd number of nodes ≥ 5");
    let axes: Vec<Vec<f64>> = (0..d)
        .map(|a| {
            (0..points)
                .map(|i| lo[a] + (hi[a] - lo[a]) * i as f64 / (points - 1) as f64)
                .collect()
        })
        .collect();
    let total = points.pow(d as u32);
    let grid = Array2::from_shape_fn((total, d), |(i, a)| {
        let idx = if a == 0 { i % points } else { i / points };
        axes[a][idx] as f32
    });
    let (lp, lq) = (log_p(grid.view()), log_q(grid.view()));
    // Trapezoid weights per axis at spacing h (all nodes) and 2h (even nodes).
    let weight = |i: usize, step: usize, a: usize| -> f64 {
        if !i.is_multiple_of(step) {
            return 0.0;
        }
        let h = (hi[a] - lo[a]) / (points - 1) as f64 * step as f64;
        if i == 0 || i == points - 1 {
            0.5 * h
        } else {
            h
        }
    };
    let mut fine = [0.0f64; 5];
    let mut coarse = [0.0f64; 5];
    for i in 0..total {
        let f = integrands(lp[i], lq[i]);
        let vals = [f[0], f[1], f[2], lp[i].exp(), lq[i].exp()];
        let (w1, w2) = (0..d).fold((1.0, 1.0), |(w1, w2), a| {
            let idx = if a == 0 { i % points } else { i / points };
            (w1 * weight(idx, 1, a), w2 * weight(idx, 2, a))
        });
        for k in 0..5 {
            fine[k] += w1 * vals[k];
            coarse[k] += w2 * vals[k];
        }
    }
    let est = |k: usize| Estimate {
        value: fine[k],
        error: (fine[k] - coarse[k]).abs(),
    };
    let mut tv = est(2);
    tv.error += 0.5 * ((1.0 - fine[3]).abs() + (1.0 - fine[4]).abs());
    Divergences {
        kl: est(0),
        chi2: est(1),
        tv,
    }
}

/// The divergences as means over `target_draws` (rows drawn from p): KL = E_p[ln p − ln q],
/// χ² = E_p[(q/p − 1)²], TV = ½ E_p|q/p − 1|, each with its standard error s/√n. TV by this
/// route misses the mass of q where p = 0 (none for targets with full support).
pub fn by_monte_carlo(
    target_draws: ArrayView2<f32>,
    log_p: LogDensity,
    log_q: LogDensity,
) -> Divergences {
    let (lp, lq) = (log_p(target_draws), log_q(target_draws));
    let n = lp.len() as f64;
    let mean_se = |v: Vec<f64>| {
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Estimate {
            value: m,
            error: (var / n).sqrt(),
        }
    };
    let ratio: Vec<f64> = lp.iter().zip(&lq).map(|(p, q)| (q - p).exp()).collect();
    Divergences {
        kl: mean_se(lp.iter().zip(&lq).map(|(p, q)| p - q).collect()),
        chi2: mean_se(ratio.iter().map(|r| (r - 1.0).powi(2)).collect()),
        tv: mean_se(ratio.iter().map(|r| 0.5 * (r - 1.0).abs()).collect()),
    }
}

/// Scott's rule for a Gaussian KDE of `x` (n × d): h = σ̄ n^(−1/(d+4)), σ̄ the root mean
/// per-coordinate variance.
pub fn scott_bandwidth(x: ArrayView2<f32>) -> f64 {
    let (n, d) = x.dim();
    let cov = crate::linalg::covariance(x, 1);
    let sigma = (cov.diag().sum() / d as f64).sqrt();
    sigma * (n as f64).powf(-1.0 / (d as f64 + 4.0))
}

/// The box [lo, hi] per axis spanned by the rows of the sets, widened by `margin` × its width
/// on each side.
pub fn bounding_box(sets: &[ArrayView2<f32>], margin: f64) -> (Vec<f64>, Vec<f64>) {
    let d = sets[0].ncols();
    let mut lo = vec![f64::INFINITY; d];
    let mut hi = vec![f64::NEG_INFINITY; d];
    for s in sets {
        for row in s.rows() {
            for (a, &v) in row.iter().enumerate() {
                lo[a] = lo[a].min(v as f64);
                hi[a] = hi[a].max(v as f64);
            }
        }
    }
    for a in 0..d {
        let w = (hi[a] - lo[a]).max(1e-12);
        lo[a] -= margin * w;
        hi[a] += margin * w;
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::{Distribution, Gaussian};
    use crate::metrics::kl_gaussians;
    use crate::rng::{Role, stream};
    use ndarray::array;

    /// Φ(x) by Simpson's rule on the standard normal density.
    fn normal_cdf(x: f64) -> f64 {
        // Simpson on [−12, x] with 20 000 intervals: error ≪ 1e-12.
        let (a, n) = (-12.0, 20_000);
        let h = (x - a) / n as f64;
        let f = |t: f64| (-0.5 * t * t).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let mut s = f(a) + f(x);
        for i in 1..n {
            s += f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    #[test]
    fn two_gaussians_in_one_dimension_match_closed_forms() {
        // p = N(0, 1), q = N(1, 1.5²).
        let (p, q) = (
            Gaussian::new(array![0.0], array![[1.0]]),
            Gaussian::new(array![1.0], array![[2.25]]),
        );
        let lp = |x: ArrayView2<f32>| p.log_density(x).unwrap();
        let lq = |x: ArrayView2<f32>| q.log_density(x).unwrap();
        let quad = by_quadrature(&lp, &lq, &[-15.0], &[15.0], 4001);
        let kl = kl_gaussians(&p, &q);
        assert!((quad.kl.value - kl).abs() < 1e-6, "{quad:?} vs {kl}");
        assert!(quad.kl.error < 1e-6);
        // σ_q² > 2σ_p²: χ²(q ‖ p) = ∫ q²/p − 1 diverges; the grid sum is large and unsettled.
        assert!(quad.chi2.value > 1e3 && quad.chi2.error > 1.0);
        // TV with equal variances has a closed form: N(0,1) vs N(1,1): 2Φ(1/2) − 1.
        let q1 = Gaussian::new(array![1.0], array![[1.0]]);
        let lq1 = |x: ArrayView2<f32>| q1.log_density(x).unwrap();
        let tv = 2.0 * normal_cdf(0.5) - 1.0;
        let quad1 = by_quadrature(&lp, &lq1, &[-15.0], &[15.0], 4001);
        assert!((quad1.tv.value - tv).abs() < 1e-6, "{quad1:?} vs {tv}");
        // χ²(q ‖ p) for equal variances: exp(Δμ²) − 1.
        assert!((quad1.chi2.value - (1.0f64.exp() - 1.0)).abs() < 1e-6);
        // Monte Carlo agrees within 4 standard errors.
        let draws = p.sample(100_000, &mut stream(0, 0, Role::Reference));
        let mc = by_monte_carlo(draws.view(), &lp, &lq1);
        for (e, want) in [(mc.kl, 0.5), (mc.tv, tv), (mc.chi2, 1.0f64.exp() - 1.0)] {
            assert!((e.value - want).abs() < 4.0 * e.error, "{e:?} vs {want}");
        }
    }

    #[test]
    fn two_dimensional_grid_and_monte_carlo_agree_on_kl() {
        let p = Gaussian::new(array![0.0, 0.0], array![[1.0, 0.5], [0.5, 1.0]]);
        let q = Gaussian::new(array![0.5, -0.3], array![[1.5, 0.0], [0.0, 0.8]]);
        let lp = |x: ArrayView2<f32>| p.log_density(x).unwrap();
        let lq = |x: ArrayView2<f32>| q.log_density(x).unwrap();
        let kl = kl_gaussians(&p, &q);
        let quad = by_quadrature(&lp, &lq, &[-9.0, -9.0], &[9.0, 9.0], 401);
        assert!((quad.kl.value - kl).abs() < 1e-5, "{quad:?} vs {kl}");
        let draws = p.sample(50_000, &mut stream(1, 0, Role::Reference));
        let mc = by_monte_carlo(draws.view(), &lp, &lq);
        assert!(
            (mc.kl.value - kl).abs() < 4.0 * mc.kl.error,
            "{mc:?} vs {kl}"
        );
    }
}
