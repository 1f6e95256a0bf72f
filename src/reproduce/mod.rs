//! `ouro reproduce PAPER`: a seed paper's headline question asked again at CPU scale. Each paper
//! runs its studies (see [`crate::experiment::study`]) into `DIR/NAME/`, judges its claims against
//! the measurements and writes `DIR/claims.csv`, `DIR/claims.md` and a figure per study,
//! `DIR/figure-NAME.png`.
//!
//! A claim's verdict is decided by a rule stated with it (a closed form within 4 standard errors,
//! an ordering by more than 2 standard errors, …), from the numbers alone: a claim that the
//! measurement contradicts is reported as not holding, with the numbers.

mod bertrand2024;
mod fu2024;
mod gerstgrasser2024;
mod khelifa2026;
mod yamaguchi2023;
mod yi2023;

use crate::error::{Error, Result};
use crate::experiment::study::{self, Study, SweepOptions};
use crate::report::Summary;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The papers `ouro reproduce` knows.
pub const PAPERS: &[Paper] = &[
    khelifa2026::PAPER,
    bertrand2024::PAPER,
    yi2023::PAPER,
    gerstgrasser2024::PAPER,
    fu2024::PAPER,
    yamaguchi2023::PAPER,
];

/// A paper: its name on the command line, its reference, and what runs it.
pub struct Paper {
    /// `khelifa2026`.
    pub name: &'static str,
    /// Authors, year and title.
    pub reference: &'static str,
    /// Its studies at full scale: (name, study file with inline keys), run into `DIR/NAME/`.
    pub studies: &'static [(&'static str, &'static str)],
    /// `--set` overrides that make each study a one-minute run (`--quick`), per study.
    pub quick: &'static [&'static [&'static str]],
    /// Its reconstruction sweeps (`ouro reconstruct`), run into `DIR/NAME/`.
    pub reconstructions: &'static [Reconstruction],
    /// Judges the claims from the finished studies (each with its folder).
    pub judge: Judge,
}

/// A reconstruction sweep of a paper: an experiment noised to each time and sampled back.
pub struct Reconstruction {
    /// Its folder under `DIR`.
    pub name: &'static str,
    /// The experiment's config.
    pub config: &'static str,
    /// The times t of the sweep, in the schedule's units.
    pub times: &'static [f64],
    /// `--set` overrides for `--quick`.
    pub quick: &'static [&'static str],
}

/// What a paper's claims are judged from: its finished studies and reconstruction sweeps, each
/// with its folder.
pub struct Finished {
    /// The studies in the order of [`Paper::studies`].
    pub studies: Vec<(Study, PathBuf)>,
    /// The sweeps in the order of [`Paper::reconstructions`].
    pub reconstructions: Vec<(crate::experiment::reconstruct::Sweep, PathBuf)>,
}

/// Judges a paper's claims from what it ran.
pub type Judge = fn(&Finished) -> Result<Vec<Claim>>;

/// What a paper says, ouro's measurement and the verdict.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The paper's statement.
    pub statement: &'static str,
    /// The closed form or rule it is checked against.
    pub rule: String,
    /// ouro's measurement (with its standard error).
    pub measured: String,
    /// The verdict.
    pub verdict: Verdict,
}

/// Whether a measurement bears a claim out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The measurement agrees within the stated rule.
    Holds,
    /// The measurement contradicts it.
    DoesNotHold,
}

impl Verdict {
    /// `holds` or `does not hold`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
        }
    }

    /// [`Verdict::Holds`] when `ok`.
    pub fn from(ok: bool) -> Verdict {
        if ok {
            Verdict::Holds
        } else {
            Verdict::DoesNotHold
        }
    }
}

/// Options of `ouro reproduce`.
#[derive(Clone, Debug)]
pub struct ReproduceOptions {
    /// The one-minute version.
    pub quick: bool,
    /// Cells run at once.
    pub jobs: usize,
    /// Worker threads in all (0: all cores).
    pub threads: usize,
    /// Replace `out` if it exists.
    pub force: bool,
}

