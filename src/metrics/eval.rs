//! `ouro eval`: the metric suite on any real and generated sets a user has, by name.

use super::distance::{energy_distance, frechet_distance, random_directions, sliced_wasserstein};
use super::edges::edge_coverage;
use super::fidelity::prdc;
use super::kernel::{Kernel, median_bandwidth, mmd2, mmd2_many};
use super::memorization::{memorization, memorized_share, nn_distance_gap};
use super::mutual_info::mi_excess;
use crate::classifier::fit_mlp;
use crate::error::{Error, Result};
use crate::rng::{Role, stream};
use ndarray::ArrayView2;
use std::collections::HashMap;

/// Settings of the metrics that have any.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// k of the k-NN balls (precision, recall, density, coverage).
    pub k: usize,
    /// Ratio of the nearest-neighbour memorisation test.
    pub memorization_ratio: f64,
    /// Random directions of the sliced Wasserstein distance.
    pub projections: usize,
    /// Seed of those directions.
    pub seed: u64,
    /// RBF bandwidths of `mmd2` (MMD² averaged over them, i.e. with the mean kernel).
    pub bandwidths: Vec<Bandwidth>,
    /// k of the KSG estimator (`mi_excess`).
    pub ksg_k: usize,
}

/// An RBF bandwidth: fixed, or a multiple of the median real pairwise distance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bandwidth {
    /// σ in data units.
    Fixed(f64),
    /// σ = factor × median heuristic.
    Median(f64),
}

impl Bandwidth {
    /// Parses `median`, `0.5x` (a multiple of the median) or a positive number.
    pub fn parse(s: &str) -> Result<Bandwidth> {
        let bad = || {
            Error::Run(format!(
                "bandwidth `{s}`: expected `median`, a multiple of it such as `0.5x`, or a \
                 positive number"
            ))
        };
        let s = s.trim();
        let b = if s == "median" {
            Bandwidth::Median(1.0)
        } else if let Some(f) = s.strip_suffix('x') {
            Bandwidth::Median(f.parse().map_err(|_| bad())?)
        } else {
            Bandwidth::Fixed(s.parse().map_err(|_| bad())?)
        };
        match b {
            Bandwidth::Fixed(v) | Bandwidth::Median(v) if v.is_finite() && v > 0.0 => Ok(b),
            _ => Err(bad()),
        }
    }

    /// σ given the median heuristic of the real set.
    pub fn sigma(self, median: f64) -> f64 {
        match self {
            Bandwidth::Fixed(v) => v,
            Bandwidth::Median(f) => f * median,
        }
    }
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            k: 5,
            memorization_ratio: 1.0 / 3.0,
            projections: 128,
            seed: 0,
            bandwidths: vec![Bandwidth::Median(1.0)],
            ksg_k: 3,
        }
    }
}

/// An `ouro eval` metric: name, what it measures, and which inputs beyond the two sets it needs.
pub struct EvalMetric {
    /// Name on the command line and in the output.
    pub name: &'static str,
    /// What it measures.
    pub description: &'static str,
    /// Needs `--train`.
    pub needs_train: bool,
    /// Needs class labels: of the real and generated sets, and of the training set with
    /// `needs_train`.
    pub needs_labels: bool,
}

const fn metric(name: &'static str, description: &'static str, needs_train: bool) -> EvalMetric {
    EvalMetric {
        name,
        description,
        needs_train,
        needs_labels: false,
    }
}

const fn labelled(name: &'static str, description: &'static str, needs_train: bool) -> EvalMetric {
    EvalMetric {
        name,
        description,
        needs_train,
        needs_labels: true,
    }
}

/// Class labels of the sets, where given (one per row, classes 0..k).
#[derive(Clone, Copy, Debug, Default)]
pub struct Labels<'a> {
    /// Of the real set.
    pub real: Option<&'a [u32]>,
    /// Of the generated set.
    pub generated: Option<&'a [u32]>,
    /// Of the training set.
    pub train: Option<&'a [u32]>,
}

impl Labels<'_> {
    /// Whether the labels `m` needs are all given.
    fn allow(&self, m: &EvalMetric, has_train: bool) -> bool {
        (!m.needs_train || has_train)
            && (!m.needs_labels
                || (self.real.is_some()
                    && if m.needs_train {
                        self.train.is_some()
                    } else {
                        self.generated.is_some()
                    }))
    }
}

