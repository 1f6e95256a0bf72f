use super::{Distribution, Gaussian, cumulative, draw_index};
use crate::rng::Stream;
use ndarray::{Array1, Array2, ArrayView2, Axis};

/// A Gaussian mixture Σ_k w_k N(μ_k, Σ_k) with weights normalised to sum to 1.
#[derive(Clone, Debug)]
pub struct GaussianMixture {
    weights: Vec<f64>,
    components: Vec<Gaussian>,
}

impl GaussianMixture {
    /// A mixture of `components` with (unnormalised, positive) `weights`.
    pub fn new(weights: Vec<f64>, components: Vec<Gaussian>) -> Self {
        assert!(!components.is_empty() && weights.len() == components.len());
        let total: f64 = weights.iter().sum();
        GaussianMixture {
            weights: weights.into_iter().map(|w| w / total).collect(),
            components,
        }
    }

    /// A mixture whose `weights` are taken as given (already normalised, as those of a fitted
    /// mixture read back from a file: normalising again could change their last bits).
    pub fn from_parts(weights: Vec<f64>, components: Vec<Gaussian>) -> Self {
        assert!(!components.is_empty() && weights.len() == components.len());
        GaussianMixture {
            weights,
            components,
        }
    }

    /// Mixture weights (summing to 1).
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The Gaussian components.
    pub fn components(&self) -> &[Gaussian] {
        &self.components
    }

    /// `n` draws and, for each, the index of the component it came from.
    pub fn sample_labeled(&self, n: usize, rng: &mut Stream) -> (Array2<f32>, Vec<usize>) {
        let cum = cumulative(&self.weights);
        let labels: Vec<usize> = (0..n).map(|_| draw_index(&cum, rng)).collect();
        let mut x = Array2::<f32>::zeros((n, self.dim()));
        for (k, comp) in self.components.iter().enumerate() {
            let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == k).collect();
            let draws = comp.sample(rows.len(), rng);
            for (&i, r) in rows.iter().zip(draws.rows()) {
                x.row_mut(i).assign(&r);
            }
        }
        (x, labels)
    }

    /// Log density of each row of `x` (log-sum-exp over components); `None` if a component is
    /// singular.
    pub fn log_density(&self, x: ArrayView2<f32>) -> Option<Array1<f64>> {
        let mut per = Array2::<f64>::zeros((x.nrows(), self.components.len()));
        for (k, (comp, w)) in self.components.iter().zip(&self.weights).enumerate() {
            let l = comp.log_density(x)?;
            per.column_mut(k).assign(&(l + w.ln()));
        }
        Some(per.map_axis(Axis(1), |r| log_sum_exp(r.iter().copied())))
    }

    /// The score Σ_k r_k(x) (−Σ_k⁻¹(x − μ_k)) of each row of `x`, with r_k(x) the posterior
    /// probability of component k; `None` if a component is singular.
    pub fn score(&self, x: ArrayView2<f32>) -> Option<Array2<f64>> {
        let mut per = Array2::<f64>::zeros((x.nrows(), self.components.len()));
        let mut scores = Vec::with_capacity(self.components.len());
        for (k, (comp, w)) in self.components.iter().zip(&self.weights).enumerate() {
            let (l, s) = comp.log_density_and_score(x)?;
            per.column_mut(k).assign(&(l + w.ln()));
            scores.push(s);
        }
        let mut out = Array2::<f64>::zeros((x.nrows(), self.dim()));
        for (i, row) in per.rows().into_iter().enumerate() {
            let total = log_sum_exp(row.iter().copied());
            for (k, s) in scores.iter().enumerate() {
                let r = (row[k] - total).exp();
                out.row_mut(i).scaled_add(r, &s.row(i));
            }
        }
        Some(out)
    }
}

/// log Σ exp(v_i), computed stably by factoring out the maximum.
pub(crate) fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + values.map(|v| (v - m).exp()).sum::<f64>().ln()
}

impl Distribution for GaussianMixture {
    fn dim(&self) -> usize {
        self.components[0].dim()
    }

    fn as_mixture(&self) -> Option<&GaussianMixture> {
        Some(self)
    }

    fn log_density(&self, x: ArrayView2<f32>) -> Option<Array1<f64>> {
        GaussianMixture::log_density(self, x)
    }

