//! Reconstruction sweeps (Yamaguchi & Fukuda): fit the diffusion model of generation 0 on the real
//! training set, noise those real points forward to time t with the forward process and run the
//! sampler back from t, for every t of a list; t = 0 returns the real points, t = T generates.

use super::Experiment;
use super::run_dir::write_atomically;
use crate::data::write_npy;
use crate::diffusion::DiffusionModel;
use crate::error::{Error, Result};
use crate::linalg;
use crate::metrics::kernel::{median_bandwidth, mmd2_unbiased};
use crate::metrics::memorization::memorized_share;
use crate::models::{Learner, Model};
use crate::rng::{Role, stream};
use ndarray::{Array2, ArrayView2};
use std::path::Path;

/// Column names of `reconstruction.csv` after `t` and `sigma`.
pub const COLUMNS: [&str; 5] = [
    "rms_distance",
    "mean_shift",
    "cov_trace_ratio",
    "mmd2",
    "memorized",
];

/// One row per time: t, σ(t) (in the model's standardised units) and [`COLUMNS`].
pub struct Sweep {
    /// (t, σ, values).
    pub rows: Vec<(f64, f64, Vec<f64>)>,
}

/// Runs the sweep for the first seed of `exp` and writes `out`: config.toml, original.npy,
/// reconstructed/t-<t>.npy and reconstruction.csv. Everything is checked before anything is
/// written.
pub fn reconstruct(exp: &Experiment, times: &[f64], out: &Path, force: bool) -> Result<Sweep> {
    let Learner::Diffusion(learner) = &exp.learner else {
        return Err(Error::config(
            "model.kind: reconstruction needs a diffusion model (kind = \"diffusion\")",
        ));
    };
    let t_end = learner.plan.schedule.t_end();
    if times.is_empty() {
        return Err(Error::Run("--steps: give at least one time".into()));
    }
    for &t in times {
        if !(t.is_finite() && (0.0..=t_end).contains(&t)) {
            return Err(Error::Run(format!(
                "--steps: {t} is outside the schedule's time range 0 … {t_end}"
            )));
        }
    }
    let seed = exp.config.seed;
    let mut real = exp.target.realize(seed, exp.metrics.eval_samples);
    let train = real.draw(exp.schedule.min_train_size(), 0, Role::RealInit)?;
    let model: DiffusionModel =
        match exp
            .learner
            .fit(train.view(), None, &mut stream(seed, 0, Role::Fit))?
        {
            Model::Diffusion(m) => m,
            _ => unreachable!("a diffusion learner fits a diffusion model"),
        };
    let n = exp.config.samples_per_generation.min(train.nrows());
    let x0 = train.slice(ndarray::s![..n, ..]).to_owned();
    let bandwidth = median_bandwidth(real.reference.view());
    let mut rows = Vec::new();
    let mut sets = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        let x = model.reconstruct(x0.view(), t, &mut stream(seed, i as u64, Role::Samples));
        let values = measure(
            x.view(),
            x0.view(),
            train.view(),
            real.reference.view(),
            bandwidth,
            exp.metrics.memorization_ratio,
        );
        rows.push((t, learner.plan.schedule.sigma(t), values));
        sets.push(x);
    }
    write_atomically(out, force, |dir| {
        let io = |what: &str, e| Error::io(format!("cannot write {what}"), e);
        std::fs::write(dir.join("config.toml"), exp.config.to_toml())
            .map_err(|e| io("config.toml", e))?;
        write_npy(&dir.join("original.npy"), &x0)?;
        let sub = dir.join("reconstructed");
        std::fs::create_dir_all(&sub).map_err(|e| io("reconstructed/", e))?;
        for (&t, x) in times.iter().zip(&sets) {
            write_npy(&sub.join(format!("t-{t}.npy")), x)?;
        }
        let mut csv = String::from("t,sigma");
        for c in COLUMNS {
            csv.push(',');
            csv.push_str(c);
        }
        csv.push('\n');
        for (t, sigma, values) in &rows {
            csv.push_str(&format!("{t},{sigma}"));
            for v in values {
                csv.push_str(&format!(",{v}"));
            }
            csv.push('\n');
        }
        std::fs::write(dir.join("reconstruction.csv"), csv).map_err(|e| io("reconstruction.csv", e))
    })?;
    Ok(Sweep { rows })
}

/// RMS distance to the originals √(mean ‖x̂ − x₀‖²), ‖mean x̂ − mean x₀‖, tr Cov(x̂)/tr Cov(x₀),
/// unbiased MMD² to the real reference set and the memorised share against the training set.
fn measure(
    x: ArrayView2<f32>,
    x0: ArrayView2<f32>,
    train: ArrayView2<f32>,
    reference: ArrayView2<f32>,
    bandwidth: f64,
    ratio: f64,
) -> Vec<f64> {
    let diff: Array2<f64> = x.mapv(|v| v as f64) - x0.mapv(|v| v as f64);
    let rms = (diff.iter().map(|v| v * v).sum::<f64>() / x.nrows() as f64).sqrt();
    let shift = (linalg::mean(x) - linalg::mean(x0))
        .mapv(|v| v * v)
        .sum()
        .sqrt();
    let tr = |a: ArrayView2<f32>| linalg::covariance(a, 1).diag().sum();
    vec![
        rms,
        shift,
        tr(x) / tr(x0),
        mmd2_unbiased(x, reference, bandwidth),
        memorized_share(x, train, ratio),
    ]
}
