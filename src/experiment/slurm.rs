//! Studies on a Slurm cluster: `ouro sweep STUDY --out DIR --executor slurm` writes the study
//! folder as the local executor does, then a job array `DIR/slurm/array.sbatch` with one task
//! per cell, submits it with `sbatch` and returns. Each task runs `ouro sweep DIR --cell I
//! --resume`: cell I's run folder and nothing else (tasks never write the same file), continued
//! from its last checkpoint when the task was requeued. The task that finishes the last cell
//! assembles `study.csv`, `summary.csv` and `study.png` (or `ouro sweep DIR --collect`), with the
//! local executor's code, so the bytes are the same.
//!
//! Files under `DIR/slurm/`: `array.sbatch` (the script of the last submission),
//! `submit.toml` (where the study's `base` files are and its `--set` overrides, so that tasks
//! load the same study), `jobs.csv` (`job,cells` per submission) and `logs/JOB_CELL.out`.
//!
//! Time limits and preemption: the script asks for `--requeue` and `--signal=B:USR1@120`. On
//! USR1 the script passes the signal on to ouro, which stops after the generation it is running
//! with a checkpoint (exit status [`STOPPED_EXIT`]); the script then requeues the task, which
//! resumes there. A task killed outright (scancel, a dead node) keeps its partial folder, with a
//! checkpoint at most a second old, and `ouro sweep DIR --resubmit-failed` runs it again.

use super::study::{self, Study};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The exit status of a task that stopped at a checkpoint on request (SIGUSR1), to be requeued
/// (EX_TEMPFAIL of sysexits.h).
pub const STOPPED_EXIT: i32 = 75;

/// What `sbatch` is asked for, from the command line.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time`, in one of Slurm's forms (MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS).
    pub time: Option<String>,
    /// `--cpus-per-task` (also each task's `--threads`).
    pub cpus_per_task: usize,
    /// `--mem`, e.g. 8G.
    pub mem: Option<String>,
    /// At most this many tasks at once (`--array=...%K`).
    pub max_running: Option<usize>,
    /// More `#SBATCH` options, verbatim.
    pub sbatch_args: Vec<String>,
    /// Write the script, submit nothing.
    pub dry_run: bool,
}

impl SlurmOptions {
    /// Checks every option before anything is written: one error naming the option and what it
    /// expects.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Run(m));
        if self.cpus_per_task == 0 {
            return bad("--cpus-per-task 0: expected a whole number ≥ 1".into());
        }
        if self.max_running == Some(0) {
            return bad("--max-running 0: expected a whole number ≥ 1".into());
        }
        if let Some(t) = &self.time
            && !valid_time(t)
        {
            return bad(format!(
                "--time {t:?}: expected a Slurm time limit such as 30 (minutes), 02:00:00 or \
                 1-12:00:00"
            ));
        }
        if let Some(m) = &self.mem
            && !valid_mem(m)
        {
            return bad(format!(
                "--mem {m:?}: expected a size such as 8G, 500M or 16000 (megabytes)"
            ));
        }
        if let Some(p) = &self.partition
            && (p.is_empty() || p.chars().any(|c| c.is_whitespace() || c == '#'))
        {
            return bad(format!(
                "--partition {p:?}: expected a partition name (no spaces)"
            ));
        }
        for a in &self.sbatch_args {
            if !a.starts_with('-') || a.contains('\n') {
                return bad(format!(
                    "--sbatch-arg {a:?}: expected one sbatch option such as --account=lab or \
                     --qos=long"
                ));
            }
        }
        Ok(())
    }
}

/// Slurm's time forms: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS (whole numbers).
fn valid_time(t: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, t),
    };
    // MM, MM:SS, HH:MM:SS; after "D-": HH, HH:MM, HH:MM:SS.
    let parts: Vec<&str> = rest.split(':').collect();
    days.is_none_or(number) && parts.iter().all(|p| number(p)) && parts.len() <= 3
}

