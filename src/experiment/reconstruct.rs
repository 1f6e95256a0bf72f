//! Reconstruction sweeps (Yamaguchi & Fukuda): fit the diffusion model of generation 0 on the real
//! training set, noise those real points forward to time t with the forward process and run the
//! sampler back from t, for every t of a list; t = 0 returns the real points, t = T generates.

use super::Experiment;
use super::run_dir::write_atomically;
use crate::classifier::fit_mlp;
use crate::data::write_npy;
use crate::diffusion::DiffusionModel;
use crate::error::{Error, Result};
use crate::linalg;
use crate::metrics::edges::edge_coverage;
use crate::metrics::fidelity::prdc;
use crate::metrics::kernel::{median_bandwidth, mmd2_unbiased};
use crate::metrics::memorization::memorized_share;
use crate::models::TrainingSet;
use crate::report::{Summary, plot_panels};
use crate::rng::{Role, stream};
use ndarray::{Array2, ArrayView2};
use std::path::Path;

/// Column names of `reconstruction.csv` after `t` and `sigma`, for every target: see
/// [`measure`].
pub const COLUMNS: [&str; 9] = [
    "rms_distance",
    "mean_shift",
    "cov_trace_ratio",
    "mmd2",
    "memorized",
    "density",
    "coverage",
    "edge90",
    "edge99",
];

/// Further columns for a data set with classes: the accuracy on the held-out real points of the
/// MLP classifier of [`crate::classifier`] trained on the reconstructed set with the labels of
/// the originals (at large t the reconstruction no longer depends on its original, and with an
/// unconditional model the accuracy falls to chance), and the per-class edge coverage: the share
/// of reconstructed points beyond the 90th/99th percentile of their class's held-out real
/// distances to the class mean.
pub const LABELLED_COLUMNS: [&str; 3] = ["accuracy", "class_edge90", "class_edge99"];

/// One row per time: t, σ(t) (in the model's standardised units) and the values of `columns`.
pub struct Sweep {
    /// Column names after t and σ.
    pub columns: Vec<&'static str>,
    /// (t, σ, values).
    pub rows: Vec<(f64, f64, Vec<f64>)>,
    /// Number of reconstructed points (the originals).
    pub points: usize,
    /// Number of held-out real reference points the measures compare with.
    pub reference: usize,
}

