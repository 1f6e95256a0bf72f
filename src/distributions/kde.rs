use super::mixture::log_sum_exp;
use super::{Distribution, standard_normals};
use crate::linalg;
use crate::rng::Stream;
use ndarray::{Array1, Array2, ArrayView2};
use rand::RngExt;

/// A Gaussian kernel density estimate Σ_i π_i N(x_i, h² I), π_i = 1/N or given weights:
/// sampling picks a training point (uniformly, or with probability π_i) and adds N(0, h² I)
/// noise.
#[derive(Clone, Debug)]
pub struct Kde {
    points: Array2<f32>,
    bandwidth: f64,
    /// π_i summing to 1, when not uniform.
    weights: Option<Vec<f64>>,
}

impl Kde {
    /// The KDE of `points` (rows) with bandwidth `bandwidth` ≥ 0 (same units as the data).
    pub fn new(points: Array2<f32>, bandwidth: f64) -> Self {
        assert!(points.nrows() > 0 && bandwidth >= 0.0);
        Kde {
            points,
            bandwidth,
            weights: None,
        }
    }

    /// The KDE with kernel i weighted ∝ `weights[i]` (≥ 0, not all 0, one per point).
    pub fn weighted(points: Array2<f32>, bandwidth: f64, weights: &[f64]) -> Self {
        assert_eq!(weights.len(), points.nrows(), "one weight per point");
        let total: f64 = weights.iter().sum();
        assert!(total > 0.0 && weights.iter().all(|w| *w >= 0.0));
        Kde {
            weights: Some(weights.iter().map(|w| w / total).collect()),
            ..Kde::new(points, bandwidth)
        }
    }

    /// The KDE with kernel weights `weights` taken as they are (summing to 1, as read back
    /// from a saved model: normalising again could change their last bits).
    pub fn from_parts(points: Array2<f32>, bandwidth: f64, weights: Vec<f64>) -> Self {
        assert_eq!(weights.len(), points.nrows(), "one weight per point");
        Kde {
            weights: Some(weights),
            ..Kde::new(points, bandwidth)
        }
    }

    /// The kernel weights π_i, when not uniform.
    pub fn weights(&self) -> Option<&[f64]> {
        self.weights.as_deref()
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
        let idx: Vec<usize> = match &self.weights {
            None => (0..n)
                .map(|_| rng.random_range(0..self.points.nrows()))
                .collect(),
            Some(w) => {
                let cum = super::cumulative(w);
                (0..n).map(|_| super::draw_index(&cum, rng)).collect()
            }
        };
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
        Some(match &self.weights {
            None => linalg::mean(self.points.view()),
            Some(w) => weighted_mean(self.points.view(), w),
        })
    }

    /// log (1/N) Σᵢ N(x | xᵢ, h² I) = logsumexpᵢ(−‖x − xᵢ‖²/(2h²)) − ln N − (d/2) ln(2πh²), from
    /// f64 distance blocks; `None` when h = 0.
    fn log_density(&self, x: ArrayView2<f32>) -> Option<Array1<f64>> {
        let h2 = self.bandwidth * self.bandwidth;
        if h2 <= 0.0 {
            return None;
        }
        let (n, d) = self.points.dim();
        // log π_i: −ln N for every kernel, or the weights' logs (−∞ for a weight of 0).
        let log_pi: Option<Vec<f64>> = self
            .weights
            .as_ref()
            .map(|w| w.iter().map(|v| v.ln()).collect());
        let norm = match log_pi {
            None => -(n as f64).ln(),
            Some(_) => 0.0,
        } - 0.5 * d as f64 * (std::f64::consts::TAU * h2).ln();
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
                *o = match &log_pi {
                    None => log_sum_exp(row.iter().map(|&v| -v / (2.0 * h2))),
                    Some(lp) => log_sum_exp(row.iter().zip(lp).map(|(&v, l)| l - v / (2.0 * h2))),
                } + norm;
            }
        }
        Some(out)
    }

    /// Σ = Σ_i π_i (x_i − x̄)(x_i − x̄)ᵀ + h² I, x̄ = Σ_i π_i x_i.
    fn covariance(&self) -> Option<Array2<f64>> {
        let d = self.dim();
        let spread = match &self.weights {
            None => linalg::covariance(self.points.view(), 0),
            Some(w) => {
                let mu = weighted_mean(self.points.view(), w);
                let mut c = Array2::<f64>::zeros((d, d));
                for (row, &p) in self.points.rows().into_iter().zip(w) {
                    let dev = Array1::from_iter(row.iter().zip(&mu).map(|(&v, m)| v as f64 - m));
                    for i in 0..d {
                        for j in 0..d {
                            c[[i, j]] += p * dev[i] * dev[j];
                        }
                    }
                }
                c
            }
        };
        Some(spread + Array2::<f64>::eye(d) * self.bandwidth.powi(2))
    }
}

/// Σ_i π_i x_i for weights π summing to 1.
fn weighted_mean(points: ArrayView2<f32>, w: &[f64]) -> Array1<f64> {
    let mut mu = Array1::<f64>::zeros(points.ncols());
    for (row, &p) in points.rows().into_iter().zip(w) {
        mu.zip_mut_with(&row, |m, &v| *m += p * v as f64);
    }
    mu
}