    fn score(&self, x: ArrayView2<f32>) -> Option<Array2<f64>> {
        GaussianMixture::score(self, x)
    }

    fn sample(&self, n: usize, rng: &mut Stream) -> Array2<f32> {
        self.sample_labeled(n, rng).0
    }

    fn mean(&self) -> Option<Array1<f64>> {
        let mut m = Array1::zeros(self.dim());
        for (c, &w) in self.components.iter().zip(&self.weights) {
            m.scaled_add(w, c.mu());
        }
        Some(m)
    }

    /// Σ = Σ_k w_k (Σ_k + μ_k μ_kᵀ) − μ μᵀ.
    fn covariance(&self) -> Option<Array2<f64>> {
        let d = self.dim();
        let mu = self.mean()?;
        let mut s = Array2::<f64>::zeros((d, d));
        for (c, &w) in self.components.iter().zip(&self.weights) {
            let m = c.mu();
            let outer = Array2::from_shape_fn((d, d), |(i, j)| m[i] * m[j]);
            s.scaled_add(w, &(c.sigma() + &outer));
        }
        let outer = Array2::from_shape_fn((d, d), |(i, j)| mu[i] * mu[j]);
        Some(s - outer)
    }

    fn as_gaussian(&self) -> Option<&Gaussian> {
        (self.components.len() == 1).then(|| &self.components[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg;
    use crate::rng::{Role, stream};
    use ndarray::array;

    #[test]
    fn moments_match_samples() {
        let gm = GaussianMixture::new(
            vec![1.0, 3.0],
            vec![
                Gaussian::isotropic(array![-2.0, 0.0], 0.5),
                Gaussian::isotropic(array![2.0, 1.0], 1.0),
            ],
        );
        let (x, labels) = gm.sample_labeled(100_000, &mut stream(1, 0, Role::Samples));
        let share = labels.iter().filter(|&&l| l == 1).count() as f64 / 1e5;
        assert!((share - 0.75).abs() < 0.01); // se ≈ 0.0014
        let m = linalg::mean(x.view());
        let c = linalg::covariance(x.view(), 1);
        let em = gm.mean().unwrap();
        let ec = gm.covariance().unwrap();
        assert!((&m - &em).iter().all(|v| v.abs() < 0.03));
        assert!((&c - &ec).iter().all(|v| v.abs() < 0.06));
    }

    #[test]
    fn the_score_is_the_gradient_of_the_log_density() {
        let m = GaussianMixture::new(
            vec![0.3, 0.7],
            vec![
                Gaussian::new(
                    ndarray::array![0.0, 1.0],
                    ndarray::array![[1.0, 0.3], [0.3, 0.5]],
                ),
                Gaussian::isotropic(ndarray::array![2.0, -1.0], 0.8),
            ],
        );
        let x = ndarray::array![[0.5f32, 0.25], [1.5, -0.5], [-1.0, 2.0]];
        let s = m.score(x.view()).unwrap();
        let h = 1e-3f32;
        for i in 0..3 {
            for j in 0..2 {
                let (mut a, mut b) = (x.clone(), x.clone());
                a[[i, j]] += h;
                b[[i, j]] -= h;
                let fd = (m.log_density(a.view()).unwrap()[i]
                    - m.log_density(b.view()).unwrap()[i])
                    / (2.0 * h as f64);
                assert!(
                    (fd - s[[i, j]]).abs() < 2e-3,
                    "{i} {j}: {fd} vs {}",
                    s[[i, j]]
                );
            }
        }
    }

    #[test]
    fn log_density_integrates_to_one_in_1d() {
        let gm = GaussianMixture::new(
            vec![0.3, 0.7],
            vec![
                Gaussian::isotropic(array![-1.0], 0.4),
                Gaussian::isotropic(array![2.0], 1.5),
            ],
        );
        let h = 0.001;
        let grid = Array2::from_shape_fn((20_000, 1), |(i, _)| (-10.0 + h * i as f64) as f32);
        let total: f64 = gm
            .log_density(grid.view())
            .unwrap()
            .iter()
            .map(|l| l.exp() * h)
            .sum();
        assert!((total - 1.0).abs() < 1e-4);
    }
}
