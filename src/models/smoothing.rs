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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// The rules against their formulas, evaluated by hand: σ̄ is the root mean unbiased
    /// variance; in 1-D Silverman's rule is the textbook (4/3)^(1/5) σ n^(−1/5) ≈ 1.0592 σ n^(−1/5),
    /// and in 2-D (n (d + 2)/4 = n) it equals Scott's, as in scipy.stats.gaussian_kde.
    #[test]
    fn scott_and_silverman_follow_their_formulas() {
        let rule = |b| KdeLearner { bandwidth: b };
        let x = array![[0.0f32], [1.0], [2.0], [3.0], [4.0]];
        // var = 2.5, n = 5, d = 1
        let scott = rule(Bandwidth::Scott).bandwidth_for(x.view());
        let silverman = rule(Bandwidth::Silverman).bandwidth_for(x.view());
        assert!((scott - 1.145_977_269_496_164).abs() < 1e-12, "{scott}");
        assert!(
            (silverman - 1.213_846_445_150_357).abs() < 1e-12,
            "{silverman}"
        );
        let textbook = (4.0f64 / 3.0).powf(0.2) * 2.5f64.sqrt() * 5f64.powf(-0.2);
        assert!((silverman - textbook).abs() < 1e-12);
        // var = (20/3, 1/3): σ̄ = √3.5, n = 4, d = 2
        let y = array![[0.0f32, 1.0], [2.0, 1.0], [4.0, 2.0], [6.0, 2.0]];
        let scott = rule(Bandwidth::Scott).bandwidth_for(y.view());
        assert!((scott - 1.484_877_717_967_385).abs() < 1e-12, "{scott}");
        assert_eq!(rule(Bandwidth::Silverman).bandwidth_for(y.view()), scott);
        assert_eq!(rule(Bandwidth::Fixed(0.7)).bandwidth_for(y.view()), 0.7);
    }
}
