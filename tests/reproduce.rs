//! `ouro reproduce PAPER --quick` for every paper: the studies run, every claim gets a verdict
//! from the numbers, and at this scale each claim holds.

use std::process::Command;

#[test]
fn every_paper_reproduces_quickly_with_a_verdict_per_claim() {
    let dir = tempfile::tempdir().unwrap();
    for paper in ouro::reproduce::PAPERS {
        let out = dir.path().join(paper.name);
        let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
            .args(["reproduce", paper.name, "--quick", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{}: {}",
            paper.name,
            String::from_utf8_lossy(&o.stderr)
        );
        let csv = std::fs::read_to_string(out.join("claims.csv")).unwrap();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "paper,claim,statement,rule,measured,verdict"
        );
        let rows: Vec<&str> = lines.collect();
        assert!(rows.len() >= 2, "{csv}");
        for r in &rows {
            assert!(r.starts_with(paper.name), "{r}");
            assert!(
                r.ends_with(",holds"),
                "{}: a claim does not hold at --quick scale: {r}\n{stdout}",
                paper.name
            );
        }
        assert!(out.join("claims.md").exists());
        for (name, _) in paper.studies {
            assert!(out.join(format!("figure-{name}.png")).exists());
            assert!(out.join(name).join("summary.csv").exists());
        }
    }
    // an unknown paper is one line naming the known ones
    let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .args(["reproduce", "smith1999", "--quick", "--out"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("unknown paper `smith1999`") && err.contains("khelifa2026"),
        "{err}"
    );
}
