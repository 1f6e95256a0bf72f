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
