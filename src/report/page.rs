//! `ouro report` and `ouro compare`: one self-contained HTML page for a run, study,
//! reconstruction or reproduction folder, or over several runs and studies, built from the
//! folder's files alone (`metrics.csv`, `theory.csv`, `summary.csv`, `claims.csv`,
//! `reconstruction.csv`, the saved samples and `provenance.toml`).

use super::html::{self, Page, Section, escape};
use super::svg::{self, Chart, Point, Series, number};
use super::thumbnail::{self, Raster, View};
use super::{Summary, by_generation, evenly_spaced};
use crate::config::Config;
use crate::data::read_npy;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::experiment::provenance;
use ndarray::Array2;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The report's file name inside a folder.
pub const FILE: &str = "report.html";

/// Sample pictures shown per run: the saved generations, evenly spaced, first and last included.
const THUMBNAILS: usize = 8;
/// Side of a scatter thumbnail, pixels.
const SCATTER_PX: usize = 260;

/// What a folder holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Run,
    Study,
    Reconstruction,
    Reproduction,
}

fn kind(dir: &Path) -> Result<Kind> {
    if !dir.is_dir() {
        return Err(Error::data(dir, "no such folder"));
    }
    if dir.join("claims.csv").is_file() {
        Ok(Kind::Reproduction)
    } else if dir.join("study.toml").is_file() {
        Ok(Kind::Study)
    } else if dir.join("reconstruction.csv").is_file() {
        Ok(Kind::Reconstruction)
    } else if dir.join("metrics.csv").is_file() {
        Ok(Kind::Run)
    } else {
        Err(Error::data(
            dir,
            "not a folder ouro wrote: expected a run (metrics.csv), a study (study.toml), a \
             reconstruction (reconstruction.csv) or a reproduction (claims.csv)",
        ))
    }
}

/// Writes the report of `dir` to `out` (default `dir/report.html`) and returns its path.
pub fn write(dir: &Path, out: Option<&Path>) -> Result<PathBuf> {
    let page = match kind(dir)? {
        Kind::Run => run_page(dir)?,
        Kind::Study => study_page(dir)?,
        Kind::Reconstruction => reconstruction_page(dir)?,
        Kind::Reproduction => reproduction_page(dir)?,
    };
    let path = out.map_or_else(|| dir.join(FILE), Path::to_path_buf);
    save(&path, &page)?;
    Ok(path)
}

