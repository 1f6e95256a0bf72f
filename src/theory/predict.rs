//! Which closed forms apply to an experiment, as curves of a metric's expected value per
//! generation, and how far a run's measurements are from them.
//!
//! | loop | learner | target | metric | expectation at generation g |
//! |---|---|---|---|---|
//! | replace, n points | Gaussian MLE (any covariance) | known covariance | `cov_trace_ratio` | ((n − 1)/n)^(g+1) |
//! | replace, n points | Gaussian MLE (any covariance) | known covariance | `model_mean_error2` | tr Σ (1 − ((n − 1)/n)^(g+1)) |
//! | augment, n real + m synthetic | Gaussian MLE | known covariance | `cov_trace_ratio`, `model_mean_error2` | the exact recursion of [`super::augment_mle`] |
//! | accumulate, n a generation | Gaussian MLE | known covariance | `cov_trace_ratio`, `model_mean_error2` | the exact recursion of [`super::accumulate_mle`] |
//! | replace | KDE, fixed h | known moments | `second_moment` | E‖x‖² + d h² (g + 1) |
//! | fresh, α = fresh/train | KDE, fixed h | known moments | `second_moment` | E‖x‖² + d h² (1 − (1 − α)^(g+1))/α |
//! | replace or fresh | diffusion, `kde` (h) or `empirical` (h = 0) denoiser, Heun, stopped at t₀ | known moments | `second_moment` | the KDE laws with h² + σ(t₀)² for h² |
//!
//! The KDE laws hold for any target with a second moment: a KDE sample is a training point plus
//! N(0, h² I), so E‖x‖² of model g is the training set's mean ‖x‖² plus d h², and the training
//! set mixes fresh real points with samples of model g − 1 (Khelifa et al.; with α = 0 the
//! replace loop). `cov_trace_ratio` uses the unbiased sample covariance, so its expectation is
//! tr Σ_g / tr Σ exactly (Bertrand et al.; Shumailov et al.).

use crate::experiment::Experiment;
use crate::report::Summary;
use crate::schedule::Schedule;

/// The expected value of one metric per generation under a closed form.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The metric's column name.
    pub metric: &'static str,
    /// The formula and where it comes from, for legends and `theory.csv`.
    pub source: &'static str,
    /// The expected value at generations 0, 1, …
    pub values: Vec<f64>,
}