/// A whole number with an optional K, M, G or T suffix.
fn valid_mem(m: &str) -> bool {
    let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    !digits.is_empty() && digits.len() + 1 >= m.len() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// What [`submit`] did.
#[derive(Debug)]
pub struct Submission {
    /// The script written.
    pub script: PathBuf,
    /// The job id `sbatch` returned (`None` for a dry run).
    pub job: Option<String>,
    /// The cells submitted.
    pub cells: Vec<usize>,
}

/// Where a submitted study's tasks find it: the folder its `base` files are relative to, and
/// the `--set` overrides (`DIR/slurm/submit.toml`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct StudySource {
    /// The folder the study file's `base` is relative to.
    pub here: PathBuf,
    /// The `--set` overrides of the base experiment.
    pub set: Vec<String>,
}

/// Writes the study folder `out` (as [`study::sweep`] starts it) and its job array, and submits
/// it unless `opts.dry_run`; `source` says where the study came from. With `resume`, an existing folder of the same study is
/// continued (its finished cells are not submitted); with `force`, it is replaced. A failed
/// submission into a new folder removes it.
pub fn submit(
    s: &Study,
    source: &StudySource,
    out: &Path,
    only: Option<&[usize]>,
    force: bool,
    resume: bool,
    opts: &SlurmOptions,
) -> Result<Submission> {
    opts.check()?;
    let fresh = !out.exists() || std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_none());
    let todo = study::prepare(s, out, only, force, resume)?;
    let result = (|| {
        let out = absolute(out)?;
        let slurm = out.join("slurm");
        std::fs::create_dir_all(slurm.join("logs"))
            .map_err(|e| Error::io(format!("cannot create {}", slurm.display()), e))?;
        let submitted = StudySource {
            here: absolute(&source.here)?,
            set: source.set.clone(),
        };
        let text = toml::to_string(&submitted).expect("plain table");
        super::run_dir::write_file(&slurm.join("submit.toml"), text.as_bytes())?;
        submit_cells(&out, &todo, opts)
    })();
    if result.is_err() && fresh && !opts.dry_run {
        let _ = std::fs::remove_dir_all(out);
    }
    result
}

/// Writes the script for `cells` of the prepared study folder `out` (absolute) and submits it.
fn submit_cells(out: &Path, cells: &[usize], opts: &SlurmOptions) -> Result<Submission> {
    let script_path = out.join("slurm").join("array.sbatch");
    let exe =
        std::env::current_exe().map_err(|e| Error::io("cannot find the ouro executable", e))?;
    let name = out
        .file_name()
        .map_or("study".into(), |n| n.to_string_lossy().into_owned());
    if cells.is_empty() {
        return Ok(Submission {
            script: script_path,
            job: None,
            cells: Vec::new(),
        });
    }
    let text = script(out, &exe, &name, cells, opts);
    super::run_dir::write_file(&script_path, text.as_bytes())?;
    let job = if opts.dry_run {
        None
    } else {
        let job = sbatch(&script_path)?;
        let jobs = out.join("slurm").join("jobs.csv");
        let mut rows = std::fs::read_to_string(&jobs).unwrap_or_else(|_| "job,cells\n".into());
        rows.push_str(&format!("{job},{}\n", array_spec(cells)));
        super::run_dir::write_file(&jobs, rows.as_bytes())?;
        Some(job)
    };
    Ok(Submission {
        script: script_path,
        job,
        cells: cells.to_vec(),
    })
}

/// `path` made absolute against the working directory (tasks start elsewhere).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path)
        .map_err(|e| Error::io(format!("cannot resolve {}", path.display()), e))
}

