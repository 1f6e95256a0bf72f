//! Studies: one base experiment run over a grid of key values, each cell an ordinary run folder.
//!
//! A study file is an experiment file (or `base = "file.toml"` plus keys that change it) with
//! `seeds` (the repeats of every cell) and `[axes]`: dotted keys with lists of values, crossed
//! (the first axis varies slowest). `[zip]` holds lists of one length that move together (one
//! more axis whose values are tuples). `ouro sweep` writes:
//!
//! - `DIR/study.toml`: the study file as given; `DIR/cells.csv`: `cell,<axis keys>`;
//! - `DIR/cells/NNN/`: cell NNN's run folder (see [`super::run_dir`]), or `DIR/cells/NNN.error`
//!   with the error of a cell that failed;
//! - `DIR/study.csv`: `cell,<axis keys>,seed,generation,<metrics>` over every finished cell;
//! - `DIR/summary.csv`: `cell,<axis keys>,generation,metric,n,mean,se,q10,q50,q90,theory` (over
//!   seeds; `theory` is the closed-form expectation where one applies, see [`crate::theory`]);
//! - `DIR/study.png`: each metric against generation, one line per cell, and at the last
//!   generation against the first axis.

use super::Experiment;
use super::run_dir::{self, RunOptions, write_file};
use crate::config::{Config, set_key};
use crate::error::{Error, Result};
use crate::report::quantile;
use std::fmt::Write as _;
use std::path::Path;

/// One point of the grid.
pub struct Cell {
    /// Its number (0-based, the order of the grid).
    pub index: usize,
    /// The axis keys and this cell's values, in axis order.
    pub values: Vec<(String, toml::Value)>,
    /// The cell's checked experiment.
    pub experiment: Experiment,
}

