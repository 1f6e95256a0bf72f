//! Writing a run folder:
//! `config.toml` (resolved config), `metrics.csv` (one row per seed and generation),
//! `samples/seed-S/gen-GGG.npy` (and `gen-GGG.png`, a grid of the first 100 samples, for image
//! targets, with `real.png`: the real images, a row per class), optionally
//! `train/seed-S/gen-GGG.npy`, and `metrics.png`.
//! The run is written to a hidden sibling folder and renamed into place only when complete, so a
//! failed run never leaves a half-written folder behind.

use super::{Experiment, Generation};
use crate::data::write_npy;
use crate::error::{Error, Result};
use crate::report;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// How to run an experiment into a folder.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Replace `out` if it already exists.
    pub force: bool,
    /// Worker threads (0: all cores). Results do not depend on it.
    pub threads: usize,
    /// Draw a progress bar (only shown when stderr is a terminal).
    pub progress: bool,
}

/// The metric rows of a finished run.
#[derive(Debug)]
pub struct RunResult {
    /// Metric column names.
    pub names: Vec<&'static str>,
    /// (seed, generation, values) in seed, then generation order.
    pub rows: Vec<(u64, usize, Vec<f64>)>,
    /// Where the plot was written.
    pub plot: PathBuf,
}

/// Runs `exp` and writes its run folder at `out`.
pub fn run(exp: &Experiment, out: &Path, opts: &RunOptions) -> Result<RunResult> {
    let mut r = write_atomically(out, opts.force, |tmp| write_into(exp, tmp, opts))?;
    r.plot = out.join(r.plot.file_name().expect("plot file"));
    Ok(r)
}

/// Creates the folder `out` by running `write` on a hidden sibling `.NAME.partial-PID` and renaming
/// it into place only when `write` succeeds, so a failed or interrupted command never leaves a
/// half-written folder under `out`. An existing non-empty `out` is an error unless `force`.
pub fn write_atomically<T>(
    out: &Path,
    force: bool,
    write: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    if out.exists() && !force && !is_empty_dir(out) {
        return Err(Error::Run(format!(
            "{} already exists; choose another --out or pass --force to replace it",
            out.display()
        )));
    }
    if out.exists() && !out.is_dir() {
        return Err(Error::Run(format!(
            "{} exists and is not a folder",
            out.display()
        )));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    // leftovers of an interrupted earlier run into the same folder
    let stale = format!(".{name}.partial-");
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&stale) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp = parent.join(format!("{stale}{}", std::process::id()));
    mkdir(&tmp)?;
    match write(&tmp) {
        Ok(r) => {
            if out.exists() {
                std::fs::remove_dir_all(out)
                    .map_err(|e| Error::io(format!("cannot replace {}", out.display()), e))?;
            }
            std::fs::rename(&tmp, out)
                .map_err(|e| Error::io(format!("cannot move the run into {}", out.display()), e))?;
            Ok(r)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

fn mkdir(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).map_err(|e| Error::io(format!("cannot create {}", p.display()), e))
}

fn write_into(exp: &Experiment, dir: &Path, opts: &RunOptions) -> Result<RunResult> {
    mkdir(dir)?;
    std::fs::write(dir.join("config.toml"), exp.config.to_toml())
        .map_err(|e| Error::io("cannot write config.toml", e))?;
    let cfg = &exp.config;
    let seeds: Vec<u64> = exp.seeds().collect();
    let bar = if opts.progress {
        ProgressBar::with_draw_target(
            Some((seeds.len() * cfg.generations) as u64),
            ProgressDrawTarget::stderr(),
        )
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} generations  {elapsed} (eta {eta})")
            .expect("valid template"),
    );
    let saved = |g: usize| g.is_multiple_of(cfg.save_every) || g + 1 == cfg.generations;
    // Image targets: pictures of the real data (a row per class) and of each saved generation.
    let picture = exp
        .target
        .image_side()
        .zip(exp.target.dataset())
        .map(|(side, data)| (report::Picture::new(side, data.points.view()), data));
    if let Some((pic, data)) = &picture {
        let cells = report::grid_cells(data.labels.as_deref(), data.len(), 10, 10);
        pic.draw(&dir.join("real.png"), data.points.view(), &cells)?;
    }
    let per_seed: Vec<Result<Vec<Vec<f64>>>> = super::with_threads(opts.threads, || {
        seeds
            .par_iter()
            .map(|&seed| {
                let sample_dir = dir.join("samples").join(format!("seed-{seed}"));
                let train_dir = dir.join("train").join(format!("seed-{seed}"));
                let weights_dir = dir.join("weights").join(format!("seed-{seed}"));
                let save_weights =
                    matches!(&exp.learner, crate::models::Learner::Diffusion(l) if l.save_weights);
                if save_weights {
                    mkdir(&weights_dir)?;
                }
                if cfg.save_samples {
                    mkdir(&sample_dir)?;
                }
                if cfg.save_train_sets {
                    mkdir(&train_dir)?;
                }
                let mut observe = |g: &Generation| -> Result<()> {
                    let file = format!("gen-{:03}.npy", g.generation);
                    if saved(g.generation) {
                        if cfg.save_samples {
                            write_npy(&sample_dir.join(&file), g.samples)?;
                            if let Some((pic, _)) = &picture {
                                let cells = report::grid_cells(None, g.samples.nrows(), 10, 10);
                                let png = sample_dir.join(format!("gen-{:03}.png", g.generation));
                                pic.draw(&png, g.samples.view(), &cells)?;
                            }
                        }
                        if cfg.save_train_sets {
                            write_npy(&train_dir.join(&file), g.train)?;
                        }
                        if let (true, crate::models::Model::Diffusion(m)) = (save_weights, g.model)
                        {
                            let path =
                                weights_dir.join(format!("gen-{:03}.safetensors", g.generation));
                            crate::diffusion::weights::save(m, &path)?;
                        }
                    }
                    bar.inc(1);
                    Ok(())
                };
                exp.run_seed(seed, &mut observe)
                    .map_err(|e| Error::Run(format!("seed {seed}: {e}")))
            })
            .collect()
    })?;
    bar.finish_and_clear();
    let names = exp.metrics.names();
    let mut rows = Vec::new();
    for (seed, result) in seeds.iter().zip(per_seed) {
        for (g, values) in result?.into_iter().enumerate() {
            rows.push((*seed, g, values));
        }
    }
    std::fs::write(dir.join("metrics.csv"), metrics_csv(&names, &rows))
        .map_err(|e| Error::io("cannot write metrics.csv", e))?;
    let plot = dir.join("metrics.png");
    report::plot_metrics(&plot, &names, &rows)?;
    Ok(RunResult { names, rows, plot })
}

/// `seed,generation,<metrics…>` with one row per seed and generation; numbers in Rust's shortest
/// round-trip form (`inf`, `NaN` where undefined), which pandas and numpy read as floats.
pub fn metrics_csv(names: &[&str], rows: &[(u64, usize, Vec<f64>)]) -> String {
    let mut s = String::from("seed,generation");
    for n in names {
        s.push(',');
        s.push_str(n);
    }
    s.push('\n');
    for (seed, g, values) in rows {
        write!(s, "{seed},{g}").expect("string write");
        for v in values {
            write!(s, ",{v}").expect("string write");
        }
        s.push('\n');
    }
    s
}
