//! `ouro sweep --executor slurm`: the sbatch script, a study run through a real Slurm (the
//! single-node cluster `.ci/slurm-start` starts; these tests say they were skipped, and why, on a
//! machine without one) giving the same bytes as the local executor, a cancelled task resubmitted
//! and resumed, a task stopped at a checkpoint by SIGUSR1, and the errors of a missing `sbatch`
//! or a cluster that is down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Four cells of a warm-started mixture in the accumulate loop (every synthetic set kept, so a
/// resumed cell must restore them), a few seconds each on one CPU: long enough to stop one
/// mid-run.
const STUDY: &str = r#"
seeds = 2
generations = 30
samples_per_generation = 3000
[target]
kind = "gmm"
dim = 4
means = [[0, 0], [3, 3]]
std = 0.5
[model]
kind = "gmm"
components = 2
[loop]
schedule = "accumulate"
train_size = 3000
warm_start = true
[metrics]
names = ["mean_shift", "mmd2", "memorized"]
[axes]
"model.reg_covar" = [1e-6, 1e-4, 1e-3, 0.01]
"#;

fn ouro_with(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ouro(args: &[&str], dir: &Path) -> (i32, String, String) {
    ouro_with(args, dir, &[])
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("study.toml"), STUDY).unwrap();
    dir
}

/// Why the Slurm tests cannot run here, or `None` when a cluster answers (`sinfo` lists an
/// idle or busy node; "completing" is a node still finishing an earlier test's cancelled job).
fn no_cluster() -> Option<String> {
    match Command::new("sinfo").args(["-h", "-o", "%T"]).output() {
        Err(_) => Some("Slurm's client commands are not installed (no sinfo on PATH)".into()),
        Ok(o) if !o.status.success() => Some(format!(
            "no Slurm controller answers (sinfo: {}); .ci/slurm-start starts one and prints the \
             SLURM_CONF to export",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
        )),
        Ok(o) => {
            let states = String::from_utf8_lossy(&o.stdout).into_owned();
            let up = states
                .lines()
                .any(|s| ["idle", "mixed", "allocated", "completing"].contains(&s.trim()));
            (!up).then(|| format!("no Slurm node is up (sinfo: {})", states.trim()))
        }
    }
}

