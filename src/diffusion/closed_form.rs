//! Denoisers known in closed form: the empirical-optimal denoiser of a training set (Yi et al.),
//! its KDE-smoothed version, and the exact posterior mean of a Gaussian mixture.

use super::denoiser::Conditioning;
use super::denoiser::{Denoiser, guide, rows_by_class};
use crate::distributions::{Gaussian, GaussianMixture};
use crate::linalg::{gaussian_whitener, row_sq_norms};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, s};

/// Points of the training set scanned per GEMM block.
const POINT_BLOCK: usize = 2048;

/// The exact denoiser of the KDE (1/N) Σ_i N(x_i, h² I) of a training set:
/// with s² = σ² + h² and weights w = softmax_i(−‖x − x_i‖²/(2 s²)),
/// D(x, σ) = x̄_w + h²/s² (x − x̄_w), where x̄_w = Σ_i w_i x_i.
/// With h = 0 this is the empirical-optimal denoiser of Yi et al., the minimiser of the
/// denoising loss on the training set, whose deterministic samplers reproduce training points.
///
/// Distances come from one f64 GEMM per block of 2048 training points (‖x‖² − 2 x·x_i + ‖x_i‖²)
/// and the softmax is accumulated block by block in log space (a running maximum), so memory
/// stays bounded for any training-set size and no weight underflows to a 0/0.
#[derive(Debug)]
pub struct KernelDenoiser {
    points: Array2<f64>,
    norms: Array1<f64>,
    bandwidth: f64,
}

impl KernelDenoiser {
    /// The denoiser of the KDE of `points` (rows) with bandwidth `bandwidth` ≥ 0 (0: empirical).
    pub fn new(points: ArrayView2<f32>, bandwidth: f64) -> Self {
        assert!(points.nrows() > 0 && bandwidth >= 0.0);
        let points = points.mapv(|v| v as f64);
        let norms = row_sq_norms(points.view());
        KernelDenoiser {
            points,
            norms,
            bandwidth,
        }
    }

    /// The kernel bandwidth h.
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth
    }

    /// The kernel centres (the training points).
    pub fn points(&self) -> &Array2<f64> {
        &self.points
    }
}

/// A class-conditional closed-form denoiser: D(x, σ | c) is the denoiser `D` fitted to class c's
/// training points alone (for kernels, the exact denoiser of that class's KDE, or with h = 0 the
/// empirical optimum, which reproduces points of class c; for `gmm-exact`, the posterior mean of a
/// mixture fitted to the class), and rows without a class use the one fitted to all points, the
/// unconditional denoiser. Guidance w gives (1 + w)·D(x, σ | c) − w·D(x, σ).
#[derive(Debug)]
pub struct PerClass<D> {
    all: D,
    /// One per class (`None` for a class without training points: the unconditional one).
    per_class: Vec<Option<D>>,
    guidance: f64,
    /// The labels of the training points it was fitted to (empty when built from parts).
    labels: Vec<u32>,
}

impl<D: Denoiser> PerClass<D> {
    /// Fits `fit` to all of `points` and to the rows of each class (`labels` < `c.classes`).
    pub fn fit(
        points: ArrayView2<f32>,
        labels: &[u32],
        c: &Conditioning,
        mut fit: impl FnMut(ArrayView2<f32>) -> crate::error::Result<D>,
    ) -> crate::error::Result<Self> {
        let per_class = rows_by_class(labels, c.classes)
            .into_iter()
            .map(|rows| {
                if rows.is_empty() {
                    Ok(None)
                } else {
                    fit(points.select(ndarray::Axis(0), &rows).view()).map(Some)
                }
            })
            .collect::<crate::error::Result<Vec<_>>>()?;
        Ok(PerClass {
            all: fit(points)?,
            per_class,
            guidance: c.guidance,
            labels: labels.to_vec(),
        })
    }

    /// The denoiser of all points `all`, one per class (`None`: a class without points) and
    /// the guidance weight.
    pub fn from_parts(all: D, per_class: Vec<Option<D>>, guidance: f64) -> Self {
        PerClass {
            all,
            per_class,
            guidance,
            labels: Vec::new(),
        }
    }