/// Writes one page to `out` overlaying the metrics of the runs and studies in `dirs`.
pub fn compare(dirs: &[PathBuf], out: &Path) -> Result<()> {
    if dirs.len() < 2 {
        return Err(Error::Run(
            "compare needs two or more run or study folders".into(),
        ));
    }
    let mut groups = Vec::new();
    let mut facts = String::new();
    for (i, dir) in dirs.iter().enumerate() {
        let name = dir.display().to_string();
        match kind(dir)? {
            Kind::Run => {
                let run = RunData::load(dir)?;
                groups.push(Group::new(groups.len(), name.clone(), run));
            }
            Kind::Study => {
                for (label, run) in study_cells(dir)? {
                    groups.push(Group::new(groups.len(), format!("{name} · {label}"), run));
                }
            }
            other => {
                return Err(Error::data(
                    dir,
                    format!(
                        "compare overlays runs and studies; this is a {} folder (use `ouro report`)",
                        match other {
                            Kind::Reconstruction => "reconstruction",
                            _ => "reproduction",
                        }
                    ),
                ));
            }
        }
        write!(
            facts,
            "<h3>{}. {}</h3>{}",
            i + 1,
            escape(&name),
            provenance_html(dir)?
        )
        .unwrap();
    }
    let mut sections = vec![Section {
        id: "metrics".into(),
        heading: "Metrics".into(),
        body: metric_charts(&groups, true)?,
    }];
    sections.push(Section {
        id: "last".into(),
        heading: "Last generation".into(),
        body: last_generation_table(&groups),
    });
    sections.push(Section {
        id: "experiments".into(),
        heading: "Experiments".into(),
        body: groups
            .iter()
            .map(|g| format!("<h3>{}</h3><p>{}</p>", escape(&g.label), g.run.describe()))
            .collect(),
    });
    sections.push(Section {
        id: "provenance".into(),
        heading: "Where the numbers came from".into(),
        body: facts + &made_by("Each run reruns with <code>ouro run DIR/config.toml --out NEW</code>, a study cell with <code>ouro run DIR/cells/NNN/config.toml --out NEW</code>."),
    });
    let page = Page {
        title: "Comparison".into(),
        subtitle: format!(
            "{} folders: {}",
            dirs.len(),
            dirs.iter()
                .map(|d| escape(&d.display().to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        sections,
    };
    save(out, &page)
}

fn save(path: &Path, page: &Page) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(Error::data(path, "its folder does not exist"));
    }
    crate::experiment::run_dir::write_file(path, page.render().as_bytes())
}

/// A metric's closed form from `theory.csv`: the metric, (generation, value) and its source.
type TheoryCurve = (String, Vec<(usize, f64)>, String);

/// A study's cells from `cells.csv`: (index, (axis key, value) in axis order).
type CellAxes = Vec<(usize, Vec<(String, String)>)>;

/// The measurements of one run folder.
struct RunData {
    dir: PathBuf,
    config: Option<String>,
    names: Vec<String>,
    rows: Vec<(u64, usize, Vec<f64>)>,
    /// Per metric: (generation, closed form) and its source.
    theory: Vec<TheoryCurve>,
}

impl RunData {
    fn load(dir: &Path) -> Result<RunData> {
        let (names, rows) = crate::experiment::study::read_metrics(dir)?
            .ok_or_else(|| Error::data(dir.join("metrics.csv"), "missing"))?;
        let mut theory: Vec<TheoryCurve> = Vec::new();
        let path = dir.join("theory.csv");
        if path.is_file() {
            let bad =
                |e: String| Error::data(&path, format!("not a theory.csv written by ouro: {e}"));
            let mut r = csv::Reader::from_path(&path).map_err(|e| bad(e.to_string()))?;
            for rec in r.records() {
                let rec = rec.map_err(|e| bad(e.to_string()))?;
                let field = |i: usize| rec.get(i).ok_or_else(|| bad(format!("short row {rec:?}")));
                let (metric, g, value, source) = (field(0)?, field(1)?, field(2)?, field(6)?);
                let g: usize = g.parse().map_err(|_| bad(format!("generation {g:?}")))?;
                let value: f64 = value
                    .parse()
                    .map_err(|_| bad(format!("theory {value:?}")))?;
                match theory.iter_mut().find(|t| t.0 == metric) {
                    Some(t) => t.1.push((g, value)),
                    None => theory.push((metric.to_string(), vec![(g, value)], source.to_string())),
                }
            }
        }
        Ok(RunData {
            dir: dir.to_path_buf(),
            config: std::fs::read_to_string(dir.join("config.toml")).ok(),
            names,
            rows,
            theory,
        })
    }

    fn seeds(&self) -> Vec<u64> {
        let mut s: Vec<u64> = self.rows.iter().map(|r| r.0).collect();
        s.sort_unstable();
        s.dedup();
        s
    }

    fn table(&self) -> Option<toml::Table> {
        self.config.as_deref().and_then(|c| c.parse().ok())
    }

    /// The experiment in words, from its resolved config.
    fn describe(&self) -> String {
        match self.table() {
            Some(t) => describe(&t, self.seeds().len()),
            None => "(no config.toml)".into(),
        }
    }
}

/// A run (or a study's cell) as one coloured group of lines.
struct Group {
    id: usize,
    label: String,
    run: RunData,
    summary: Vec<Vec<Summary>>,
}

impl Group {
    fn new(id: usize, label: String, run: RunData) -> Group {
        let summary = by_generation(&run.rows, run.names.len());
        Group {
            id,
            label,
            run,
            summary,
        }
    }
}

/// Escaped text with its `backticked` words set as code.
fn code(escaped: &str) -> String {
    let mut out = String::new();
    for (i, part) in escaped.split('`').enumerate() {
        if i % 2 == 1 {
            write!(out, "<code>{part}</code>").unwrap();
        } else {
            out.push_str(part);
        }
    }
    out
}

/// How a metric reads: what the real data scores and which way is worse.
fn reading(metric: &str) -> &'static str {
    match metric {
        "mean_shift" => "0 for samples centred on the target; it grows as the loop drifts.",
        "cov_trace_ratio" => {
            "1 is the real data's spread; below 1 the model is losing variance (collapse), above 1 it spreads out."
        }
        "second_moment" => {
            "The real data's E‖x‖² at the start; a rise is added smoothing, a fall is lost variance."
        }
        "mmd2" | "mmd2_biased" | "kid" | "energy" => {
            "About 0 when the samples follow the real law (the unbiased estimates can dip below 0); larger is farther."
        }
        "memorized" => {
            "Share of samples that copy a training point; read it against memorized_null, the rate the test shows without copying."
        }
        "memorized_null" => {
            "The same test on real points that copy nothing: the floor that memorized is read against."
        }
        "model_mean_error2" => "0 for an exact mean; the seed papers' laws say how fast it grows.",
        "kl_gaussian" | "w2_gaussian" | "kl_target" | "chi2_target" | "tv_target" | "frechet"
        | "sliced_w2" => "0 at the target; larger is farther from it.",
        "modes_hit" => {
            "Mixture components still holding at least 10% of their weight: it falls as modes are lost."
        }
        "mode_tv" | "off_mode" => {
            "0 at the target; it grows as mass leaves or moves between modes."
        }
        "precision" | "density" => {
            "About 1 for samples as plausible as real points; it falls as samples leave the data."
        }
        "recall" | "coverage" => {
            "About 1 when the samples cover the real data; it falls as parts of the data are no longer drawn."
        }
        "edge90" | "edge99" | "class_edge90" | "class_edge99" => {
            "Real data scores 0.10 (edge90) or 0.01 (edge99); lower means the outer edges are no longer drawn."
        }
        "synthetic_accuracy" => {
            "Accuracy on held-out real points of a classifier trained on the samples; compare with real_accuracy."
        }
        "real_accuracy" => "The same classifier trained on real data: the line to compare with.",
        "accuracy_gap" => "0 when the samples teach as well as real data; below 0 they teach less.",
        "copies" => {
            "Share of samples that duplicate a training site; 0 for a model that copies nothing."
        }
        "authenticity" => {
            "Share of samples not closer to a training point than its own nearest neighbour (Alaa et al.)."
        }
        "nn_gap" => {
            "About 0 for a model that does not favour its training set; above 0 it sits closer to it."
        }
        "mi_excess" => {
            "About 0 when samples are drawn independently of the training set; large when the model copies."
        }
        "curate_kept" => {
            "1/K for a reward filter, the fraction for likelihood-rank, the acceptance rate for a verifier; undefined at generation 0."
        }
        "curate_reward_mean" => "It rises as the loop moves toward what the filter rewards.",
        "curate_moved" => {
            "Large while the correction pulls drifting samples back; small once the model is near the target."
        }
        "curate_accept" => {
            "Near 1 for a step well below the target's scale; a low rate means the step is too large."
        }
        _ => "",
    }
}

/// The description of a metric from the metric tables.
fn description(metric: &str) -> &'static str {
    crate::metrics::ALL
        .iter()
        .find(|m| m.name == metric)
        .map(|m| m.description)
        .or_else(|| {
            crate::metrics::eval::EVAL_METRICS
                .iter()
                .find(|m| m.name == metric)
                .map(|m| m.description)
        })
        .unwrap_or("")
}

