use super::{Distribution, standard_normals};
use crate::linalg;
use crate::rng::Stream;
use ndarray::{Array1, Array2};
use rand::RngExt;

/// A Gaussian kernel density estimate (1/N) Σ_i N(x_i, h² I): sampling picks a training point
/// uniformly and adds N(0, h² I) noise.
#[derive(Clone, Debug)]
pub struct Kde {
    points: Array2<f32>,
    bandwidth: f64,
}

impl Kde {
    /// The KDE of `points` (rows) with bandwidth `bandwidth` ≥ 0 (same units as the data).
    pub fn new(points: Array2<f32>, bandwidth: f64) -> Self {
        assert!(points.nrows() > 0 && bandwidth >= 0.0);
        Kde { points, bandwidth }
    }

    /// The kernel bandwidth h.
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth
    }

    /// The kernel centres.
    pub fn points(&self) -> &Array2<f32> {
        &self.points
    }
}

impl Distribution for Kde {
    fn dim(&self) -> usize {
        self.points.ncols()
    }

    fn sample(&self, n: usize, rng: &mut Stream) -> Array2<f32> {
        let idx: Vec<usize> = (0..n)
            .map(|_| rng.random_range(0..self.points.nrows()))
            .collect();
        let z = standard_normals(n, self.dim(), rng);
        let mut x = Array2::<f32>::zeros((n, self.dim()));
        for ((mut row, &i), zr) in x.rows_mut().into_iter().zip(&idx).zip(z.rows()) {
            for ((v, &p), &e) in row.iter_mut().zip(self.points.row(i)).zip(zr) {
                *v = (p as f64 + self.bandwidth * e) as f32;
            }
        }
        x
    }

    fn mean(&self) -> Option<Array1<f64>> {
        Some(linalg::mean(self.points.view()))
    }

    /// Σ = (1/N) Σ_i (x_i − x̄)(x_i − x̄)ᵀ + h² I.
    fn covariance(&self) -> Option<Array2<f64>> {
        let d = self.dim();
        Some(
            linalg::covariance(self.points.view(), 0)
                + Array2::<f64>::eye(d) * self.bandwidth.powi(2),
        )
    }
}