    /// The denoiser fitted to all points (the unconditional one).
    pub fn all(&self) -> &D {
        &self.all
    }

    /// The denoisers of the classes that had training points, with their class.
    pub fn each_class(&self) -> impl Iterator<Item = (usize, &D)> {
        self.per_class
            .iter()
            .enumerate()
            .filter_map(|(c, d)| d.as_ref().map(|d| (c, d)))
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.per_class.len()
    }

    /// The guidance weight w.
    pub fn guidance(&self) -> f64 {
        self.guidance
    }

    /// The labels of the training points (as given to [`PerClass::fit`]).
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }
}

impl<D: Denoiser> Denoiser for PerClass<D> {
    fn dim(&self) -> usize {
        self.all.dim()
    }

    /// Without labels: the unconditional denoiser, fitted to all points.
    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        labels: Option<&[u32]>,
        mut out: ArrayViewMut2<f32>,
    ) {
        let Some(labels) = labels else {
            return self.all.denoise(x, sigma, None, out);
        };
        for (class, rows) in rows_by_class(labels, self.per_class.len())
            .into_iter()
            .enumerate()
        {
            if rows.is_empty() {
                continue;
            }
            let sub = x.select(ndarray::Axis(0), &rows);
            let mut d = Array2::zeros(sub.dim());
            let den = self.per_class[class].as_ref().unwrap_or(&self.all);
            den.denoise(sub.view(), sigma, None, d.view_mut());
            for (&i, row) in rows.iter().zip(d.rows()) {
                out.row_mut(i).assign(&row);
            }
        }
        if self.guidance != 0.0 {
            let mut u = Array2::zeros(x.dim());
            self.all.denoise(x, sigma, None, u.view_mut());
            let out = out.as_slice_mut().expect("contiguous rows");
            guide(out, u.as_slice().expect("contiguous"), self.guidance);
        }
    }
}

impl Denoiser for KernelDenoiser {
    fn dim(&self) -> usize {
        self.points.ncols()
    }

    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        _labels: Option<&[u32]>,
        mut out: ArrayViewMut2<f32>,
    ) {
        let (m, d) = x.dim();
        let s2 = sigma * sigma + self.bandwidth * self.bandwidth;
        let xf = x.mapv(|v| v as f64);
        let inv = 1.0 / (2.0 * s2);
        // Running log-sum-exp state per row: max logit, Σ exp(logit − max), Σ exp(·) x_i.
        let mut run_max = vec![f64::NEG_INFINITY; m];
        let mut run_sum = vec![0.0f64; m];
        let mut acc = Array2::<f64>::zeros((m, d));
        let mut logits = Array2::<f64>::zeros((m, POINT_BLOCK.min(self.points.nrows())));
        for start in (0..self.points.nrows()).step_by(POINT_BLOCK) {
            let end = (start + POINT_BLOCK).min(self.points.nrows());
            let block = self.points.slice(s![start..end, ..]);
            let norms = self.norms.slice(s![start..end]);
            let mut lg = logits.slice_mut(s![.., ..end - start]);
            // logit = (2 x·x_i − ‖x_i‖²)/(2 s²); the ‖x‖² term is the same for every i.
            ndarray::linalg::general_mat_mul(2.0 * inv, &xf, &block.t(), 0.0, &mut lg);
            for (i, mut row) in lg.rows_mut().into_iter().enumerate() {
                let mut bmax = f64::NEG_INFINITY;
                for (v, &n) in row.iter_mut().zip(norms) {
                    *v -= n * inv;
                    bmax = bmax.max(*v);
                }
                let new_max = run_max[i].max(bmax);
                let rescale = (run_max[i] - new_max).exp();
                run_sum[i] *= rescale;
                acc.row_mut(i).mapv_inplace(|a| a * rescale);
                let mut sum = 0.0;
                for v in row.iter_mut() {
                    *v = (*v - new_max).exp();
                    sum += *v;
                }
                run_sum[i] += sum;
                run_max[i] = new_max;
            }
            ndarray::linalg::general_mat_mul(1.0, &lg, &block, 1.0, &mut acc);
        }
        let shrink = if s2 > 0.0 {
            self.bandwidth * self.bandwidth / s2
        } else {
            0.0
        };
        for i in 0..m {
            for j in 0..d {
                let mean = acc[[i, j]] / run_sum[i];
                out[[i, j]] = (mean + shrink * (xf[[i, j]] - mean)) as f32;
            }
        }
    }
}