/// Runs the sweep for the first seed of `exp` and writes `out`: config.toml, original.npy (and
/// labels.npy for a data set with classes), reconstructed/t-<t>.npy (and t-<t>.png, a row per
/// class, for image targets), reconstruction.csv and reconstruction.png (every column against t). Everything is checked before anything is
/// written.
pub fn reconstruct(exp: &Experiment, times: &[f64], out: &Path, force: bool) -> Result<Sweep> {
    let Some(learner) = exp.learner.diffusion() else {
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
    let (train, train_labels) =
        real.draw_labeled(exp.schedule.min_train_size(), 0, Role::RealInit)?;
    let fitted = exp.learner.fit_checked(
        &TrainingSet::labeled(train.view(), train_labels.as_deref()),
        None,
        &mut stream(seed, 0, Role::Fit),
    )?;
    let model: &DiffusionModel = fitted
        .diffusion()
        .expect("a diffusion learner fits a diffusion model");
    let n = exp.config.samples_per_generation.min(train.nrows());
    let x0 = train.slice(ndarray::s![..n, ..]).to_owned();
    let labels0 = train_labels.map(|l| l[..n].to_vec());
    let labelled = labels0.as_deref().zip(real.reference_labels.as_deref());
    if real.reference.nrows() <= 5 {
        return Err(Error::config(
            "metrics.eval_samples / target.heldout_fraction: reconstruction's density and coverage \
             need more than 5 reference points",
        ));
    }
    let bandwidth = median_bandwidth(real.reference.view());
    let mut columns: Vec<&'static str> = COLUMNS.to_vec();
    if labelled.is_some() {
        columns.extend(LABELLED_COLUMNS);
    }
    let mut rows = Vec::new();
    let mut sets = Vec::new();
    let watch = crate::progress::current();
    for (i, &t) in times.iter().enumerate() {
        let part = watch.as_ref().map(|w| w.part(&format!("t = {t}")));
        let x = crate::progress::watching(part.clone(), || {
            model.reconstruct(
                x0.view(),
                labels0.as_deref(),
                t,
                &mut stream(seed, i as u64, Role::Samples),
            )
        });
        if let Some(w) = &part {
            w.report("measuring", 0, 0, "");
        }
        let mut values = measure(
            x.view(),
            x0.view(),
            train.view(),
            real.reference.view(),
            bandwidth,
            exp.metrics.memorization_ratio,
        );
        if let Some((l0, lr)) = labelled {
            values.extend(measure_labelled(
                x.view(),
                l0,
                real.reference.view(),
                lr,
                seed,
            ));
        }
        rows.push((t, learner.plan.schedule.sigma(t), values));
        sets.push(x);
    }
    let picture = exp
        .target
        .image_side()
        .map(|side| crate::report::Picture::new(side, x0.view()));
    write_atomically(out, force, |dir| {
        let io = |what: &str, e| Error::io(format!("cannot write {what}"), e);
        std::fs::write(dir.join("config.toml"), exp.config.to_toml())
            .map_err(|e| io("config.toml", e))?;
        write_npy(&dir.join("original.npy"), &x0)?;
        let sub = dir.join("reconstructed");
        super::run_dir::mkdir(&sub)?;
        for (&t, x) in times.iter().zip(&sets) {
            write_npy(&sub.join(format!("t-{t}.npy")), x)?;
            if let Some(pic) = &picture {
                let cells = crate::report::grid_cells(labels0.as_deref(), x.nrows(), 10, 10);
                pic.draw(&sub.join(format!("t-{t}.png")), x.view(), &cells)?;
            }
        }
        if let Some(l) = &labels0 {
            let col = Array2::from_shape_fn((l.len(), 1), |(i, _)| l[i] as f32);
            write_npy(&dir.join("labels.npy"), &col)?;
        }
        let mut csv = String::from("t,sigma");
        for c in &columns {
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
        std::fs::write(dir.join("reconstruction.csv"), csv)
            .map_err(|e| io("reconstruction.csv", e))?;
        let mut points: Vec<(f64, Vec<Summary>)> = rows
            .iter()
            .map(|(t, _, v)| {
                let s = v.iter().map(|&value| Summary::of(&[value])).collect();
                (*t, s)
            })
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        plot_panels(&dir.join("reconstruction.png"), &columns, "t", &points, &[])
    })?;
    Ok(Sweep {
        columns,
        rows,
        points: n,
        reference: real.reference.nrows(),
    })
}

/// [`LABELLED_COLUMNS`] for the reconstructed set `x` with the originals' labels.
fn measure_labelled(
    x: ArrayView2<f32>,
    labels: &[u32],
    heldout: ArrayView2<f32>,
    heldout_labels: &[u32],
    seed: u64,
) -> Vec<f64> {
    let clf = fit_mlp(x, labels, heldout_labels, seed);
    let edge = |q| edge_coverage(heldout, x, q, Some((heldout_labels, labels)));
    vec![
        clf.accuracy(heldout, heldout_labels).0,
        edge(0.9),
        edge(0.99),
    ]
}

/// RMS distance to the originals √(mean ‖x̂ − x₀‖²), ‖mean x̂ − mean x₀‖, tr Cov(x̂)/tr Cov(x₀),
/// unbiased MMD² to the real reference set, the memorised share against the training set,
/// density and coverage (k = 5) against the reference set, and edge coverage: the share of x̂
/// beyond the 90th and 99th percentile of the reference points' distance to their mean (a real
/// set scores ≈ 0.10 and 0.01).
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
    let p = prdc(reference, x, 5);
    vec![
        rms,
        shift,
        tr(x) / tr(x0),
        mmd2_unbiased(x, reference, bandwidth),
        memorized_share(x, train, ratio),
        p.density,
        p.coverage,
        edge_coverage(reference, x, 0.9, None),
        edge_coverage(reference, x, 0.99, None),
    ]
}