/// Runs `paper` into `out` and returns its claims.
pub fn reproduce(name: &str, out: &Path, opts: &ReproduceOptions) -> Result<Vec<Claim>> {
    let paper = PAPERS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PAPERS.iter().map(|p| p.name).collect();
        Error::Run(format!(
            "unknown paper `{name}`; expected one of {}",
            names.join(", ")
        ))
    })?;
    if out.exists() && !opts.force && std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Run(format!(
            "{} already exists; choose another --out or pass --force to replace it",
            out.display()
        )));
    }
    let mut done = Vec::new();
    for (i, (name, text)) in paper.studies.iter().enumerate() {
        let set: Vec<String> = match (opts.quick, paper.quick.get(i)) {
            (true, Some(q)) => q.iter().map(|s| s.to_string()).collect(),
            _ => Vec::new(),
        };
        let study = Study::from_text(text.to_string(), Path::new("."), &set)?;
        let dir = out.join(name);
        let report = study::sweep(
            &study,
            &dir,
            &SweepOptions {
                jobs: opts.jobs,
                threads: opts.threads,
                only: None,
                force: true,
                resume: false,
                progress: true,
            },
        )?;
        if let Some((c, e)) = report.failed.first() {
            return Err(Error::Run(format!(
                "{} ({name}): cell {c:03} failed: {e}",
                paper.name
            )));
        }
        std::fs::copy(
            dir.join("study.png"),
            out.join(format!("figure-{name}.png")),
        )
        .map_err(|e| Error::io("cannot copy the figure", e))?;
        done.push((study, dir));
    }
    let mut sweeps = Vec::new();
    for r in paper.reconstructions {
        let set: Vec<String> = if opts.quick {
            r.quick.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        };
        let exp =
            crate::experiment::Experiment::new(crate::config::Config::parse(r.config, &set)?)?;
        let dir = out.join(r.name);
        println!(
            "{}: reconstruction {} (t = {:?})",
            paper.name, r.name, r.times
        );
        let sweep = crate::experiment::with_threads(opts.threads, || {
            crate::experiment::reconstruct::reconstruct(&exp, r.times, &dir, true)
        })??;
        std::fs::copy(
            dir.join("reconstruction.png"),
            out.join(format!("figure-{}.png", r.name)),
        )
        .map_err(|e| Error::io("cannot copy the figure", e))?;
        sweeps.push((sweep, dir));
    }
    let claims = (paper.judge)(&Finished {
        studies: done,
        reconstructions: sweeps,
    })?;
    crate::experiment::run_dir::write_file(
        &out.join("claims.csv"),
        claims_csv(paper, &claims).as_bytes(),
    )?;
    crate::experiment::run_dir::write_file(
        &out.join("claims.md"),
        claims_md(paper, &claims, opts.quick).as_bytes(),
    )?;
    Ok(claims)
}

/// A CSV field in quotes (doubling inner quotes).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn claims_csv(paper: &Paper, claims: &[Claim]) -> String {
    let mut s = String::from("paper,claim,statement,rule,measured,verdict\n");
    for (i, c) in claims.iter().enumerate() {
        writeln!(
            s,
            "{},{},{},{},{},{}",
            paper.name,
            i + 1,
            quoted(c.statement),
            quoted(&c.rule),
            quoted(&c.measured),
            c.verdict.name()
        )
        .expect("string write");
    }
    s
}

fn claims_md(paper: &Paper, claims: &[Claim], quick: bool) -> String {
    let mut s = format!("# {}\n\n{}\n\n", paper.name, paper.reference);
    if quick {
        s.push_str("Run with `--quick` (fewer seeds, generations and points): a smoke test of the claims, not their measurement.\n\n");
    }
    s.push_str("| # | claim | checked by | measured | verdict |\n|---|---|---|---|---|\n");
    for (i, c) in claims.iter().enumerate() {
        let cell = |t: &str| t.replace('|', "\\|");
        writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            i + 1,
            cell(c.statement),
            cell(&c.rule),
            cell(&c.measured),
            c.verdict.name()
        )
        .expect("string write");
    }
    let names: Vec<String> = paper
        .studies
        .iter()
        .map(|(n, _)| n)
        .chain(paper.reconstructions.iter().map(|r| &r.name))
        .map(|n| format!("`figure-{n}.png` (data: `{n}/`)"))
        .collect();
    writeln!(
        s,
        "\nFigures: {} — each study's metrics per cell with theory dashed; each reconstruction's \
         measures against t.",
        names.join(", ")
    )
    .expect("string write");
    s
}

/// The summary of `metric` at the last generation of a cell (`names`, per-generation summaries).
pub(crate) fn last(names: &[String], summary: &[Vec<Summary>], metric: &str) -> Result<Summary> {
    let m = names
        .iter()
        .position(|n| n == metric)
        .ok_or_else(|| Error::Run(format!("the study has no metric {metric}")))?;
    summary
        .last()
        .map(|s| s[m])
        .ok_or_else(|| Error::Run("a cell has no generations".into()))
}

/// The closed-form expectation of `metric` at generation `g` of a cell (NaN when none applies).
pub(crate) fn expected_at(cell: &crate::experiment::study::Cell, metric: &str, g: usize) -> f64 {
    crate::theory::predictions(&cell.experiment)
        .into_iter()
        .find(|p| p.metric == metric)
        .and_then(|p| p.values.get(g).copied())
        .unwrap_or(f64::NAN)
}

/// The number value of the axis `key` of a cell.
pub(crate) fn axis(cell: &crate::experiment::study::Cell, key: &str) -> f64 {
    cell.values
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .unwrap_or(f64::NAN)
}
