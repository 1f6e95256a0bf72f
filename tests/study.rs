//! `ouro sweep`: a study's cells are ordinary run folders; its tables do not depend on how many
//! cells run at once; bad axes are one error naming the cell; a stopped study continues.

use std::path::Path;
use std::process::Command;

const BASE: &str = r#"
seed = 3
generations = 4
samples_per_generation = 400
[target]
kind = "gaussian"
dim = 1
[model]
kind = "gaussian"
[loop]
schedule = "augment"
real_size = 100
synthetic_ratio = 1.0
[metrics]
names = ["mean_shift", "cov_trace_ratio"]
"#;

/// A 2-axis study of 4 × 2 = 8 cells × 5 seeds over the base above.
const STUDY: &str = r#"
base = "base.toml"
seeds = 5
[axes]
"loop.synthetic_ratio" = [0.5, 1.0, 2.0, 4.0]
"target.dim" = [1, 3]
"#;

fn ouro(args: &[&str], dir: &Path) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn setup(study: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.toml"), BASE).unwrap();
    std::fs::write(dir.path().join("study.toml"), study).unwrap();
    dir
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[test]
fn a_study_is_the_same_bytes_for_any_number_of_jobs() {
    let dir = setup(STUDY);
    let d = dir.path();
    for (out, jobs) in [("one", "1"), ("two", "2")] {
        let (code, _, err) = ouro(
            &[
                "sweep",
                "study.toml",
                "--out",
                out,
                "--jobs",
                jobs,
                "--quiet",
            ],
            d,
        );
        assert_eq!(code, 0, "{err}");
    }
    let study = read(d.join("one/study.csv"));
    assert_eq!(study, read(d.join("two/study.csv")));
    assert_eq!(
        read(d.join("one/summary.csv")),
        read(d.join("two/summary.csv"))
    );
    // long form: 8 cells × 5 seeds × 4 generations rows, axis columns after the cell
    let mut lines = study.lines();
    assert_eq!(
        lines.next().unwrap(),
        "cell,loop.synthetic_ratio,target.dim,seed,generation,mean_shift,cov_trace_ratio"
    );
    assert_eq!(lines.count(), 8 * 5 * 4);
    assert!(
        study.contains("\n7,4.0,3,7,3,"),
        "cell 7 = (4.0, 3), seeds 3..7"
    );
    // each cell is an ordinary run folder whose config has its axis values
    let cfg = read(d.join("one/cells/005/config.toml"));
    assert!(
        cfg.contains("synthetic_ratio = 2.0") && cfg.contains("dim = 3"),
        "{cfg}"
    );
    assert!(cfg.contains("repeats = 5"), "{cfg}");
    // summary: one row per cell, generation and metric, with the seeds' mean and quantiles
    let summary = read(d.join("one/summary.csv"));
    assert_eq!(summary.lines().count(), 1 + 8 * 4 * 2);
    let row = summary
        .lines()
        .find(|l| l.starts_with("0,0.5,1,0,mean_shift,"))
        .unwrap();
    let n: usize = row.split(',').nth(5).unwrap().parse().unwrap();
    assert_eq!(n, 5);
    assert!(d.join("one/study.png").exists());
}

#[test]
fn a_misspelled_axis_names_the_key_and_the_cell() {
    let dir = setup(&STUDY.replace("loop.synthetic_ratio", "loop.synthetic_ration"));
    let (code, _, err) = ouro(
        &["sweep", "study.toml", "--out", "s", "--dry-run"],
        dir.path(),
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cell 000"), "{err}");
    assert!(err.contains("synthetic_ration"), "{err}");
    assert!(!dir.path().join("s").exists());
    // a value out of range in one cell names that cell
    let dir = setup(&STUDY.replace("[0.5, 1.0, 2.0, 4.0]", "[0.5, -1.0]"));
    let (code, _, err) = ouro(&["sweep", "study.toml", "--out", "s"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cell 002 (loop.synthetic_ratio = -1.0, target.dim = 1)"),
        "{err}"
    );
    assert!(!dir.path().join("s").exists());
    // zipped lists of different lengths
    let dir = setup(&format!(
        "{STUDY}[zip]\n\"seed\" = [1, 2]\n\"generations\" = [2]\n"
    ));
    let (code, _, err) = ouro(&["sweep", "study.toml", "--out", "s"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("zipped lists move together"), "{err}");
    // --dry-run prints every cell's resolved config
    let dir = setup(STUDY);
    let (code, out, err) = ouro(
        &["sweep", "study.toml", "--out", "s", "--dry-run"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("# cell ").count(), 8);
    assert!(
        out.contains("# cell 007 (synthetic_ratio = 4.0, dim = 3)"),
        "{out}"
    );
    assert!(!dir.path().join("s").exists());
}

#[test]
fn a_stopped_study_continues_with_resume() {
    let dir = setup(STUDY);
    let d = dir.path();
    let (code, _, err) = ouro(&["sweep", "study.toml", "--out", "full", "--quiet"], d);
    assert_eq!(code, 0, "{err}");
    // only some cells, then the rest with --resume
    let (code, _, err) = ouro(
        &[
            "sweep",
            "study.toml",
            "--out",
            "part",
            "--cells",
            "0,3-4",
            "--quiet",
        ],
        d,
    );
    assert_eq!(code, 0, "{err}");
    let (_, status, _) = ouro(&["sweep", "--status", "part"], d);
    assert_eq!(status.matches(" done ").count(), 3, "{status}");
    assert_eq!(status.matches(" pending ").count(), 5, "{status}");
    // without --resume an existing study folder is refused
    let (code, _, err) = ouro(&["sweep", "study.toml", "--out", "part"], d);
    assert_eq!(code, 2);
    assert!(err.contains("--resume"), "{err}");
    let (code, out, err) = ouro(
        &[
            "sweep",
            "study.toml",
            "--out",
            "part",
            "--resume",
            "--quiet",
        ],
        d,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("5 cells run, 3 already finished"), "{out}");
    assert_eq!(
        read(d.join("part/study.csv")),
        read(d.join("full/study.csv"))
    );
    assert_eq!(
        read(d.join("part/summary.csv")),
        read(d.join("full/summary.csv"))
    );
    let (_, out, _) = ouro(&["sweep", "study.toml", "--out", "part", "--resume"], d);
    assert!(out.contains("already finished; nothing to run"), "{out}");
    // a different study in the same folder is refused
    std::fs::write(d.join("other.toml"), STUDY.replace("[1, 3]", "[1, 2]")).unwrap();
    let (code, _, err) = ouro(&["sweep", "other.toml", "--out", "part", "--resume"], d);
    assert_eq!(code, 2);
    assert!(err.contains("holds another study"), "{err}");
}

/// Every file under `root` (relative name, bytes), sorted.
fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "provenance.toml" {
                // provenance.toml records the commands and their times: the one file that
                // differs between two runs of the same config.
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                files.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    files.sort();
    files
}

/// Runs `args` + `--out full` once, then `args` + `--out part --resume` killed with SIGKILL
/// after delays from a fixed LCG (each within a 1/kills share of an uninterrupted run, so that
/// every attempt stops part way through what is left, in fitting, sampling, metrics or file
/// writes), then once more to the end; the two folders must be the same bytes. OURO_KILLS sets
/// the number of attempts (default 6; `bench/kill-resume.sh` runs more).
fn kill_and_resume(d: &Path, args: &[&str]) {
    let kills: u64 = std::env::var("OURO_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(6);
    let with = |extra: &[&'static str]| -> Vec<String> {
        args.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let start = std::time::Instant::now();
    let full = with(&["--out", "full", "--quiet"]);
    let (code, _, err) = ouro(&full.iter().map(String::as_str).collect::<Vec<_>>(), d);
    assert_eq!(code, 0, "{err}");
    let full_ms = start.elapsed().as_millis() as u64;
    let part = with(&["--out", "part", "--resume", "--quiet"]);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut killed = 0;
    for _ in 0..kills {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = 20 + (state >> 33) % (full_ms / kills).max(20);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ouro"))
            .args(&part)
            .current_dir(d)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    let (code, _, err) = ouro(&part.iter().map(String::as_str).collect::<Vec<_>>(), d);
    assert_eq!(code, 0, "{err}");
    eprintln!("{killed} of {kills} attempts killed mid-run (an uninterrupted run: {full_ms} ms)");
    assert!(killed * 2 >= kills, "only {killed} kills landed");
    let (a, b) = (tree(&d.join("full")), tree(&d.join("part")));
    let names = |t: &[(String, Vec<u8>)]| t.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b));
    for (x, y) in a.iter().zip(&b) {
        assert!(x.1 == y.1, "{} differs after resuming", x.0);
    }
    let left = hidden(d);
    assert!(left.is_empty(), "{left:?}");
}

/// The hidden entries (partial folders) of `dir`.
fn hidden(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// A study of two cells (a warm-started mixture in the accumulate loop, which keeps every
/// synthetic set) killed and resumed.
#[test]
fn a_killed_study_resumes_to_the_same_bytes() {
    let study = r#"
seeds = 2
generations = 8
samples_per_generation = 1500
save_train_sets = true
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
train_size = 1500
warm_start = true
[metrics]
names = ["mean_shift", "mmd2", "memorized", "precision"]
[axes]
"model.reg_covar" = [1e-6, 0.01]
"#;
    let dir = setup(study);
    kill_and_resume(dir.path(), &["sweep", "study.toml"]);
    let left = hidden(&dir.path().join("part/cells"));
    assert!(left.is_empty(), "{left:?}");
}

/// A run on a finite labelled data set (fresh real points drawn from the pool without
/// replacement, a class-conditional model, per-class accuracies) killed and resumed.
#[test]
fn a_killed_run_on_a_finite_data_set_resumes_to_the_same_bytes() {
    let config = r#"
seed = 2
repeats = 2
generations = 6
samples_per_generation = 200
[target]
kind = "penguins"
standardize = true
[model]
kind = "diffusion"
denoiser = "kde"
bandwidth = 0.2
conditional = true
sample_steps = 40
[loop]
schedule = "fresh"
train_size = 100
fresh_fraction = 0.2
[metrics]
names = ["synthetic_accuracy", "real_accuracy", "mean_shift", "class_edge90"]
"#;
    let dir = setup(config);
    kill_and_resume(dir.path(), &["run", "study.toml"]);
    assert!(dir.path().join("part/class_accuracy.csv").exists());
}

/// An output folder that cannot be created is one clear error, for a run and for a study.
#[test]
fn an_unwritable_folder_is_one_error() {
    let dir = setup(STUDY);
    for args in [
        vec!["run", "base.toml", "--out", "/proc/ouro-cannot-write/run"],
        vec![
            "sweep",
            "study.toml",
            "--out",
            "/proc/ouro-cannot-write/study",
        ],
    ] {
        let (code, _, err) = ouro(&args, dir.path());
        assert_eq!(code, 2, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("cannot create /proc/ouro-cannot-write"),
            "{err}"
        );
    }
}

/// A run or a study cell killed after creating its partial folder but before writing its
/// `config.toml`, or a sweep killed before writing its `cells.csv`, left nothing to continue:
/// `--resume` starts it afresh instead of taking the empty folder for another experiment's.
#[test]
fn a_partial_folder_killed_before_its_config_is_started_over() {
    let dir = setup(STUDY);
    let d = dir.path();
    // a process id above Linux's pid_max (2^22) is never alive
    let dead = 4_000_000_000u32;
    std::fs::create_dir(d.join(format!(".run.partial-{dead}"))).unwrap();
    let (code, _, err) = ouro(&["run", "base.toml", "--out", "run", "--resume"], d);
    assert_eq!(code, 0, "{err}");
    assert!(d.join("run/metrics.csv").exists());
    // a sweep killed before it wrote cells.csv
    std::fs::create_dir_all(d.join("study/cells")).unwrap();
    std::fs::write(d.join("study/study.toml"), STUDY).unwrap();
    let (code, _, err) = ouro(
        &[
            "sweep",
            "study.toml",
            "--out",
            "study",
            "--cells",
            "0",
            "--resume",
        ],
        d,
    );
    assert_eq!(code, 0, "{err}");
    std::fs::create_dir(d.join(format!("study/cells/.001.partial-{dead}"))).unwrap();
    let (code, _, err) = ouro(&["sweep", "study.toml", "--out", "study", "--resume"], d);
    assert_eq!(code, 0, "{err}");
    assert!(d.join("study/cells/001/metrics.csv").exists());
    assert!(hidden(d).is_empty() && hidden(&d.join("study/cells")).is_empty());
}