/// Skips the test, saying why, when no cluster answers; with OURO_REQUIRE_SLURM set (as in
/// CI, which starts one), fails instead.
macro_rules! needs_cluster {
    () => {
        if let Some(why) = no_cluster() {
            if std::env::var_os("OURO_REQUIRE_SLURM").is_some() {
                panic!("OURO_REQUIRE_SLURM is set but {why}");
            }
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// Polls `done` every 200 ms for up to `secs` seconds; panics with `what` and the task logs.
fn wait_for(secs: u64, what: &str, study: &Path, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "timed out after {secs} s waiting for {what}\n{}",
        logs(study)
    );
}

/// Every task log of the study folder, each under a `--- PATH` line.
fn logs(study: &Path) -> String {
    let mut logs = String::new();
    if let Ok(entries) = std::fs::read_dir(study.join("slurm/logs")) {
        for e in entries.flatten() {
            logs += &format!("--- {}\n", e.path().display());
            logs += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    logs
}

fn finished(study: &Path, cells: usize) -> bool {
    (0..cells).all(|i| study.join(format!("cells/{i:03}/metrics.csv")).exists())
        && study.join("study.csv").exists()
        && !study.join("slurm/collect.lock").exists()
}

/// The hidden partial folder of cell `i` with at least one checkpoint written, if any.
fn checkpointed_partial(study: &Path, i: usize) -> Option<PathBuf> {
    std::fs::read_dir(study.join("cells"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!(".{i:03}.partial-"))
            }) && p.join("checkpoint/seed-0/state.safetensors").exists()
        })
}

/// Submits the study into `d/name` one task at a time and waits until cell 000 has written a
/// checkpoint; returns the job id and the study folder.
fn submit_and_wait_for_a_checkpoint(d: &Path, name: &str) -> (String, PathBuf) {
    let args = [
        "sweep",
        "study.toml",
        "--out",
        name,
        "--executor",
        "slurm",
        "--max-running",
        "1",
    ];
    let (code, out, err) = ouro(&args, d);
    assert_eq!(code, 0, "{err}");
    let job = out
        .lines()
        .find_map(|l| l.strip_prefix("submitted job "))
        .and_then(|l| l.split(':').next())
        .expect("a job id")
        .to_string();
    let study = d.join(name);
    wait_for(120, "a checkpoint of cell 000", &study, || {
        checkpointed_partial(&study, 0).is_some()
    });
    (job, study)
}

fn local_reference(d: &Path) {
    let (code, _, err) = ouro(&["sweep", "study.toml", "--out", "local", "--quiet"], d);
    assert_eq!(code, 0, "{err}");
}

fn same_tables(d: &Path, study: &str) {
    for f in ["study.csv", "summary.csv"] {
        let (a, b) = (
            std::fs::read(d.join("local").join(f)).unwrap(),
            std::fs::read(d.join(study).join(f)).unwrap(),
        );
        assert!(a == b, "{study}/{f} differs from the local executor's");
    }
}

/// The script a Slurm user expects: a job array over the cells, requeue, a USR1 warning before
/// the time limit, the limits asked for, and a log per task under DIR/slurm/logs/.
#[test]
fn the_dry_run_writes_a_job_array_script() {
    let dir = setup();
    let d = dir.path();
    let (code, out, err) = ouro(
        &[
            "sweep",
            "study.toml",
            "--out",
            "s",
            "--executor",
            "slurm",
            "--dry-run",
            "--partition",
            "short",
            "--time",
            "02:00:00",
            "--cpus-per-task",
            "2",
            "--mem",
            "8G",
            "--max-running",
            "3",
            "--cells",
            "0,2-3",
            "--sbatch-arg=--account=lab",
        ],
        d,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("not submitted"), "{out}");
    let script = std::fs::read_to_string(d.join("s/slurm/array.sbatch")).unwrap();
    let logs = std::path::absolute(d.join("s/slurm/logs")).unwrap();
    for line in [
        "#!/bin/bash",
        "#SBATCH --array=0,2-3%3",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@120",
        "#SBATCH --time=02:00:00",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=8G",
        "#SBATCH --partition=short",
        "#SBATCH --account=lab",
        &format!("#SBATCH --output={}/%A_%a.out", logs.display()),
    ] {
        assert!(
            script.lines().any(|l| l == line),
            "no `{line}` in\n{script}"
        );
    }
    assert!(
        script.contains("--cell \"$SLURM_ARRAY_TASK_ID\" --resume"),
        "{script}"
    );
    assert!(script.contains("scontrol requeue"), "{script}");
    assert!(d.join("s/study.toml").exists() && d.join("s/cells.csv").exists());
    // Bad options are one error each, before anything is written.
    for (flag, value, says) in [
        ("--time", "2h", "--time \"2h\": expected a Slurm time limit"),
        ("--mem", "8GB", "--mem \"8GB\": expected a size"),
        ("--cpus-per-task", "0", "--cpus-per-task 0"),
        (
            "--sbatch-arg",
            "account=lab",
            "--sbatch-arg \"account=lab\": expected one sbatch option",
        ),
    ] {
        let arg = format!("{flag}={value}");
        let (code, _, err) = ouro(
            &[
                "sweep",
                "study.toml",
                "--out",
                "t",
                "--executor",
                "slurm",
                "--dry-run",
                &arg,
            ],
            d,
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!d.join("t").exists(), "{flag} left a folder behind");
    }
    // Slurm's options without --executor slurm are a mistake, not something to ignore.
    let (code, _, err) = ouro(&["sweep", "study.toml", "--out", "t", "--time=01:00:00"], d);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--time is an option of --executor slurm"),
        "{err}"
    );
    assert!(!d.join("t").exists());
}

/// Without sbatch on PATH, a submission is one error that says what is missing, and leaves no
/// study folder.
#[test]
fn a_missing_sbatch_is_one_error() {
    let dir = setup();
    let d = dir.path();
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().to_string_lossy().into_owned();
    let (code, _, err) = ouro_with(
        &["sweep", "study.toml", "--out", "s", "--executor", "slurm"],
        d,
        &[("PATH", &path)],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sbatch not found"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!d.join("s").exists());
}

/// A task's USR1 (what Slurm sends before a time limit) stops it after its current generation
/// with a checkpoint and exit status 75; run again, it resumes there and ends with the same cell
/// as an uninterrupted run. No cluster needed: the task's command is run directly.
#[test]
fn usr1_stops_a_task_at_a_checkpoint_and_it_resumes() {
    let dir = setup();
    let d = dir.path();
    local_reference(d);
    let (code, _, err) = ouro(
        &[
            "sweep",
            "study.toml",
            "--out",
            "s",
            "--executor",
            "slurm",
            "--dry-run",
        ],
        d,
    );
    assert_eq!(code, 0, "{err}");
    let study = d.join("s");
    let task = [
        "sweep",
        "s",
        "--cell",
        "1",
        "--resume",
        "--threads",
        "1",
        "--quiet",
    ];
    let child = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .args(task)
        .current_dir(d)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(60, "a checkpoint of cell 001", &study, || {
        checkpointed_partial(&study, 1).is_some()
    });
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-USR1", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(err.contains("stopped at a checkpoint"), "{err}");
    assert!(!study.join("cells/001/metrics.csv").exists());
    assert!(
        checkpointed_partial(&study, 1).is_some(),
        "the partial folder was removed"
    );
    let (code, _, err) = ouro(&task, d);
    assert_eq!(code, 0, "{err}");
    let (a, b) = (
        std::fs::read(d.join("local/cells/001/metrics.csv")).unwrap(),
        std::fs::read(study.join("cells/001/metrics.csv")).unwrap(),
    );
    assert!(
        a == b,
        "the resumed cell differs from the uninterrupted one"
    );
}

/// A 4-cell study through a real Slurm gives the same study.csv and summary.csv bytes as the
/// local executor, and `--status` shows the tasks' Slurm states.
#[test]
fn a_study_through_slurm_matches_the_local_executor() {
    needs_cluster!();
    let dir = setup();
    let d = dir.path();
    local_reference(d);
    let (code, out, err) = ouro(
        &[
            "sweep",
            "study.toml",
            "--out",
            "s",
            "--executor",
            "slurm",
            "--time",
            "00:10:00",
        ],
        d,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("submitted job "), "{out}");
    let study = d.join("s");
    wait_for(300, "the study to finish", &study, || finished(&study, 4));
    same_tables(d, "s");
    let (code, out, err) = ouro(&["sweep", "--status", "s"], d);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains("done")).count(),
        4,
        "{out}"
    );
    assert!(out.contains("slurm completed"), "{out}");
}

