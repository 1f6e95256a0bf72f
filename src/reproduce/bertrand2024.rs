//! Bertrand et al. (2024), on the stability of iterative retraining of generative models on their
//! own data: fully synthetic retraining collapses, while retraining on the real data mixed with a
//! proportion λ of synthetic data stays stable. With an exact Gaussian MLE (their ε = 0) on a 2-D
//! standard Gaussian.

use super::{Claim, Finished, Paper, Verdict, axis, expected_at, last};
use crate::error::Result;
use crate::experiment::study::results;

pub(super) const PAPER: Paper = Paper {
    name: "bertrand2024",
    reference: "Bertrand et al. (2024), On the stability of iterative retraining of generative \
                models on their own data (ICLR): the Gaussian MLE in the replace and augment loops.",
    studies: &[
        (
            "replace",
            r#"
seed = 0
seeds = 200
generations = 50
samples_per_generation = 2000
[target]
kind = "gaussian"
dim = 2
[model]
kind = "gaussian"
[loop]
schedule = "replace"
train_size = 20
[metrics]
names = ["cov_trace_ratio", "kl_gaussian"]
[axes]
"loop.train_size" = [20, 100]
"#,
        ),
        (
            "augment",
            r#"
seed = 0
seeds = 50
generations = 50
samples_per_generation = 2000
[target]
kind = "gaussian"
dim = 2
[model]
kind = "gaussian"
[loop]
schedule = "augment"
real_size = 100
synthetic_ratio = 1.0
[metrics]
names = ["cov_trace_ratio", "kl_gaussian", "model_mean_error2"]
[axes]
"loop.synthetic_ratio" = [0.5, 1.0, 2.0, 4.0]
"#,
        ),
    ],
    quick: &[
        &["repeats=60", "generations=12"],
        &["repeats=20", "generations=12"],
    ],
    reconstructions: &[],
    judge,
};

fn judge(done: &Finished) -> Result<Vec<Claim>> {
    let studies = &done.studies;
    // 1. fully synthetic: the variance follows ((n − 1)/n)^(g+1) down to collapse
    let (study, dir) = &studies[0];
    let mut worst: Option<(f64, f64, f64, f64, f64)> = None;
    let mut lowest = f64::INFINITY;
    for (cell, names, summary) in results(study, dir)? {
        let s = last(&names, &summary, "cov_trace_ratio")?;
        let g = summary.len() - 1;
        let predicted = expected_at(cell, "cov_trace_ratio", g);
        let z = (s.mean - predicted) / s.se();
        lowest = lowest.min(s.mean);
        if worst.is_none_or(|w| z.abs() > w.0.abs()) {
            worst = Some((z, axis(cell, "loop.train_size"), s.mean, s.se(), predicted));
        }
    }
    let (z, n, mean, se, predicted) = worst.expect("the study has cells");
    let collapse = Claim {
        statement: "Retraining only on its own samples, the model collapses: the fitted variance \
                    shrinks geometrically, E tr Σ_g / tr Σ = ((n − 1)/n)^(g+1)",
        rule: "every training-set size n within 4 standard errors of the closed form at the \
               last generation"
            .into(),
        measured: format!(
            "farthest: n = {n}, {mean:.4} ± {se:.4} vs {predicted:.4} ({:.1} se); lowest mean ratio {lowest:.4}",
            z.abs()
        ),
        verdict: Verdict::from(z.abs() < 4.0),
    };
    // 2. with the real data kept (augment), the variance does not collapse for any λ
    let (study, dir) = &studies[1];
    let mut kept = Vec::new();
    for (cell, names, summary) in results(study, dir)? {
        let m = names
            .iter()
            .position(|n| n == "cov_trace_ratio")
            .expect("the study names it");
        let first = summary[0][m];
        let end = last(&names, &summary, "cov_trace_ratio")?;
        kept.push((axis(cell, "loop.synthetic_ratio"), end.mean / first.mean));
    }
    let smallest =
        kept.iter().copied().fold(
            (f64::NAN, f64::INFINITY),
            |a, b| if b.1 < a.1 { b } else { a },
        );
    let stable = Claim {
        statement: "Retraining on the real data mixed with synthetic data in proportion λ is \
                    stable: the variance stays at the real one instead of collapsing",
        rule: "the mean variance ratio at the last generation is at least 0.9 times that of \
               generation 0, for every λ (fully synthetic retraining falls far below)"
            .into(),
        measured: format!(
            "last/first: {}; smallest {:.3} at λ = {}",
            kept.iter()
                .map(|(l, r)| format!("λ = {l}: {r:.3}"))
                .collect::<Vec<_>>()
                .join(", "),
            smallest.1,
            smallest.0
        ),
        verdict: Verdict::from(smallest.1 >= 0.9),
    };
    // 3. Theorem 1's condition λ(1 + Lε/α) < 1 with ε = 0 is λ < 1; the runs at λ = 2 and 4
    //    cross it, and the mean still follows the contraction λ/(1 + λ) of the exact recursion
    let mut worst = (0.0f64, f64::NAN, 0.0, 0.0, 0.0);
    let mut crossed = Vec::new();
    for (cell, names, summary) in results(study, dir)? {
        let lambda = axis(cell, "loop.synthetic_ratio");
        let s = last(&names, &summary, "model_mean_error2")?;
        let g = summary.len() - 1;
        let predicted = expected_at(cell, "model_mean_error2", g);
        let z = (s.mean - predicted) / s.se();
        if z.is_nan() || z.abs() > worst.0.abs() {
            worst = (z, lambda, s.mean, s.se(), predicted);
        }
        if crate::theory::bertrand_contraction(lambda, 1.0, 0.0, 1.0).is_none() {
            crossed.push(format!(
                "λ = {lambda}: {:.4} ± {:.4} vs {predicted:.4}",
                s.mean,
                s.se()
            ));
        }
    }
    let (z, lambda, mean, se, predicted) = worst;
    let condition = Claim {
        statement: "Theorem 1: the loop is stable when λ(1 + Lε/α) < 1, contracting at \
                    ρ = λ(α + εL)/(α + λ(α − εL)); for an exact Gaussian MLE ε = 0, so ρ = λ/(1 + λ) \
                    and the condition reads λ < 1",
        rule: "at the last generation the mean's error E‖μ_g − μ‖² is within 4 standard errors of \
               the exact recursion with contraction λ/(1 + λ) for every λ, those that break the \
               condition (λ ≥ 1) included: the condition is sufficient, not necessary"
            .into(),
        measured: format!(
            "past the condition: {}; farthest: λ = {lambda}, {mean:.4} ± {se:.4} vs \
             {predicted:.4} ({:.1} se)",
            crossed.join(", "),
            z.abs()
        ),
        verdict: Verdict::from(z.abs() < 4.0 && !crossed.is_empty()),
    };
    Ok(vec![collapse, stable, condition])
}