/// One chart per metric over `groups`: each group's mean against generation with its band,
/// and its closed form dashed; `switches` adds the show/hide control.
fn metric_charts(groups: &[Group], switches: bool) -> Result<String> {
    let mut metrics: Vec<&str> = Vec::new();
    for g in groups {
        for n in &g.run.names {
            if !metrics.contains(&n.as_str()) {
                metrics.push(n);
            }
        }
    }
    let one = groups.len() == 1;
    let mut s = String::new();
    if switches && groups.len() > 1 {
        s.push_str(&html::group_switches(
            &groups
                .iter()
                .map(|g| (g.id, g.label.clone()))
                .collect::<Vec<_>>(),
        ));
    }
    let seeds = groups
        .iter()
        .map(|g| g.run.seeds().len())
        .max()
        .unwrap_or(0);
    let band = if one && seeds >= 3 {
        "The line is the mean over seeds, the dark band the mean ± 2 standard errors, the light band the 10–90% range of the seeds."
    } else if seeds >= 2 {
        "Each line is a mean over seeds with its ± 2 standard error band."
    } else {
        "One seed: the line is its value."
    };
    s.push_str(r#"<div class="charts">"#);
    for m in &metrics {
        let mut series = Vec::new();
        let mut sources: Vec<&str> = Vec::new();
        for g in groups {
            let Some(col) = g.run.names.iter().position(|n| n == m) else {
                continue;
            };
            let points = g
                .summary
                .iter()
                .enumerate()
                .map(|(generation, row)| {
                    let v = row[col];
                    let se = v.se();
                    let band = if se.is_finite() {
                        (v.mean - 2.0 * se, v.mean + 2.0 * se)
                    } else {
                        (f64::NAN, f64::NAN)
                    };
                    let outer = if one && v.count >= 3 {
                        (v.q10, v.q90)
                    } else {
                        (f64::NAN, f64::NAN)
                    };
                    let value = svg::mean_se(v.mean, se);
                    Point {
                        x: generation as f64,
                        y: v.mean,
                        band,
                        outer,
                        tip: format!(
                            "{}generation {generation}: {m} = {value} ({} seeds)",
                            if one {
                                String::new()
                            } else {
                                format!("{}, ", g.label)
                            },
                            v.count
                        ),
                    }
                })
                .collect();
            series.push(Series {
                group: g.id,
                dashed: false,
                points,
            });
            if let Some((_, curve, source)) = g.run.theory.iter().find(|t| t.0 == *m) {
                if !sources.contains(&source.as_str()) {
                    sources.push(source);
                }
                series.push(Series {
                    group: g.id,
                    dashed: true,
                    points: curve
                        .iter()
                        .map(|&(generation, v)| Point {
                            x: generation as f64,
                            y: v,
                            band: (f64::NAN, f64::NAN),
                            outer: (f64::NAN, f64::NAN),
                            tip: format!(
                                "{}generation {generation}: theory {}",
                                if one {
                                    String::new()
                                } else {
                                    format!("{}, ", g.label)
                                },
                                number(v)
                            ),
                        })
                        .collect(),
                });
            }
        }
        let chart = Chart {
            title: m.to_string(),
            x_label: "generation".into(),
            series,
        };
        let theory = if sources.is_empty() {
            String::new()
        } else {
            format!(
                " Dashed: the closed form, {}.",
                sources
                    .iter()
                    .map(|s| escape(s))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        let caption = format!(
            "<b>{}</b>: {}. {} {band}{theory}",
            escape(m),
            code(&escape(description(m))),
            escape(reading(m)),
        );
        s.push_str(&html::figure("metric", &chart.svg(), &caption));
    }
    s.push_str("</div>");
    Ok(s)
}

/// Mean ± standard error as table text.
fn mean_se(v: &Summary) -> String {
    if v.mean.is_finite() {
        svg::mean_se(v.mean, v.se())
    } else {
        "–".into()
    }
}

/// The last generation's metrics, one row per group (mean ± se over seeds).
fn last_generation_table(groups: &[Group]) -> String {
    let mut metrics: Vec<&str> = Vec::new();
    for g in groups {
        for n in &g.run.names {
            if !metrics.contains(&n.as_str()) {
                metrics.push(n);
            }
        }
    }
    let mut header = vec![
        "".to_string(),
        "generation".to_string(),
        "seeds".to_string(),
    ];
    header.extend(metrics.iter().map(|m| escape(m)));
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let last = g.summary.len().saturating_sub(1);
            let mut row = vec![
                format!(
                    r#"<span class="nw"><span class="swatch" style="background:{}"></span> {}</span>"#,
                    svg::color(g.id),
                    escape(&g.label)
                ),
                last.to_string(),
                g.run.seeds().len().to_string(),
            ];
            for m in &metrics {
                row.push(
                    match (g.run.names.iter().position(|n| n == m), g.summary.last()) {
                        (Some(c), Some(s)) => mean_se(&s[c]),
                        _ => "–".into(),
                    },
                );
            }
            row
        })
        .collect();
    html::table(
        "The last generation of each, mean ± standard error over seeds (– where a metric does not apply).",
        &header,
        &rows,
        &[&["", "num", "num"], &vec!["num"; metrics.len()][..]].concat(),
    )
}

/// The closed forms of a run beside its measurements at the last generation.
fn theory_table(run: &RunData, summary: &[Vec<Summary>]) -> Option<String> {
    if run.theory.is_empty() {
        return None;
    }
    let header: Vec<String> = [
        "metric",
        "generation",
        "theory",
        "measured",
        "z",
        "closed form",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = run
        .theory
        .iter()
        .filter_map(|(m, curve, source)| {
            let col = run.names.iter().position(|n| n == m)?;
            let &(g, t) = curve.last()?;
            let v = summary.get(g)?[col];
            let z = (v.mean - t) / v.se();
            Some(vec![
                escape(m),
                g.to_string(),
                number(t),
                mean_se(&v),
                if z.is_finite() {
                    format!("{z:.2}")
                } else {
                    "–".into()
                },
                escape(source),
            ])
        })
        .collect();
    Some(html::table(
        "The closed form at the last generation beside the measured mean ± standard error over seeds; z = (mean − theory)/se, and |z| > 4 is worth a look.",
        &header,
        &rows,
        &["", "num", "num", "num", "num", "wide"],
    ))
}

/// The experiment in words from a resolved `config.toml`.
fn describe(t: &toml::Table, seeds: usize) -> String {
    let get = |table: &str, key: &str| t.get(table).and_then(|v| v.get(key)).map(value);
    let keys = |table: &str, skip: &[&str]| -> String {
        t.get(table)
            .and_then(|v| v.as_table())
            .map(|tb| {
                tb.iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .map(|(k, v)| format!("{k} = {}", value(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let target = get("target", "kind").unwrap_or_default();
    let learner = get("model", "kind").unwrap_or_default();
    let schedule = get("loop", "schedule").unwrap_or_default();
    let how = match schedule.as_str() {
        "replace" => {
            "each generation trains only on train_size samples of the one before (fully synthetic)"
        }
        "augment" => {
            "each generation trains on the fixed real set plus synthetic samples of the one before"
        }
        "fresh" => {
            "each generation trains on train_size points, a fresh_fraction of them new real draws and the rest samples of the one before"
        }
        "accumulate" => {
            "each generation trains on the real data and every earlier generation's samples"
        }
        "accumulate-subsample" => {
            "each generation trains on a subsample of the real data and every earlier generation's samples"
        }
        _ => "",
    };
    let top = |k: &str| t.get(k).map(value).unwrap_or_default();
    let first: u64 = t.get("seed").and_then(|v| v.as_integer()).unwrap_or(0) as u64;
    let repeats = t.get("repeats").and_then(|v| v.as_integer()).unwrap_or(1) as u64;
    format!(
        "<dl class=\"facts\"><dt>target</dt><dd><b>{}</b> ({})</dd><dt>learner</dt><dd><b>{}</b> ({})</dd>\
         <dt>loop</dt><dd><b>{}</b>: {} ({})</dd><dt>size</dt><dd>{} generations, {} samples a generation</dd>\
         <dt>seeds</dt><dd>{}{}</dd></dl>",
        escape(&target),
        escape(&keys("target", &["kind"])),
        escape(&learner),
        escape(&keys("model", &["kind"])),
        escape(&schedule),
        how,
        escape(&keys("loop", &["schedule"])),
        escape(&top("generations")),
        escape(&top("samples_per_generation")),
        if repeats <= 1 {
            format!("{first}")
        } else {
            format!("{first}–{} ({repeats} repeats)", first + repeats - 1)
        },
        if seeds as u64 != repeats {
            format!(" ({seeds} finished)")
        } else {
            String::new()
        }
    )
}

/// A TOML value as text: strings without quotes, arrays compact.
fn value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Float(f) => number(*f),
        toml::Value::Array(a) if a.len() > 6 => {
            let head: Vec<String> = a.iter().take(4).map(value).collect();
            format!("[{}, … ({} values)]", head.join(", "), a.len())
        }
        toml::Value::Array(a) => {
            format!("[{}]", a.iter().map(value).collect::<Vec<_>>().join(", "))
        }
        other => other.to_string(),
    }
}

/// `config.toml` (or any text file) folded away.
fn folded(title: &str, text: &str) -> String {
    format!(
        "<details><summary>{}</summary><pre>{}</pre></details>",
        escape(title),
        escape(text)
    )
}

/// The sessions in `dir`'s provenance.toml, as a table, and how to rerun.
fn provenance_html(dir: &Path) -> Result<String> {
    let p = match provenance::read(dir) {
        Ok(p) => p,
        Err(e) => {
            return Ok(format!(
                "<p class=\"note\">The commands that wrote this folder are not known: {}</p>",
                escape(&e.to_string())
            ));
        }
    };
    if p.session.is_empty() {
        return Ok(format!(
            "<p class=\"note\">{} has no {}: it was written by the library, by a Slurm task, or \
             by an ouro older than 0.1.</p>",
            escape(&dir.display().to_string()),
            provenance::FILE
        ));
    }
    let header: Vec<String> = [
        "command",
        "started (UTC)",
        "seconds",
        "cores / threads",
        "processor",
        "ouro",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = p
        .session
        .iter()
        .map(|s| {
            vec![
                format!(
                    "<code>{}</code><br><span class=\"note\">in {}</span>",
                    escape(&s.command),
                    escape(&s.cwd)
                ),
                escape(&s.started),
                number(s.seconds),
                format!("{} / {}", s.cores, s.threads),
                escape(&s.cpu),
                escape(&s.ouro),
            ]
        })
        .collect();
    Ok(html::table(
        &format!(
            "The commands that wrote {} ({}).",
            escape(&dir.display().to_string()),
            provenance::FILE
        ),
        &header,
        &rows,
        &["wide", "", "num", "num", "", ""],
    ))
}

/// The line saying which ouro made the page, when and on how many cores, and how to rerun
/// (`rerun`, HTML).
fn made_by(rerun: &str) -> String {
    format!(
        "<p class=\"note\">This page: ouro {}, <code>{}</code>, {} UTC, on a machine with {} cores{}. It \
         reads only the folder's files. {rerun}</p>",
        env!("CARGO_PKG_VERSION"),
        escape(&provenance::command_line(std::env::args())),
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        {
            let cpu = provenance::cpu_name();
            if cpu.is_empty() {
                String::new()
            } else {
                format!(" ({})", escape(&cpu))
            }
        }
    )
}

/// The experiment of a resolved `config.toml`, for its real points and image side.
fn experiment_of(dir: &Path) -> Result<Experiment> {
    let path = dir.join("config.toml");
    Experiment::new(Config::load(&path, &[])?)
}

/// How the samples of an experiment are drawn: image grids or scatters.
enum Drawing {
    Images {
        side: (usize, usize),
        range: (f32, f32),
        scale: usize,
    },
    Scatter {
        real: Option<Array2<f32>>,
        view: Option<View>,
        dim: usize,
    },
}

impl Drawing {
    /// For experiment `exp`, seed `seed`: the real images' grey range, or the seed's real
    /// reference points.
    fn of(exp: &Experiment, seed: u64) -> Drawing {
        match exp.target.image_side().zip(exp.target.dataset()) {
            Some((side, data)) => {
                let p = super::Picture::new(side, data.points.view());
                Drawing::Images {
                    side,
                    range: p.range,
                    scale: p.scale,
                }
            }
            None => {
                let real = exp
                    .target
                    .realize(seed, exp.metrics.eval_samples)
                    .reference
                    .clone();
                Drawing::Scatter {
                    view: Some(View::around(real.view())),
                    real: Some(real),
                    dim: exp.target.dim(),
                }
            }
        }
    }

    /// A picture of `points` (with `labels`, a row per class for images).
    fn draw(&mut self, points: &Array2<f32>, labels: Option<&[u32]>) -> Raster {
        match self {
            Drawing::Images { side, range, scale } => {
                let cells = super::grid_cells(labels, points.nrows(), 10, 10);
                thumbnail::image_grid(points.view(), *side, &cells, *range, *scale)
            }
            Drawing::Scatter { real, view, .. } => {
                let v = *view.get_or_insert_with(|| View::around(points.view()));
                thumbnail::scatter(
                    real.as_ref().map(|r| r.view()),
                    points.view(),
                    v,
                    SCATTER_PX,
                )
            }
        }
    }

    /// What the pictures show, for captions.
    fn explain(&self) -> String {
        match self {
            Drawing::Images { .. } => {
                "a row per class (for a class-conditional model), else the first 100".into()
            }
            Drawing::Scatter { real, dim, .. } => {
                let coords = if *dim > 2 {
                    format!("the first two of {dim} coordinates; ")
                } else {
                    String::new()
                };
                let real = if real.is_some() {
                    "blue: up to 2 000 samples, grey: the seed's held-out real points, same axes in every picture"
                } else {
                    "up to 2 000 samples, same axes in every picture"
                };
                format!("{coords}{real}")
            }
        }
    }
}

/// Samples and labels of a saved generation (`stem` without extension).
fn read_set(stem: &Path) -> Result<(Array2<f32>, Option<Vec<u32>>)> {
    let x = read_npy(&stem.with_extension("npy"))?;
    let lp = stem.with_extension("labels.npy");
    let labels = if lp.is_file() {
        Some(crate::data::read_labels(&lp, x.nrows(), "sample")?)
    } else {
        None
    };
    Ok((x, labels))
}

/// The saved generations of `seed` in a run folder: (generation, path stem).
fn saved_generations(dir: &Path, seed: u64) -> Vec<(usize, PathBuf)> {
    let sd = dir.join("samples").join(format!("seed-{seed}"));
    let mut out: Vec<(usize, PathBuf)> = std::fs::read_dir(&sd)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let g = name.strip_prefix("gen-")?.strip_suffix(".npy")?;
            let g: usize = g.parse().ok()?;
            Some((g, sd.join(format!("gen-{g:03}"))))
        })
        .collect();
    out.sort();
    out
}

/// The samples section of a run: the real data (images) and up to [`THUMBNAILS`] saved
/// generations of its first seed.
fn samples_html(run: &RunData) -> Result<Option<String>> {
    let Some(&seed) = run.seeds().first() else {
        return Ok(None);
    };
    let saved = saved_generations(&run.dir, seed);
    if saved.is_empty() {
        return Ok(Some(
            "<p class=\"note\">No samples were saved (save_samples = false).</p>".into(),
        ));
    }
    let exp = match experiment_of(&run.dir) {
        Ok(e) => e,
        Err(e) => {
            return Ok(Some(format!(
                "<p class=\"note\">The samples cannot be drawn: the run's config does not load here ({}).</p>",
                escape(&e.to_string())
            )));
        }
    };
    let mut drawing = Drawing::of(&exp, seed);
    let picks = evenly_spaced(saved.len(), THUMBNAILS);
    let mut s = String::new();
    let images = matches!(drawing, Drawing::Images { .. });
    if images && let Some(data) = exp.target.dataset() {
        let real = drawing.draw(&data.points, data.labels.as_deref());
        s.push_str(r#"<div class="images">"#);
        s.push_str(&html::figure(
            "real",
            &html::png(&real.png(), "the real images"),
            "<b>Real images</b>: the data set, a row per class.",
        ));
    } else {
        s.push_str(r#"<div class="thumbs">"#);
    }
    for &i in &picks {
        let (g, stem) = &saved[i];
        let (x, labels) = read_set(stem)?;
        let pic = drawing.draw(&x, labels.as_deref());
        s.push_str(&html::figure(
            "samples",
            &html::png(&pic.png(), &format!("samples of generation {g}")),
            &format!("<b>Generation {g}</b>, seed {seed}"),
        ));
    }
    s.push_str("</div>");
    let shown: Vec<String> = picks.iter().map(|&i| saved[i].0.to_string()).collect();
    write!(
        s,
        "<p class=\"note\">Samples of seed {seed} at generations {} ({} of {} saved): {}.</p>",
        shown.join(", "),
        picks.len(),
        saved.len(),
        drawing.explain()
    )
    .unwrap();
    Ok(Some(s))
}

fn run_page(dir: &Path) -> Result<Page> {
    let run = RunData::load(dir)?;
    let name = folder_name(dir);
    let group = Group::new(0, name.clone(), run);
    let mut sections = vec![Section {
        id: "experiment".into(),
        heading: "Experiment".into(),
        body: format!(
            "{}{}",
            group.run.describe(),
            group
                .run
                .config
                .as_deref()
                .map(|c| folded("config.toml (rerun it with ouro run)", c))
                .unwrap_or_default()
        ),
    }];
    sections.push(Section {
        id: "metrics".into(),
        heading: "Metrics by generation".into(),
        body: metric_charts(std::slice::from_ref(&group), false)?,
    });
    if let Some(t) = theory_table(&group.run, &group.summary) {
        sections.push(Section {
            id: "theory".into(),
            heading: "Theory".into(),
            body: t,
        });
    }
    sections.push(Section {
        id: "last".into(),
        heading: "Last generation".into(),
        body: per_metric_table(&group),
    });
    if let Some(s) = samples_html(&group.run)? {
        sections.push(Section {
            id: "samples".into(),
            heading: "Samples".into(),
            body: s,
        });
    }
    sections.push(Section {
        id: "provenance".into(),
        heading: "Where the numbers came from".into(),
        body: provenance_html(dir)? + &made_by("It reruns with <code>ouro run DIR/config.toml --out NEW</code>: the same bytes, provenance.toml apart."),
    });
    let seeds = group.run.seeds().len();
    Ok(Page {
        title: format!("Run {name}"),
        subtitle: format!(
            "{} generations × {} seed{}, {} metrics",
            group.summary.len(),
            seeds,
            if seeds == 1 { "" } else { "s" },
            group.run.names.len()
        ),
        sections,
    })
}

/// The last generation of one run: a row per metric.
fn per_metric_table(g: &Group) -> String {
    let Some(last) = g.summary.last() else {
        return String::new();
    };
    let header: Vec<String> = ["metric", "mean ± se", "10%", "90%", "seeds"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let rows: Vec<Vec<String>> = g
        .run
        .names
        .iter()
        .zip(last)
        .map(|(m, v)| {
            vec![
                escape(m),
                mean_se(v),
                number(v.q10),
                number(v.q90),
                v.count.to_string(),
            ]
        })
        .collect();
    html::table(
        &format!(
            "Generation {}: mean ± standard error over seeds and the 10% and 90% quantiles.",
            g.summary.len() - 1
        ),
        &header,
        &rows,
        &["", "num", "num", "num", "num"],
    )
}

fn folder_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string())
}

/// The cells of a study folder: (index, axis values as `key = value`).
fn study_axes(dir: &Path) -> Result<CellAxes> {
    let path = dir.join("cells.csv");
    let bad = |e: String| Error::data(&path, format!("not a cells.csv written by ouro: {e}"));
    let mut r = csv::Reader::from_path(&path).map_err(|e| bad(e.to_string()))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let i: usize = rec
            .get(0)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("row {rec:?}")))?;
        let values = header
            .iter()
            .skip(1)
            .zip(rec.iter().skip(1))
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        out.push((i, values));
    }
    Ok(out)
}

/// `fresh_fraction = 0.1, bandwidth = 0.6` (`cell 000` for a study without axes).
fn cell_label(index: usize, values: &[(String, String)]) -> String {
    if values.is_empty() {
        return format!("cell {index:03}");
    }
    values
        .iter()
        .map(|(k, v)| format!("{} = {v}", k.rsplit('.').next().unwrap_or(k)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The finished cells of a study folder: (label, run).
fn study_cells(dir: &Path) -> Result<Vec<(String, RunData)>> {
    let mut out = Vec::new();
    for (i, values) in study_axes(dir)? {
        let cell = dir.join("cells").join(format!("{i:03}"));
        if cell.join("metrics.csv").is_file() && !cell.join("checkpoint").exists() {
            out.push((cell_label(i, &values), RunData::load(&cell)?));
        }
    }
    Ok(out)
}

/// The sections of a study's measurements (charts, last generation per cell, the last saved
/// generation's samples of each cell), their ids prefixed by `prefix`.
fn study_sections(dir: &Path, prefix: &str, samples: bool) -> Result<Vec<Section>> {
    let axes = study_axes(dir)?;
    let groups: Vec<Group> = study_cells(dir)?
        .into_iter()
        .enumerate()
        .map(|(i, (label, run))| Group::new(i, label, run))
        .collect();
    let mut sections = Vec::new();
    if groups.is_empty() {
        sections.push(Section {
            id: format!("{prefix}metrics"),
            heading: "Metrics by generation".into(),
            body: "<p class=\"note\">No cell has finished yet.</p>".into(),
        });
        return Ok(sections);
    }
    sections.push(Section {
        id: format!("{prefix}metrics"),
        heading: "Metrics by generation".into(),
        body: format!(
            "<p class=\"note\">{} of {} cells finished.{}</p>{}",
            groups.len(),
            axes.len(),
            if groups.len() > 1 {
                " Tick a cell to show or hide its lines."
            } else {
                ""
            },
            metric_charts(&groups, true)?
        ),
    });
    sections.push(Section {
        id: format!("{prefix}last"),
        heading: "Last generation per cell".into(),
        body: last_generation_table(&groups),
    });
    if samples {
        let mut s = String::from(r#"<div class="thumbs">"#);
        let mut explain = String::new();
        let mut any = false;
        for g in &groups {
            let Some(&seed) = g.run.seeds().first() else {
                continue;
            };
            let Some((generation, stem)) = saved_generations(&g.run.dir, seed).pop() else {
                continue;
            };
            let Ok(exp) = experiment_of(&g.run.dir) else {
                continue;
            };
            let mut drawing = Drawing::of(&exp, seed);
            let (x, labels) = read_set(&stem)?;
            let pic = drawing.draw(&x, labels.as_deref());
            explain = drawing.explain();
            any = true;
            s.push_str(&html::figure(
                "samples",
                &format!(
                    r#"<div data-group="{}">{}</div>"#,
                    g.id,
                    html::png(&pic.png(), &format!("samples of {}", g.label))
                ),
                &format!(
                    r#"<span class="swatch" style="background:{}"></span> <b>{}</b>: generation {generation}, seed {seed}"#,
                    svg::color(g.id),
                    escape(&g.label)
                ),
            ));
        }
        s.push_str("</div>");
        if any {
            write!(
                s,
                "<p class=\"note\">The last saved generation of each cell, its first seed: {explain}.</p>"
            )
            .unwrap();
            sections.push(Section {
                id: format!("{prefix}samples"),
                heading: "Samples at the last generation".into(),
                body: s,
            });
        }
    }
    Ok(sections)
}

fn study_page(dir: &Path) -> Result<Page> {
    let name = folder_name(dir);
    let axes = study_axes(dir)?;
    let study_text = std::fs::read_to_string(dir.join("study.toml")).map_err(|e| {
        Error::io(
            format!("cannot read {}", dir.join("study.toml").display()),
            e,
        )
    })?;
    let base = study_cells(dir)?
        .into_iter()
        .next()
        .map(|(_, run)| run.describe())
        .unwrap_or_default();
    let mut cells = String::new();
    let header: Vec<String> = std::iter::once("cell".to_string())
        .chain(
            axes.first()
                .into_iter()
                .flat_map(|(_, v)| v.iter().map(|(k, _)| escape(k))),
        )
        .chain(std::iter::once("status".to_string()))
        .collect();
    let rows: Vec<Vec<String>> = axes
        .iter()
        .map(|(i, values)| {
            let cell = dir.join("cells").join(format!("{i:03}"));
            let status = if cell.with_extension("error").is_file() {
                "failed"
            } else if cell.join("metrics.csv").is_file() && !cell.join("checkpoint").exists() {
                "finished"
            } else if cell.exists() {
                "partial"
            } else {
                "pending"
            };
            std::iter::once(format!("{i:03}"))
                .chain(values.iter().map(|(_, v)| escape(v)))
                .chain(std::iter::once(status.to_string()))
                .collect()
        })
        .collect();
    cells.push_str(&html::table("The cells of the grid.", &header, &rows, &[]));
    let mut sections = vec![Section {
        id: "experiment".into(),
        heading: "Study".into(),
        body: format!(
            "<p>A grid of {} cells over {}; every cell is an ordinary run folder under <code>cells/NNN/</code>. The first cell's experiment:</p>{base}{cells}{}",
            axes.len(),
            axes.first()
                .map(|(_, v)| v
                    .iter()
                    .map(|(k, _)| format!("<code>{}</code>", escape(k)))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            folded("study.toml", &study_text)
        ),
    }];
    sections.extend(study_sections(dir, "", true)?);
    sections.push(Section {
        id: "provenance".into(),
        heading: "Where the numbers came from".into(),
        body: provenance_html(dir)?
            + &made_by(
                "Each cell reruns with <code>ouro run DIR/cells/NNN/config.toml --out NEW</code>.",
            ),
    });
    Ok(Page {
        title: format!("Study {name}"),
        subtitle: format!("{} cells", axes.len()),
        sections,
    })
}

/// The columns of `reconstruction.csv`: names and rows (t first).
fn read_reconstruction(dir: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let path = dir.join("reconstruction.csv");
    let bad = |e: String| {
        Error::data(
            &path,
            format!("not a reconstruction.csv written by ouro: {e}"),
        )
    };
    let mut r = csv::Reader::from_path(&path).map_err(|e| bad(e.to_string()))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(String::from)
        .collect();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let row = rec
            .iter()
            .map(|v| v.parse::<f64>().map_err(|_| bad(format!("value {v:?}"))))
            .collect::<Result<Vec<f64>>>()?;
        if row.len() != header.len() {
            return Err(bad(format!("row of {} fields", row.len())));
        }
        rows.push(row);
    }
    Ok((header, rows))
}

/// The sections of a reconstruction sweep, ids prefixed by `prefix`.
fn reconstruction_sections(dir: &Path, prefix: &str) -> Result<Vec<Section>> {
    let (header, rows) = read_reconstruction(dir)?;
    let mut charts = String::from(r#"<div class="charts">"#);
    for (c, name) in header.iter().enumerate().skip(2) {
        let chart = Chart {
            title: name.clone(),
            x_label: "t (the time the real points were noised to)".into(),
            series: vec![Series {
                group: 0,
                dashed: false,
                points: rows
                    .iter()
                    .map(|r| Point {
                        x: r[0],
                        y: r[c],
                        band: (f64::NAN, f64::NAN),
                        outer: (f64::NAN, f64::NAN),
                        tip: format!("t = {}: {name} = {}", number(r[0]), number(r[c])),
                    })
                    .collect(),
            }],
        };
        let caption = format!(
            "<b>{}</b>: {} {}",
            escape(name),
            escape(match name.as_str() {
                "rms_distance" =>
                    "root-mean-square distance between each real point and its reconstruction.",
                "accuracy" =>
                    "held-out real accuracy of a classifier trained on the reconstructions with the originals' labels.",
                other => description(other),
            })
            .replace('`', ""),
            escape(reading(name))
        );
        charts.push_str(&html::figure("metric", &chart.svg(), &caption));
    }
    charts.push_str("</div>");
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|v| number(*v)).collect())
        .collect();
    let table = html::table(
        "reconstruction.csv: a row per t (σ the noise level at t).",
        &header.iter().map(|h| escape(h)).collect::<Vec<_>>(),
        &table_rows,
        &vec!["num"; header.len()],
    );
    let mut sections = vec![Section {
        id: format!("{prefix}measures"),
        heading: "Measures against t".into(),
        body: charts + &table,
    }];
    // The original set and each t's reconstruction.
    let original = dir.join("original");
    if original.with_extension("npy").is_file() {
        let (orig, _) = read_set(&original)?;
        let labels_path = dir.join("labels.npy");
        let labels = if labels_path.is_file() {
            Some(crate::data::read_labels(
                &labels_path,
                orig.nrows(),
                "original point",
            )?)
        } else {
            None
        };
        let exp = experiment_of(dir).ok();
        let mut drawing = match exp
            .as_ref()
            .and_then(|e| e.target.image_side().zip(e.target.dataset()))
        {
            Some((side, data)) => {
                let p = super::Picture::new(side, data.points.view());
                Drawing::Images {
                    side,
                    range: p.range,
                    scale: p.scale,
                }
            }
            None => Drawing::Scatter {
                view: Some(View::around(orig.view())),
                real: Some(orig.clone()),
                dim: orig.ncols(),
            },
        };
        let images = matches!(drawing, Drawing::Images { .. });
        let mut s = String::from(if images {
            r#"<div class="images">"#
        } else {
            r#"<div class="thumbs">"#
        });
        if images {
            let pic = drawing.draw(&orig, labels.as_deref());
            s.push_str(&html::figure(
                "real",
                &html::png(&pic.png(), "the original points"),
                "<b>Original</b>: the real points that were noised.",
            ));
        }
        let picks = evenly_spaced(rows.len(), THUMBNAILS);
        for &i in &picks {
            let t = rows[i][0];
            let stem = dir.join("reconstructed").join(format!("t-{t}"));
            if !stem.with_extension("npy").is_file() {
                continue;
            }
            let (x, _) = read_set(&stem)?;
            let pic = drawing.draw(&x, labels.as_deref());
            s.push_str(&html::figure(
                "samples",
                &html::png(
                    &pic.png(),
                    &format!("reconstructions from t = {}", number(t)),
                ),
                &format!("<b>t = {}</b> (σ = {})", number(t), number(rows[i][1])),
            ));
        }
        s.push_str("</div>");
        let explain = match &drawing {
            Drawing::Images { .. } => {
                "each image is the reconstruction of the original in the same place".to_string()
            }
            Drawing::Scatter { dim, .. } => format!(
                "{}blue: reconstructions, grey: the originals",
                if *dim > 2 {
                    format!("the first two of {dim} coordinates; ")
                } else {
                    String::new()
                }
            ),
        };
        write!(
            s,
            "<p class=\"note\">The real points noised to t and sampled back: {explain}.</p>"
        )
        .unwrap();
        sections.push(Section {
            id: format!("{prefix}pictures"),
            heading: "Reconstructions".into(),
            body: s,
        });
    }
    Ok(sections)
}

fn reconstruction_page(dir: &Path) -> Result<Page> {
    let name = folder_name(dir);
    let config = std::fs::read_to_string(dir.join("config.toml")).ok();
    let mut sections = vec![Section {
        id: "experiment".into(),
        heading: "Reconstruction".into(),
        body: format!(
            "<p>Yamaguchi &amp; Fukuda's reconstruction: the diffusion model is fitted on the real training set; those points are noised to each t and sampled back.</p>{}{}",
            config
                .as_deref()
                .and_then(|c| c.parse::<toml::Table>().ok())
                .map(|t| describe(&t, 1))
                .unwrap_or_default(),
            config
                .as_deref()
                .map(|c| folded("config.toml", c))
                .unwrap_or_default()
        ),
    }];
    sections.extend(reconstruction_sections(dir, "")?);
    sections.push(Section {
        id: "provenance".into(),
        heading: "Where the numbers came from".into(),
        body: provenance_html(dir)? + &made_by("It reruns with the command above."),
    });
    Ok(Page {
        title: format!("Reconstruction {name}"),
        subtitle: "measures and pictures against the noising time t".into(),
        sections,
    })
}

fn reproduction_page(dir: &Path) -> Result<Page> {
    let path = dir.join("claims.csv");
    let bad = |e: String| Error::data(&path, format!("not a claims.csv written by ouro: {e}"));
    let mut r = csv::Reader::from_path(&path).map_err(|e| bad(e.to_string()))?;
    let mut rows = Vec::new();
    let mut paper = String::new();
    let (mut holds, mut total) = (0, 0);
    for rec in r.records() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        if rec.len() != 6 {
            return Err(bad(format!("row of {} fields", rec.len())));
        }
        paper = rec[0].to_string();
        let verdict = &rec[5];
        total += 1;
        let class = if verdict == "holds" {
            holds += 1;
            "holds"
        } else {
            "fails"
        };
        rows.push(vec![
            escape(&rec[1]),
            escape(&rec[2]),
            escape(&rec[3]),
            escape(&rec[4]),
            format!(
                r#"<span class="verdict {class}">{}</span>"#,
                escape(verdict)
            ),
        ]);
    }
    let header: Vec<String> = ["", "claim", "checked by", "measured", "verdict"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut sections = vec![Section {
        id: "claims".into(),
        heading: "Claims".into(),
        body: html::table(
            "Each claim of the paper, the rule that judges it from the measurements, what was measured, and the verdict.",
            &header,
            &rows,
            &["num", "wide", "wide", "wide", ""],
        ),
    }];
    let mut subs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subs.sort();
    for sub in subs {
        let name = sub
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!("{name}-");
        let inner = match kind(&sub) {
            Ok(Kind::Study) => study_sections(&sub, &prefix, false)?,
            Ok(Kind::Reconstruction) => reconstruction_sections(&sub, &prefix)?,
            _ => continue,
        };
        let mut body = String::new();
        for s in inner {
            write!(body, "<h3>{}</h3>{}", escape(&s.heading), s.body).unwrap();
        }
        sections.push(Section {
            id: name.clone(),
            heading: name.clone(),
            body,
        });
    }
    sections.push(Section {
        id: "provenance".into(),
        heading: "Where the numbers came from".into(),
        body: provenance_html(dir)? + &made_by("It reruns with the command above."),
    });
    Ok(Page {
        title: format!("Reproduction of {paper}"),
        subtitle: format!("{holds} of {total} claims hold"),
        sections,
    })
}
