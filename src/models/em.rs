use super::{Learner, LearnerConfig, Model, Offers, TrainingSet};
use crate::data::Dataset;
use crate::data::tensors::TensorFile;
use crate::distributions::{Distribution, Gaussian, GaussianMixture};
use crate::error::{Error, Result};
use crate::linalg::gaussian_whitener;
use crate::rng::Stream;
use ndarray::{Array1, Array2, ArrayView2, Axis, s};
use rand::RngExt;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Rows per chunk in the E and M steps. Chunks are summed in order, so the fit does not depend
/// on the number of threads.
const CHUNK: usize = 4096;
/// Lloyd iterations after k-means++ seeding, before EM starts.
const LLOYD_ITERS: usize = 10;

/// Gaussian mixture with full covariances fitted by expectation-maximisation (Dempster, Laird &
/// Rubin 1977), as in scikit-learn's `GaussianMixture`: k-means++ seeding refined by Lloyd
/// iterations (or the previous model when warm starting), then EM until the mean log-likelihood
/// per point improves by less than `tol` or `max_iter` iterations have run.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureEm {
    /// Number of components k.
    pub components: usize,
    /// Most EM iterations (default 100).
    #[serde(default = "default_max_iter")]
    pub max_iter: usize,
    /// Convergence threshold on the change of mean log-likelihood (default 1e-3).
    #[serde(default = "default_tol")]
    pub tol: f64,
    /// Added to the diagonal of every covariance, keeping them positive definite (default 1e-6).
    #[serde(default = "default_reg_covar")]
    pub reg_covar: f64,
}

fn default_max_iter() -> usize {
    100
}
fn default_tol() -> f64 {
    1e-3
}
fn default_reg_covar() -> f64 {
    1e-6
}

impl MixtureEm {
    /// EM with `components` components and the default iteration limit, tolerance and
    /// regularisation.
    pub fn with_components(components: usize) -> Self {
        MixtureEm {
            components,
            max_iter: default_max_iter(),
            tol: default_tol(),
            reg_covar: default_reg_covar(),
        }
    }
}

impl LearnerConfig for MixtureEm {
    const KIND: &'static str = "gmm";
    const ABOUT: &'static str = "Gaussian mixture with full covariances fitted by EM";
    fn build(self) -> Result<Box<dyn Learner>> {
        if self.components == 0 {
            return Err(Error::config("model.components: expected at least 1"));
        }
        if self.max_iter == 0 {
            return Err(Error::config("model.max_iter: expected at least 1"));
        }
        if !(self.tol.is_finite()
            && self.tol >= 0.0
            && self.reg_covar.is_finite()
            && self.reg_covar >= 0.0)
        {
            return Err(Error::config(
                "model.tol and model.reg_covar: expected numbers ≥ 0",
            ));
        }
        Ok(Box::new(self))
    }
}

