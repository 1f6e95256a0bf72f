//! Probability distributions that can be sampled: analytic targets (Gaussian, Gaussian mixture,
//! Student-t, rings, two moons) and the families that fitted models belong to (Gaussian, Gaussian
//! mixture, Gaussian KDE). Exact moments are given wherever they exist in closed form.

mod gaussian;
mod kde;
mod mixture;
mod shapes;
mod student_t;

pub use gaussian::Gaussian;
pub use kde::Kde;
pub use mixture::GaussianMixture;
pub use shapes::{Moons, Rings};
pub use student_t::StudentT;

use crate::rng::Stream;
use ndarray::{Array1, Array2};
use rand::RngExt;
use rand_distr::StandardNormal;

/// A distribution on ℝ^dim that ouro can draw from.
pub trait Distribution: Send + Sync {
    /// Dimension of a point.
    fn dim(&self) -> usize;
    /// `n` independent draws, one per row (shape [n, dim]).
    fn sample(&self, n: usize, rng: &mut Stream) -> Array2<f32>;
    /// The exact mean, when it exists in closed form.
    fn mean(&self) -> Option<Array1<f64>>;
    /// The exact covariance, when it exists in closed form.
    fn covariance(&self) -> Option<Array2<f64>>;
    /// This distribution as a Gaussian, when it is one (for closed-form KL and W2).
    fn as_gaussian(&self) -> Option<&Gaussian> {
        None
    }
    /// This distribution as a Gaussian mixture, when it is one (for mode coverage).
    fn as_mixture(&self) -> Option<&GaussianMixture> {
        None
    }
    /// The log density (nats) of each row of `x`, when it is known in closed form.
    fn log_density(&self, _x: ndarray::ArrayView2<f32>) -> Option<Array1<f64>> {
        None
    }
    /// The score ∇ log p of each row of `x` (one row per point), when it is known in closed
    /// form.
    fn score(&self, _x: ndarray::ArrayView2<f32>) -> Option<Array2<f64>> {
        None
    }
}

/// An [n, d] matrix of independent standard normal draws in f64.
pub(crate) fn standard_normals(n: usize, d: usize, rng: &mut Stream) -> Array2<f64> {
    Array2::from_shape_simple_fn((n, d), || rng.sample::<f64, _>(StandardNormal))
}

/// Normals per block of [`fill_standard_normals`]: 64 Box–Muller pairs.
const NORMAL_BLOCK: usize = 128;

/// Fills `out` with independent N(0, 1) draws in f32 by the Box–Muller transform, 8 lanes at a
/// time. From two uniform 32-bit words a and b: u = (⌊a/2⌋ + ½)·2⁻³¹ ∈ (0, 1], θ = 2π·b/2³²,
/// z₁ = √(−2 ln u)·cos θ and z₂ = √(−2 ln u)·sin θ. |z| ≤ √(64 ln 2) ≈ 6.66 (the normal's mass
/// beyond is 3·10⁻¹¹) and ln, cos and sin are f32 polynomials good to ~3·10⁻⁷, so this is for
/// bulk noise (training batches, sampler steps), not for studies of extreme tails. Draws are made in blocks of
/// 128 values (a partial last block still consumes a whole block of words), so the stream
/// position depends only on `out.len()`.
///
/// Why not `rand_distr`'s ziggurat: one f64 draw per value (a 64-bit word and a branch) cost
/// ~5 ns; drawing the 32 768 normals of a D = 64, batch 512 training step was 2% of the step.
pub(crate) fn fill_standard_normals(rng: &mut Stream, out: &mut [f32]) {
    let mut words = [0u32; NORMAL_BLOCK];
    let mut chunks = out.chunks_exact_mut(NORMAL_BLOCK);
    for block in &mut chunks {
        rng.fill(&mut words[..]);
        box_muller(&words, block.try_into().expect("a full block"));
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut block = [0.0f32; NORMAL_BLOCK];
        rng.fill(&mut words[..]);
        box_muller(&words, &mut block);
        rest.copy_from_slice(&block[..rest.len()]);
    }
}

crate::nn::simd::simd_dispatch! {
    /// The Box–Muller transform of [`fill_standard_normals`]: words i and 64 + i give values i
    /// and 64 + i.
    fn box_muller(words: &[u32; NORMAL_BLOCK], out: &mut [f32; NORMAL_BLOCK]) {
        let half = NORMAL_BLOCK / 2;
        let (cos_out, sin_out) = out.split_at_mut(half);
        let (a, b) = words.split_at(half);
        for i in 0..half {
            let u = ((a[i] >> 1) as i32 as f32 + 0.5) * 2.0f32.powi(-31);
            let r = (-2.0 * crate::nn::simd::ln_f32(u)).sqrt();
            let f = (b[i] & 0x3FFF_FFFF) as i32 as f32 * 2.0f32.powi(-30);
            let (c, s) = crate::nn::simd::sincos_quadrant(b[i] >> 30, f);
            cos_out[i] = r * c;
            sin_out[i] = r * s;
        }
    }
}

