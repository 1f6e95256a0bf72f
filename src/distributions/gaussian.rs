use super::{Distribution, standard_normals};
use crate::linalg::{from_na, gaussian_whitener, psd_factor, to_na};
use crate::rng::Stream;
use ndarray::{Array1, Array2, ArrayView2};

/// A multivariate normal N(μ, Σ). Σ may be singular (a collapsed model); it is then sampled
/// through its eigen-factor and has no density.
#[derive(Clone, Debug)]
pub struct Gaussian {
    mean: Array1<f64>,
    cov: Array2<f64>,
    /// A with A Aᵀ = Σ, stored transposed (d×d) so that x = μ + z Aᵀ is one matrix product.
    factor_t: Array2<f64>,
}

impl Gaussian {
    /// N(mean, cov). `cov` must be d×d with d = mean.len(), symmetric up to rounding and PSD.
    pub fn new(mean: Array1<f64>, cov: Array2<f64>) -> Self {
        assert_eq!(cov.dim(), (mean.len(), mean.len()), "covariance shape");
        let factor = psd_factor(&to_na(&cov));
        Gaussian {
            mean,
            cov,
            factor_t: from_na(&factor.transpose()),
        }
    }

    /// N(mean, std² I).
    pub fn isotropic(mean: Array1<f64>, std: f64) -> Self {
        let d = mean.len();
        Gaussian::new(mean, Array2::eye(d) * (std * std))
    }

    /// The mean vector μ.
    pub fn mu(&self) -> &Array1<f64> {
        &self.mean
    }

    /// The covariance matrix Σ.
    pub fn sigma(&self) -> &Array2<f64> {
        &self.cov
    }

    /// Log density log N(x | μ, Σ) of each row of `x`; `None` when Σ is singular.
    pub fn log_density(&self, x: ArrayView2<f32>) -> Option<Array1<f64>> {
        let (linv_t, c) = gaussian_whitener(&self.cov)?;
        let y = crate::linalg::centred(x, self.mean.view()).dot(&linv_t);
        Some(y.map_axis(ndarray::Axis(1), |r| c - 0.5 * r.dot(&r)))
    }

    /// Neon's extrapolation away from `other`: μ + w(μ − μ₁) and Σ + w(Σ − Σ₁) with the
    /// covariance's eigenvalues floored at `floor` (it need not stay positive semi-definite).
    pub fn extrapolated(&self, other: &Gaussian, w: f64, floor: f64) -> (Array1<f64>, Array2<f64>) {
        let mu = &self.mean + &((&self.mean - &other.mean) * w);
        let cov = &self.cov + &((&self.cov - &other.cov) * w);
        (mu, crate::linalg::eigenvalue_floor(&cov, floor))
    }

    /// Log density and score −Σ⁻¹(x − μ) of each row of `x`; `None` when Σ is singular.
    pub fn log_density_and_score(&self, x: ArrayView2<f32>) -> Option<(Array1<f64>, Array2<f64>)> {
        let (linv_t, c) = gaussian_whitener(&self.cov)?;
        // y = (x − μ) L⁻ᵀ, so (x − μ) Σ⁻¹ = y L⁻¹ = y (L⁻ᵀ)ᵀ.
        let y = crate::linalg::centred(x, self.mean.view()).dot(&linv_t);
        let score = -y.dot(&linv_t.t());
        Some((y.map_axis(ndarray::Axis(1), |r| c - 0.5 * r.dot(&r)), score))
    }
}

impl Distribution for Gaussian {
    fn dim(&self) -> usize {
        self.mean.len()
    }

    fn sample(&self, n: usize, rng: &mut Stream) -> Array2<f32> {
        let z = standard_normals(n, self.dim(), rng);
        let mut x = z.dot(&self.factor_t);
        x += &self.mean;
        x.mapv(|v| v as f32)
    }

    fn mean(&self) -> Option<Array1<f64>> {
        Some(self.mean.clone())
    }

    fn covariance(&self) -> Option<Array2<f64>> {
        Some(self.cov.clone())
    }

    fn log_density(&self, x: ArrayView2<f32>) -> Option<Array1<f64>> {
        Gaussian::log_density(self, x)
    }

    fn score(&self, x: ArrayView2<f32>) -> Option<Array2<f64>> {
        self.log_density_and_score(x).map(|(_, s)| s)
    }

    fn as_gaussian(&self) -> Option<&Gaussian> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg;
    use crate::rng::{Role, stream};
    use ndarray::array;

    #[test]
    fn samples_have_the_requested_moments() {
        let g = Gaussian::new(array![1.0, -2.0], array![[2.0, 0.6], [0.6, 0.5]]);
        let x = g.sample(200_000, &mut stream(0, 0, Role::Samples));
        let m = linalg::mean(x.view());
        let c = linalg::covariance(x.view(), 1);
        // standard errors: sqrt(2/2e5) ≈ 0.0032 for the mean, ≈ 0.0063·σ² for variances
        assert!((m[0] - 1.0).abs() < 0.02 && (m[1] + 2.0).abs() < 0.01);
        assert!((c[[0, 0]] - 2.0).abs() < 0.04 && (c[[0, 1]] - 0.6).abs() < 0.02);
        assert!((c[[1, 1]] - 0.5).abs() < 0.01);
    }

    #[test]
    fn log_density_of_standard_normal() {
        let g = Gaussian::isotropic(array![0.0, 0.0], 1.0);
        let x = array![[0.0f32, 0.0], [1.0, 2.0]];
        let l = g.log_density(x.view()).unwrap();
        let c = -(2.0 * std::f64::consts::PI).ln();
        assert!((l[0] - c).abs() < 1e-12);
        assert!((l[1] - (c - 2.5)).abs() < 1e-12);
    }
}
