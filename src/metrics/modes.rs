//! Mode coverage of a Gaussian-mixture target: which modes the samples still hit, and the
//! share of the samples on each (the mode-collapse measurements of e.g. Srivastava et al. 2017,
//! "VEEGAN", and Metz et al. 2017 on ring and grid mixtures).

use crate::distributions::GaussianMixture;
use crate::linalg::gaussian_whitener;
use ndarray::{Array1, Array2, ArrayView2};

/// Radius, in standard deviations of a component (Mahalanobis distance), within which a sample
/// counts for that component (three, as in the ring/grid benchmarks).
pub const DEFAULT_RADIUS: f64 = 3.0;
/// A mode is hit when its share of the samples is at least this fraction of its weight.
pub const DEFAULT_MIN_SHARE: f64 = 0.1;

/// How the samples spread over the modes of a mixture.
#[derive(Clone, Debug, PartialEq)]
pub struct ModeMass {
    /// Per component: the share of all samples assigned to it.
    pub shares: Vec<f64>,
    /// Share of samples assigned to no component (farther than the radius from the most
    /// responsible one).
    pub off_mode: f64,
    /// Components whose share is at least `min_share` × their weight.
    pub hit: usize,
    /// Total variation ½ Σₖ |shareₖ − wₖ| + ½ off_mode between the per-mode masses and the
    /// mixture weights (0: the samples split over the modes exactly as the target does).
    pub tv: f64,
}

/// Assigns each sample to the component of `mixture` with the largest weighted density
/// wₖ N(x | μₖ, Σₖ) (the Bayes classifier of the target) and keeps the assignment when the
/// sample lies within `radius` standard deviations (Mahalanobis) of that component's mean.
/// `None` when a component's covariance is singular.
pub fn mode_mass(
    samples: ArrayView2<f32>,
    mixture: &GaussianMixture,
    radius: f64,
    min_share: f64,
) -> Option<ModeMass> {
    let comps = mixture.components();
    let weights = mixture.weights();
    let n = samples.nrows();
    // Per component: whitened squared distances and log normaliser.
    let mut sq = Array2::<f64>::zeros((n, comps.len()));
    let mut logw = Array1::<f64>::zeros(comps.len());
    for (k, c) in comps.iter().enumerate() {
        let (linv_t, log_norm) = gaussian_whitener(c.sigma())?;
        let y = crate::linalg::centred(samples, c.mu().view()).dot(&linv_t);
        for (i, r) in y.rows().into_iter().enumerate() {
            sq[[i, k]] = r.dot(&r);
        }
        logw[k] = weights[k].ln() + log_norm;
    }
    let mut counts = vec![0usize; comps.len()];
    let mut off = 0usize;
    for row in sq.rows() {
        let best = (0..comps.len())
            .max_by(|&a, &b| {
                let (la, lb) = (logw[a] - 0.5 * row[a], logw[b] - 0.5 * row[b]);
                la.total_cmp(&lb).then(b.cmp(&a))
            })
            .expect("a mixture has components");
        if row[best] <= radius * radius {
            counts[best] += 1;
        } else {
            off += 1;
        }
    }
    let total = n.max(1) as f64;
    let shares: Vec<f64> = counts.iter().map(|&c| c as f64 / total).collect();
    let off_mode = off as f64 / total;
    let hit = shares
        .iter()
        .zip(weights)
        .filter(|&(&s, &w)| s > 0.0 && s >= min_share * w)
        .count();
    let tv = 0.5
        * (shares
            .iter()
            .zip(weights)
            .map(|(s, w)| (s - w).abs())
            .sum::<f64>()
            + off_mode);
    Some(ModeMass {
        shares,
        off_mode,
        hit,
        tv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distributions::{Distribution, Gaussian};
    use crate::rng::{Role, stream};
    use ndarray::array;

    fn two_modes() -> GaussianMixture {
        GaussianMixture::new(
            vec![0.25, 0.75],
            vec![
                Gaussian::isotropic(array![-4.0, 0.0], 0.5),
                Gaussian::isotropic(array![4.0, 0.0], 0.5),
            ],
        )
    }

    #[test]
    fn target_samples_hit_every_mode_with_its_weight() {
        let m = two_modes();
        let x = m.sample(20_000, &mut stream(0, 0, Role::Samples));
        let r = mode_mass(x.view(), &m, DEFAULT_RADIUS, DEFAULT_MIN_SHARE).unwrap();
        assert_eq!(r.hit, 2);
        // Share of mode 0 ~ Binomial(20000, 0.25)/20000: sd 0.0031; 5 sd.
        assert!((r.shares[0] - 0.25).abs() < 0.016, "{r:?}");
        // Mass beyond 3 sd in 2-D: P(χ²₂ > 9) = e^−4.5 ≈ 0.011.
        assert!((r.off_mode - (-4.5f64).exp()).abs() < 0.004, "{r:?}");
        assert!(r.tv < 0.03);
    }

    #[test]
    fn a_collapsed_sample_misses_a_mode() {
        let m = two_modes();
        let x = Gaussian::isotropic(array![4.0, 0.0], 0.5)
            .sample(1000, &mut stream(1, 0, Role::Samples));
        let r = mode_mass(x.view(), &m, DEFAULT_RADIUS, DEFAULT_MIN_SHARE).unwrap();
        assert_eq!(r.hit, 1);
        assert_eq!(r.shares[0], 0.0);
        // All mass on mode 1 (weight 0.75), up to the ~1% beyond 3 sd: TV ≈ 0.25.
        assert!((r.tv - 0.25).abs() < 0.02, "{r:?}");
    }
}
