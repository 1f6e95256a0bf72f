//! Per-generation metrics. Each metric is one entry of [`ALL`]: a column name, a one-line
//! description, and a function of the evaluation [`Context`]. Adding a metric is adding an entry.

pub mod bench;
mod closed_form;
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

use crate::classifier::Classifier;
use crate::config::MetricsConfig;
use crate::distributions::{Distribution, Gaussian, Kde};
use crate::error::{Error, Result};
use crate::linalg;
use crate::models::Model;
use divergence::{Divergences, bounding_box, by_monte_carlo, by_quadrature, scott_bandwidth};
use eval::{EVAL_METRICS, EvalMetric, EvalOptions};
use modes::{ModeMass, mode_mass};
use ndarray::{Array1, Array2, ArrayView2, s};
use std::cell::OnceCell;

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
    pub model: &'a dyn Model,
    /// Cap on the points entering pairwise metrics.
    pub eval_samples: usize,
    /// Ratio for the nearest-neighbour memorisation test.
    pub memorization_ratio: f64,
    /// The target, when its form is known (mixture modes, density).
    pub target: Option<&'a dyn Distribution>,
    /// Settings of the `ouro eval` metrics.
    pub options: &'a EvalOptions,
    /// Mode masses, computed once per generation for the mode metrics.
    pub modes: OnceCell<Option<ModeMass>>,
    /// Divergences to the target, computed once per generation.
    pub divergences: OnceCell<Option<Divergences>>,
    /// (`memorized`, `memorized_null`), computed once per generation.
    pub memorized: OnceCell<(f64, f64)>,
    /// Class labels of the samples (class-conditional models).
    pub sample_labels: Option<&'a [u32]>,
    /// Accuracy (overall, per class) on the labelled reference points of the classifier trained
    /// on the seed's real training set (generation 0's): the reference line of
    /// `synthetic_accuracy`.
    pub real_accuracy: Option<&'a (f64, Vec<f64>)>,
    /// The same for the classifier trained on the samples, computed once per generation.
    pub synthetic_accuracy: OnceCell<Option<(f64, Vec<f64>)>>,
    /// The run's seed (seeds the classifiers).
    pub seed: u64,
    /// What curation did to this generation's synthetic training points (none at generation 0
    /// or without `[loop.curate]`).
    pub curation: Option<&'a crate::curate::CurationStats>,
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
            self.model.distribution()?.as_gaussian()?,
        ))
    }

    /// Edge coverage per class ([`edges::edge_coverage`] with labels) of the labelled
    /// evaluation samples against the labelled reference points.
    fn class_edge(&self, quantile: f64) -> f64 {
        match (self.sample_labels, self.reference.labels.as_deref()) {
            (Some(labels), Some(ref_labels)) => {
                let x = self.eval_view();
                edges::edge_coverage(
                    self.reference.points.view(),
                    x,
                    quantile,
                    Some((ref_labels, &labels[..x.nrows()])),
                )
            }
            _ => f64::NAN,
        }
    }

    /// (`memorized`, `memorized_null`): the memorisation test of the evaluated samples and of up
    /// to `eval_samples` reference points against the training set, whose sites are found once.
    fn memorized_shares(&self) -> (f64, f64) {
        *self.memorized.get_or_init(|| {
            let r = &self.reference.points;
            let real = r.slice(s![..r.nrows().min(self.eval_samples), ..]);
            let sets = [self.eval_view(), real];
            let v = memorization::memorized_shares(&sets, self.train, self.memorization_ratio);
            (v[0], v[1])
        })
    }

    /// Train on the samples and their labels, test on the labelled reference points.
    pub fn synthetic_accuracy(&self) -> Option<&(f64, Vec<f64>)> {
        self.synthetic_accuracy
            .get_or_init(|| {
                let labels = self.sample_labels?;
                let ref_labels = self.reference.labels.as_deref()?;
                Some(eval::tstr_accuracy(
                    self.samples,
                    labels,
                    self.reference.points.view(),
                    ref_labels,
                    self.seed,
                ))
            })
            .as_ref()
    }

    fn mode_mass(&self) -> Option<&ModeMass> {
        self.modes
            .get_or_init(|| {
                let mixture = self.target?.as_mixture()?;
                mode_mass(
                    self.samples,
                    mixture,
                    modes::DEFAULT_RADIUS,
                    modes::DEFAULT_MIN_SHARE,
                )
            })
            .as_ref()
    }

    /// KL, χ², TV from the target's density p to the model's q (its own density, or a Scott-rule
    /// KDE of the evaluation samples when it has none): quadrature on a 2049-node (1-D) or
    /// 257 × 257 (2-D) grid over the box of the reference and samples widened by a quarter on
    /// each side; Monte Carlo over the reference points (draws from the target) above 2-D.
    fn divergences(&self) -> Option<&Divergences> {
        self.divergences
            .get_or_init(|| {
                let target = self.target?;
                let dim = target.dim();
                target.log_density(self.samples.slice(s![..1, ..]))?;
                let log_p = |x: ArrayView2<f32>| target.log_density(x).expect("checked above");
                let own = self
                    .model
                    .distribution()
                    .and_then(|m| m.log_density(self.samples.slice(s![..1, ..])))
                    .is_some();
                let kde = if own {
                    None
                } else {
                    // A collapsed sample (all points equal) has no KDE: the divergences are NaN.
                    let x = self.eval_view();
                    let h = scott_bandwidth(x);
                    if !(h.is_finite() && h > 0.0) {
                        return None;
                    }
                    Some(Kde::new(x.to_owned(), h))
                };
                let log_q = |x: ArrayView2<f32>| match &kde {
                    Some(k) => k.log_density(x).expect("a KDE with h > 0"),
                    None => self
                        .model
                        .distribution()
                        .and_then(|m| m.log_density(x))
                        .expect("checked above"),
                };
                let reference = self.reference.points.view();
                Some(if dim <= 2 {
                    let (lo, hi) = bounding_box(&[reference, self.eval_view()], 0.25);
                    let nodes = if dim == 1 { 2049 } else { 257 };
                    by_quadrature(&log_p, &log_q, &lo, &hi, nodes)
                } else {
                    by_monte_carlo(reference, &log_p, &log_q)
                })
            })
            .as_ref()
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
    /// The points in the feature space of `[metrics] features`, when one is set.
    pub features: Option<Array2<f32>>,
    /// Class labels of the points, for a labelled data set.
    pub labels: Option<Vec<u32>>,
}

