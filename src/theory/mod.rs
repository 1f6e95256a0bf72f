//! Closed-form predictions of the seed papers, to print next to measurements and to test against.
//! Generation g is the g-th fitted model; generation 0 is fitted on real data. [`predict`] says
//! which of them applies to an experiment and writes them beside its measurements.

pub mod predict;

pub use predict::{Prediction, predictions};

/// Expected variance of generation g's Gaussian MLE in the fully synthetic (`replace`) loop with
/// n points a generation, relative to the real variance: ((n − 1)/n)^(g+1), because each MLE
/// variance is the previous one times χ²_{n−1}/n.
pub fn replace_mle_variance(n: usize, generation: usize) -> f64 {
    ((n as f64 - 1.0) / n as f64).powi(generation as i32 + 1)
}

/// Expected squared error of generation g's mean, E‖μ_g − μ‖², relative to tr Σ, in the same
/// loop: 1 − ((n − 1)/n)^(g+1). Each refit adds tr Σ_{g−1}/n of sampling error to the mean, and
/// E tr Σ_t = ((n − 1)/n)^(t+1) tr Σ, so the sum is (tr Σ/n) Σ_{k ≤ g} ((n − 1)/n)^k.
pub fn replace_mle_mean_error(n: usize, generation: usize) -> f64 {
    1.0 - replace_mle_variance(n, generation)
}

/// Standard deviation of that variance ratio across repeats:
/// √(((n² − 1)/n²)^(g+1) − ((n − 1)/n)^(2(g+1))), from E[(χ²_{n−1}/n)²] = (n² − 1)/n².
pub fn replace_mle_variance_sd(n: usize, generation: usize) -> f64 {
    let n = n as f64;
    let k = generation as i32 + 1;
    (((n * n - 1.0) / (n * n)).powi(k) - ((n - 1.0) / n).powi(2 * k))
        .max(0.0)
        .sqrt()
}

/// Within-component variance (per coordinate) of generation g of the `fresh` loop with a
/// Gaussian KDE of bandwidth h on a target of within-component variance σ² and fresh fraction α:
/// v_g = σ² + h² (1 − (1 − α)^(g+1))/α (σ² + h²(g + 1) for α = 0), from
/// v_g = α σ² + (1 − α) v_{g−1} + h² and v_0 = σ² + h² (Khelifa et al. 2026).
pub fn fresh_kde_variance(sigma2: f64, h: f64, alpha: f64, generation: usize) -> f64 {
    let k = generation as i32 + 1;
    if alpha == 0.0 {
        sigma2 + h * h * k as f64
    } else {
        sigma2 + h * h * (1.0 - (1.0 - alpha).powi(k)) / alpha
    }
}

/// Limit over generations of the per-coordinate variance of the `fresh` loop on a Gaussian target
/// of variance σ² when each model samples its training distribution exactly and stops at t₀ (a
/// perfect score, Khelifa et al.): the empirical optimum, whose samples at t₀ are a training point
/// plus noise. In ouro's σ-space convention (samples x₀ + σ(t₀) z, σ(t₀)² = e^{2t₀} − 1 on the OU
/// schedule) v_g = α σ² + (1 − α) v_{g−1} + σ(t₀)², so v_∞ = σ² + σ(t₀)²/α. In the OU marginal
/// convention (samples e^{−t₀} x₀ + √(1 − e^{−2t₀}) z, `ou_marginal`) with a = e^{−2t₀},
/// v_g = a(α σ² + (1 − α) v_{g−1}) + 1 − a, so v_∞ = (a α σ² + 1 − a)/(1 − (1 − α) a).
pub fn fresh_perfect_score_limit(sigma2: f64, t0: f64, alpha: f64, ou_marginal: bool) -> f64 {
    if ou_marginal {
        let a = (-2.0 * t0).exp();
        (a * alpha * sigma2 + 1.0 - a) / (1.0 - (1.0 - alpha) * a)
    } else {
        sigma2 + (2.0 * t0).exp_m1() / alpha
    }
}

/// Lag-1 autocorrelation of μ_t − x̄ in the `augment` loop with an exact Gaussian MLE and
/// synthetic ratio λ: λ/(1 + λ) (Bertrand et al. 2024, Theorem 1 with ε = 0).
pub fn augment_mle_ar1(lambda: f64) -> f64 {
    lambda / (1.0 + lambda)
}

