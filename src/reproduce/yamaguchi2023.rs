//! Yamaguchi & Fukuda (2023), on the limitation of diffusion models for synthesizing training
//! datasets: real points noised to time t and sampled back (reconstruction) lose what a
//! classifier needs as t grows, so training on them gives lower accuracy on real data than
//! training on the real points; and the reconstructions concentrate in the modes of the data and
//! leave its outer edges. Class-conditional MLP denoisers on the 8×8 digits and on a ring of
//! eight 2-D Gaussians, DDPM sampling; and, as a control with a known answer, a 2-D Gaussian
//! reconstructed through its exact (fitted Gaussian) denoiser.

use super::{Claim, Finished, Paper, Reconstruction, Verdict};
use crate::error::{Error, Result};
use crate::experiment::reconstruct::Sweep;

/// The times of every sweep, on DDPM's 1000-step schedule: real data to pure generation.
const TIMES: &[f64] = &[0.0, 250.0, 500.0, 750.0, 1000.0];

pub(super) const PAPER: Paper = Paper {
    name: "yamaguchi2023",
    reference: "Yamaguchi & Fukuda (2023), On the limitation of diffusion models for synthesizing \
                training datasets: reconstruction from time t on the 8×8 digits and a 2-D ring, \
                and an exact-model control.",
    studies: &[],
    quick: &[],
    reconstructions: &[
        Reconstruction {
            name: "digits",
            config: r#"
seed = 0
generations = 1
samples_per_generation = 1000
[target]
kind = "digits"
heldout_fraction = 0.5
[model]
kind = "diffusion"
denoiser = "mlp"
train_steps = 3000
sample_steps = 250
conditional = true
[loop]
schedule = "replace"
[metrics]
names = ["mmd2"]
"#,
            times: TIMES,
            quick: &[],
        },
        Reconstruction {
            name: "ring",
            config: r#"
seed = 0
generations = 1
samples_per_generation = 2000
[target]
kind = "ring-gmm"
components = 8
radius = 2.0
std = 0.1
[model]
kind = "diffusion"
denoiser = "mlp"
train_steps = 3000
sample_steps = 250
[loop]
schedule = "replace"
train_size = 2000
[metrics]
names = ["mmd2"]
"#,
            times: TIMES,
            quick: &[],
        },
        Reconstruction {
            name: "gaussian",
            config: r#"
seed = 0
generations = 1
samples_per_generation = 4000
[target]
kind = "gaussian"
dim = 2
[model]
kind = "diffusion"
denoiser = "gmm-exact"
components = 1
[loop]
schedule = "replace"
train_size = 4000
[metrics]
names = ["mmd2"]
"#,
            times: TIMES,
            quick: &[],
        },
    ],
    judge,
};

/// The column `name` of a sweep at every time.
fn column(sweep: &Sweep, name: &str) -> Result<Vec<f64>> {
    let c = sweep
        .columns
        .iter()
        .position(|c| *c == name)
        .ok_or_else(|| Error::Run(format!("the reconstruction has no column {name}")))?;
    Ok(sweep.rows.iter().map(|r| r.2[c]).collect())
}

/// Standard error of a share p of n points.
fn binomial_se(p: f64, n: usize) -> f64 {
    (p * (1.0 - p) / n as f64).sqrt()
}

