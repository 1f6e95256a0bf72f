//! Per-generation metrics. Each metric is one entry of [`ALL`]: a column name, a one-line
//! description, and a function of the evaluation [`Context`]. Adding a metric is adding an entry.

mod closed_form;
pub mod bench;
pub mod distance;
pub mod divergence;
pub mod edges;
pub mod eval;
pub mod fidelity;
pub mod kernel;
pub mod knn;
pub mod memorization;
pub mod modes;
pub mod mutual_info;

pub use closed_form::{kl_gaussians, w2_gaussians};
pub use kernel::{median_bandwidth, mmd2_unbiased, mmd2_unbiased_with, self_kernel_mean};
pub use memorization::memorized_share;

use crate::config::MetricsConfig;
use crate::distributions::Gaussian;
use crate::error::{Error, Result};
use crate::linalg;
use crate::models::Model;
use ndarray::{Array1, Array2, ArrayView2, s};

/// Everything a metric may read about one generation.
pub struct Context<'a> {
    /// The generation's samples (all of them).
    pub samples: ArrayView2<'a, f32>,
    /// The generation's training set.
    pub train: ArrayView2<'a, f32>,
    /// Real evaluation points and what is computed from them once per seed.
    pub reference: &'a Reference,
    /// Mean of the target.
    pub target_mean: &'a Array1<f64>,
    /// Covariance of the target.
    pub target_cov: &'a Array2<f64>,
    /// The target as a Gaussian, when it is one.
    pub target_gaussian: Option<&'a Gaussian>,
    /// The fitted model.
    pub model: &'a Model,
    /// Cap on the points entering pairwise metrics.
    pub eval_samples: usize,
    /// Ratio for the nearest-neighbour memorisation test.
    pub memorization_ratio: f64,
}

impl Context<'_> {
    /// The first `eval_samples` samples (samples are i.i.d., so a prefix is a random subsample).
    fn eval_view(&self) -> ArrayView2<'_, f32> {
        self.samples
            .slice(s![..self.samples.nrows().min(self.eval_samples), ..])
    }

    fn gaussian_pair(&self) -> Option<(&Gaussian, &Gaussian)> {
        Some((
            self.target_gaussian?,
            self.model.distribution().as_gaussian()?,
        ))
    }
}

/// The real reference set of one seed (at most `eval_samples` points) with the quantities that
/// do not change across generations: the MMD bandwidth (median heuristic) and its MMD² term.
pub struct Reference {
    /// Reference points.
    pub points: Array2<f32>,
    /// RBF bandwidth σ for `mmd2`.
    pub mmd_bandwidth: f64,
    /// 1/(n(n−1)) Σ_{i≠j} k(y_i, y_j) over the reference points.
    pub mmd_self_term: f64,
}

/// A named per-generation measurement.
pub struct Metric {
    /// Column name in `metrics.csv`.
    pub name: &'static str,
    /// What it measures.
    pub description: &'static str,
    /// Only defined when target and model are both Gaussian.
    pub needs_gaussians: bool,
    compute: fn(&Context) -> f64,
}