/// A named per-generation measurement.
pub struct Metric {
    /// Column name in `metrics.csv`.
    pub name: &'static str,
    /// What it measures.
    pub description: &'static str,
    /// What the target and model must offer for it to be defined.
    pub needs: Needs,
    /// Computed when `[metrics] names` is not given.
    pub default: bool,
    /// Computed in f64 from moments or from the fitted model alone, so defined for samples of
    /// any magnitude (see [`MetricSet::evaluate`]).
    pub in_f64: bool,
    compute: fn(&Context) -> f64,
}

/// What a run metric needs beyond samples, training set and reference points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Nothing more.
    Nothing,
    /// A Gaussian target and a Gaussian model.
    Gaussians,
    /// A Gaussian-mixture target.
    Mixture,
    /// A target with a known density.
    Density,
    /// Labelled real data and a model whose samples carry labels (class-conditional).
    Labels,
    /// A loop with `[loop.curate]`.
    Curation,
}

/// What an experiment's target and model offer (see [`Needs`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Available {
    /// Target and model are both Gaussian.
    pub gaussians: bool,
    /// The target is a Gaussian mixture.
    pub mixture: bool,
    /// The target's density is known.
    pub density: bool,
    /// Real points and samples both have class labels.
    pub labels: bool,
    /// The loop curates its synthetic points (`[loop.curate]`).
    pub curation: bool,
}

