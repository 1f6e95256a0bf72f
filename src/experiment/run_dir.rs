//! Writing a run folder:
//! `config.toml` (resolved config), `metrics.csv` (one row per seed and generation),
//! `samples/seed-S/gen-GGG.npy` (with `gen-GGG.labels.npy` for a class-conditional model, and
//! `gen-GGG.png` for image targets: a grid of samples, a row per class when they are labelled,
//! with `real.png`: the real images, a row per class), `models/seed-S/gen-GGG.safetensors` (the
//! fitted model, see [`crate::models::save`]), optionally `train/seed-S/gen-GGG.npy`
//! (and `.labels.npy`), `class_accuracy.csv` when accuracy metrics are chosen, and
//! `metrics.png`.
//! The run is written to a hidden sibling folder and renamed into place only when complete, so a
//! failed run never leaves a half-written folder behind.

use super::{Experiment, Generation};
use crate::data::{Dataset, class_counts, write_labels_npy, write_npy};
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
    // Removed on every way out but success: an error, a panic (unwinding drops the guard) or a
    // signal (`remove_partial_folders`).
    let guard = Partial::new(tmp.clone());
    mkdir(&tmp)?;
    let r = write(&tmp)?;
    if out.exists() {
        std::fs::remove_dir_all(out)
            .map_err(|e| Error::io(format!("cannot replace {}", out.display()), e))?;
    }
    std::fs::rename(&tmp, out)
        .map_err(|e| Error::io(format!("cannot move the run into {}", out.display()), e))?;
    guard.disarm();
    Ok(r)
}

/// Partial folders being written by this process.
static PARTIAL: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn partial_list() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PARTIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A partial folder that is deleted when dropped (an error or a panic), unless disarmed once
/// it has been moved into place; registered so that a signal handler can delete it too.
struct Partial(PathBuf);

impl Partial {
    fn new(path: PathBuf) -> Self {
        partial_list().push(path.clone());
        Partial(path)
    }

    fn disarm(self) {
        partial_list().retain(|p| p != &self.0);
        std::mem::forget(self);
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        partial_list().retain(|p| p != &self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deletes every partial run folder this process is writing and returns how many there were.
/// For a handler of SIGINT and SIGTERM, which then exits: the half-written run disappears with
/// the process.
///
/// Writers still running address files by the folder's name, so it is renamed first: from then
/// on nothing new can appear in it, and deleting it cannot race with them.
pub fn remove_partial_folders() -> usize {
    let mut list = partial_list();
    let count = list.len();
    for p in list.drain(..) {
        let mut gone = p.clone().into_os_string();
        gone.push("-removing");
        let target = if std::fs::rename(&p, &gone).is_ok() {
            PathBuf::from(gone)
        } else {
            p
        };
        let _ = std::fs::remove_dir_all(target);
    }
    count
}

fn is_empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false)
}

/// Creates the folder `p` (and its parents) inside a partial run folder that is still being
/// written, under the lock that [`remove_partial_folders`] takes, so that a folder deleted on a
/// signal is never created again by a writer that has not yet stopped.
pub(crate) fn mkdir(p: &Path) -> Result<()> {
    let live = partial_list();
    if !live.iter().any(|root| p.starts_with(root)) {
        return Err(Error::Run(format!(
            "{}: not inside a run folder being written (interrupted?)",
            p.display()
        )));
    }
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
    let per_seed: Vec<Result<(Vec<Vec<f64>>, String)>> = super::with_threads(opts.threads, || {
        seeds
            .par_iter()
            .map(|&seed| {
                let sample_dir = dir.join("samples").join(format!("seed-{seed}"));
                let train_dir = dir.join("train").join(format!("seed-{seed}"));
                let model_dir = dir.join("models").join(format!("seed-{seed}"));
                if cfg.save_models {
                    mkdir(&model_dir)?;
                }
                if cfg.save_samples {
                    mkdir(&sample_dir)?;
                }
                if cfg.save_train_sets {
                    mkdir(&train_dir)?;
                }
                let mut class_rows = String::new();
                let mut observe = |g: &Generation| -> Result<()> {
                    let stem = format!("gen-{:03}", g.generation);
                    if let Some((synthetic, real)) = g.class_accuracy {
                        let labels = g.samples.labels.as_deref().unwrap_or(&[]);
                        let counts = class_counts(labels, synthetic.len());
                        for (c, ((s, r), n)) in synthetic.iter().zip(real).zip(counts).enumerate() {
                            writeln!(class_rows, "{seed},{},{c},{n},{s},{r}", g.generation)
                                .expect("string write");
                        }
                    }
                    if saved(g.generation) {
                        if cfg.save_samples {
                            write_set(&sample_dir, &stem, g.samples)?;
                            if let Some((pic, _)) = &picture {
                                let (x, labels) = (&g.samples.points, g.samples.labels.as_deref());
                                let cells = report::grid_cells(labels, x.nrows(), 10, 10);
                                pic.draw(
                                    &sample_dir.join(format!("{stem}.png")),
                                    x.view(),
                                    &cells,
                                )?;
                            }
                        }
                        if cfg.save_train_sets {
                            write_set(&train_dir, &stem, g.train)?;
                        }
                        if cfg.save_models {
                            let path = model_dir.join(format!("{stem}.safetensors"));
                            crate::models::save(&*exp.learner, g.model, &path)?;
                        }
                    }
                    bar.inc(1);
                    Ok(())
                };
                let rows = exp
                    .run_seed(seed, &mut observe)
                    .map_err(|e| Error::Run(format!("seed {seed}: {e}")))?;
                Ok((rows, class_rows))
            })
            .collect()
    })?;
    bar.finish_and_clear();
    let names = exp.metrics.names();
    let mut rows = Vec::new();
    let mut class_csv =
        String::from("seed,generation,class,samples,synthetic_accuracy,real_accuracy\n");
    for (seed, result) in seeds.iter().zip(per_seed) {
        let (values, class_rows) = result?;
        for (g, values) in values.into_iter().enumerate() {
            rows.push((*seed, g, values));
        }
        class_csv.push_str(&class_rows);
    }
    if exp.metrics.uses_classifiers() {
        std::fs::write(dir.join("class_accuracy.csv"), class_csv)
            .map_err(|e| Error::io("cannot write class_accuracy.csv", e))?;
    }
    std::fs::write(dir.join("metrics.csv"), metrics_csv(&names, &rows))
        .map_err(|e| Error::io("cannot write metrics.csv", e))?;
    let plot = dir.join("metrics.png");
    report::plot_metrics(&plot, &names, &rows)?;
    Ok(RunResult { names, rows, plot })
}

/// Writes `dir/STEM.npy` and, for a labelled set, `dir/STEM.labels.npy`.
fn write_set(dir: &Path, stem: &str, set: &Dataset) -> Result<()> {
    write_npy(&dir.join(format!("{stem}.npy")), &set.points)?;
    if let Some(labels) = &set.labels {
        write_labels_npy(&dir.join(format!("{stem}.labels.npy")), labels)?;
    }
    Ok(())
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