impl Learner for MixtureEm {
    fn config(&self) -> toml::Table {
        super::config_table(Self::KIND, self)
    }
    fn min_points(&self) -> usize {
        self.components
    }
    fn offers(&self) -> Offers {
        Offers {
            warm_start: true,
            log_density: true,
            weights: true,
            extrapolate: true,
            ..Offers::default()
        }
    }
    fn fit(
        &self,
        train: &TrainingSet,
        previous: Option<&dyn Model>,
        rng: &mut Stream,
    ) -> Result<Box<dyn Model>> {
        let init = super::downcast::<GaussianMixture>(previous);
        Ok(Box::new(MixtureEm::fit_weighted(
            self,
            train.points,
            train.weights,
            init,
            rng,
        )?))
    }
    fn load(&self, file: &TensorFile) -> Result<Box<dyn Model>> {
        Ok(Box::new(load_mixture(file, "")?))
    }
    /// Component by component (θ₁ is fitted from θ₀ as its start, so the components match):
    /// π = π₀ + w(π₀ − π₁) (floored at 10⁻¹², renormalised), μ_k and Σ_k likewise, each Σ_k's
    /// eigenvalues floored at `reg_covar`.
    fn extrapolate(
        &self,
        base: &dyn Model,
        self_trained: &dyn Model,
        w: f64,
    ) -> Option<Result<Box<dyn Model>>> {
        let (a, b) = (
            super::downcast::<GaussianMixture>(Some(base))?,
            super::downcast::<GaussianMixture>(Some(self_trained))?,
        );
        if a.components().len() != b.components().len() {
            return None;
        }
        let weights: Vec<f64> = a
            .weights()
            .iter()
            .zip(b.weights())
            .map(|(p, q)| (p + w * (p - q)).max(1e-12))
            .collect();
        let mut comps = Vec::with_capacity(weights.len());
        for (ca, cb) in a.components().iter().zip(b.components()) {
            let (mu, cov) = ca.extrapolated(cb, w, self.reg_covar);
            comps.push(Gaussian::new(mu, cov));
        }
        Some(Ok(Box::new(GaussianMixture::new(weights, comps))))
    }
}

/// Adds `mixture` to `file` as tensors `{prefix}weights` [k], `{prefix}means` [k, d] and
/// `{prefix}covariances` [k, d, d] (f64).
pub(crate) fn save_mixture(mixture: &GaussianMixture, file: &mut TensorFile, prefix: &str) {
    let k = mixture.weights().len();
    let d = mixture.components()[0].mu().len();
    let means: Vec<f64> = mixture
        .components()
        .iter()
        .flat_map(|c| c.mu().iter().copied())
        .collect();
    let covs: Vec<f64> = mixture
        .components()
        .iter()
        .flat_map(|c| c.sigma().iter().copied())
        .collect();
    file.put(&format!("{prefix}weights"), &[k], mixture.weights());
    file.put(&format!("{prefix}means"), &[k, d], &means);
    file.put(&format!("{prefix}covariances"), &[k, d, d], &covs);
}

/// The mixture [`save_mixture`] wrote with `prefix`.
pub(crate) fn load_mixture(file: &TensorFile, prefix: &str) -> Result<GaussianMixture> {
    let (shape, means) = file.take::<f64>(&format!("{prefix}means"))?;
    let [k, d] = shape[..] else {
        return Err(file.error(format!("tensor `{prefix}means` is not [components, dim]")));
    };
    if k == 0 {
        return Err(file.error(format!("tensor `{prefix}means` has no components")));
    }
    let weights = file.vector::<f64>(&format!("{prefix}weights"), k)?;
    let covs = file.shaped::<f64>(&format!("{prefix}covariances"), &[k, d, d])?;
    if weights.iter().any(|&w| !(w.is_finite() && w > 0.0)) {
        return Err(file.error(format!("tensor `{prefix}weights`: expected weights > 0")));
    }
    let components = (0..k)
        .map(|c| {
            Gaussian::new(
                Array1::from(means[c * d..(c + 1) * d].to_vec()),
                Array2::from_shape_vec((d, d), covs[c * d * d..(c + 1) * d * d].to_vec())
                    .expect("shape checked"),
            )
        })
        .collect();
    Ok(GaussianMixture::from_parts(weights, components))
}

impl Model for GaussianMixture {
    fn dim(&self) -> usize {
        self.components()[0].mu().len()
    }
    fn sample(&self, n: usize, rng: &mut Stream) -> Result<Dataset> {
        Ok(Dataset::unlabeled(Distribution::sample(self, n, rng)))
    }
    fn distribution(&self) -> Option<&dyn Distribution> {
        Some(self)
    }
    fn save(&self, file: &mut TensorFile) -> Result<()> {
        save_mixture(self, file, "");
        Ok(())
    }
}

struct Params {
    weights: Vec<f64>,
    means: Vec<Array1<f64>>,
    covs: Vec<Array2<f64>>,
}