impl Available {
    fn allows(&self, needs: Needs) -> bool {
        match needs {
            Needs::Nothing => true,
            Needs::Gaussians => self.gaussians,
            Needs::Mixture => self.mixture,
            Needs::Density => self.density,
            Needs::Labels => self.labels,
            Needs::Curation => self.curation,
        }
    }
}

const fn run_metric(
    name: &'static str,
    description: &'static str,
    needs: Needs,
    compute: fn(&Context) -> f64,
) -> Metric {
    Metric {
        name,
        description,
        needs,
        default: false,
        in_f64: false,
        compute,
    }
}

/// Every metric, in column order.
pub const ALL: &[Metric] = &[
    Metric {
        name: "mean_shift",
        description: "‖mean of samples − target mean‖",
        needs: Needs::Nothing,
        default: true,
        in_f64: true,
        compute: |c| {
            let m = linalg::mean(c.samples);
            (&m - c.target_mean).mapv(|v| v * v).sum().sqrt()
        },
    },
    Metric {
        name: "model_mean_error2",
        description: "‖mean of the fitted model − target mean‖², from the model's exact mean (NaN for models without one, e.g. diffusion)",
        needs: Needs::Nothing,
        default: false,
        in_f64: true,
        compute: |c| match c.model.distribution().and_then(|d| d.mean()) {
            Some(m) => (&m - c.target_mean).mapv(|v| v * v).sum(),
            None => f64::NAN,
        },
    },
    Metric {
        name: "cov_trace_ratio",
        description: "tr(sample covariance, unbiased) / tr(target covariance)",
        needs: Needs::Nothing,
        default: true,
        in_f64: true,
        compute: |c| linalg::covariance(c.samples, 1).diag().sum() / c.target_cov.diag().sum(),
    },
    Metric {
        name: "second_moment",
        description: "E‖x‖² over the samples",
        needs: Needs::Nothing,
        default: true,
        in_f64: true,
        compute: |c| linalg::second_moment(c.samples),
    },
    Metric {
        name: "mmd2",
        description: "unbiased MMD² to the real reference set, RBF kernel, median-heuristic bandwidth",
        needs: Needs::Nothing,
        default: true,
        in_f64: false,
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
        needs: Needs::Nothing,
        default: true,
        in_f64: false,
        compute: |c| c.memorized_shares().0,
    },
    Metric {
        name: "memorized_null",
        description: "the same test for (up to eval_samples) held-out real points, which copy nothing: the rate `memorized` has without memorisation",
        needs: Needs::Nothing,
        default: true,
        in_f64: false,
        compute: |c| c.memorized_shares().1,
    },
    Metric {
        name: "kl_gaussian",
        description: "KL(target ‖ model) between the Gaussian target and the Gaussian model (nats)",
        needs: Needs::Gaussians,
        default: true,
        in_f64: true,
        compute: |c| {
            c.gaussian_pair()
                .map_or(f64::NAN, |(t, m)| kl_gaussians(t, m))
        },
    },
    Metric {
        name: "w2_gaussian",
        description: "2-Wasserstein distance between the Gaussian target and the Gaussian model",
        needs: Needs::Gaussians,
        default: true,
        in_f64: true,
        compute: |c| {
            c.gaussian_pair()
                .map_or(f64::NAN, |(t, m)| w2_gaussians(t, m))
        },
    },
    run_metric(
        "modes_hit",
        "mixture components holding at least 10% of their weight in samples (within 3 sd)",
        Needs::Mixture,
        |c| c.mode_mass().map_or(f64::NAN, |m| m.hit as f64),
    ),
    run_metric(
        "mode_tv",
        "½ Σ |share of samples on mode k − weight k| + ½ off-mode share",
        Needs::Mixture,
        |c| c.mode_mass().map_or(f64::NAN, |m| m.tv),
    ),
    run_metric(
        "off_mode",
        "share of samples more than 3 sd from their most likely mixture component",
        Needs::Mixture,
        |c| c.mode_mass().map_or(f64::NAN, |m| m.off_mode),
    ),
    run_metric(
        "kl_target",
        "KL(target ‖ model) in nats; model density its own or a KDE of the samples",
        Needs::Density,
        |c| c.divergences().map_or(f64::NAN, |d| d.kl.value),
    ),
    run_metric(
        "kl_target_err",
        "error estimate of kl_target (grid refinement in 1-D/2-D, standard error above)",
        Needs::Density,
        |c| c.divergences().map_or(f64::NAN, |d| d.kl.error),
    ),
    run_metric(
        "chi2_target",
        "Pearson χ²(model ‖ target) = E_target[(q/p − 1)²]",
        Needs::Density,
        |c| c.divergences().map_or(f64::NAN, |d| d.chi2.value),
    ),
    run_metric(
        "chi2_target_err",
        "error estimate of chi2_target",
        Needs::Density,
        |c| c.divergences().map_or(f64::NAN, |d| d.chi2.error),
    ),
    run_metric(
        "tv_target",
        "total variation distance between target and model",
        Needs::Density,
        |c| c.divergences().map_or(f64::NAN, |d| d.tv.value),
    ),
    run_metric(
        "tv_target_err",
        "error estimate of tv_target",
        Needs::Density,
        |c| c.divergences().map_or(f64::NAN, |d| d.tv.error),
    ),
    Metric {
        name: "class_edge90",
        description: "share of samples beyond the 90th percentile of their class's real distances to the class mean (real: 0.10)",
        needs: Needs::Labels,
        default: true,
        in_f64: false,
        compute: |c| c.class_edge(0.9),
    },
    Metric {
        name: "class_edge99",
        description: "the same beyond the 99th percentile (real: 0.01)",
        needs: Needs::Labels,
        default: true,
        in_f64: false,
        compute: |c| c.class_edge(0.99),
    },
    Metric {
        name: "synthetic_accuracy",
        description: "held-out real accuracy of an MLP classifier trained on all samples and their labels (train on synthetic, test on real)",
        needs: Needs::Labels,
        default: true,
        in_f64: false,
        compute: |c| c.synthetic_accuracy().map_or(f64::NAN, |a| a.0),
    },
    Metric {
        name: "real_accuracy",
        description: "the same classifier trained on the seed's real training set (generation 0's): the reference line",
        needs: Needs::Labels,
        default: true,
        in_f64: false,
        compute: |c| c.real_accuracy.map_or(f64::NAN, |a| a.0),
    },
    Metric {
        name: "accuracy_gap",
        description: "synthetic_accuracy − real_accuracy",
        needs: Needs::Labels,
        default: true,
        in_f64: false,
        compute: |c| match (c.synthetic_accuracy(), c.real_accuracy) {
            (Some(s), Some(r)) => s.0 - r.0,
            _ => f64::NAN,
        },
    },
    Metric {
        name: "curate_kept",
        description: "share of the candidate samples that curation kept for the next training set (1 without a filter; the verifier's acceptance rate)",
        needs: Needs::Curation,
        default: true,
        in_f64: true,
        compute: |c| c.curation.map_or(f64::NAN, |s| s.kept),
    },
    Metric {
        name: "curate_reward_mean",
        description: "mean score of the kept samples: the reward, the verifier's score, or the model's log-density (likelihood-rank)",
        needs: Needs::Curation,
        default: true,
        in_f64: true,
        compute: |c| c.curation.map_or(f64::NAN, |s| s.score_mean),
    },
    Metric {
        name: "curate_moved",
        description: "mean distance the expert correction moved a kept sample (0 without one)",
        needs: Needs::Curation,
        default: true,
        in_f64: true,
        compute: |c| c.curation.map_or(f64::NAN, |s| s.moved),
    },
    Metric {
        name: "curate_accept",
        description: "share of the correction's Metropolis-adjusted Langevin proposals accepted",
        needs: Needs::Curation,
        default: true,
        in_f64: true,
        compute: |c| c.curation.map_or(f64::NAN, |s| s.accept),
    },
];

