use crate::config::CovarianceKind;
use crate::distributions::Gaussian;
use crate::linalg;
use ndarray::{Array2, ArrayView2};

/// Maximum-likelihood Gaussian: μ̂ = x̄, Σ̂ = (1/n) Σ (x_i − x̄)(x_i − x̄)ᵀ (full), its diagonal
/// (diag), or tr(Σ̂)/d · I (isotropic).
#[derive(Clone, Debug)]
pub struct GaussianMle {
    /// Covariance structure.
    pub covariance: CovarianceKind,
}

impl GaussianMle {
    /// The MLE fit of the rows of `data`.
    pub fn fit(&self, data: ArrayView2<f32>) -> Gaussian {
        let mu = linalg::mean(data);
        let full = linalg::covariance(data, 0);
        let d = mu.len();
        let cov = match self.covariance {
            CovarianceKind::Full => full,
            CovarianceKind::Diag => Array2::from_diag(&full.diag()),
            CovarianceKind::Isotropic => Array2::eye(d) * (full.diag().sum() / d as f64),
        };
        Gaussian::new(mu, cov)
    }
}
