use super::mixture::log_sum_exp;
use super::{Distribution, standard_normals};
use crate::linalg;
use crate::rng::Stream;
use ndarray::{Array1, Array2, ArrayView2};
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
        let d = self.dim();
        let z = standard_normals(n, d, rng);
        let mut x = Array2::<f32>::zeros((n, d));
        if d == 0 {
            return x;
        }
        let points = self.points.as_standard_layout();
        let (points, z) = (
            points.as_slice().expect("standard layout"),
            z.as_slice().expect("standard layout"),
        );
        let out = x.as_slice_mut().expect("standard layout");
        for ((row, &i), zr) in out.chunks_exact_mut(d).zip(&idx).zip(z.chunks_exact(d)) {
            for ((v, &p), &e) in row.iter_mut().zip(&points[i * d..(i + 1) * d]).zip(zr) {
                *v = (p as f64 + self.bandwidth * e) as f32;
            }
        }
        x
    }

    fn mean(&self) -> Option<Array1<f64>> {
        Some(linalg::mean(self.points.view()))
    }

    /// log (1/N) Σᵢ N(x | xᵢ, h² I) = logsumexpᵢ(−‖x − xᵢ‖²/(2h²)) − ln N − (d/2) ln(2πh²), from
    /// f64 distance blocks; `None` when h = 0.
    fn log_density(&self, x: ArrayView2<f32>) -> Option<Array1<f64>> {
        let h2 = self.bandwidth * self.bandwidth;
        if h2 <= 0.0 {
            return None;
        }
        let (n, d) = self.points.dim();
        let norm = -(n as f64).ln() - 0.5 * d as f64 * (std::f64::consts::TAU * h2).ln();
        let p = self.points.mapv(|v| v as f64);
        let pn = linalg::row_sq_norms(p.view());
        let q = x.mapv(|v| v as f64);
        let qn = linalg::row_sq_norms(q.view());
        let mut out = Array1::<f64>::zeros(x.nrows());
        for r0 in (0..x.nrows()).step_by(linalg::BLOCK_ROWS) {
            let r1 = (r0 + linalg::BLOCK_ROWS).min(x.nrows());
            let dist = linalg::sq_dist_block(
                q.slice(ndarray::s![r0..r1, ..]),
                qn.slice(ndarray::s![r0..r1]),
                p.view(),
                pn.view(),
            );
            for (o, row) in out
                .slice_mut(ndarray::s![r0..r1])
                .iter_mut()
                .zip(dist.rows())
            {
                *o = log_sum_exp(row.iter().map(|&v| -v / (2.0 * h2))) + norm;
            }
        }
        Some(out)
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