/// Stationary variance of each coordinate of μ_t − x̄ in the same loop: λσ²/(n(1 + 2λ)).
pub fn augment_mle_stationary_variance(lambda: f64, sigma2: f64, n: usize) -> f64 {
    lambda * sigma2 / (n as f64 * (1.0 + 2.0 * lambda))
}

/// Bertrand et al. (2024), Theorem 1: retraining on the real data plus λ times as much synthetic
/// data is locally stable when λ(1 + Lε/α) < 1, where α is the strong concavity of the expected
/// log-likelihood at the optimum, L the Lipschitz constant of its gradient in the data
/// distribution and ε the distance of the best model to the data; the parameters then contract
/// to the optimum at the rate ρ = λ(α + εL)/(α + λ(α − εL)). Returns `Some(ρ)` when the
/// condition holds, `None` when it does not. For an exact Gaussian MLE ε = 0, so the condition is
/// λ < 1 and ρ = λ/(1 + λ) — which is the mean's contraction for every λ
/// ([`augment_mle_ar1`]): the condition is sufficient, not necessary.
pub fn bertrand_contraction(lambda: f64, lipschitz: f64, epsilon: f64, alpha: f64) -> Option<f64> {
    (lambda * (1.0 + lipschitz * epsilon / alpha) < 1.0).then(|| {
        lambda * (alpha + epsilon * lipschitz) / (alpha + lambda * (alpha - epsilon * lipschitz))
    })
}

/// Expected tr Σ_g / tr Σ and E‖μ_g − μ‖² / tr Σ for generations 0 … `generations` − 1 of the
/// `augment` loop with a Gaussian MLE (any covariance structure: only traces enter): a fixed real
/// set of n points plus m samples of model g − 1. With a_g = E tr Σ_g and b_g = E‖μ_g − x̄‖²
/// (x̄ the real set's mean), a_0 = (n − 1)/n tr Σ, b_0 = 0 and, because the pooled MLE is
/// μ_g = (n x̄ + m ȳ)/(n + m) and Σ_g = (n S_D + m S_Y)/(n + m) + nm/(n + m)² (x̄ − ȳ)(x̄ − ȳ)ᵀ
/// with ȳ ~ N(μ_{g−1}, Σ_{g−1}/m) and E tr S_Y = (m − 1)/m a_{g−1}:
/// b_g = (m/(n + m))² b_{g−1} + m/(n + m)² a_{g−1},
/// a_g = ((n − 1) tr Σ + (m − 1) a_{g−1})/(n + m) + (nm b_{g−1} + n a_{g−1})/(n + m)²,
/// and E‖μ_g − μ‖² = tr Σ/n + b_g (the loop's noise has mean zero given the real set). The
/// coefficient m/(n + m) = λ/(1 + λ) of the mean's recursion is Bertrand et al.'s contraction
/// (Theorem 1 with ε = 0); b_g tends to about λ tr Σ/(n(1 + 2λ)) ([`augment_mle_stationary_variance`]).
pub fn augment_mle(n: usize, m: usize, generations: usize) -> Vec<[f64; 2]> {
    let (nf, mf) = (n as f64, m as f64);
    let s = nf + mf;
    let (mut a, mut b) = ((nf - 1.0) / nf, 0.0);
    let mut out = Vec::with_capacity(generations);
    for g in 0..generations {
        if g > 0 {
            let a_next = ((nf - 1.0) + (mf - 1.0) * a) / s + (nf * mf * b + nf * a) / (s * s);
            b = (mf / s).powi(2) * b + mf / (s * s) * a;
            a = a_next;
        }
        out.push([a, 1.0 / nf + b]);
    }
    out
}