/// Index drawn with probabilities proportional to `cumulative` increments (last entry = total).
pub(crate) fn draw_index(cumulative: &[f64], rng: &mut Stream) -> usize {
    let total = *cumulative.last().expect("non-empty weights");
    let u = rng.random::<f64>() * total;
    cumulative
        .partition_point(|&c| c <= u)
        .min(cumulative.len() - 1)
}

/// Running sums of `weights`.
pub(crate) fn cumulative(weights: &[f64]) -> Vec<f64> {
    weights
        .iter()
        .scan(0.0, |acc, &w| {
            *acc += w;
            Some(*acc)
        })
        .collect()
}

/// log Σ exp(v_i) over a slice, computed stably by factoring out the maximum.
pub(crate) fn log_sum_exp_slice(values: &[f64]) -> f64 {
    mixture::log_sum_exp(values.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Role, stream};

    /// Each value is the exact (f64) Box–Muller transform of its two words, to f32 precision.
    #[test]
    fn bulk_normals_are_the_box_muller_transform_of_their_words() {
        let mut rng = stream(3, 0, Role::Fit);
        let mut words = [0u32; NORMAL_BLOCK];
        let mut out = [0.0f32; NORMAL_BLOCK];
        let mut worst = 0.0f64;
        for _ in 0..200 {
            rng.fill(&mut words[..]);
            box_muller(&words, &mut out);
            for i in 0..NORMAL_BLOCK / 2 {
                let (a, b) = (words[i], words[NORMAL_BLOCK / 2 + i]);
                let u = ((a >> 1) as f64 + 0.5) * 2f64.powi(-31);
                let theta = std::f64::consts::TAU * b as f64 * 2f64.powi(-32);
                let r = (-2.0 * u.ln()).sqrt();
                worst = worst.max((out[i] as f64 - r * theta.cos()).abs());
                worst = worst.max((out[NORMAL_BLOCK / 2 + i] as f64 - r * theta.sin()).abs());
            }
        }
        // f32 rounding of θ (2⁻²⁴ relative) times r ≤ 6.66, plus the polynomials.
        assert!(worst < 5e-6, "worst absolute error {worst}");
    }

    /// Moments and tail masses of 2²¹ draws against N(0, 1), each within 5 standard errors; the
    /// two values of a pair are uncorrelated; a partial block gives a prefix of a full one.
    #[test]
    fn bulk_normals_have_standard_normal_moments_and_tails() {
        let n = 1 << 21;
        let mut z = vec![0.0f32; n];
        fill_standard_normals(&mut stream(11, 0, Role::Fit), &mut z);
        let nf = n as f64;
        let mean = z.iter().map(|&v| v as f64).sum::<f64>() / nf;
        let m2 = z.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / nf;
        let m4 = z.iter().map(|&v| (v as f64).powi(4)).sum::<f64>() / nf;
        assert!(mean.abs() < 5.0 / nf.sqrt(), "mean {mean}");
        assert!((m2 - 1.0).abs() < 5.0 * (2.0 / nf).sqrt(), "E z² {m2}");
        assert!((m4 - 3.0).abs() < 5.0 * (96.0 / nf).sqrt(), "E z⁴ {m4}");
        for (c, p) in [(1.0, 0.317_310_5), (2.0, 0.045_500_26), (3.0, 0.002_699_8)] {
            let share = z.iter().filter(|v| v.abs() > c).count() as f64 / nf;
            let se = (p * (1.0 - p) / nf).sqrt();
            assert!(
                (share - p).abs() < 5.0 * se,
                "P(|z| > {c}) = {share}, want {p}"
            );
        }
        let pairs = z.chunks_exact(NORMAL_BLOCK).flat_map(|b| {
            let (c, s) = b.split_at(NORMAL_BLOCK / 2);
            c.iter().zip(s).map(|(&c, &s)| c as f64 * s as f64)
        });
        let corr = pairs.sum::<f64>() / (nf / 2.0);
        assert!(
            corr.abs() < 5.0 / (nf / 2.0).sqrt(),
            "pair correlation {corr}"
        );
        let mut short = vec![0.0f32; 100];
        fill_standard_normals(&mut stream(11, 0, Role::Fit), &mut short);
        assert_eq!(short[..], z[..100]);
    }
}