/// `0-3,7,9-10`: the cells as Slurm array ranges.
fn array_spec(cells: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < cells.len() {
        let mut j = i;
        while j + 1 < cells.len() && cells[j + 1] == cells[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            cells[i].to_string()
        } else {
            format!("{}-{}", cells[i], cells[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// Quotes `s` for bash (single quotes).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The job array script: one task per cell (the array index is the cell number).
fn script(out: &Path, exe: &Path, name: &str, cells: &[usize], opts: &SlurmOptions) -> String {
    let logs = out.join("slurm").join("logs");
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(
        "# Written by `ouro sweep --executor slurm`: one array task per cell of the study in\n",
    );
    s.push_str(&format!(
        "# {}. Each task runs its cell into cells/NNN/, resuming from its last\n",
        out.display()
    ));
    s.push_str(
        "# checkpoint; the task that finishes the last cell writes study.csv and summary.csv.\n",
    );
    let mut option = |k: &str, v: &str| s.push_str(&format!("#SBATCH --{k}={v}\n"));
    option("job-name", &format!("ouro-{name}"));
    let limit = opts.max_running.map_or(String::new(), |k| format!("%{k}"));
    option("array", &format!("{}{limit}", array_spec(cells)));
    option("cpus-per-task", &opts.cpus_per_task.to_string());
    if let Some(t) = &opts.time {
        option("time", t);
    }
    if let Some(m) = &opts.mem {
        option("mem", m);
    }
    if let Some(p) = &opts.partition {
        option("partition", p);
    }
    option("output", &format!("{}/%A_%a.out", logs.display()));
    option("open-mode", "append");
    option("signal", "B:USR1@120");
    s.push_str("#SBATCH --requeue\n");
    for a in &opts.sbatch_args {
        s.push_str(&format!("#SBATCH {a}\n"));
    }
    s.push_str(&format!(
        r#"
set -u
# USR1 (the time limit is 120 s away, or a preemption): ouro finishes the generation it is
# running, writes its checkpoint and exits with status {STOPPED_EXIT}; the task is then requeued.
stop() {{ kill -USR1 "$pid" 2>/dev/null; }}
trap stop USR1
{exe} sweep {out} --cell "$SLURM_ARRAY_TASK_ID" --resume --threads "${{SLURM_CPUS_PER_TASK:-1}}" --quiet &
pid=$!
status=0
while :; do
    wait "$pid"; status=$?
    # wait returns early (status > 128) when a trapped signal arrives; the child is still there.
    kill -0 "$pid" 2>/dev/null || break
done
if [ "$status" -eq {STOPPED_EXIT} ]; then
    scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
    exit 0
fi
exit "$status"
"#,
        exe = quote(&exe.to_string_lossy()),
        out = quote(&out.to_string_lossy()),
    ));
    s
}

/// Submits `script`; returns the job id.
fn sbatch(script: &Path) -> Result<String> {
    let output = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| {
            Error::Run(match e.kind() {
                std::io::ErrorKind::NotFound => "sbatch not found: --executor slurm needs Slurm's \
                    sbatch on PATH (run it on the cluster's login node, or use --executor local)"
                    .into(),
                _ => format!("cannot run sbatch: {e}"),
            })
        })?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let said: Vec<&str> = err
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        return Err(Error::Run(format!(
            "sbatch failed ({}): {}",
            output.status,
            said.join("; ")
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let job = text.trim().split(';').next().unwrap_or("").to_string();
    if job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Run(format!(
            "sbatch printed no job id (it printed {:?})",
            text.trim()
        )));
    }
    Ok(job)
}

/// The study of the submitted study folder `dir`, loaded as its tasks load it.
pub fn load(dir: &Path) -> Result<Study> {
    let path = dir.join("slurm").join("submit.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::Run(format!(
            "{}: not a study folder written by `ouro sweep --executor slurm` (cannot read {}: {e})",
            dir.display(),
            path.display()
        ))
    })?;
    let submitted: StudySource = toml::from_str(&text)
        .map_err(|e| Error::data(&path, format!("not a submit.toml written by ouro: {e}")))?;
    let study_text = std::fs::read_to_string(dir.join("study.toml"))
        .map_err(|e| Error::data(dir.join("study.toml"), format!("cannot read it: {e}")))?;
    let s = Study::from_text(study_text, &submitted.here, &submitted.set)?;
    study::check_same_study(&s, dir)?;
    Ok(s)
}

/// Runs cell `cell` of the submitted study folder `dir` as one array task (with `threads`
/// threads), continuing its partial folder; when every cell is then finished, assembles the
/// study tables unless another task is doing it.
pub fn run_task(dir: &Path, cell: usize, threads: usize) -> Result<()> {
    let s = load(dir)?;
    let Some(c) = s.cells.get(cell) else {
        return Err(Error::Run(format!(
            "--cell {cell}: the study in {} has cells 0 to {}",
            dir.display(),
            s.cells.len().saturating_sub(1)
        )));
    };
    let cells_dir = dir.join("cells");
    let _ = std::fs::remove_file(cells_dir.join(format!("{}.error", c.name())));
    let run = super::run_dir::RunOptions {
        force: true,
        threads,
        progress: true,
        resume: true,
    };
    if let Err(e) = super::run_dir::run(&c.experiment, &cells_dir.join(c.name()), &run) {
        if !matches!(e, Error::Stopped) {
            super::run_dir::write_file(
                &cells_dir.join(format!("{}.error", c.name())),
                format!("{e}\n").as_bytes(),
            )?;
        }
        return Err(e);
    }
    let all_done = s
        .cells
        .iter()
        .all(|c| cells_dir.join(c.name()).join("metrics.csv").exists());
    if all_done {
        // One collector: the task that creates the lock (two tasks that finish together both
        // see every cell done).
        let lock = dir.join("slurm").join("collect.lock");
        if std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
            .is_ok()
        {
            let r = study::write_tables(&s, dir);
            let _ = std::fs::remove_file(&lock);
            r?;
        }
    }
    Ok(())
}

/// The Slurm state of each submitted cell of `dir` (its last submission's task): from `sacct`
/// where the cluster keeps accounting (every task ever run), then `squeue` (pending, running,
/// and finished tasks the controller still remembers), the fresher; empty when nothing was
/// submitted or neither can be asked.
pub fn task_states(dir: &Path) -> std::collections::BTreeMap<usize, String> {
    let mut states = std::collections::BTreeMap::new();
    let Ok(jobs) = std::fs::read_to_string(dir.join("slurm").join("jobs.csv")) else {
        return states;
    };
    let ids: Vec<&str> = jobs
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .collect();
    if ids.is_empty() {
        return states;
    }
    let list = ids.join(",");
    let ask = |program: &str, args: &[&str]| -> String {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let sacct = ask(
        "sacct",
        &["-n", "-X", "-P", "-o", "JobID,State", "-j", &list],
    );
    let squeue = ask(
        "squeue",
        &["-h", "-t", "all", "-r", "-o", "%i|%T", "-j", &list],
    );
    // Later submissions come later in jobs.csv: their state wins for a resubmitted cell.
    let order = |job: &str| ids.iter().position(|&i| i == job).unwrap_or(0);
    let mut seen: std::collections::BTreeMap<usize, usize> = Default::default();
    for line in sacct.lines().chain(squeue.lines()) {
        let Some((id, state)) = line.split_once('|') else {
            continue;
        };
        let Some((job, task)) = id.split_once('_') else {
            continue;
        };
        let Ok(cell) = task.parse::<usize>() else {
            continue;
        };
        // "CANCELLED by 1000" → cancelled.
        let state = state.split_whitespace().next().unwrap_or("").to_lowercase();
        let rank = order(job);
        if !state.is_empty() && seen.get(&cell).is_none_or(|&r| rank >= r) {
            seen.insert(cell, rank);
            states.insert(cell, state);
        }
    }
    states
}

/// Submits again the cells of `dir` that are not finished and not queued or running: failed,
/// cancelled, or killed with their node. They resume from their last checkpoint.
pub fn resubmit_failed(dir: &Path, opts: &SlurmOptions) -> Result<Submission> {
    opts.check()?;
    // The study must still load and be the one in the folder.
    load(dir)?;
    let live = task_states(dir);
    let cells: Vec<usize> = study::status(dir)?
        .iter()
        .enumerate()
        .filter(|(i, (_, _, state))| {
            *state != "done"
                && *state != "running"
                && !live.get(i).is_some_and(|t| {
                    [
                        "pending",
                        "running",
                        "configuring",
                        "completing",
                        "requeued",
                    ]
                    .contains(&t.as_str())
                })
        })
        .map(|(i, _)| i)
        .collect();
    submit_cells(&absolute(dir)?, &cells, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_memory_and_arrays_are_checked_as_slurm_reads_them() {
        for t in ["30", "30:00", "02:00:00", "1-12", "1-12:00", "2-00:00:00"] {
            assert!(valid_time(t), "{t}");
        }
        for t in ["", "2h", "1-", "-5", "1:2:3:4", "1-2-3", "02:00:00 "] {
            assert!(!valid_time(t), "{t}");
        }
        for m in ["8G", "500M", "16000", "1T", "64k"] {
            assert!(valid_mem(m), "{m}");
        }
        for m in ["", "G", "8GB", "8.5G", "-1G"] {
            assert!(!valid_mem(m), "{m}");
        }
        assert_eq!(array_spec(&[0, 1, 2, 3, 7, 9, 10]), "0-3,7,9-10");
        assert_eq!(array_spec(&[5]), "5");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
