//! Writing a run folder:
//! `config.toml` (resolved config), `metrics.csv` (one row per seed and generation),
//! `samples/seed-S/gen-GGG.npy` (with `gen-GGG.labels.npy` for a class-conditional model, and
//! `gen-GGG.png` for image targets: a grid of samples, a row per class when they are labelled,
//! with `real.png`: the real images, a row per class; for 2-D targets: the samples scattered over
//! the real reference points), `models/seed-S/gen-GGG.safetensors` (the
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
    /// Continue the run that a killed process left in `out` (its hidden partial folder), from
    /// the last generation each seed finished; a finished run is left as it is.
    pub resume: bool,
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
    /// Whether `--resume` found the run already finished (and did nothing).
    pub already_finished: bool,
    /// The closed-form predictions that apply, beside the measurements (also `theory.csv`).
    pub theory: Vec<crate::theory::predict::Comparison>,
}

/// Runs `exp` and writes its run folder at `out`.
pub fn run(exp: &Experiment, out: &Path, opts: &RunOptions) -> Result<RunResult> {
    if opts.resume && out.join("metrics.csv").exists() {
        return finished(exp, out);
    }
    let adopt = if opts.resume {
        interrupted(exp, out)?
    } else {
        None
    };
    let resuming = adopt.is_some();
    let mut r = write_atomically_from(out, opts.force || resuming, adopt, |tmp| {
        write_into(exp, tmp, opts, resuming)
    })?;
    r.plot = out.join(r.plot.file_name().expect("plot file"));
    Ok(r)
}

/// The result of the finished run in `out`, which must have `exp`'s config (for `--resume` of
/// a run that has nothing left to do).
fn finished(exp: &Experiment, out: &Path) -> Result<RunResult> {
    same_config(exp, out)?;
    let path = out.join("metrics.csv");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::data(&path, format!("cannot read it: {e}")))?;
    let bad = || Error::data(&path, "not a metrics.csv written by ouro");
    let rows = text
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let values = f
                .get(2..)
                .ok_or_else(bad)?
                .iter()
                .map(|v| v.parse::<f64>().map_err(|_| bad()))
                .collect::<Result<Vec<_>>>()?;
            Ok((
                f[0].parse().map_err(|_| bad())?,
                f[1].parse().map_err(|_| bad())?,
                values,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RunResult {
        names: exp.metrics.names(),
        rows,
        plot: out.join("metrics.png"),
        already_finished: true,
        theory: Vec::new(),
    })
}

/// The config a run folder (or partial folder) `dir` was written with must be `exp`'s.
fn same_config(exp: &Experiment, dir: &Path) -> Result<()> {
    let written = std::fs::read_to_string(dir.join("config.toml")).unwrap_or_default();
    if written != exp.config.to_toml() {
        return Err(Error::Run(format!(
            "{} was written with another config (its config.toml differs); --resume continues \
             the same experiment, --force starts it over",
            dir.display()
        )));
    }
    Ok(())
}

/// The hidden partial folder of a killed run into `out` (`.NAME.partial-PID` whose process is
/// gone), checked to hold `exp`'s config; `None` when there is none, or when the run was killed
/// before it wrote its `config.toml` (nothing to continue: the folder is removed as a leftover).
fn interrupted(exp: &Experiment, out: &Path) -> Result<Option<PathBuf>> {
    let (parent, name) = partial_prefix(out);
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return Ok(None);
    };
    let mut found = None;
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(&name) else {
            continue;
        };
        if pid.parse::<u32>().is_ok_and(alive)
            && pid.parse::<u32>().ok() != Some(std::process::id())
        {
            return Err(Error::Run(format!(
                "a run into {} is in progress (process {pid}); wait for it or stop it first",
                out.display()
            )));
        }
        if e.path().join("config.toml").exists() {
            found = Some(e.path());
        }
    }
    if let Some(p) = &found {
        same_config(exp, p)?;
    }
    Ok(found)
}

/// Whether process `pid` is running (Linux: /proc/PID; elsewhere every process counts as gone).
fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The parent of `out` and the name prefix `.NAME.partial-` of its partial folders.
fn partial_prefix(out: &Path) -> (PathBuf, String) {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    (parent, format!(".{name}.partial-"))
}

/// Creates the folder `out` by running `write` on a hidden sibling `.NAME.partial-PID` and renaming
/// it into place only when `write` succeeds, so a failed or interrupted command never leaves a
/// half-written folder under `out`. An existing non-empty `out` is an error unless `force`.
pub fn write_atomically<T>(
    out: &Path,
    force: bool,
    write: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    write_atomically_from(out, force, None, write)
}