/// The exact posterior mean of a Gaussian mixture Σ_k π_k N(μ_k, Σ_k) under x = x₀ + σ ε:
/// with S_k = Σ_k + σ² I, responsibilities r_k ∝ π_k N(x; μ_k, S_k) and
/// D(x, σ) = Σ_k r_k (μ_k + Σ_k S_k⁻¹ (x − μ_k)).
#[derive(Debug)]
pub struct MixtureDenoiser {
    mixture: GaussianMixture,
}

impl MixtureDenoiser {
    /// The denoiser of `mixture`.
    pub fn new(mixture: GaussianMixture) -> Self {
        MixtureDenoiser { mixture }
    }

    /// The exact denoiser of one Gaussian.
    pub fn gaussian(g: Gaussian) -> Self {
        MixtureDenoiser {
            mixture: GaussianMixture::new(vec![1.0], vec![g]),
        }
    }

    /// The mixture whose posterior mean this is.
    pub fn mixture(&self) -> &GaussianMixture {
        &self.mixture
    }
}

impl Denoiser for MixtureDenoiser {
    fn dim(&self) -> usize {
        self.mixture.components()[0].mu().len()
    }

    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        _labels: Option<&[u32]>,
        mut out: ArrayViewMut2<f32>,
    ) {
        let (m, d) = x.dim();
        let xf = x.mapv(|v| v as f64);
        let k = self.mixture.components().len();
        let mut logits = Array2::<f64>::zeros((m, k));
        let mut means = Vec::with_capacity(k);
        for (c, (g, &w)) in self
            .mixture
            .components()
            .iter()
            .zip(self.mixture.weights())
            .enumerate()
        {
            let mut s = g.sigma().clone();
            s.diag_mut().mapv_inplace(|v| v + sigma * sigma);
            let (linv_t, log_norm) = gaussian_whitener(&s)
                .expect("Σ_k + σ² I is positive definite for σ > 0 or a regular Σ_k");
            let centred = &xf - g.mu();
            let y = centred.dot(&linv_t);
            for (i, row) in y.rows().into_iter().enumerate() {
                logits[[i, c]] = w.ln() + log_norm - 0.5 * row.dot(&row);
            }
            // Posterior mean given the component: μ + (x − μ) S⁻¹ Σ (S, Σ symmetric).
            let gain = linv_t.dot(&linv_t.t()).dot(g.sigma());
            let mut post = centred.dot(&gain);
            post += g.mu();
            means.push(post);
        }
        for i in 0..m {
            let row = logits.row(i);
            let mx = row.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
            let weights: Vec<f64> = row.iter().map(|&l| (l - mx).exp()).collect();
            let total: f64 = weights.iter().sum();
            for j in 0..d {
                let v: f64 = weights
                    .iter()
                    .zip(&means)
                    .map(|(w, mu)| w * mu[[i, j]])
                    .sum();
                out[[i, j]] = (v / total) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayView1;

    fn denoise(den: &dyn Denoiser, x: &Array2<f32>, sigma: f64) -> Array2<f32> {
        let mut out = Array2::zeros(x.dim());
        den.denoise(x.view(), sigma, None, out.view_mut());
        out
    }

    /// The KDE denoiser computed directly, one point at a time: softmax weights over all training
    /// points with s² = σ² + h², then x̄_w + h²/s² (x − x̄_w).
    fn direct_kde_denoiser(pts: &Array2<f32>, x: ArrayView1<f32>, sigma: f64, h: f64) -> Vec<f64> {
        let s2 = sigma * sigma + h * h;
        let lw: Vec<f64> = pts
            .rows()
            .into_iter()
            .map(|p| {
                -p.iter()
                    .zip(x)
                    .map(|(&a, &b)| ((b - a) as f64).powi(2))
                    .sum::<f64>()
                    / (2.0 * s2)
            })
            .collect();
        let mx = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = lw.iter().map(|l| (l - mx).exp()).collect();
        let tot: f64 = w.iter().sum();
        (0..x.len())
            .map(|j| {
                let mean: f64 = w
                    .iter()
                    .zip(pts.rows())
                    .map(|(w, p)| w * p[j] as f64)
                    .sum::<f64>()
                    / tot;
                mean + h * h / s2 * (x[j] as f64 - mean)
            })
            .collect()
    }

    #[test]
    fn kernel_denoiser_matches_direct_softmax_and_survives_tiny_sigma() {
        let pts = ndarray::array![[0.0f32, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 3.0]];
        let x = ndarray::array![[0.4f32, 0.1], [2.0, 2.5], [100.0, -50.0]];
        for (sigma, h) in [(0.7, 0.0), (1.5, 0.3), (0.5, 2.0)] {
            let den = KernelDenoiser::new(pts.view(), h);
            let out = denoise(&den, &x, sigma);
            for i in 0..x.nrows() {
                let want = direct_kde_denoiser(&pts, x.row(i), sigma, h);
                for j in 0..2 {
                    assert!(
                        (out[[i, j]] as f64 - want[j]).abs() < 1e-5,
                        "{sigma} {h} {i} {j}"
                    );
                }
            }
        }
        // At σ → 0 the empirical denoiser snaps to the nearest training point, without NaN.
        let den = KernelDenoiser::new(pts.view(), 0.0);
        let out = denoise(&den, &x, 1e-4);
        assert_eq!(out.row(0).to_vec(), vec![0.0, 0.0]);
        assert_eq!(out.row(1).to_vec(), vec![3.0, 3.0]);
    }

    #[test]
    fn kernel_blocks_agree_with_one_block() {
        // More points than one block: the running softmax must equal the one-shot softmax.
        let mut rng = crate::rng::stream(5, 0, crate::rng::Role::Fit);
        let pts = crate::distributions::standard_normals(5000, 3, &mut rng).mapv(|v| v as f32);
        let x = crate::distributions::standard_normals(7, 3, &mut rng).mapv(|v| v as f32);
        let den = KernelDenoiser::new(pts.view(), 0.1);
        let out = denoise(&den, &x, 0.2);
        for i in 0..7 {
            let want = direct_kde_denoiser(&pts, x.row(i), 0.2, 0.1);
            for j in 0..3 {
                assert!((out[[i, j]] as f64 - want[j]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn gaussian_posterior_mean_is_linear_shrinkage() {
        // One Gaussian N(μ, diag(4, 1)): D = μ + Σ (Σ + σ² I)⁻¹ (x − μ).
        let g = Gaussian::new(
            ndarray::array![1.0, -2.0],
            ndarray::array![[4.0, 0.0], [0.0, 1.0]],
        );
        let den = MixtureDenoiser::gaussian(g);
        let x = ndarray::array![[3.0f32, 0.0]];
        let out = denoise(&den, &x, 1.0);
        assert!((out[[0, 0]] - (1.0 + 4.0 / 5.0 * 2.0)).abs() < 1e-6);
        assert!((out[[0, 1]] - (-2.0 + 0.5 * 2.0)).abs() < 1e-6);
    }

    #[test]
    fn mixture_denoiser_with_point_masses_is_the_kernel_denoiser() {
        // Components N(x_i, h² I) with equal weights are the KDE: both denoisers must agree.
        let pts = ndarray::array![[0.0f32, 0.0], [1.0, 0.0], [0.0, 2.0]];
        let h = 0.4;
        let comps = pts
            .rows()
            .into_iter()
            .map(|p| Gaussian::isotropic(p.mapv(|v| v as f64), h))
            .collect();
        let mix = MixtureDenoiser::new(GaussianMixture::new(vec![1.0; 3], comps));
        let kde = KernelDenoiser::new(pts.view(), h);
        let x = ndarray::array![[0.3f32, 0.7], [-1.0, 1.0]];
        let a = denoise(&mix, &x, 0.8);
        let b = denoise(&kde, &x, 0.8);
        assert!((&a - &b).iter().all(|v| v.abs() < 1e-5), "{a} vs {b}");
    }
}