/// The predictions that apply to `exp` (for metrics it computes), possibly none. The loop laws
/// below assume the synthetic points are the model's samples as drawn, so a loop with
/// `[loop.curate]` has none of them.
pub fn predictions(exp: &Experiment) -> Vec<Prediction> {
    if exp.curation.is_some() || exp.config.schedule.neon.is_some() {
        return Vec::new();
    }
    let Some(dist) = exp.target.distribution() else {
        return Vec::new();
    };
    let (Some(mean), Some(cov)) = (dist.mean(), dist.covariance()) else {
        return Vec::new();
    };
    let d = mean.len() as f64;
    let m2 = cov.diag().sum() + mean.dot(&mean);
    let gens = 0..exp.config.generations;
    let model = exp.learner.config();
    let fixed_bandwidth = match model.get("bandwidth") {
        Some(toml::Value::Float(h)) => Some(*h),
        Some(toml::Value::Integer(h)) => Some(*h as f64),
        _ => None,
    };
    let mut out = Vec::new();
    if exp.learner.kind() == "gaussian" {
        let schedule = &exp.schedule;
        let g = exp.config.generations;
        let (curves, ratio, error): (Vec<[f64; 2]>, &'static str, &'static str) = match *schedule {
            Schedule::Replace { train_size: n } => (
                (0..g)
                    .map(|g| {
                        [
                            super::replace_mle_variance(n, g),
                            super::replace_mle_mean_error(n, g),
                        ]
                    })
                    .collect(),
                "((n-1)/n)^(g+1), replace + Gaussian MLE",
                "tr S (1-((n-1)/n)^(g+1)), replace + Gaussian MLE",
            ),
            // The augment and accumulate recursions are for unweighted fits.
            Schedule::Augment { .. } | Schedule::Accumulate { .. }
                if exp.config.schedule.real_weight.is_some() =>
            {
                (Vec::new(), "", "")
            }
            Schedule::Augment {
                real_size,
                synthetic_size,
            } => (
                super::augment_mle(real_size, synthetic_size, g),
                "exact recursion, augment + Gaussian MLE (Bertrand et al.)",
                "tr S/n + AR(1) with coefficient m/(n+m), augment + Gaussian MLE (Bertrand et al.; Fu et al. at g = 1)",
            ),
            Schedule::Fresh {
                train_size,
                fresh_size,
            } => {
                let synthetic = train_size - fresh_size;
                let w = exp
                    .config
                    .schedule
                    .real_weight
                    .unwrap_or(fresh_size as f64 / train_size as f64);
                (
                    super::fresh_mle(fresh_size, synthetic, w, g),
                    "exact recursion, fresh + (weighted) Gaussian MLE",
                    "w^2/r + (1-w)^2 (v + c/s) a generation, fresh + (weighted) Gaussian MLE (He, Xu & Cheng)",
                )
            }
            Schedule::Accumulate { train_size } => (
                super::accumulate_mle(train_size, g),
                "exact recursion, accumulate + Gaussian MLE",
                "(tr S/n) sum 1/k^2 (drifting variance), accumulate + Gaussian MLE (Dey & Donoho)",
            ),
            _ => (Vec::new(), "", ""),
        };
        if !curves.is_empty() {
            let trace = cov.diag().sum();
            out.push(Prediction {
                metric: "cov_trace_ratio",
                source: ratio,
                values: curves.iter().map(|c| c[0]).collect(),
            });
            out.push(Prediction {
                metric: "model_mean_error2",
                source: error,
                values: curves.iter().map(|c| trace * c[1]).collect(),
            });
        }
    }
    // Models whose samples are a training point plus independent N(0, v I) noise.
    let kernel = match exp.learner.kind().as_str() {
        "kde" => fixed_bandwidth.map(|h| (h * h, "KDE")),
        "diffusion" => exp.learner.diffusion().and_then(kernel_sampler_variance),
        _ => None,
    };
    // The kernel laws below are for unweighted fits.
    let kernel = kernel.filter(|_| exp.config.schedule.real_weight.is_none());
    if let Some((v, what)) = kernel {
        match exp.schedule {
            Schedule::Replace { .. } => out.push(Prediction {
                metric: "second_moment",
                source: match what {
                    "KDE" => "E|x|^2 + d h^2 (g+1), replace + KDE",
                    _ => "E|x|^2 + d (h^2 + s(t0)^2) (g+1), replace + kernel score, Heun",
                },
                values: gens.map(|g| m2 + d * v * (g + 1) as f64).collect(),
            }),
            Schedule::Fresh {
                train_size,
                fresh_size,
            } => {
                let alpha = fresh_size as f64 / train_size as f64;
                out.push(Prediction {
                    metric: "second_moment",
                    source: match what {
                        "KDE" => "E|x|^2 + d h^2 (1-(1-a)^(g+1))/a, fresh + KDE (Khelifa et al.)",
                        _ => "E|x|^2 + d (h^2 + s(t0)^2) (1-(1-a)^(g+1))/a, fresh + kernel score, Heun (Khelifa et al.)",
                    },
                    values: gens
                        .map(|g| m2 + d * super::fresh_kde_variance(0.0, v.sqrt(), alpha, g))
                        .collect(),
                })
            }
            _ => {}
        }
    }
    let names = exp.metrics.names();
    out.retain(|p| names.contains(&p.metric));
    out
}

/// The variance h² + σ(t₀)² that a diffusion learner adds to a training point, when its samples are
/// exactly a training point plus N(0, (h² + σ(t₀)²) I): the denoiser of the training set's KDE
/// (`kde`, bandwidth h) or its empirical optimum (`empirical`, h = 0: Khelifa et al.'s perfect
/// score of the training distribution), integrated by Heun's method on the probability-flow ODE
/// and stopped at t₀ = `t_min` without the final denoising jump (`denoise_final = false`), in
/// data units (`standardize = false`, no clipping, no added error, unconditional).
///
/// The ODE carries the prior to the KDE convolved with N(0, σ(t₀)² I), so the law holds in ouro's
/// σ-space convention x = x₀ + σ z; in the OU marginal x_t = e^{−t} x₀ + √(1 − e^{−2t}) z the same
/// samples read e^{−t₀} times these. Heun is second order: on a Gaussian of variance 0.04–0.7 on
/// the OU grid (t_max = 4, t₀ = 0.02) its error at the end is 2% of σ(t₀)² at 200 steps and 0.5% at
/// 500. Euler–Maruyama, first order, sits 24–36% of σ(t₀)² above at 500 steps (0.0117 per
/// coordinate for h = 0.6) and the fresh loop multiplies that by up to 1/α, so the other samplers
/// get no prediction.
fn kernel_sampler_variance(
    learner: &crate::diffusion::learner::DiffusionLearner,
) -> Option<(f64, &'static str)> {
    use crate::diffusion::learner::DenoiserSpec;
    use crate::diffusion::sampler::Sampler;
    let h = match learner.denoiser {
        DenoiserSpec::Empirical => 0.0,
        DenoiserSpec::Kde { bandwidth } => bandwidth,
        _ => return None,
    };
    let plan = &learner.plan;
    let exact = plan.sampler == Sampler::Heun
        && !plan.denoise_final
        && !learner.standardize
        && learner.error.is_none()
        && learner.clip.is_none()
        && !learner.is_conditional();
    let sigma = plan.schedule.sigma(plan.t_min);
    exact.then_some((h * h + sigma * sigma, "kernel"))
}