/// Every metric `ouro eval` computes, in output order.
pub const EVAL_METRICS: &[EvalMetric] = &[
    metric(
        "precision",
        "share of generated points inside a real point's k-NN ball (Kynkäänniemi et al.)",
        false,
    ),
    metric(
        "recall",
        "share of real points inside a generated point's k-NN ball (Kynkäänniemi et al.)",
        false,
    ),
    metric(
        "density",
        "mean number of real k-NN balls holding a generated point, over k (Naeem et al.)",
        false,
    ),
    metric(
        "coverage",
        "share of real points whose k-NN ball holds a generated point (Naeem et al.)",
        false,
    ),
    metric(
        "mmd2",
        "unbiased MMD², RBF kernel, bandwidth = median real pairwise distance (or the mean over --bandwidths)",
        false,
    ),
    metric(
        "mmd2_biased",
        "biased (V-statistic) MMD², same kernel",
        false,
    ),
    metric(
        "kid",
        "unbiased MMD² with the cubic kernel (x·y/d + 1)³ over the full sets (KID)",
        false,
    ),
    metric(
        "energy",
        "energy distance 2E‖X−Y‖ − E‖X−X′‖ − E‖Y−Y′‖ (V-statistic)",
        false,
    ),
    metric(
        "sliced_w2",
        "sliced 2-Wasserstein distance over seeded random directions",
        false,
    ),
    metric(
        "frechet",
        "Fréchet distance between Gaussians fitted to the two sets (FID formula)",
        false,
    ),
    metric(
        "edge90",
        "share of generated points beyond the 90th percentile of the real points' distance to their mean (real: 0.10)",
        false,
    ),
    metric(
        "edge99",
        "share of generated points beyond the 99th percentile of that distance (real: 0.01)",
        false,
    ),
    metric(
        "memorized",
        "share of generated points whose nearest training point is < ratio × the second nearest",
        true,
    ),
    metric(
        "memorized_null",
        "the same test for the real points, which copy nothing: the rate `memorized` has without memorisation",
        true,
    ),
    metric(
        "copies",
        "share of generated points identical to a training point",
        true,
    ),
    metric(
        "authenticity",
        "share of generated points no closer to their nearest training point than it is to its own nearest (Alaa et al.)",
        true,
    ),
    metric(
        "nn_gap",
        "mean NN distance to the real set minus to the training set (equal sizes); > 0: closer to training",
        true,
    ),
    labelled(
        "synthetic_accuracy",
        "accuracy on the real set of an MLP classifier trained on the generated set and its labels (train on synthetic, test on real)",
        false,
    ),
    labelled(
        "real_accuracy",
        "the same classifier trained on the training set and its labels instead (the reference line)",
        true,
    ),
    metric(
        "mi_excess",
        "KSG mutual information of generated points with their nearest training points, minus that of real points (first 2000; ≈ 0: generalises)",
        true,
    ),
];

/// Points entering the O(N²) KSG estimate of `mi_excess`.
const KSG_POINTS: usize = 2000;

/// Checks the requested names (all metrics that the inputs allow when `names` is empty).
pub fn resolve(
    names: &[String],
    has_train: bool,
    labels: &Labels,
) -> Result<Vec<&'static EvalMetric>> {
    if names.is_empty() {
        return Ok(EVAL_METRICS
            .iter()
            .filter(|m| labels.allow(m, has_train))
            .collect());
    }
    let mut chosen: Vec<&'static EvalMetric> = Vec::new();
    for n in names {
        let m = EVAL_METRICS.iter().find(|m| m.name == n).ok_or_else(|| {
            let known: Vec<&str> = EVAL_METRICS.iter().map(|m| m.name).collect();
            Error::Run(format!(
                "--metrics: unknown metric `{n}`; known: {}",
                known.join(", ")
            ))
        })?;
        if m.needs_train && !has_train {
            return Err(Error::Run(format!(
                "--metrics: `{n}` needs the training set (--train TRAIN.npy)"
            )));
        }
        if !labels.allow(m, has_train) {
            let which = if m.needs_train {
                "--real-labels and --train-labels"
            } else {
                "--real-labels and --generated-labels"
            };
            return Err(Error::Run(format!(
                "--metrics: `{n}` needs class labels ({which})"
            )));
        }
        if !chosen.iter().any(|c| c.name == m.name) {
            chosen.push(m);
        }
    }
    Ok(chosen)
}