impl Cell {
    /// `fresh_fraction = 0.1, bandwidth = 0.6`: the last part of each axis key and its value.
    pub fn label(&self) -> String {
        self.values
            .iter()
            .map(|(k, v)| format!("{} = {}", k.rsplit('.').next().unwrap_or(k), plain(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// [`Cell::label`] without the first axis.
    pub fn label_without_first(&self) -> String {
        self.values
            .iter()
            .skip(1)
            .map(|(k, v)| format!("{} = {}", k.rsplit('.').next().unwrap_or(k), plain(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The folder name under `cells/`.
    pub fn name(&self) -> String {
        format!("{:03}", self.index)
    }
}

/// A value as text: strings without quotes.
fn plain(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A checked study: its axis keys and every cell.
pub struct Study {
    /// The axis keys (zip keys after the crossed ones).
    pub axes: Vec<String>,
    /// The cells, in grid order.
    pub cells: Vec<Cell>,
    /// The study file's text.
    pub text: String,
}

impl Study {
    /// Reads the study file `path` and checks every cell (with `overrides` applied to the base
    /// before the axis values). A bad axis key or value is one error naming the cell.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Study> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
        let here = path.parent().unwrap_or(Path::new("."));
        Study::from_text(text, here, overrides).map_err(|e| match e {
            Error::Config(m) => Error::config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The study of the text of a study file whose `base` is relative to `here`.
    pub fn from_text(text: String, here: &Path, overrides: &[String]) -> Result<Study> {
        let grid = parse(&text, here, overrides)?;
        let mut cells = Vec::with_capacity(grid.cells.len());
        for (index, (values, config)) in grid.cells.into_iter().enumerate() {
            let experiment = Experiment::new(config).map_err(|e| cell_error(index, &values, e))?;
            cells.push(Cell {
                index,
                values,
                experiment,
            });
        }
        Ok(Study {
            axes: grid.axes,
            cells,
            text,
        })
    }
}

/// The error `e` of cell `index` with axis `values`, naming them.
fn cell_error(index: usize, values: &[(String, toml::Value)], e: Error) -> Error {
    let what = values
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let m = match e {
        Error::Config(m) => m,
        other => other.to_string(),
    };
    Error::config(format!("cell {index:03} ({what}): {m}"))
}

/// The most cells a study may have.
pub const MAX_CELLS: usize = 10_000;

/// A study file expanded into its cells' configs (parsed against the schema, not yet checked
/// as experiments).
pub struct Grid {
    /// The axis keys (zip keys after the crossed ones).
    pub axes: Vec<String>,
    /// Each cell's axis values and config.
    pub cells: Vec<(Vec<(String, toml::Value)>, Config)>,
}

/// Expands the study `text` (whose `base` is relative to the folder `here`) into its cells'
/// configs, `overrides` applied to the base before the axis values.
pub fn parse(text: &str, here: &Path, overrides: &[String]) -> Result<Grid> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        Error::config(format!("not valid TOML: {}", e.message().trim()))
    })?;
    let axes = take_lists(&mut table, "axes").map_err(Error::config)?;
    let zip = take_lists(&mut table, "zip").map_err(Error::config)?;
    let seeds = match table.remove("seeds") {
        None => None,
        Some(toml::Value::Integer(n)) if n >= 1 => Some(n),
        Some(v) => return Err(Error::config(format!("seeds = {v}: expected a count ≥ 1"))),
    };
    let mut base = match table.remove("base") {
        None => toml::Table::new(),
        Some(toml::Value::String(b)) => {
            let file = here.join(&b);
            let t = std::fs::read_to_string(&file).map_err(|e| {
                Error::config(format!(
                    "base = \"{b}\": cannot read {}: {e}",
                    file.display()
                ))
            })?;
            t.parse().map_err(|e: toml::de::Error| {
                Error::config(format!(
                    "base = \"{b}\": not valid TOML: {}",
                    e.message().trim()
                ))
            })?
        }
        Some(v) => {
            return Err(Error::config(format!(
                "base = {v}: expected the path of an experiment file"
            )));
        }
    };
    merge(&mut base, table);
    if let Some(n) = seeds {
        base.insert("repeats".into(), toml::Value::Integer(n));
    }
    for item in overrides {
        crate::config::apply_override(&mut base, item)?;
    }
    if let Some(len) = zip.first().map(|(_, v)| v.len())
        && let Some((k, v)) = zip.iter().find(|(_, v)| v.len() != len)
    {
        return Err(Error::config(format!(
            "zip.\"{k}\" has {} values and zip.\"{}\" has {len}; zipped lists move together \
             and need one length",
            v.len(),
            zip[0].0
        )));
    }
    let count = axes
        .iter()
        .map(|(_, v)| v.len())
        .chain(zip.first().map(|(_, v)| v.len()))
        .try_fold(1usize, |n, k| n.checked_mul(k))
        .filter(|&n| n <= MAX_CELLS);
    if count.is_none() {
        return Err(Error::config(format!(
            "the axes make more than {MAX_CELLS} cells; split the study"
        )));
    }
    let mut cells = Vec::new();
    for (index, values) in grid(&axes, &zip).into_iter().enumerate() {
        let mut t = base.clone();
        for (k, v) in &values {
            set_key(&mut t, k, v.clone())
                .map_err(|m| Error::config(format!("axis \"{k}\": {m}")))?;
        }
        let config = Config::from_table(t).map_err(|e| cell_error(index, &values, e))?;
        cells.push((values, config));
    }
    let mut names: Vec<String> = axes.iter().map(|(k, _)| k.clone()).collect();
    names.extend(zip.iter().map(|(k, _)| k.clone()));
    Ok(Grid { axes: names, cells })
}

/// Removes the table `name` from `table` and returns its (key, list) pairs, each list non-empty.
fn take_lists(
    table: &mut toml::Table,
    name: &str,
) -> std::result::Result<Vec<(String, Vec<toml::Value>)>, String> {
    let Some(v) = table.remove(name) else {
        return Ok(Vec::new());
    };
    let toml::Value::Table(t) = v else {
        return Err(format!("{name}: expected a table of key = [values]"));
    };
    t.into_iter()
        .map(|(k, v)| match v {
            toml::Value::Array(a) if !a.is_empty() => Ok((k, a)),
            other => Err(format!(
                "{name}.\"{k}\" = {other}: expected a non-empty list of values"
            )),
        })
        .collect()
}

/// Merges `top` into `base`, table by table (values of `top` win).
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (k, v) in top {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The cells of crossed `axes` (first slowest) and `zip` lists (one more axis, last).
fn grid(
    axes: &[(String, Vec<toml::Value>)],
    zip: &[(String, Vec<toml::Value>)],
) -> Vec<Vec<(String, toml::Value)>> {
    let mut cells: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
    for (k, values) in axes {
        cells = cells
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((k.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    if let Some(len) = zip.first().map(|(_, v)| v.len()) {
        cells = cells
            .into_iter()
            .flat_map(|c| {
                (0..len).map(move |i| {
                    let mut c = c.clone();
                    c.extend(zip.iter().map(|(k, v)| (k.clone(), v[i].clone())));
                    c
                })
            })
            .collect();
    }
    cells
}

/// Parses `--cells 3,5-7` into cell numbers (each below `n`).
pub fn parse_cells(spec: &str, n: usize) -> Result<Vec<usize>> {
    let bad = |m: String| Error::Run(format!("--cells {spec}: {m}"));
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = match (a.trim().parse(), b.trim().parse()) {
            (Ok(a), Ok(b)) if a <= b => (a, b),
            _ => return Err(bad(format!("`{part}` is not a cell number or a range a-b"))),
        };
        if b >= n {
            return Err(bad(format!("the study has cells 0 … {}", n - 1)));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(bad("expected cell numbers such as 3,5-7".into()));
    }
    Ok(out)
}

/// How to run a study.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Cells run at once.
    pub jobs: usize,
    /// Worker threads in all (0: one per core).
    pub threads: usize,
    /// Only these cells (default: all).
    pub only: Option<Vec<usize>>,
    /// Replace an existing study folder.
    pub force: bool,
    /// Continue a study folder: finished cells are kept.
    pub resume: bool,
    /// Draw a progress bar.
    pub progress: bool,
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct SweepReport {
    /// Cells run now.
    pub ran: Vec<usize>,
    /// Cells already finished (resume).
    pub kept: Vec<usize>,
    /// Cells that failed, with their error.
    pub failed: Vec<(usize, String)>,
}

/// Makes `out` the study folder of `study` (`study.toml`, `cells.csv`, `cells/`): replaces it
/// with `force`, continues it with `resume` (refusing another study's folder), and refuses an
/// existing one otherwise. Returns the cells of `only` (default: all) that are not finished,
/// having removed their old `.error` files.
pub fn prepare(
    study: &Study,
    out: &Path,
    only: Option<&[usize]>,
    force: bool,
    resume: bool,
) -> Result<Vec<usize>> {
    let cells_dir = out.join("cells");
    if out.exists() && !is_empty(out) {
        if force {
            std::fs::remove_dir_all(out)
                .map_err(|e| Error::io(format!("cannot replace {}", out.display()), e))?;
        } else if !resume {
            return Err(Error::Run(format!(
                "{} already exists; pass --resume to continue it, --force to replace it, or \
                 choose another --out",
                out.display()
            )));
        } else if out.join("cells.csv").exists() || (cells_dir.exists() && !is_empty(&cells_dir)) {
            // (a sweep killed before it wrote `cells.csv` ran no cell: nothing to check)
            check_same_study(study, out)?;
        }
    }
    std::fs::create_dir_all(&cells_dir)
        .map_err(|e| Error::io(format!("cannot create {}", cells_dir.display()), e))?;
    write_file(&out.join("study.toml"), study.text.as_bytes())?;
    write_file(&out.join("cells.csv"), cells_csv(study).as_bytes())?;
    let mut todo = Vec::new();
    for c in &study.cells {
        if only.is_some_and(|o| !o.contains(&c.index))
            || cells_dir.join(c.name()).join("metrics.csv").exists()
        {
            continue;
        }
        let _ = std::fs::remove_file(cells_dir.join(format!("{}.error", c.name())));
        todo.push(c.index);
    }
    Ok(todo)
}

/// Runs the cells of `study` into `out` and writes the study tables and plot over every
/// finished cell. Failed cells leave `cells/NNN.error`; the others still run.
pub fn sweep(study: &Study, out: &Path, opts: &SweepOptions) -> Result<SweepReport> {
    let cells_dir = out.join("cells");
    let todo_cells = prepare(study, out, opts.only.as_deref(), opts.force, opts.resume)?;
    let mut report = SweepReport::default();
    for c in &study.cells {
        let chosen = opts.only.as_ref().is_none_or(|o| o.contains(&c.index));
        if chosen && !todo_cells.contains(&c.index) {
            report.kept.push(c.index);
        }
    }
    let todo: Vec<&Cell> = todo_cells.iter().map(|&i| &study.cells[i]).collect();
    let jobs = opts.jobs.max(1).min(todo.len().max(1));
    let cores = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let per_cell = (cores / jobs).max(1);
    let bar = progress_bar(opts.progress, todo.len());
    // `jobs` threads, each taking the next cell: at most `jobs` cells run at once (a rayon pool
    // of `jobs` threads would start more, its threads taking other cells while they wait for
    // their cell's own pool).
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                while let Some(c) =
                    todo.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    let run = RunOptions {
                        force: true,
                        threads: per_cell,
                        progress: false,
                        resume: opts.resume,
                    };
                    let watch = crate::progress::Watch::new(c.name(), bar.clone(), opts.progress);
                    let r = crate::progress::watching(Some(watch), || {
                        run_dir::run(&c.experiment, &cells_dir.join(c.name()), &run)
                    })
                    .map(|_| ());
                    bar.inc(1);
                    done.lock()
                        .expect("no cell thread panicked")
                        .push((c.index, r));
                }
            });
        }
    });
    let mut results: Vec<(usize, Result<()>)> = done.into_inner().expect("no cell thread panicked");
    results.sort_by_key(|(i, _)| *i);
    bar.finish_and_clear();
    for (i, r) in results {
        match r {
            Ok(()) => report.ran.push(i),
            Err(e) => {
                let name = format!("{i:03}.error");
                write_file(&cells_dir.join(name), format!("{e}\n").as_bytes())?;
                report.failed.push((i, e.to_string()));
            }
        }
    }
    write_tables(study, out)?;
    Ok(report)
}

fn progress_bar(show: bool, n: usize) -> indicatif::ProgressBar {
    let bar = if show {
        indicatif::ProgressBar::with_draw_target(
            Some(n as u64),
            indicatif::ProgressDrawTarget::stderr(),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} cells  {elapsed} (eta {eta})\n{wide_msg}",
        )
        .expect("valid template"),
    );
    bar
}

fn is_empty(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_none())
}

/// A resumed study folder must hold the same study: same cells with the same configs.
pub(crate) fn check_same_study(study: &Study, out: &Path) -> Result<()> {
    let old = std::fs::read_to_string(out.join("cells.csv")).unwrap_or_default();
    if old != cells_csv(study) {
        return Err(Error::Run(format!(
            "{} holds another study (its cells.csv differs); --resume continues the same \
             study, --force replaces it",
            out.display()
        )));
    }
    for c in &study.cells {
        let cfg = out.join("cells").join(c.name()).join("config.toml");
        if let Ok(text) = std::fs::read_to_string(&cfg)
            && text != c.experiment.config.to_toml()
        {
            return Err(Error::Run(format!(
                "cell {} in {} was run with another config ({}); --force replaces the study",
                c.name(),
                out.display(),
                cfg.display()
            )));
        }
    }
    Ok(())
}

/// `cell,<axis keys>` and one row per cell.
fn cells_csv(study: &Study) -> String {
    let mut s = String::from("cell");
    for k in &study.axes {
        s.push(',');
        s.push_str(&csv_field(k));
    }
    s.push('\n');
    for c in &study.cells {
        s.push_str(&c.index.to_string());
        for (_, v) in &c.values {
            s.push(',');
            s.push_str(&csv_field(&plain(v)));
        }
        s.push('\n');
    }
    s
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The metric rows of a finished cell: its column names and (seed, generation, values).
pub type CellRows = (Vec<String>, Vec<(u64, usize, Vec<f64>)>);

/// The metric rows of one finished cell of `study` in `out` (`None` when it has not finished),
/// for statistics that pair seeds across cells.
pub fn cell_rows(out: &Path, cell: &Cell) -> Result<Option<CellRows>> {
    read_metrics(&out.join("cells").join(cell.name()))
}

/// The metric names and rows of the run folder `dir` (`None` when it has no `metrics.csv`).
pub fn read_metrics(dir: &Path) -> Result<Option<CellRows>> {
    let path = dir.join("metrics.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let bad = || Error::data(&path, "not a metrics.csv written by ouro");
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .ok_or_else(bad)?
        .split(',')
        .map(String::from)
        .collect();
    if header.len() < 2 || header[0] != "seed" || header[1] != "generation" {
        return Err(bad());
    }
    let mut rows = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != header.len() {
            return Err(bad());
        }
        let seed = f[0].parse().map_err(|_| bad())?;
        let g = f[1].parse().map_err(|_| bad())?;
        let values = f[2..]
            .iter()
            .map(|v| v.parse::<f64>().map_err(|_| bad()))
            .collect::<Result<Vec<_>>>()?;
        rows.push((seed, g, values));
    }
    Ok(Some((header[2..].to_vec(), rows)))
}

/// A finished cell: the cell, its metric names and, per generation, the
/// [`crate::report::Summary`] over seeds of each metric.
pub type CellResult<'a> = (&'a Cell, Vec<String>, Vec<Vec<crate::report::Summary>>);

/// The finished cells of `study` in `out`.
pub fn results<'a>(study: &'a Study, out: &Path) -> Result<Vec<CellResult<'a>>> {
    let mut all = Vec::new();
    for c in &study.cells {
        if let Some((names, rows)) = read_metrics(&out.join("cells").join(c.name()))? {
            let summary = crate::report::by_generation(&rows, names.len());
            all.push((c, names, summary));
        }
    }
    Ok(all)
}

/// Writes `study.csv`, `summary.csv` and `study.png` over every finished cell of `study`.
pub fn write_tables(study: &Study, out: &Path) -> Result<()> {
    let mut finished = Vec::new();
    let mut metrics: Vec<String> = Vec::new();
    for c in &study.cells {
        if let Some((names, rows)) = read_metrics(&out.join("cells").join(c.name()))? {
            for n in &names {
                if !metrics.contains(n) {
                    metrics.push(n.clone());
                }
            }
            finished.push((c, names, rows));
        }
    }
    let axes_header: String = study
        .axes
        .iter()
        .map(|k| format!(",{}", csv_field(k)))
        .collect();
    let mut long = format!("cell{axes_header},seed,generation");
    for m in &metrics {
        long.push(',');
        long.push_str(m);
    }
    long.push('\n');
    let mut summary = format!("cell{axes_header},generation,metric,n,mean,se,q10,q50,q90,theory\n");
    let mut curves = Vec::new();
    for (c, names, rows) in &finished {
        let axis_values: String = c
            .values
            .iter()
            .map(|(_, v)| format!(",{}", csv_field(&plain(v))))
            .collect();
        let column = |m: &str| names.iter().position(|n| n == m);
        for (seed, g, values) in rows {
            write!(long, "{}{axis_values},{seed},{g}", c.index).expect("string write");
            for m in &metrics {
                match column(m) {
                    Some(i) => write!(long, ",{}", values[i]).expect("string write"),
                    None => long.push(','),
                }
            }
            long.push('\n');
        }
        let generations = rows.iter().map(|r| r.1 + 1).max().unwrap_or(0);
        let predictions = crate::theory::predictions(&c.experiment);
        let mut per_metric = Vec::new();
        for m in &metrics {
            let Some(i) = column(m) else {
                per_metric.push(Vec::new());
                continue;
            };
            let theory = predictions.iter().find(|p| p.metric == m);
            let mut curve = Vec::new();
            for g in 0..generations {
                let v: Vec<f64> = rows.iter().filter(|r| r.1 == g).map(|r| r.2[i]).collect();
                let sum = crate::report::Summary::of(&v);
                let mut sorted: Vec<f64> = v.into_iter().filter(|x| x.is_finite()).collect();
                sorted.sort_by(f64::total_cmp);
                let (n, mean, se) = (sum.count, sum.mean, sum.se());
                let (q10, q50, q90) = (sum.q10, quantile(&sorted, 0.5), sum.q90);
                let predicted = theory
                    .and_then(|p| p.values.get(g))
                    .map_or(String::new(), |v| v.to_string());
                writeln!(
                    summary,
                    "{}{axis_values},{g},{m},{n},{mean},{se},{q10},{q50},{q90},{predicted}",
                    c.index
                )
                .expect("string write");
                curve.push((g as f64, mean, se));
            }
            per_metric.push(curve);
        }
        curves.push(crate::report::StudyCurve {
            label: c.label(),
            first: c.values.first().and_then(|(_, v)| match v {
                toml::Value::Integer(i) => Some(*i as f64),
                toml::Value::Float(f) => Some(*f),
                _ => None,
            }),
            rest: c.label_without_first(),
            curves: per_metric,
            theory: metrics
                .iter()
                .map(|m| {
                    predictions.iter().find(|p| p.metric == m).map(|p| {
                        p.values
                            .iter()
                            .take(generations)
                            .enumerate()
                            .map(|(g, &v)| (g as f64, v))
                            .collect()
                    })
                })
                .collect(),
        });
    }
    write_file(&out.join("study.csv"), long.as_bytes())?;
    write_file(&out.join("summary.csv"), summary.as_bytes())?;
    if !finished.is_empty() {
        let first_axis = study.axes.first().cloned().unwrap_or_default();
        crate::report::plot_study(&out.join("study.png"), &metrics, &first_axis, &curves)?;
    }
    Ok(())
}

/// The state of each cell of the study folder `out`: done, failed, running (a partial folder of
/// a live process), partial (of a process that is gone) or pending.
pub fn status(out: &Path) -> Result<Vec<(String, String, &'static str)>> {
    let cells = std::fs::read_to_string(out.join("cells.csv")).map_err(|e| {
        Error::Run(format!(
            "{}: not a study folder (no cells.csv: {e})",
            out.display()
        ))
    })?;
    let dir = out.join("cells");
    let partials: Vec<(String, u32)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let rest = name.strip_prefix('.')?;
                    let (cell, pid) = rest.split_once(".partial-")?;
                    Some((cell.to_string(), pid.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out_rows = Vec::new();
    for line in cells.lines().skip(1) {
        let (cell, values) = line.split_once(',').unwrap_or((line, ""));
        let name = format!("{:03}", cell.parse::<usize>().unwrap_or(0));
        let state = if dir.join(&name).join("metrics.csv").exists() {
            "done"
        } else if dir.join(format!("{name}.error")).exists() {
            "failed"
        } else if let Some((_, pid)) = partials.iter().find(|(c, _)| *c == name) {
            if Path::new(&format!("/proc/{pid}")).exists() {
                "running"
            } else {
                "partial"
            }
        } else {
            "pending"
        };
        out_rows.push((name, values.to_string(), state));
    }
    Ok(out_rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_cross_axes_and_zip_lists() {
        let v = |x: i64| toml::Value::Integer(x);
        let axes = vec![
            ("a".to_string(), vec![v(1), v(2)]),
            ("b".to_string(), vec![v(3), v(4), v(5)]),
        ];
        let zip = vec![
            ("c".to_string(), vec![v(6), v(7)]),
            ("d".to_string(), vec![v(8), v(9)]),
        ];
        let g = grid(&axes, &zip);
        assert_eq!(g.len(), 2 * 3 * 2);
        // first axis slowest, zip fastest and together
        assert_eq!(
            g[0].iter()
                .map(|p| p.1.as_integer().unwrap())
                .collect::<Vec<_>>(),
            [1, 3, 6, 8]
        );
        assert_eq!(
            g[1].iter()
                .map(|p| p.1.as_integer().unwrap())
                .collect::<Vec<_>>(),
            [1, 3, 7, 9]
        );
        assert_eq!(
            g[11]
                .iter()
                .map(|p| p.1.as_integer().unwrap())
                .collect::<Vec<_>>(),
            [2, 5, 7, 9]
        );
        assert_eq!(grid(&[], &[]).len(), 1);
    }

    #[test]
    fn cell_lists_and_quantiles() {
        assert_eq!(parse_cells("3,5-7, 5", 10).unwrap(), [3, 5, 6, 7]);
        assert!(parse_cells("9-12", 10).is_err());
        assert!(parse_cells("x", 10).is_err());
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.1) - 1.4).abs() < 1e-12);
        assert!((quantile(&v, 0.9) - 4.6).abs() < 1e-12);
    }
}