/// Every metric, in column order.
pub const ALL: &[Metric] = &[
    Metric {
        name: "mean_shift",
        description: "‖mean of samples − target mean‖",
        needs_gaussians: false,
        compute: |c| {
            let m = linalg::mean(c.samples);
            (&m - c.target_mean).mapv(|v| v * v).sum().sqrt()
        },
    },
    Metric {
        name: "cov_trace_ratio",
        description: "tr(sample covariance, unbiased) / tr(target covariance)",
        needs_gaussians: false,
        compute: |c| linalg::covariance(c.samples, 1).diag().sum() / c.target_cov.diag().sum(),
    },
    Metric {
        name: "second_moment",
        description: "E‖x‖² over the samples",
        needs_gaussians: false,
        compute: |c| linalg::second_moment(c.samples),
    },
    Metric {
        name: "mmd2",
        description: "unbiased MMD² to the real reference set, RBF kernel, median-heuristic bandwidth",
        needs_gaussians: false,
        compute: |c| {
            let r = c.reference;
            mmd2_unbiased_with(
                c.eval_view(),
                r.points.view(),
                r.mmd_bandwidth,
                r.mmd_self_term,
            )
        },
    },
    Metric {
        name: "memorized",
        description: "share of samples whose nearest training point is closer than ratio × the second nearest",
        needs_gaussians: false,
        compute: |c| memorized_share(c.eval_view(), c.train, c.memorization_ratio),
    },
    Metric {
        name: "kl_gaussian",
        description: "KL(target ‖ model) between the Gaussian target and the Gaussian model (nats)",
        needs_gaussians: true,
        compute: |c| {
            c.gaussian_pair()
                .map_or(f64::NAN, |(t, m)| kl_gaussians(t, m))
        },
    },
    Metric {
        name: "w2_gaussian",
        description: "2-Wasserstein distance between the Gaussian target and the Gaussian model",
        needs_gaussians: true,
        compute: |c| {
            c.gaussian_pair()
                .map_or(f64::NAN, |(t, m)| w2_gaussians(t, m))
        },
    },
];

/// The metrics chosen for a run.
#[derive(Clone, Debug)]
pub struct MetricSet {
    chosen: Vec<usize>,
    /// Cap on points in pairwise metrics.
    pub eval_samples: usize,
    /// Ratio of the memorisation test.
    pub memorization_ratio: f64,
}

impl MetricSet {
    /// Checks `[metrics]`. `gaussians` says whether target and model are both Gaussian; without
    /// it the Gaussian closed forms are left out by default and are an error when named.
    pub fn from_config(cfg: &MetricsConfig, gaussians: bool) -> Result<MetricSet> {
        let chosen = match &cfg.names {
            None => (0..ALL.len())
                .filter(|&i| gaussians || !ALL[i].needs_gaussians)
                .collect(),
            Some(names) => {
                let mut idx = Vec::new();
                for n in names {
                    let i = ALL.iter().position(|m| m.name == n).ok_or_else(|| {
                        let known: Vec<&str> = ALL.iter().map(|m| m.name).collect();
                        Error::config(format!(
                            "metrics.names: unknown metric `{n}`; known: {}",
                            known.join(", ")
                        ))
                    })?;
                    if ALL[i].needs_gaussians && !gaussians {
                        return Err(Error::config(format!(
                            "metrics.names: `{n}` needs a Gaussian target and a Gaussian model"
                        )));
                    }
                    if !idx.contains(&i) {
                        idx.push(i);
                    }
                }
                idx
            }
        };
        if cfg.eval_samples < 2 {
            return Err(Error::config("metrics.eval_samples: expected at least 2"));
        }
        if !(cfg.memorization_ratio > 0.0 && cfg.memorization_ratio <= 1.0) {
            return Err(Error::config(format!(
                "metrics.memorization_ratio = {}: expected a number in (0, 1]",
                cfg.memorization_ratio
            )));
        }
        Ok(MetricSet {
            chosen,
            eval_samples: cfg.eval_samples,
            memorization_ratio: cfg.memorization_ratio,
        })
    }

    /// Column names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.chosen.iter().map(|&i| ALL[i].name).collect()
    }

    /// The reference set of one seed, with its cached terms (computed only if `mmd2` is chosen).
    pub fn reference(&self, points: ArrayView2<f32>) -> Reference {
        let points = points
            .slice(s![..points.nrows().min(self.eval_samples), ..])
            .to_owned();
        let (mmd_bandwidth, mmd_self_term) = if self.names().contains(&"mmd2") {
            let bw = median_bandwidth(points.view());
            (bw, self_kernel_mean(points.view(), bw))
        } else {
            (f64::NAN, f64::NAN)
        };
        Reference {
            points,
            mmd_bandwidth,
            mmd_self_term,
        }
    }

    /// One value per chosen metric.
    pub fn evaluate(&self, ctx: &Context) -> Vec<f64> {
        self.chosen.iter().map(|&i| (ALL[i].compute)(ctx)).collect()
    }
}