/// A task cancelled with scancel mid-run keeps its partial folder; `--resubmit-failed` submits
/// it again, it resumes from its checkpoint, and the study's tables still match the local ones.
#[test]
fn a_cancelled_task_resubmitted_resumes_and_matches() {
    needs_cluster!();
    let dir = setup();
    let d = dir.path();
    local_reference(d);
    let (job, study) = submit_and_wait_for_a_checkpoint(d, "c");
    let task = format!("{job}_0");
    assert!(
        Command::new("scancel")
            .arg(&task)
            .status()
            .unwrap()
            .success()
    );
    // The other cells run on (one at a time); then cell 000 is the one left.
    wait_for(300, "cells 001-003", &study, || {
        (1..4).all(|i| study.join(format!("cells/{i:03}/metrics.csv")).exists())
    });
    assert!(
        !study.join("cells/000/metrics.csv").exists(),
        "the cancel landed too late"
    );
    assert!(
        checkpointed_partial(&study, 0).is_some(),
        "the cancelled cell lost its checkpoint"
    );
    let (code, out, err) = ouro(&["sweep", "--status", "c"], d);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().next().is_some_and(|l| l.contains("partial")),
        "{out}"
    );
    let (code, out, err) = ouro(&["sweep", "c", "--resubmit-failed"], d);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("cells 0") && !out.contains("cells 0,"),
        "{out}"
    );
    wait_for(300, "the resubmitted cell", &study, || finished(&study, 4));
    same_tables(d, "c");
    let log = logs(&study);
    assert!(log.contains("kept for --resume"), "{log}");
}

/// USR1 to a task's batch script (what `--signal=B:USR1@120` sends before the time limit) makes
/// ouro stop at a checkpoint and the script requeue the task, which resumes without any help;
/// the study's tables still match the local ones.
#[test]
fn a_warned_task_is_requeued_and_resumes() {
    needs_cluster!();
    let dir = setup();
    let d = dir.path();
    local_reference(d);
    let (job, study) = submit_and_wait_for_a_checkpoint(d, "w");
    // scancel may report "Job can not be altered now" once the task it signalled has been
    // requeued; what counts is the task's log below.
    let _ = Command::new("scancel")
        .args(["--batch", "--signal=USR1", &format!("{job}_0")])
        .status()
        .unwrap();
    wait_for(300, "the study to finish", &study, || finished(&study, 4));
    same_tables(d, "w");
    let log = std::fs::read_to_string(study.join(format!("slurm/logs/{job}_0.out"))).unwrap();
    assert!(log.contains("stopped at a checkpoint"), "{log}");
}

/// A controller that does not answer makes the submission one error with sbatch's reason, and
/// leaves no study folder.
#[test]
fn a_cluster_that_is_down_is_one_error() {
    needs_cluster!();
    let dir = setup();
    let d = dir.path();
    let conf = std::env::var("SLURM_CONF").unwrap_or_else(|_| "/etc/slurm/slurm.conf".into());
    let text = std::fs::read_to_string(&conf).unwrap_or_default();
    if text.is_empty() {
        eprintln!("skipped: cannot read the cluster's slurm.conf ({conf})");
        return;
    }
    let down = d.join("down.conf");
    let mut changed = String::new();
    for line in text.lines() {
        if line.starts_with("SlurmctldPort=") {
            continue;
        }
        changed += line;
        changed += "\n";
    }
    changed += "SlurmctldPort=1\nMessageTimeout=2\n";
    std::fs::write(&down, changed).unwrap();
    let down = down.to_string_lossy().into_owned();
    let (code, _, err) = ouro_with(
        &["sweep", "study.toml", "--out", "s", "--executor", "slurm"],
        d,
        &[("SLURM_CONF", &down)],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("error: sbatch failed"), "{err}");
    assert!(!d.join("s").exists());
}