fn judge(done: &Finished) -> Result<Vec<Claim>> {
    let [(digits, _), (ring, _), (gaussian, _)] = &done.reconstructions[..] else {
        return Err(Error::Run(
            "yamaguchi2023: expected three reconstructions".into(),
        ));
    };
    // 1. accuracy of a classifier trained on the reconstructions, tested on held-out real digits
    let acc = column(digits, "accuracy")?;
    let (real, end) = (acc[0], acc[acc.len() - 1]);
    let se = (binomial_se(real, digits.reference).powi(2)
        + binomial_se(end, digits.reference).powi(2))
    .sqrt();
    let by_t: Vec<String> = TIMES
        .iter()
        .zip(&acc)
        .map(|(t, a)| format!("t = {t}: {a:.3}"))
        .collect();
    let accuracy = Claim {
        statement: "A classifier trained on reconstructed (synthetic) data is less accurate on real \
                    data than one trained on the real data, and more so the larger t",
        rule: format!(
            "digits: accuracy at t = T below accuracy at t = 0 (the real points) by more than 2 \
             standard errors (binomial, {} held-out points)",
            digits.reference
        ),
        measured: format!("{}; drop {:.3} ± {se:.3}", by_t.join(", "), real - end),
        verdict: Verdict::from(real - end > 2.0 * se),
    };
    // 2. crowding into modes (k-NN density above the real set's) and leaving the edges
    let mut parts = Vec::new();
    let mut holds = true;
    for (name, sweep) in [("digits", digits), ("ring", ring)] {
        let edge = column(sweep, "edge90")?;
        let density = column(sweep, "density")?;
        let cov = column(sweep, "cov_trace_ratio")?;
        let (e0, e1) = (edge[0], edge[edge.len() - 1]);
        let (d0, d1) = (density[0], density[density.len() - 1]);
        let se =
            (binomial_se(e0, sweep.points).powi(2) + binomial_se(e1, sweep.points).powi(2)).sqrt();
        holds &= e0 - e1 > 2.0 * se && d1 > d0;
        parts.push(format!(
            "{name}: beyond the real 90th percentile {e0:.3} → {e1:.3} (± {se:.3}), density \
             {d0:.3} → {d1:.3}, tr Cov ratio {:.3}",
            cov[cov.len() - 1]
        ));
    }
    let edges = Claim {
        statement: "Reconstructed samples concentrate in the modes of the data and leave its outer \
                    edges uncovered",
        rule: "on both data sets, from t = 0 to t = T: the share of points beyond the real \
               points' 90th percentile of distance to their mean falls by more than 2 standard \
               errors and the k-NN density (Naeem et al.) rises"
            .into(),
        measured: parts.join("; "),
        verdict: Verdict::from(holds),
    };
    // 3. the control: an exact model neither crowds nor leaves the edges
    let cov = column(gaussian, "cov_trace_ratio")?;
    let edge = column(gaussian, "edge90")?;
    let (n, d) = (gaussian.points as f64, 2.0);
    // tr Cov of x̂ and of the originals, each with relative se √(2/(d(n − 1)))
    let cov_se = (4.0 / (d * (n - 1.0))).sqrt();
    // the share beyond an estimated 90th percentile: binomial in the points and in the reference
    let edge_se = (0.09 / n + 0.09 / gaussian.reference as f64).sqrt();
    let mut worst: f64 = 0.0;
    let mut rows = Vec::new();
    for ((&(_, sigma, _), &c), &e) in gaussian.rows.iter().zip(&cov).zip(&edge) {
        let want = crate::theory::reconstruction_gaussian_variance(1.0, 1.0, sigma);
        let z = ((c - want) / cov_se).abs().max(((e - 0.1) / edge_se).abs());
        worst = if z.is_nan() { f64::NAN } else { worst.max(z) };
        rows.push(format!("σ = {sigma:.2}: {c:.3}, {e:.3}"));
    }
    let control = Claim {
        statement: "Control: with the exact denoiser of the data's own law the reconstruction is \
                    the data's law at every t (Var x̂ = K²(s² + σ²) + s_m²σ²/(s_m² + σ²) = s² \
                    for s_m = s), so no crowding and no lost edges",
        rule: format!(
            "2-D Gaussian: at every t, tr Cov ratio within 4 se ({cov_se:.3}) of 1 and the share \
             beyond the real 90th percentile within 4 se ({edge_se:.4}) of 0.10"
        ),
        measured: format!(
            "tr Cov ratio, share: {}; farthest {worst:.1} se",
            rows.join("; ")
        ),
        verdict: Verdict::from(worst < 4.0),
    };
    Ok(vec![accuracy, edges, control])
}