impl MixtureEm {
    /// Fits the rows of `data`; `init` (a previous mixture with the same k and dimension) replaces
    /// the k-means++ start.
    pub fn fit(
        &self,
        data: ArrayView2<f32>,
        init: Option<&GaussianMixture>,
        rng: &mut Stream,
    ) -> Result<GaussianMixture> {
        self.fit_weighted(data, None, init, rng)
    }

    /// [`MixtureEm::fit`] with sample weights w_i ≥ 0 (not all 0): every M step maximises
    /// Σ_i w_i Σ_k r_ik log(π_k N(x_i | μ_k, Σ_k)), i.e. each responsibility row is scaled by
    /// w_i / mean(w). The k-means++ start ignores the weights.
    pub fn fit_weighted(
        &self,
        data: ArrayView2<f32>,
        weights: Option<&[f64]>,
        init: Option<&GaussianMixture>,
        rng: &mut Stream,
    ) -> Result<GaussianMixture> {
        let x = data.mapv(|v| v as f64);
        let scale: Option<Array1<f64>> = match weights {
            None => None,
            Some(w) => {
                super::check_weights(w, x.nrows())?;
                let total: f64 = w.iter().sum();
                Some(Array1::from_iter(
                    w.iter().map(|v| v * x.nrows() as f64 / total),
                ))
            }
        };
        let k = self.components;
        let mut params = match init {
            Some(m) if m.components().len() == k && m.components()[0].mu().len() == x.ncols() => {
                Params {
                    weights: m.weights().to_vec(),
                    means: m.components().iter().map(|c| c.mu().clone()).collect(),
                    covs: m.components().iter().map(|c| c.sigma().clone()).collect(),
                }
            }
            _ => self.kmeans_start(&x, rng),
        };
        let mut last = f64::NEG_INFINITY;
        for _ in 0..self.max_iter {
            let (resp, ll) = e_step(&x, &params).ok_or_else(|| {
                Error::Run(format!(
                    "EM: a component's covariance became singular; raise model.reg_covar (now {})",
                    self.reg_covar
                ))
            })?;
            let resp = match &scale {
                Some(w) => resp * w.view().insert_axis(Axis(1)),
                None => resp,
            };
            params = self.m_step(&x, &resp);
            if (ll - last).abs() < self.tol {
                break;
            }
            last = ll;
        }
        let comps = params
            .means
            .into_iter()
            .zip(params.covs)
            .map(|(m, c)| Gaussian::new(m, c))
            .collect();
        Ok(GaussianMixture::new(params.weights, comps))
    }

    /// k-means++ seeding (Arthur & Vassilvitskii 2007), Lloyd refinement, then one M step on the
    /// hard assignment.
    fn kmeans_start(&self, x: &Array2<f64>, rng: &mut Stream) -> Params {
        let (n, k) = (x.nrows(), self.components);
        let mut centres = Array2::<f64>::zeros((k, x.ncols()));
        centres.row_mut(0).assign(&x.row(rng.random_range(0..n)));
        let mut d2 = nearest_centre(x, &centres.slice(s![..1, ..])).1;
        for c in 1..k {
            let total: f64 = d2.iter().sum();
            let pick = if total > 0.0 {
                let u = rng.random::<f64>() * total;
                let mut acc = 0.0;
                d2.iter()
                    .position(|&d| {
                        acc += d;
                        acc > u
                    })
                    .unwrap_or(n - 1)
            } else {
                rng.random_range(0..n)
            };
            centres.row_mut(c).assign(&x.row(pick));
            d2 = nearest_centre(x, &centres.slice(s![..c + 1, ..])).1;
        }
        let mut labels = nearest_centre(x, &centres.view()).0;
        for _ in 0..LLOYD_ITERS {
            let mut sums = Array2::<f64>::zeros(centres.dim());
            let mut counts = vec![0usize; k];
            for (row, &l) in x.rows().into_iter().zip(&labels) {
                let mut s = sums.row_mut(l);
                s += &row;
                counts[l] += 1;
            }
            for (c, &cnt) in counts.iter().enumerate() {
                if cnt > 0 {
                    centres.row_mut(c).assign(&(&sums.row(c) / cnt as f64));
                }
            }
            let new = nearest_centre(x, &centres.view()).0;
            if new == labels {
                break;
            }
            labels = new;
        }
        let mut resp = Array2::<f64>::zeros((n, k));
        for (i, &l) in labels.iter().enumerate() {
            resp[[i, l]] = 1.0;
        }
        self.m_step(x, &resp)
    }

