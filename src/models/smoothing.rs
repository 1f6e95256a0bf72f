use crate::distributions::Kde;
use crate::linalg;
use ndarray::ArrayView2;

/// How a KDE bandwidth is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bandwidth {
    /// A fixed h in data units.
    Fixed(f64),
    /// Scott's rule for an isotropic kernel: h = σ̄ n^(−1/(d+4)).
    Scott,
    /// Silverman's rule: h = σ̄ (n (d + 2)/4)^(−1/(d+4)).
    Silverman,
}

/// Gaussian KDE learner; σ̄ in the rules is the root mean per-coordinate variance of the data.
#[derive(Clone, Debug)]
pub struct KdeLearner {
    /// Bandwidth choice.
    pub bandwidth: Bandwidth,
}

impl KdeLearner {
    /// The bandwidth used for `data`.
    pub fn bandwidth_for(&self, data: ArrayView2<f32>) -> f64 {
        let (n, d) = (data.nrows() as f64, data.ncols() as f64);
        let sigma = || (linalg::covariance(data, 1).diag().mean().unwrap_or(0.0)).sqrt();
        match self.bandwidth {
            Bandwidth::Fixed(h) => h,
            Bandwidth::Scott => sigma() * n.powf(-1.0 / (d + 4.0)),
            Bandwidth::Silverman => sigma() * (n * (d + 2.0) / 4.0).powf(-1.0 / (d + 4.0)),
        }
    }

    /// The KDE of the rows of `data`.
    pub fn fit(&self, data: ArrayView2<f32>) -> Kde {
        Kde::new(data.to_owned(), self.bandwidth_for(data))
    }
}