/// One chosen column: a run metric, or an `ouro eval` metric computed on (reference, samples,
/// training set).
#[derive(Clone, Copy, Debug)]
enum Choice {
    Run(usize),
    Eval(usize),
}

/// The metrics chosen for a run.
#[derive(Clone, Debug)]
pub struct MetricSet {
    chosen: Vec<Choice>,
    /// Cap on points in pairwise metrics.
    pub eval_samples: usize,
    /// Ratio of the memorisation test.
    pub memorization_ratio: f64,
    /// Settings of the `ouro eval` metrics.
    pub options: EvalOptions,
    /// The classifier whose last hidden layer the `ouro eval` metrics compare in, if any.
    pub features: Option<std::sync::Arc<Classifier>>,
}

impl MetricSet {
    /// Checks `[metrics]`. Names are those of [`ALL`] and of [`eval::EVAL_METRICS`] (run metrics
    /// first where both have one). Without names: the default run metrics that `available`
    /// allows; a named metric that it does not allow is an error.
    pub fn from_config(cfg: &MetricsConfig, available: Available) -> Result<MetricSet> {
        let chosen = match &cfg.names {
            None => (0..ALL.len())
                .filter(|&i| ALL[i].default && available.allows(ALL[i].needs))
                .map(Choice::Run)
                .collect(),
            Some(names) => {
                let mut chosen: Vec<Choice> = Vec::new();
                for n in names {
                    let choice = if let Some(i) = ALL.iter().position(|m| m.name == n) {
                        if !available.allows(ALL[i].needs) {
                            let what = match ALL[i].needs {
                                Needs::Gaussians => "a Gaussian target and a Gaussian model",
                                Needs::Mixture => "a Gaussian-mixture target",
                                Needs::Labels => {
                                    "labelled samples: a target with class labels and a \
                                     class-conditional model (model.conditional = true)"
                                }
                                Needs::Curation => "a loop with [loop.curate]",
                                Needs::Density | Needs::Nothing => "a target with a known density",
                            };
                            return Err(Error::config(format!(
                                "metrics.names: `{n}` needs {what}"
                            )));
                        }
                        Choice::Run(i)
                    } else if let Some(i) = EVAL_METRICS.iter().position(|m| m.name == n) {
                        Choice::Eval(i)
                    } else {
                        let known = known_names();
                        return Err(Error::config(format!(
                            "metrics.names: unknown metric `{n}`; known: {}",
                            known.join(", ")
                        )));
                    };
                    if !chosen.iter().any(|c| name_of(*c) == n) {
                        chosen.push(choice);
                    }
                }
                chosen
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
        let knn = ["precision", "recall", "density", "coverage"];
        let uses_knn = chosen.iter().any(|&c| knn.contains(&name_of(c)));
        if cfg.k == 0 || (uses_knn && cfg.k >= cfg.eval_samples) {
            return Err(Error::config(format!(
                "metrics.k = {}: expected at least 1 and below eval_samples ({})",
                cfg.k, cfg.eval_samples
            )));
        }
        if cfg.projections == 0 {
            return Err(Error::config("metrics.projections: expected at least 1"));
        }
        let bandwidths = cfg
            .bandwidths
            .iter()
            .map(|b| eval::Bandwidth::parse(b))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| Error::config(format!("metrics.bandwidths: {e}")))?;
        if bandwidths.is_empty() {
            return Err(Error::config("metrics.bandwidths: expected at least one"));
        }
        let features = match &cfg.features {
            None => None,
            Some(path) => {
                let c = Classifier::load(path)?;
                if c.features(ndarray::Array2::zeros((0, c.dim())).view())
                    .is_none()
                {
                    return Err(Error::config(format!(
                        "metrics.features: {} has no hidden layer to take features from",
                        path.display()
                    )));
                }
                Some(std::sync::Arc::new(c))
            }
        };
        Ok(MetricSet {
            chosen,
            features,
            eval_samples: cfg.eval_samples,
            memorization_ratio: cfg.memorization_ratio,
            options: EvalOptions {
                k: cfg.k,
                memorization_ratio: cfg.memorization_ratio,
                projections: cfg.projections,
                seed: 0,
                bandwidths,
                ksg_k: 3,
            },
        })
    }

    /// Column names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.chosen.iter().map(|&c| name_of(c)).collect()
    }

