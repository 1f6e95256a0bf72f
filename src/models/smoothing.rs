//! `[model] kind = "kde"`: the Gaussian kernel density estimate.

use super::{Learner, LearnerConfig, Model, TrainingSet};
use crate::data::Dataset;
use crate::data::tensors::TensorFile;
use crate::distributions::{Distribution, Kde};
use crate::error::{Error, Result};
use crate::linalg;
use crate::rng::Stream;
use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

/// How a KDE bandwidth is chosen: a number ≥ 0 in data units, `"scott"` or `"silverman"`.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "BandwidthKey", into = "BandwidthKey")]
pub enum Bandwidth {
    /// A fixed h in data units.
    Fixed(f64),
    /// Scott's rule for an isotropic kernel: h = σ̄ n^(−1/(d+4)).
    Scott,
    /// Silverman's rule: h = σ̄ (n (d + 2)/4)^(−1/(d+4)).
    Silverman,
}

/// The TOML spelling of a [`Bandwidth`].
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
enum BandwidthKey {
    Fixed(f64),
    Rule(String),
}

impl TryFrom<BandwidthKey> for Bandwidth {
    type Error = String;
    fn try_from(key: BandwidthKey) -> std::result::Result<Self, String> {
        let expected = "expected a number ≥ 0, \"scott\" or \"silverman\"";
        match key {
            BandwidthKey::Fixed(h) if h.is_finite() && h >= 0.0 => {
                crate::data::data_scale("model.bandwidth", h)
                    .map(Bandwidth::Fixed)
                    .map_err(|e| match e {
                        Error::Config(m) => m,
                        other => other.to_string(),
                    })
            }
            BandwidthKey::Fixed(h) => Err(format!("{h}: {expected}")),
            BandwidthKey::Rule(r) if r == "scott" => Ok(Bandwidth::Scott),
            BandwidthKey::Rule(r) if r == "silverman" => Ok(Bandwidth::Silverman),
            BandwidthKey::Rule(r) => Err(format!("\"{r}\": {expected}")),
        }
    }
}

impl From<Bandwidth> for BandwidthKey {
    fn from(b: Bandwidth) -> Self {
        match b {
            Bandwidth::Fixed(h) => BandwidthKey::Fixed(h),
            Bandwidth::Scott => BandwidthKey::Rule("scott".into()),
            Bandwidth::Silverman => BandwidthKey::Rule("silverman".into()),
        }
    }
}

/// Gaussian KDE learner; σ̄ in the rules is the root mean per-coordinate variance of the data.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
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
    pub fn fit_points(&self, data: ArrayView2<f32>) -> Kde {
        Kde::new(data.to_owned(), self.bandwidth_for(data))
    }
}

impl LearnerConfig for KdeLearner {
    const KIND: &'static str = "kde";
    const ABOUT: &'static str =
        "Gaussian kernel density estimate (bandwidth = a number, \"scott\" or \"silverman\")";
    fn build(self) -> Result<Box<dyn Learner>> {
        Ok(Box::new(self))
    }
}

impl Learner for KdeLearner {
    fn offers(&self) -> crate::models::Offers {
        crate::models::Offers {
            log_density: true,
            weights: true,
            ..crate::models::Offers::default()
        }
    }
    fn config(&self) -> toml::Table {
        super::config_table(Self::KIND, self)
    }
    fn fit(
        &self,
        train: &TrainingSet,
        _previous: Option<&dyn Model>,
        _rng: &mut Stream,
    ) -> Result<Box<dyn Model>> {
        Ok(Box::new(match train.weights {
            None => self.fit_points(train.points),
            Some(w) => {
                super::check_weights(w, train.points.nrows())?;
                Kde::weighted(train.points.to_owned(), self.bandwidth_for(train.points), w)
            }
        }))
    }
    fn load(&self, file: &TensorFile) -> Result<Box<dyn Model>> {
        let points = file.matrix("points")?;
        let h = file.vector::<f64>("bandwidth", 1)?[0];
        if points.nrows() == 0 || !(h.is_finite() && h >= 0.0) {
            return Err(file.error("expected at least one point and a bandwidth ≥ 0"));
        }
        if file.has("weights") {
            let w = file.vector::<f64>("weights", points.nrows())?;
            if w.iter().any(|v| !(v.is_finite() && *v >= 0.0)) || w.iter().sum::<f64>() <= 0.0 {
                return Err(file.error("tensor `weights`: expected finite weights ≥ 0, not all 0"));
            }
            return Ok(Box::new(Kde::from_parts(points, h, w)));
        }
        Ok(Box::new(Kde::new(points, h)))
    }
}

impl Model for Kde {
    fn dim(&self) -> usize {
        self.points().ncols()
    }
    fn sample(&self, n: usize, rng: &mut Stream) -> Result<Dataset> {
        Ok(Dataset::unlabeled(Distribution::sample(self, n, rng)))
    }
    fn distribution(&self) -> Option<&dyn Distribution> {
        Some(self)
    }
    fn save(&self, file: &mut TensorFile) -> Result<()> {
        let p = self.points();
        let values: Vec<f32> = p.iter().copied().collect();
        file.put("points", &[p.nrows(), p.ncols()], &values);
        file.put("bandwidth", &[1], &[self.bandwidth()]);
        if let Some(w) = self.weights() {
            file.put("weights", &[w.len()], w);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Weighted kernels (loop.real_weight): points 0 and 10 with weights 4 : 1 and h = 1 give
    /// the mixture 0.8 N(0, 1) + 0.2 N(10, 1): mean 2, variance 0.16·100 + 1 = 17, that log
    /// density, a 0.2 share of samples near 10 (within 4 binomial se of 40 000), and a saved
    /// model that samples the same bits.
    #[test]
    fn weighted_kernels_are_a_weighted_mixture() {
        let learner = KdeLearner {
            bandwidth: Bandwidth::Fixed(1.0),
        };
        let x = array![[0.0f32], [10.0]];
        let w = [4.0, 1.0];
        let train = TrainingSet {
            weights: Some(&w),
            ..TrainingSet::points(x.view())
        };
        let model = learner
            .fit(
                &train,
                None,
                &mut crate::rng::stream(0, 0, crate::rng::Role::Fit),
            )
            .unwrap();
        let dist = model.distribution().unwrap();
        assert!((dist.mean().unwrap()[0] - 2.0).abs() < 1e-12);
        assert!((dist.covariance().unwrap()[[0, 0]] - 17.0).abs() < 1e-9);
        let ld = dist.log_density(array![[0.0f32]].view()).unwrap()[0];
        let phi = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        assert!(
            (ld - (0.8 * phi(0.0) + 0.2 * phi(10.0)).ln()).abs() < 1e-12,
            "{ld}"
        );
        let n = 40_000;
        let s = model
            .sample(n, &mut crate::rng::stream(0, 1, crate::rng::Role::Samples))
            .unwrap();
        let far = s.points.iter().filter(|&&v| v > 5.0).count() as f64 / n as f64;
        assert!((far - 0.2).abs() < 4.0 * (0.16 / n as f64).sqrt(), "{far}");
        let mut file = crate::data::tensors::TensorFile::default();
        model.save(&mut file).unwrap();
        let back = learner.load(&file).unwrap();
        let again = back
            .sample(n, &mut crate::rng::stream(0, 1, crate::rng::Role::Samples))
            .unwrap();
        assert_eq!(s.points, again.points);
    }

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