/// Expected tr Σ_g / tr Σ and E‖μ_g − μ‖² / tr Σ for generations 0 … `generations` − 1 of the
/// `accumulate` loop with a Gaussian MLE and n points a generation (Gerstgrasser et al. 2024;
/// Dey & Donoho 2024): model g is fitted to the real set and the g synthetic sets so far, so
/// μ_g = μ_{g−1} + (ȳ_g − μ_{g−1})/(g + 1) and, with a_g = E tr Σ_g / tr Σ,
/// a_g = a_{g−1} ((g + (n − 1)/n)/(g + 1) + g/((g + 1)² n)), a_0 = (n − 1)/n,
/// e_g = e_{g−1} + a_{g−1}/(n (g + 1)²), e_0 = 1/n; e_g stays below (π²/6)/n (times the
/// variance's slow drift a_g), where `replace` grows toward 1.
pub fn accumulate_mle(n: usize, generations: usize) -> Vec<[f64; 2]> {
    let nf = n as f64;
    let (mut a, mut e) = ((nf - 1.0) / nf, 1.0 / nf);
    let mut out = Vec::with_capacity(generations);
    for g in 0..generations {
        if g > 0 {
            let k = g as f64 + 1.0;
            e += a / (nf * k * k);
            a *= (g as f64 + (nf - 1.0) / nf) / k + g as f64 / (k * k * nf);
        }
        out.push([a, e]);
    }
    out
}

/// Expected tr Σ_g / tr Σ and E‖μ_g − μ‖² / tr Σ for generations 0 … `generations` − 1 of the
/// `fresh` loop with a (weighted) Gaussian MLE: generation 0 fits r + s real points; generation
/// g ≥ 1 fits r fresh real points and s samples of model g − 1, the real ones holding a share w
/// of the weight (`loop.real_weight`; unweighted: w = r/(r + s)). With the weighted MLE
/// μ_g = w m_r + (1 − w) m_s and Σ_g = w S_r + (1 − w) S_s + w(1 − w)(m_r − m_s)(m_r − m_s)ᵀ, and
/// c_g = E tr Σ_g / tr Σ, v_g = E‖μ_g − μ‖² / tr Σ:
/// v_g = w²/r + (1 − w)² (v_{g−1} + c_{g−1}/s),
/// c_g = w (r − 1)/r + (1 − w) c_{g−1} (s − 1)/s + w(1 − w)(1/r + c_{g−1}/s + v_{g−1}),
/// with c_0 = (N − 1)/N and v_0 = 1/N, N = r + s. With c ≈ 1 the stationary error
/// (w²/r + (1 − w)²/s)/(1 − (1 − w)²) is smallest at w* = (√(k² + 4k) − k)/2 for s = k r
/// (He, Xu & Cheng 2025: the golden ratio 0.618 at k = 1).
pub fn fresh_mle(r: usize, s: usize, w: f64, generations: usize) -> Vec<[f64; 2]> {
    let (rf, sf) = (r as f64, s as f64);
    let n = rf + sf;
    let (mut c, mut v) = ((n - 1.0) / n, 1.0 / n);
    let mut out = Vec::with_capacity(generations);
    for g in 0..generations {
        if g > 0 {
            // A part with no points contributes nothing (its weight is then 0 or 1).
            let real_v = if r > 0 { w * w / rf } else { 0.0 };
            let syn_v = if s > 0 {
                (1.0 - w).powi(2) * (v + c / sf)
            } else {
                0.0
            };
            let real_c = if r > 0 { w * (rf - 1.0) / rf } else { 0.0 };
            let syn_c = if s > 0 {
                (1.0 - w) * c * (sf - 1.0) / sf
            } else {
                0.0
            };
            let between = if r > 0 && s > 0 {
                w * (1.0 - w) * (1.0 / rf + c / sf + v)
            } else {
                0.0
            };
            let c_next = real_c + syn_c + between;
            v = real_v + syn_v;
            c = c_next;
        }
        out.push([c, v]);
    }
    out
}

/// The real-data weight that minimises the stationary error of [`fresh_mle`] with s = k r
/// synthetic points per real one: w* = (√(k² + 4k) − k)/2 (He, Xu & Cheng 2025).
pub fn optimal_real_weight(k: f64) -> f64 {
    ((k * k + 4.0 * k).sqrt() - k) / 2.0
}

/// Variance per coordinate of a reconstruction from noise level σ (Yamaguchi & Fukuda) of data
/// N(m, s²) with the exact denoiser of a model N(m, s_m²), in σ-space (x_σ = x₀ + σ z): an exact
/// reverse process draws x̂ from the model's posterior given x_σ, x̂ = m + K(x_σ − m) + √v ξ with
/// K = s_m²/(s_m² + σ²) and v = s_m² σ²/(s_m² + σ²), so Var x̂ = K²(s² + σ²) + v. It runs from
/// s² at σ = 0 to s_m² as σ → ∞ (exactly s² at every σ when s_m = s).
pub fn reconstruction_gaussian_variance(s2: f64, sm2: f64, sigma: f64) -> f64 {
    let q = sigma * sigma;
    let k = sm2 / (sm2 + q);
    k * k * (s2 + q) + sm2 * q / (sm2 + q)
}