/// One generation of a prediction beside the measurement over seeds.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The metric.
    pub metric: &'static str,
    /// The generation.
    pub generation: usize,
    /// The expected value.
    pub theory: f64,
    /// Mean over seeds.
    pub mean: f64,
    /// Standard error of that mean (NaN for one seed).
    pub se: f64,
    /// (mean − theory)/se.
    pub z: f64,
    /// The prediction's source.
    pub source: &'static str,
}

/// Every generation of every prediction beside the mean and standard error over seeds of the
/// metric's column in `rows` (`names` are the columns).
pub fn compare(
    predictions: &[Prediction],
    names: &[&str],
    rows: &[(u64, usize, Vec<f64>)],
) -> Vec<Comparison> {
    let summary = crate::report::by_generation(rows, names.len());
    let mut out = Vec::new();
    for p in predictions {
        let Some(m) = names.iter().position(|n| *n == p.metric) else {
            continue;
        };
        for (g, (&theory, s)) in p.values.iter().zip(&summary).enumerate() {
            let s: Summary = s[m];
            let se = s.se();
            out.push(Comparison {
                metric: p.metric,
                generation: g,
                theory,
                mean: s.mean,
                se,
                z: (s.mean - theory) / se,
                source: p.source,
            });
        }
    }
    out
}

/// `theory.csv`: `metric,generation,theory,mean,se,z,source`.
pub fn theory_csv(comparisons: &[Comparison]) -> String {
    let mut s = String::from("metric,generation,theory,mean,se,z,source\n");
    for c in comparisons {
        s.push_str(&format!(
            "{},{},{},{},{},{},\"{}\"\n",
            c.metric, c.generation, c.theory, c.mean, c.se, c.z, c.source
        ));
    }
    s
}

/// One line per metric whose measured mean is more than 4 standard errors from its prediction
/// at some generation (the worst one), for the run's output.
pub fn warnings(comparisons: &[Comparison]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut metrics: Vec<&str> = comparisons.iter().map(|c| c.metric).collect();
    metrics.dedup();
    for m in metrics {
        let worst = comparisons
            .iter()
            .filter(|c| c.metric == m && c.z.is_finite())
            .max_by(|a, b| a.z.abs().total_cmp(&b.z.abs()));
        if let Some(c) = worst
            && c.z.abs() > 4.0
        {
            out.push(format!(
                "theory: {m} is {:.1} standard errors from {} at generation {} (measured {:.4} ± {:.4}, predicted {:.4})",
                c.z.abs(),
                c.source,
                c.generation,
                c.mean,
                c.se,
                c.theory
            ));
        }
    }
    out
}

/// The comparisons at up to `max_rows` evenly spaced generations of each metric (first and last
/// included): measured mean ± se, the prediction and z, with the source under the header.
pub fn table(comparisons: &[Comparison], max_rows: usize) -> String {
    let mut s = String::new();
    let mut metrics: Vec<&str> = comparisons.iter().map(|c| c.metric).collect();
    metrics.dedup();
    for m in metrics {
        let rows: Vec<&Comparison> = comparisons.iter().filter(|c| c.metric == m).collect();
        let Some(first) = rows.first() else { continue };
        s += &format!("{m} against theory: {}\n", first.source);
        s += &format!(
            "{:>10} {:>24} {:>12} {:>8}\n",
            "generation", "measured (mean ± se)", "theory", "z"
        );
        for i in crate::report::evenly_spaced(rows.len(), max_rows) {
            let c = rows[i];
            s += &format!(
                "{:>10} {:>24} {:>12.4} {:>8.2}\n",
                c.generation,
                format!("{:.4} ± {:.4}", c.mean, c.se),
                c.theory,
                c.z
            );
        }
    }
    s
}
