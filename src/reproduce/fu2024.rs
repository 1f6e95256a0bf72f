//! Fu et al. (2024), Towards theoretical understandings of self-consuming generative models: one
//! round of training on n real points mixed with m synthetic ones. For a Gaussian fitted by MLE
//! the mean's error is tr Σ (1/n + (n − 1)/n · m/(n + m)²): the synthetic points' excess error
//! first rises with m, peaks at m = n, then falls as the synthetic set swamps its own noise
//! (their phase transition in m). A 10-D standard Gaussian, n = 40, generation 1 of the augment
//! loop, m from 0 to 32 n.

use super::{Claim, Finished, Paper, Verdict, axis, expected_at};
use crate::error::{Error, Result};
use crate::experiment::study::{cell_rows, results};

/// Real points.
const N: usize = 40;

pub(super) const PAPER: Paper = Paper {
    name: "fu2024",
    reference: "Fu et al. (2024), Towards theoretical understandings of self-consuming generative \
                models (ICML): n real + m synthetic points, the Gaussian MLE's error against m.",
    studies: &[(
        "mixed",
        r#"
seed = 0
seeds = 4000
generations = 2
samples_per_generation = 10
[target]
kind = "gaussian"
dim = 10
[model]
kind = "gaussian"
[loop]
schedule = "augment"
real_size = 40
synthetic_size = 40
[metrics]
names = ["model_mean_error2"]
[axes]
"loop.synthetic_size" = [0, 5, 10, 20, 40, 80, 160, 320, 1280]
"#,
    )],
    quick: &[&["repeats=500"]],
    reconstructions: &[],
    judge,
};

/// Per seed, the excess E‖μ₁ − μ‖² − E‖μ₀ − μ‖² of generation 1 (the mixed round) over
/// generation 0 (the real points alone) of one cell.
fn excess(names: &[String], rows: &[(u64, usize, Vec<f64>)]) -> Result<Vec<(u64, f64)>> {
    let m = names
        .iter()
        .position(|n| n == "model_mean_error2")
        .ok_or_else(|| Error::Run("the study has no model_mean_error2".into()))?;
    let mut first = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for (seed, g, v) in rows {
        match g {
            0 => {
                first.insert(*seed, v[m]);
            }
            1 => out.push((*seed, v[m])),
            _ => {}
        }
    }
    Ok(out
        .into_iter()
        .filter_map(|(s, v)| first.get(&s).map(|f| (s, v - f)))
        .collect())
}

/// Mean and standard error of `a − b` paired by seed.
fn paired(a: &[(u64, f64)], b: &[(u64, f64)]) -> (f64, f64) {
    let b: std::collections::BTreeMap<u64, f64> = b.iter().copied().collect();
    let d: Vec<f64> = a
        .iter()
        .filter_map(|(s, v)| b.get(s).map(|w| v - w))
        .collect();
    let s = crate::report::Summary::of(&d);
    (s.mean, s.se())
}

fn judge(done: &Finished) -> Result<Vec<Claim>> {
    let studies = &done.studies;
    let (study, dir) = &studies[0];
    let mut cells = Vec::new();
    for cell in &study.cells {
        let Some((names, rows)) = cell_rows(dir, cell)? else {
            continue;
        };
        cells.push((
            axis(cell, "loop.synthetic_size") as usize,
            excess(&names, &rows)?,
        ));
    }
    let at = |m: usize| -> Result<&Vec<(u64, f64)>> {
        cells
            .iter()
            .find(|c| c.0 == m)
            .map(|c| &c.1)
            .ok_or_else(|| Error::Run(format!("fu2024: no finished cell with m = {m}")))
    };
    let peak = at(N)?;
    let (below, below_se) = paired(peak, at(N / 8)?);
    let (above, above_se) = paired(peak, at(8 * N)?);
    let means: Vec<(usize, f64)> = cells
        .iter()
        .map(|(m, e)| {
            (
                *m,
                crate::report::Summary::of(&e.iter().map(|x| x.1).collect::<Vec<_>>()).mean,
            )
        })
        .collect();
    let argmax = means
        .iter()
        .copied()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("cells");
    let curve: Vec<String> = means
        .iter()
        .map(|(m, e)| format!("m = {m}: {e:.4}"))
        .collect();
    let rises_and_falls = Claim {
        statement: "The synthetic data's excess error first rises with the number m of synthetic \
                    points, peaks, then falls (a phase transition in m); for the Gaussian MLE the \
                    peak is at m = n",
        rule: format!(
            "paired over seeds, the excess at m = n = {N} is above those at m = n/8 and m = 8n by \
             more than 2 standard errors, and the largest measured excess is at m ∈ [n/2, 2n]"
        ),
        measured: format!(
            "excess at n minus n/8: {below:.4} ± {below_se:.4}; minus 8n: {above:.4} ± {above_se:.4}; \
             largest at m = {}; {}",
            argmax.0,
            curve.join(", ")
        ),
        verdict: Verdict::from(
            below > 2.0 * below_se && above > 2.0 * above_se && (N / 2..=2 * N).contains(&argmax.0),
        ),
    };
    // The closed form at every m, from theory.csv's prediction (generation 1).
    let mut worst = (0.0f64, 0usize, 0.0, 0.0, 0.0);
    for (cell, names, summary) in results(study, dir)? {
        let m = names
            .iter()
            .position(|n| n == "model_mean_error2")
            .expect("named");
        let s = summary[1][m];
        let predicted = expected_at(cell, "model_mean_error2", 1);
        let z = (s.mean - predicted) / s.se();
        if z.is_nan() || z.abs() > worst.0.abs() {
            worst = (
                z,
                axis(cell, "loop.synthetic_size") as usize,
                s.mean,
                s.se(),
                predicted,
            );
        }
    }
    let (z, m, mean, se, predicted) = worst;
    let closed_form = Claim {
        statement: "For a Gaussian, the error after one mixed round is E‖μ̂ − μ‖² = \
                    tr Σ (1/n + (n − 1)/n · m/(n + m)²)",
        rule: "every m within 4 standard errors of the closed form".into(),
        measured: format!(
            "farthest: m = {m}, {mean:.4} ± {se:.4} vs {predicted:.4} ({:.1} se)",
            z.abs()
        ),
        verdict: Verdict::from(z.abs() < 4.0),
    };
    Ok(vec![rises_and_falls, closed_form])
}