/// Tail mass P(|x| > a) of x ~ N(0, v): erfc(a/√(2v)).
pub fn gaussian_tail(v: f64, a: f64) -> f64 {
    libm::erfc(a / (2.0 * v).sqrt())
}

/// E‖μ̂ − μ‖² after one round of n real + m synthetic points for a Gaussian N(μ, σ² I_d):
/// σ² d (1/n + m/(n + m)²) (Fu et al. 2024), largest at m = n. With `mle_variance` the synthetic
/// points come from the MLE fit (variance (n − 1)/n σ²), which scales the second term by (n − 1)/n.
pub fn mixed_mean_error(n: usize, m: usize, sigma2: f64, d: usize, mle_variance: bool) -> f64 {
    let (n, m) = (n as f64, m as f64);
    let shrink = if mle_variance { (n - 1.0) / n } else { 1.0 };
    sigma2 * d as f64 * (1.0 / n + shrink * m / ((n + m) * (n + m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_at_known_points() {
        assert!((replace_mle_variance(100, 0) - 0.99).abs() < 1e-15);
        assert!((fresh_kde_variance(0.36, 0.6, 1.0, 5) - 0.72).abs() < 1e-12);
        assert!((fresh_kde_variance(0.36, 0.6, 0.5, 0) - 0.72).abs() < 1e-12);
        assert!((augment_mle_ar1(1.0) - 0.5).abs() < 1e-15);
        // the perfect-score limit is the h = 0 fresh law with σ(t₀)² for h², at g → ∞; the OU
        // marginal convention iterates its own recursion to its own limit
        let s0 = (0.04f64).exp_m1();
        let sigma_space = fresh_kde_variance(0.36, s0.sqrt(), 0.5, 200);
        assert!((fresh_perfect_score_limit(0.36, 0.02, 0.5, false) - sigma_space).abs() < 1e-12);
        let a = (-0.04f64).exp();
        let mut v = 0.36;
        for _ in 0..500 {
            v = a * (0.5 * 0.36 + 0.5 * v) + 1.0 - a;
        }
        assert!((fresh_perfect_score_limit(0.36, 0.02, 0.5, true) - v).abs() < 1e-12);
        // P(|x| > 1.959964) = 0.05 for a standard normal; a perfect model keeps the variance
        assert!((gaussian_tail(1.0, 1.959_963_984_540_054) - 0.05).abs() < 1e-12);
        for sigma in [0.0, 0.3, 3.0, 300.0] {
            assert!((reconstruction_gaussian_variance(0.8, 0.8, sigma) - 0.8).abs() < 1e-12);
        }
        assert!((reconstruction_gaussian_variance(1.0, 0.7, 1e6) - 0.7).abs() < 1e-6);
        assert_eq!(
            bertrand_contraction(0.5, 3.0, 0.0, 2.0),
            Some(augment_mle_ar1(0.5))
        );
        assert_eq!(bertrand_contraction(1.0, 3.0, 0.0, 2.0), None);
        // ε > 0 tightens the condition: λ = 0.5 fails once Lε/α ≥ 1
        assert!(bertrand_contraction(0.5, 1.0, 0.5, 1.0).is_some());
        assert_eq!(bertrand_contraction(0.5, 1.0, 1.0, 1.0), None);
        // the mean's AR(1) coefficient in the exact recursion is m/(n + m) = λ/(1 + λ): with the
        // variance held at its start, b_1 = m/(n + m)² a_0
        let c = augment_mle(10, 20, 2);
        assert!((c[1][1] - 0.1 - 20.0 / 900.0 * 0.9).abs() < 1e-15);
        let peak = mixed_mean_error(100, 100, 1.0, 1, false);
        assert!(peak > mixed_mean_error(100, 90, 1.0, 1, false));
        assert!(peak > mixed_mean_error(100, 110, 1.0, 1, false));
    }
}
