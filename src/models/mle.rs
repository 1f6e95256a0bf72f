//! `[model] kind = "gaussian"`: the maximum-likelihood Gaussian.

use super::{Learner, LearnerConfig, Model, Offers, TrainingSet};
use crate::data::Dataset;
use crate::data::tensors::TensorFile;
use crate::distributions::{Distribution, Gaussian};
use crate::error::Result;
use crate::linalg;
use crate::rng::Stream;
use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Covariance structure of the Gaussian MLE learner.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CovarianceKind {
    /// Full d×d covariance.
    #[default]
    Full,
    /// Diagonal covariance.
    Diag,
    /// σ² I with σ² the mean per-coordinate variance.
    Isotropic,
}

/// Maximum-likelihood Gaussian: μ̂ = x̄, Σ̂ = (1/n) Σ (x_i − x̄)(x_i − x̄)ᵀ (full), its diagonal
/// (diag), or tr(Σ̂)/d · I (isotropic). With sample weights w_i: μ̂ = Σ w_i x_i / Σ w_i and
/// Σ̂ = Σ w_i (x_i − μ̂)(x_i − μ̂)ᵀ / Σ w_i.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianMle {
    /// Covariance structure ("full", "diag" or "isotropic").
    #[serde(default)]
    pub covariance: CovarianceKind,
}

impl GaussianMle {
    /// The MLE fit of the rows of `data`.
    pub fn fit_points(&self, data: ArrayView2<f32>) -> Gaussian {
        self.structured(linalg::mean(data), linalg::covariance(data, 0))
    }

    /// The weighted MLE fit of the rows of `data` (weights ≥ 0, not all 0).
    pub fn fit_weighted(&self, data: ArrayView2<f32>, weights: &[f64]) -> Gaussian {
        let d = data.ncols();
        let total: f64 = weights.iter().sum();
        let mut mu = Array1::<f64>::zeros(d);
        for (row, &w) in data.rows().into_iter().zip(weights) {
            mu.zip_mut_with(&row, |m, &v| *m += w * v as f64);
        }
        mu /= total;
        let mut cov = Array2::<f64>::zeros((d, d));
        for (row, &w) in data.rows().into_iter().zip(weights) {
            let c = Array1::from_iter(row.iter().zip(&mu).map(|(&v, &m)| v as f64 - m));
            for i in 0..d {
                for j in 0..d {
                    cov[[i, j]] += w * c[i] * c[j];
                }
            }
        }
        self.structured(mu, cov / total)
    }

    fn structured(&self, mu: Array1<f64>, full: Array2<f64>) -> Gaussian {
        let d = mu.len();
        let cov = match self.covariance {
            CovarianceKind::Full => full,
            CovarianceKind::Diag => Array2::from_diag(&full.diag()),
            CovarianceKind::Isotropic => Array2::eye(d) * (full.diag().sum() / d as f64),
        };
        Gaussian::new(mu, cov)
    }
}

impl LearnerConfig for GaussianMle {
    const KIND: &'static str = "gaussian";
    const ABOUT: &'static str =
        "maximum-likelihood Gaussian (covariance = full, diag or isotropic)";
    fn build(self) -> Result<Box<dyn Learner>> {
        Ok(Box::new(self))
    }
}

impl Learner for GaussianMle {
    fn config(&self) -> toml::Table {
        super::config_table(Self::KIND, self)
    }
    fn min_points(&self) -> usize {
        2
    }
    fn offers(&self) -> Offers {
        Offers {
            gaussian: true,
            weights: true,
            log_density: true,
            extrapolate: true,
            ..Offers::default()
        }
    }
    fn fit(
        &self,
        train: &TrainingSet,
        _previous: Option<&dyn Model>,
        _rng: &mut Stream,
    ) -> Result<Box<dyn Model>> {
        Ok(Box::new(match train.weights {
            Some(w) => {
                super::check_weights(w, train.points.nrows())?;
                self.fit_weighted(train.points, w)
            }
            None => self.fit_points(train.points),
        }))
    }
    /// μ = μ₀ + w(μ₀ − μ₁), Σ = Σ₀ + w(Σ₀ − Σ₁) (then structured as the learner's covariance
    /// kind). E[Σ₁ | Σ₀] = (m − 1)/m Σ₀ for m self-generated points, so E Σ = (1 + w/m) Σ₀: the
    /// extrapolation undoes the MLE's shrinkage. Where Σ₁ exceeds (1 + w)/w Σ₀ along some
    /// direction (rare for m ≫ d) Σ has a negative eigenvalue, which is set to 0.
    fn extrapolate(
        &self,
        base: &dyn Model,
        self_trained: &dyn Model,
        w: f64,
    ) -> Option<Result<Box<dyn Model>>> {
        let (a, b) = (
            super::downcast::<Gaussian>(Some(base))?,
            super::downcast::<Gaussian>(Some(self_trained))?,
        );
        let (mu, cov) = a.extrapolated(b, w, 0.0);
        Some(Ok(Box::new(self.structured(mu, cov))))
    }
    fn load(&self, file: &TensorFile) -> Result<Box<dyn Model>> {
        let (shape, mean) = file.take::<f64>("mean")?;
        let d = shape.iter().product();
        let cov = file.shaped::<f64>("covariance", &[d, d])?;
        Ok(Box::new(Gaussian::new(
            Array1::from(mean),
            Array2::from_shape_vec((d, d), cov).expect("shape checked"),
        )))
    }
}

impl Model for Gaussian {
    fn dim(&self) -> usize {
        self.mu().len()
    }
    fn sample(&self, n: usize, rng: &mut Stream) -> Result<Dataset> {
        Ok(Dataset::unlabeled(Distribution::sample(self, n, rng)))
    }
    fn distribution(&self) -> Option<&dyn Distribution> {
        Some(self)
    }
    fn save(&self, file: &mut TensorFile) -> Result<()> {
        let d = self.mu().len();
        file.put("mean", &[d], self.mu().as_slice().expect("contiguous"));
        let cov: Vec<f64> = self.sigma().iter().copied().collect();
        file.put("covariance", &[d, d], &cov);
        Ok(())
    }
}
