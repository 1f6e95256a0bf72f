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
}

/// An [n, d] matrix of independent standard normal draws in f64.
pub(crate) fn standard_normals(n: usize, d: usize, rng: &mut Stream) -> Array2<f64> {
    Array2::from_shape_simple_fn((n, d), || rng.sample::<f64, _>(StandardNormal))
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
