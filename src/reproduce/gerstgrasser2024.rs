//! Gerstgrasser et al. (2024), Is model collapse inevitable? Breaking the curse of recursion by
//! accumulating real and synthetic data: replacing the data with each model's samples makes the
//! error grow without bound, accumulating them (real plus every synthetic set so far) keeps it
//! bounded; for a Gaussian's mean the bound is (π²/6) tr Σ / n (Dey & Donoho 2024). A 2-D standard
//! Gaussian, MLE on n = 20 points a generation.

use super::{Claim, Finished, Paper, Verdict, last};
use crate::error::Result;
use crate::experiment::study::results;

/// A 2-D standard Gaussian, 20 points a generation, with the schedule `$schedule`.
macro_rules! study {
    ($schedule:literal) => {
        concat!(
            r#"
seed = 0
repeats = 300
generations = 30
samples_per_generation = 100
[target]
kind = "gaussian"
dim = 2
[model]
kind = "gaussian"
[metrics]
names = ["model_mean_error2", "cov_trace_ratio"]
[loop]
train_size = 20
schedule = ""#,
            $schedule,
            "\"\n"
        )
    };
}

pub(super) const PAPER: Paper = Paper {
    name: "gerstgrasser2024",
    reference: "Gerstgrasser et al. (2024), Is model collapse inevitable? Breaking the curse of \
                recursion by accumulating real and synthetic data; the Gaussian bound of Dey & \
                Donoho (2024).",
    studies: &[
        ("replace", study!("replace")),
        ("accumulate", study!("accumulate")),
    ],
    quick: &[
        &["repeats=150", "generations=12"],
        &["repeats=150", "generations=12"],
    ],
    reconstructions: &[],
    judge,
};

fn judge(done: &Finished) -> Result<Vec<Claim>> {
    let studies = &done.studies;
    let one = |i: usize| -> Result<(crate::report::Summary, crate::report::Summary, f64, usize)> {
        let (study, dir) = &studies[i];
        let cells = results(study, dir)?;
        let (cell, names, summary) = cells.first().expect("one cell");
        let m = names
            .iter()
            .position(|n| n == "model_mean_error2")
            .expect("named");
        let dist = cell
            .experiment
            .target
            .distribution()
            .expect("a known target");
        let trace = dist.covariance().expect("cov").diag().sum();
        Ok((
            summary[0][m],
            last(names, summary, "model_mean_error2")?,
            trace,
            summary.len() - 1,
        ))
    };
    let (_, replace, trace, g) = one(0)?;
    let (first, accumulate, _, _) = one(1)?;
    let n: f64 = 20.0;
    let a = (n - 1.0) / n;
    let predicted = trace * (1.0 - a.powi(g as i32 + 1));
    let z = (replace.mean - predicted) / replace.se();
    let grows = Claim {
        statement: "Replacing the data with each model's samples, the error grows without bound \
                    (for a Gaussian's mean: toward tr Σ, n times the first generation's)",
        rule: format!(
            "E‖μ_g − μ‖² = tr Σ (1 − ((n − 1)/n)^(g+1)) within 4 standard errors at generation {g}"
        ),
        measured: format!(
            "{:.4} ± {:.4} vs {predicted:.4} ({:.1} se); generation 0: {:.4}",
            replace.mean,
            replace.se(),
            z.abs(),
            first.mean
        ),
        verdict: Verdict::from(z.abs() < 4.0),
    };
    let bound = std::f64::consts::PI.powi(2) / 6.0 * trace / n;
    // With the variance known, E‖μ_g − μ‖² = (tr Σ/n) Σ_{k ≤ g+1} 1/k², which approaches the bound
    // itself: the data can show an excess over the bound, not a margin below it.
    let known: f64 = (1..=g + 1).map(|k| 1.0 / (k * k) as f64).sum::<f64>() * trace / n;
    let bounded = Claim {
        statement: "Accumulating real and synthetic data keeps the error bounded: the mean's \
                    error stays below (π²/6) tr Σ / n",
        rule: format!(
            "not above the bound by more than 2 standard errors at generation {g}, where \
             replace is already more than 4 times larger"
        ),
        measured: format!(
            "{:.4} ± {:.4} vs bound {bound:.4} (known-variance value {known:.4}); replace {:.4}",
            accumulate.mean,
            accumulate.se(),
            replace.mean
        ),
        verdict: Verdict::from(
            accumulate.mean - 2.0 * accumulate.se() < bound && replace.mean > 4.0 * bound,
        ),
    };
    Ok(vec![grows, bounded])
}
