//! Replays every fuzz input kept under `fuzz/corpus/<target>/` (the seeds and what coverage-guided
//! fuzzing added) and `fuzz/regressions/<target>/` (inputs that once crashed a reader) through the
//! same entry points as the libFuzzer targets, on stable: each must end in `Ok` or `Err`, never a
//! panic. `fuzz/README.md` says how the corpus is grown.

#[path = "../fuzz/fuzz_targets/inputs.rs"]
mod inputs;

use std::path::Path;

#[test]
fn every_fuzz_input_is_read_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in inputs::TARGETS {
        let mut replayed = 0;
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&bytes));
                assert!(outcome.is_ok(), "{name}: {} panics", path.display());
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no inputs for the fuzz target {name}");
        eprintln!("{name}: {replayed} inputs");
    }
}