    /// Whether a chosen metric trains classifiers on labelled points (the accuracy metrics).
    pub fn uses_classifiers(&self) -> bool {
        self.names()
            .iter()
            .any(|n| ["synthetic_accuracy", "real_accuracy", "accuracy_gap"].contains(n))
    }

    /// The reference set of one seed (the first `eval_samples` points, with their labels), with
    /// its cached terms (computed only if `mmd2` is chosen).
    pub fn reference(&self, points: ArrayView2<f32>, labels: Option<&[u32]>) -> Reference {
        let n = points.nrows().min(self.eval_samples);
        let points = points.slice(s![..n, ..]).to_owned();
        let labels = labels.map(|l| l[..n].to_vec());
        let (mmd_bandwidth, mmd_self_term) = if self.names().contains(&"mmd2") {
            let bw = median_bandwidth(points.view());
            (bw, self_kernel_mean(points.view(), bw))
        } else {
            (f64::NAN, f64::NAN)
        };
        let features = self
            .features
            .as_ref()
            .and_then(|c| c.features(points.view()));
        Reference {
            points,
            mmd_bandwidth,
            mmd_self_term,
            features,
            labels,
        }
    }

    /// One value per chosen metric. When the evaluated samples or the training set hold a value
    /// that is NaN, infinite or beyond [`crate::data::MAX_MAGNITUDE`] (a diverging model), only
    /// the metrics computed from f64 moments and closed forms ([`Metric::in_f64`]) are computed; every
    /// other is NaN, since its f32 distances would overflow.
    pub fn evaluate(&self, ctx: &Context) -> Vec<f64> {
        let in_range = |x: ArrayView2<f32>| crate::data::first_out_of_range(x).is_none();
        if !(in_range(ctx.eval_view()) && in_range(ctx.train)) {
            return self
                .chosen
                .iter()
                .map(|&c| match c {
                    Choice::Run(i) if ALL[i].in_f64 => (ALL[i].compute)(ctx),
                    _ => f64::NAN,
                })
                .collect();
        }
        let wanted: Vec<&EvalMetric> = self
            .chosen
            .iter()
            .filter_map(|&c| match c {
                Choice::Eval(i) => Some(&EVAL_METRICS[i]),
                Choice::Run(_) => None,
            })
            .collect();
        let from_eval = if wanted.is_empty() {
            Vec::new()
        } else if let Some(c) = &self.features {
            let f = |x: ArrayView2<f32>| c.features(x).expect("checked in from_config");
            let (r, g, t) = (
                f(ctx.reference.points.view()),
                f(ctx.eval_view()),
                f(ctx.train),
            );
            let labels = eval::Labels::default();
            eval::evaluate(
                r.view(),
                g.view(),
                Some(t.view()),
                &labels,
                &wanted,
                ctx.options,
            )
        } else {
            eval::evaluate(
                ctx.reference.points.view(),
                ctx.eval_view(),
                Some(ctx.train),
                &eval::Labels::default(),
                &wanted,
                ctx.options,
            )
        };
        self.chosen
            .iter()
            .map(|&c| match c {
                Choice::Run(i) => (ALL[i].compute)(ctx),
                Choice::Eval(i) => from_eval
                    .iter()
                    .find(|(n, _)| *n == EVAL_METRICS[i].name)
                    .map_or(f64::NAN, |&(_, v)| v),
            })
            .collect()
    }
}

/// Every name `[metrics] names` accepts: the run metrics, then the `ouro eval` ones not
/// among them (except those that need labelled samples).
pub fn known_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ALL.iter().map(|m| m.name).collect();
    for m in EVAL_METRICS {
        if !m.needs_labels && !names.contains(&m.name) {
            names.push(m.name);
        }
    }
    names
}

fn name_of(c: Choice) -> &'static str {
    match c {
        Choice::Run(i) => ALL[i].name,
        Choice::Eval(i) => EVAL_METRICS[i].name,
    }
}