    /// Weights, means and covariances maximising the expected log-likelihood under `resp`.
    fn m_step(&self, x: &Array2<f64>, resp: &Array2<f64>) -> Params {
        let (n, d) = x.dim();
        let k = resp.ncols();
        let chunks: Vec<(usize, usize)> = (0..n)
            .step_by(CHUNK)
            .map(|a| (a, (a + CHUNK).min(n)))
            .collect();
        let sums: Vec<(Array1<f64>, Array2<f64>)> = chunks
            .par_iter()
            .map(|&(a, b)| {
                let r = resp.slice(s![a..b, ..]);
                (r.sum_axis(Axis(0)), r.t().dot(&x.slice(s![a..b, ..])))
            })
            .collect();
        let mut nk = Array1::<f64>::zeros(k);
        let mut sx = Array2::<f64>::zeros((k, d));
        for (a, b) in &sums {
            nk += a;
            sx += b;
        }
        // a component that lost all its points restarts from the data's mean and covariance
        let empty = |c: usize| nk[c] <= 1e-10;
        let global = (0..k).any(empty).then(|| {
            let mu = x.mean_axis(Axis(0)).expect("non-empty data");
            let dev = x - &mu;
            let cov = dev.t().dot(&dev) / n as f64;
            (mu, cov)
        });
        let means: Vec<Array1<f64>> = (0..k)
            .map(|c| match &global {
                Some((mu, _)) if empty(c) => mu.clone(),
                _ => sx.row(c).to_owned() / nk[c],
            })
            .collect();
        let covs_parts: Vec<Vec<Array2<f64>>> = chunks
            .par_iter()
            .map(|&(a, b)| {
                let xc = x.slice(s![a..b, ..]);
                (0..k)
                    .map(|c| {
                        let dev = &xc - &means[c];
                        let weighted = &dev * &resp.slice(s![a..b, c]).insert_axis(Axis(1));
                        weighted.t().dot(&dev)
                    })
                    .collect()
            })
            .collect();
        let mut covs = vec![Array2::<f64>::zeros((d, d)); k];
        for part in covs_parts {
            for (acc, p) in covs.iter_mut().zip(part) {
                *acc += &p;
            }
        }
        let reg = Array2::<f64>::eye(d) * self.reg_covar;
        for (c, cov) in covs.iter_mut().enumerate() {
            *cov = match &global {
                Some((_, g)) if empty(c) => g + &reg,
                _ => &*cov / nk[c] + &reg,
            };
        }
        let weights = nk.iter().map(|&v| (v / n as f64).max(1e-12)).collect();
        Params {
            weights,
            means,
            covs,
        }
    }
}