/// [`write_atomically`], continuing in the partial folder `adopt` (of a killed run) when given.
fn write_atomically_from<T>(
    out: &Path,
    force: bool,
    adopt: Option<PathBuf>,
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
    let (parent, stale) = partial_prefix(out);
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    let tmp = parent.join(format!("{stale}{}", std::process::id()));
    if let Some(old) = &adopt
        && old != &tmp
    {
        std::fs::rename(old, &tmp)
            .map_err(|e| Error::io(format!("cannot take over {}", old.display()), e))?;
    }
    // leftovers of an interrupted earlier run into the same folder
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&stale) && e.path() != tmp {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
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

/// Whether partial folders outlive an error or a signal (see [`keep_partial_folders`]).
static KEEP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether a stop was requested (see [`request_stop`]).
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, partial run folders stay where they are on an error or a signal, with their
/// checkpoints, for a later `--resume` to continue: for the tasks of a cluster executor, which
/// are killed and run again as a matter of course. (Interactive runs delete them.)
pub fn keep_partial_folders() {
    KEEP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether partial run folders are kept ([`keep_partial_folders`]).
pub fn keeps_partial_folders() -> bool {
    KEEP.load(std::sync::atomic::Ordering::SeqCst)
}

/// Asks every run of this process to stop after the generation it is running, with a
/// checkpoint, and fail with [`Error::Stopped`]. Only stores a flag, so a signal handler may
/// call it.
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

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
        if !keeps_partial_folders() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
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
    if keeps_partial_folders() {
        return 0;
    }
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

fn write_into(
    exp: &Experiment,
    dir: &Path,
    opts: &RunOptions,
    resuming: bool,
) -> Result<RunResult> {
    mkdir(dir)?;
    let _ = std::fs::remove_dir_all(dir.join("checkpoint.old"));
    write_file(&dir.join("config.toml"), exp.config.to_toml().as_bytes())?;
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
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} generations  {elapsed} (eta {eta})\n{wide_msg}",
        )
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
    let first_seed = seeds.first().copied().unwrap_or_default();
    // a caller's watch (a study's cell) gets this run's reports; else this run's bar does
    let outer = crate::progress::current();
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
                let checkpoint_dir = dir.join("checkpoint").join(format!("seed-{seed}"));
                mkdir(&checkpoint_dir)?;
                let (start, mut class_rows) = match resuming {
                    true => super::checkpoint::read(&checkpoint_dir, exp)?
                        .map(|(state, rows)| (Some(state), rows))
                        .unwrap_or_default(),
                    false => (None, String::new()),
                };
                bar.inc(start.as_ref().map_or(0, |s| s.generation as u64));
                let mut last_checkpoint = std::time::Instant::now();
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
                            // Pictures for the first seed only: 200 seeds of a 2-D demo drew
                            // 800 scatter plots (170 MB) that nobody opens.
                            let png = sample_dir.join(format!("{stem}.png"));
                            match &picture {
                                _ if seed != first_seed => {}
                                Some((pic, _)) => {
                                    let (x, labels) =
                                        (&g.samples.points, g.samples.labels.as_deref());
                                    let cells = report::grid_cells(labels, x.nrows(), 10, 10);
                                    pic.draw(&png, x.view(), &cells)?;
                                }
                                None if exp.target.dim() == 2 => {
                                    let title = format!("seed {seed}, generation {}", g.generation);
                                    report::scatter(
                                        &png,
                                        &title,
                                        g.reference,
                                        g.samples.points.view(),
                                    )?;
                                }
                                None => {}
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
                    let stop = stop_requested() && g.generation + 1 < cfg.generations;
                    if g.generation + 1 == cfg.generations
                        || stop
                        || last_checkpoint.elapsed() >= super::checkpoint::INTERVAL
                    {
                        super::checkpoint::write(&checkpoint_dir, exp, g, &class_rows)?;
                        last_checkpoint = std::time::Instant::now();
                    }
                    bar.inc(1);
                    if stop {
                        return Err(Error::Stopped);
                    }
                    Ok(())
                };
                let watch = match &outer {
                    Some(w) => w.part(&format!("seed {seed}")),
                    None => crate::progress::Watch::new(
                        format!("seed {seed}"),
                        bar.clone(),
                        opts.progress,
                    ),
                };
                let rows = crate::progress::watching(Some(watch), || {
                    exp.run_seed_from(seed, start, &mut observe)
                })
                .map_err(|e| match e {
                    Error::Stopped => Error::Stopped,
                    e => Error::Run(format!("seed {seed}: {e}")),
                })?;
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
        write_file(&dir.join("class_accuracy.csv"), class_csv.as_bytes())?;
    }
    let predictions = crate::theory::predictions(exp);
    let comparisons = crate::theory::predict::compare(&predictions, &names, &rows);
    if !comparisons.is_empty() {
        let csv = crate::theory::predict::theory_csv(&comparisons);
        write_file(&dir.join("theory.csv"), csv.as_bytes())?;
    }
    let lines: Vec<report::TheoryLine> = predictions
        .iter()
        .filter_map(|p| {
            let metric = names.iter().position(|n| *n == p.metric)?;
            Some(report::TheoryLine {
                metric,
                points: p
                    .values
                    .iter()
                    .enumerate()
                    .map(|(g, &v)| (g as f64, v))
                    .collect(),
                source: p.source,
            })
        })
        .collect();
    let plot = dir.join("metrics.png");
    report::plot_metrics(&plot, &names, &rows, &lines)?;
    // metrics.csv last: its presence marks a finished run
    write_file(
        &dir.join("metrics.csv"),
        metrics_csv(&names, &rows).as_bytes(),
    )?;
    // Renamed before it is deleted: a kill while deleting leaves no checkpoint that lacks its
    // model, only a `checkpoint.old` that the next attempt removes.
    let old = dir.join("checkpoint.old");
    std::fs::rename(dir.join("checkpoint"), &old)
        .and_then(|()| std::fs::remove_dir_all(&old))
        .map_err(|e| Error::io("cannot remove the checkpoints", e))?;
    Ok(RunResult {
        names,
        rows,
        plot,
        already_finished: false,
        theory: comparisons,
    })
}

/// Writes `bytes` to `path` through a temporary sibling that is synced and renamed, so that
/// the file is whole or absent, never torn.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |e| Error::io(format!("cannot write {}", path.display()), e);
    let result = (|| {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
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