/// Accuracy on (test, test labels), overall and per class (NaN for a class absent from the
/// test labels), of the MLP classifier of [`crate::classifier`] trained on (train, train
/// labels) with the stream of `seed`; classes are 0..max label + 1 of both sets. Trained on
/// synthetic and tested on real data, this is the classification accuracy score (Ravuri &
/// Vinyals 2019).
pub fn tstr_accuracy(
    train: ArrayView2<f32>,
    train_labels: &[u32],
    test: ArrayView2<f32>,
    test_labels: &[u32],
    seed: u64,
) -> (f64, Vec<f64>) {
    fit_mlp(train, train_labels, test_labels, seed).accuracy(test, test_labels)
}

/// Computes `metrics` for `generated` against `real` (and `train`), in the given order. The
/// sets must be finite, of one dimension, and hold more than k points where k-NN balls are
/// used (checked by the caller, see `ouro eval`).
pub fn evaluate(
    real: ArrayView2<f32>,
    generated: ArrayView2<f32>,
    train: Option<ArrayView2<f32>>,
    labels: &Labels,
    metrics: &[&EvalMetric],
    opts: &EvalOptions,
) -> Vec<(&'static str, f64)> {
    let wants = |names: &[&str]| metrics.iter().any(|m| names.contains(&m.name));
    let mut values: HashMap<&'static str, f64> = HashMap::new();
    if wants(&["precision", "recall", "density", "coverage"]) {
        let p = prdc(real, generated, opts.k);
        values.extend([
            ("precision", p.precision),
            ("recall", p.recall),
            ("density", p.density),
            ("coverage", p.coverage),
        ]);
    }
    if wants(&["mmd2", "mmd2_biased"]) {
        let median = median_bandwidth(real);
        let kernels: Vec<Kernel> = opts
            .bandwidths
            .iter()
            .map(|b| Kernel::Rbf(b.sigma(median)))
            .collect();
        let all = mmd2_many(generated, real, &kernels);
        let count = all.len().max(1) as f64;
        values.insert("mmd2", all.iter().map(|m| m.unbiased).sum::<f64>() / count);
        values.insert(
            "mmd2_biased",
            all.iter().map(|m| m.biased).sum::<f64>() / count,
        );
    }
    for (name, q) in [("edge90", 0.9), ("edge99", 0.99)] {
        if wants(&[name]) {
            values.insert(name, edge_coverage(real, generated, q, None));
        }
    }
    if wants(&["kid"]) {
        let kid = mmd2(generated, real, Kernel::kid(real.ncols())).unbiased;
        values.insert("kid", kid);
    }
    if wants(&["energy"]) {
        values.insert("energy", energy_distance(generated, real));
    }
    if wants(&["sliced_w2"]) {
        let dirs = random_directions(
            opts.projections,
            real.ncols(),
            &mut stream(opts.seed, 0, Role::Metrics),
        );
        values.insert("sliced_w2", sliced_wasserstein(generated, real, &dirs, 2.0));
    }
    if wants(&["frechet"]) {
        values.insert("frechet", frechet_distance(generated, real));
    }
    if let (Some(rl), Some(gl)) = (labels.real, labels.generated)
        && wants(&["synthetic_accuracy"])
    {
        let acc = tstr_accuracy(generated, gl, real, rl, opts.seed).0;
        values.insert("synthetic_accuracy", acc);
    }
    if let (Some(t), Some(rl), Some(tl)) = (train, labels.real, labels.train)
        && wants(&["real_accuracy"])
    {
        values.insert("real_accuracy", tstr_accuracy(t, tl, real, rl, opts.seed).0);
    }
    if let Some(train) = train {
        if wants(&["memorized", "copies", "authenticity"]) {
            let m = memorization(generated, train, opts.memorization_ratio);
            values.extend([
                ("memorized", m.memorized),
                ("copies", m.copies),
                ("authenticity", m.authenticity),
            ]);
        }
        if wants(&["memorized_null"]) {
            let null = memorized_share(real, train, opts.memorization_ratio);
            values.insert("memorized_null", null);
        }
        if wants(&["nn_gap"]) {
            values.insert("nn_gap", nn_distance_gap(generated, train, real));
        }
        if wants(&["mi_excess"]) {
            let mi = mi_excess(generated, train, real, opts.ksg_k, KSG_POINTS);
            values.insert("mi_excess", mi);
        }
    }
    metrics
        .iter()
        .map(|m| (m.name, values.get(m.name).copied().unwrap_or(f64::NAN)))
        .collect()
}
