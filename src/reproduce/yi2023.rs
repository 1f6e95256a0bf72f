//! Yi et al. (2023), on the generalisation of diffusion models: the empirical-optimal denoiser of a
//! training set (the minimiser of the denoising loss on it) makes a deterministic sampler reproduce
//! training points, a smoothed denoiser does not, and the mutual-information generalisation gap
//! grows as the training set shrinks. Two Gaussians in 2-D, DDIM with η = 0, one fit per seed.

use super::{Claim, Finished, Paper, Verdict, axis, last};
use crate::error::Result;
use crate::experiment::study::{CellResult, results};

/// The study over training-set sizes with the denoiser keys `$model` (the last table is `[model]`).
macro_rules! study {
    ($model:literal) => {
        concat!(
            r#"
seed = 0
seeds = 20
generations = 1
samples_per_generation = 2000
[target]
kind = "gmm"
dim = 2
means = [[-2, 0], [2, 0]]
std = 0.5
[loop]
schedule = "replace"
train_size = 64
[metrics]
names = ["memorized", "memorized_null", "mi_excess"]
[axes]
"loop.train_size" = [32, 128, 512, 2048]
[model]
kind = "diffusion"
sampler = "ddim"
sample_steps = 100
"#,
            $model
        )
    };
}

pub(super) const PAPER: Paper = Paper {
    name: "yi2023",
    reference: "Yi et al. (2023), On the generalization of diffusion model: the empirical-optimal \
                denoiser against a KDE-smoothed one (h = 0.3) on two 2-D Gaussians.",
    studies: &[
        ("empirical", study!("denoiser = \"empirical\"\n")),
        ("kde", study!("denoiser = \"kde\"\nbandwidth = 0.3\n")),
    ],
    quick: &[
        &["repeats=8", "samples_per_generation=1000"],
        &["repeats=8", "samples_per_generation=1000"],
    ],
    reconstructions: &[],
    judge,
};

/// Per training-set size n (ascending): the memorised share minus the null rate, and the MI gap.
fn by_size(cells: &[CellResult]) -> Result<Vec<(f64, f64, crate::report::Summary)>> {
    let mut out = Vec::new();
    for (cell, names, summary) in cells {
        let memorized = last(names, summary, "memorized")?;
        let null = last(names, summary, "memorized_null")?;
        let gap = last(names, summary, "mi_excess")?;
        out.push((
            axis(cell, "loop.train_size"),
            memorized.mean - null.mean,
            gap,
        ));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(out)
}

fn judge(done: &Finished) -> Result<Vec<Claim>> {
    let studies = &done.studies;
    let empirical = by_size(&results(&studies[0].0, &studies[0].1)?)?;
    let kde = by_size(&results(&studies[1].0, &studies[1].1)?)?;
    let list = |v: &[(f64, f64, crate::report::Summary)]| {
        v.iter()
            .map(|(n, x, _)| format!("n = {n}: {x:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let least = empirical.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let memorises = Claim {
        statement: "The empirical-optimal denoiser memorises: a deterministic sampler reproduces \
                    its training points",
        rule: "memorized − memorized_null > 0.5 for every training-set size n (the share of \
               samples nearer a training point than a third of the next one, above what held-out \
               real points show)"
            .into(),
        measured: list(&empirical),
        verdict: Verdict::from(least > 0.5),
    };
    let most = kde.iter().map(|p| p.1.abs()).fold(0.0, f64::max);
    let smoothed = Claim {
        statement: "A smoothed denoiser (the exact denoiser of a KDE, h = 0.3) does not memorise",
        rule: "|memorized − memorized_null| < 0.05 for every n".into(),
        measured: list(&kde),
        verdict: Verdict::from(most < 0.05),
    };
    // between neighbouring sizes the gap never rises by more than 2 se, and from the smallest
    // to the largest n it falls by more than 4 se (at large n it may reach 0 and stay there)
    let z = |a: &crate::report::Summary, b: &crate::report::Summary| {
        (a.mean - b.mean) / (a.se().powi(2) + b.se().powi(2)).sqrt()
    };
    let mut rise = f64::NEG_INFINITY;
    let mut overall = f64::INFINITY;
    for v in [&empirical, &kde] {
        for w in v.windows(2) {
            rise = rise.max(-z(&w[0].2, &w[1].2));
        }
        if let (Some(first), Some(last)) = (v.first(), v.last()) {
            overall = overall.min(z(&first.2, &last.2));
        }
    }
    let gaps = |v: &[(f64, f64, crate::report::Summary)]| {
        v.iter()
            .map(|(n, _, g)| format!("{:.3} ± {:.3} (n = {n})", g.mean, g.se()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let gap = Claim {
        statement: "The mutual-information generalisation gap grows as the training set shrinks",
        rule: "mi_excess = Î(G; NN_S(G)) − Î(R; NN_S(R)) falls by more than 4 standard errors \
               from the smallest to the largest n and never rises by more than 2 between \
               neighbouring n, for both denoisers"
            .into(),
        measured: format!(
            "empirical {}; kde {}; smallest overall fall {overall:.1} se, largest rise {rise:.1} se",
            gaps(&empirical),
            gaps(&kde)
        ),
        verdict: Verdict::from(overall > 4.0 && rise < 2.0),
    };
    Ok(vec![memorises, smoothed, gap])
}
