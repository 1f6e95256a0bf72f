//! Learners: validated hyper-parameters that `fit` a training set into a [`Model`] that can be
//! sampled. Warm start is `fit` given the previous generation's model.

mod em;
mod mle;
mod smoothing;

pub use em::MixtureEm;
pub use mle::GaussianMle;
pub use smoothing::{Bandwidth, KdeLearner};

use crate::config::{BandwidthConfig, ModelConfig};
use crate::data::Dataset;
use crate::diffusion::{DiffusionLearner, DiffusionModel};
use crate::distributions::{Distribution, Gaussian, GaussianMixture, Kde};
use crate::error::{Error, Result};
use crate::rng::Stream;
use ndarray::{Array1, Array2, ArrayView2};

/// A fitted generative model of one generation.
#[derive(Clone, Debug)]
pub enum Model {
    /// A Gaussian (from [`GaussianMle`]).
    Gaussian(Gaussian),
    /// A Gaussian mixture (from [`MixtureEm`]).
    Mixture(GaussianMixture),
    /// A kernel density estimate (from [`KdeLearner`]).
    Kde(Kde),
    /// A diffusion model (from [`DiffusionLearner`]).
    Diffusion(DiffusionModel),
}

impl Model {
    /// Draws `n` points with their class labels when the model generates labelled points (a
    /// class-conditional diffusion model); other models give points without labels.
    pub fn sample_labeled(&self, n: usize, rng: &mut Stream) -> Dataset {
        match self {
            Model::Diffusion(m) => {
                let (points, labels) = m.generate_labeled(n, rng);
                Dataset { points, labels }
            }
            _ => Dataset {
                points: self.sample(n, rng),
                labels: None,
            },
        }
    }

    /// The model as a distribution to sample from.
    pub fn distribution(&self) -> &dyn Distribution {
        match self {
            Model::Gaussian(g) => g,
            Model::Mixture(m) => m,
            Model::Kde(k) => k,
            Model::Diffusion(m) => m,
        }
    }
}

impl Distribution for Model {
    fn dim(&self) -> usize {
        self.distribution().dim()
    }
    fn sample(&self, n: usize, rng: &mut Stream) -> Array2<f32> {
        self.distribution().sample(n, rng)
    }
    fn mean(&self) -> Option<Array1<f64>> {
        self.distribution().mean()
    }
    fn covariance(&self) -> Option<Array2<f64>> {
        self.distribution().covariance()
    }
    fn as_gaussian(&self) -> Option<&Gaussian> {
        self.distribution().as_gaussian()
    }
    fn as_mixture(&self) -> Option<&crate::distributions::GaussianMixture> {
        self.distribution().as_mixture()
    }
    fn log_density(&self, x: ndarray::ArrayView2<f32>) -> Option<Array1<f64>> {
        self.distribution().log_density(x)
    }
}

/// A learner with checked hyper-parameters.
#[derive(Clone, Debug)]
pub enum Learner {
    /// Maximum-likelihood Gaussian.
    Gaussian(GaussianMle),
    /// Gaussian mixture by EM.
    Mixture(MixtureEm),
    /// Gaussian KDE.
    Kde(KdeLearner),
    /// Diffusion model.
    Diffusion(Box<DiffusionLearner>),
}

impl Learner {
    /// Checks `[model]` and builds the learner.
    pub fn from_config(cfg: &ModelConfig) -> Result<Learner> {
        Ok(match cfg {
            ModelConfig::Gaussian { covariance } => Learner::Gaussian(GaussianMle {
                covariance: *covariance,
            }),
            ModelConfig::Gmm {
                components,
                max_iter,
                tol,
                reg_covar,
            } => {
                if *components == 0 {
                    return Err(Error::config("model.components: expected at least 1"));
                }
                if *max_iter == 0 {
                    return Err(Error::config("model.max_iter: expected at least 1"));
                }
                if !(tol.is_finite() && *tol >= 0.0 && reg_covar.is_finite() && *reg_covar >= 0.0) {
                    return Err(Error::config(
                        "model.tol and model.reg_covar: expected numbers ≥ 0",
                    ));
                }
                Learner::Mixture(MixtureEm {
                    components: *components,
                    max_iter: *max_iter,
                    tol: *tol,
                    reg_covar: *reg_covar,
                })
            }
            ModelConfig::Kde { bandwidth } => {
                let bandwidth = match bandwidth {
                    BandwidthConfig::Fixed(h) if h.is_finite() && *h >= 0.0 => {
                        Bandwidth::Fixed(crate::data::data_scale("model.bandwidth", *h)?)
                    }
                    BandwidthConfig::Fixed(h) => {
                        return Err(Error::config(format!(
                            "model.bandwidth = {h}: expected a number ≥ 0, \"scott\" or \"silverman\""
                        )));
                    }
                    BandwidthConfig::Rule(r) if r == "scott" => Bandwidth::Scott,
                    BandwidthConfig::Rule(r) if r == "silverman" => Bandwidth::Silverman,
                    BandwidthConfig::Rule(r) => {
                        return Err(Error::config(format!(
                            "model.bandwidth = \"{r}\": expected a number ≥ 0, \"scott\" or \"silverman\""
                        )));
                    }
                };
                Learner::Kde(KdeLearner { bandwidth })
            }
            ModelConfig::Diffusion(cfg) => {
                Learner::Diffusion(Box::new(DiffusionLearner::from_config(cfg)?))
            }
        })
    }

    /// Smallest training set the learner can fit.
    pub fn min_points(&self) -> usize {
        match self {
            Learner::Gaussian(_) => 2,
            Learner::Mixture(m) => m.components,
            Learner::Kde(_) => 1,
            Learner::Diffusion(l) => l.min_points(),
        }
    }

    /// Whether `warm_start` changes what `fit` does (only for iterative learners).
    pub fn uses_warm_start(&self) -> bool {
        match self {
            Learner::Mixture(_) => true,
            Learner::Diffusion(l) => {
                matches!(l.denoiser, crate::diffusion::learner::DenoiserSpec::Mlp(_))
            }
            _ => false,
        }
    }

    /// Fits `data` (rows are points; `labels`, one per point, are used by class-conditional
    /// learners and ignored by the others). `previous` is the last generation's model when warm
    /// starting; `rng` is the (seed, generation, fit) stream.
    pub fn fit(
        &self,
        data: ArrayView2<f32>,
        labels: Option<&[u32]>,
        previous: Option<&Model>,
        rng: &mut Stream,
    ) -> Result<Model> {
        if data.nrows() < self.min_points() {
            return Err(Error::Run(format!(
                "the training set has {} points; this learner needs at least {}",
                data.nrows(),
                self.min_points()
            )));
        }
        Ok(match self {
            Learner::Gaussian(l) => Model::Gaussian(l.fit(data)),
            Learner::Mixture(l) => {
                let init = match previous {
                    Some(Model::Mixture(m)) => Some(m),
                    _ => None,
                };
                Model::Mixture(l.fit(data, init, rng)?)
            }
            Learner::Kde(l) => Model::Kde(l.fit(data)),
            Learner::Diffusion(l) => {
                let init = match previous {
                    Some(Model::Diffusion(m)) => Some(m),
                    _ => None,
                };
                Model::Diffusion(l.fit(data, labels, init, rng)?)
            }
        })
    }
}