/// Responsibilities r_ik ∝ w_k N(x_i | μ_k, Σ_k) and the mean log-likelihood per point; `None`
/// when a covariance is not positive definite.
fn e_step(x: &Array2<f64>, p: &Params) -> Option<(Array2<f64>, f64)> {
    let n = x.nrows();
    let k = p.weights.len();
    // per component: L⁻ᵀ and the constant log w − ½(d log 2π + log det Σ)
    let prepared: Vec<(Array2<f64>, f64)> = (0..k)
        .map(|c| {
            let (linv_t, log_norm) = gaussian_whitener(&p.covs[c])?;
            Some((linv_t, p.weights[c].ln() + log_norm))
        })
        .collect::<Option<_>>()?;
    let parts: Vec<(Array2<f64>, f64)> = (0..n)
        .step_by(CHUNK)
        .collect::<Vec<_>>()
        .par_iter()
        .map(|&a| {
            let b = (a + CHUNK).min(n);
            let xc = x.slice(s![a..b, ..]);
            let mut logp = Array2::<f64>::zeros((b - a, k));
            for (c, (linv_t, cst)) in prepared.iter().enumerate() {
                let y = (&xc - &p.means[c]).dot(linv_t);
                logp.column_mut(c)
                    .assign(&y.map_axis(Axis(1), |r| cst - 0.5 * r.dot(&r)));
            }
            let mut ll = 0.0;
            for mut row in logp.rows_mut() {
                let lse =
                    crate::distributions::log_sum_exp_slice(row.as_slice().expect("contiguous"));
                ll += lse;
                row.mapv_inplace(|v| (v - lse).exp());
            }
            (logp, ll)
        })
        .collect();
    let mut resp = Array2::<f64>::zeros((n, k));
    let mut ll = 0.0;
    for (i, (r, l)) in parts.into_iter().enumerate() {
        let a = i * CHUNK;
        resp.slice_mut(s![a..a + r.nrows(), ..]).assign(&r);
        ll += l;
    }
    Some((resp, ll / n as f64))
}

/// Index of and squared distance to the nearest row of `centres`, for every row of `x`.
fn nearest_centre(x: &Array2<f64>, centres: &ArrayView2<f64>) -> (Vec<usize>, Vec<f64>) {
    x.rows()
        .into_iter()
        .map(|r| {
            centres
                .rows()
                .into_iter()
                .map(|c| r.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum::<f64>())
                .enumerate()
                .fold(
                    (0, f64::INFINITY),
                    |best, (i, v)| if v < best.1 { (i, v) } else { best },
                )
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::Distribution;
    use crate::rng::{Role, stream};
    use ndarray::array;

    #[test]
    fn recovers_a_well_separated_mixture() {
        let truth = GaussianMixture::new(
            vec![0.3, 0.7],
            vec![
                Gaussian::new(array![-3.0, 0.0], array![[0.5, 0.1], [0.1, 0.3]]),
                Gaussian::isotropic(array![3.0, 1.0], 0.8),
            ],
        );
        let x = Distribution::sample(&truth, 20_000, &mut stream(0, 0, Role::Samples));
        let em = MixtureEm {
            components: 2,
            max_iter: 200,
            tol: 1e-8,
            reg_covar: 1e-6,
        };
        let fit = em
            .fit(x.view(), None, &mut stream(0, 0, Role::Fit))
            .unwrap();
        let (a, b) = if fit.components()[0].mu()[0] < 0.0 {
            (0, 1)
        } else {
            (1, 0)
        };
        // standard errors at n = 20 000: weights ≈ 0.003, means ≈ 0.01, covariances ≈ 0.01
        assert!((fit.weights()[a] - 0.3).abs() < 0.015);
        let ca = &fit.components()[a];
        assert!((ca.mu()[0] + 3.0).abs() < 0.03 && ca.mu()[1].abs() < 0.03);
        assert!((ca.sigma()[[0, 1]] - 0.1).abs() < 0.03 && (ca.sigma()[[1, 1]] - 0.3).abs() < 0.03);
        let cb = &fit.components()[b];
        assert!((cb.sigma()[[0, 0]] - 0.64).abs() < 0.04);
        // warm start from the fit converges to the same place
        let again = em
            .fit(x.view(), Some(&fit), &mut stream(0, 1, Role::Fit))
            .unwrap();
        assert!((again.weights()[a] - fit.weights()[a]).abs() < 1e-4);
    }
}
