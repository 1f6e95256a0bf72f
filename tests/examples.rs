//! Every committed example config parses and passes all checks (running them is the README's job).

#[test]
fn every_example_is_a_valid_experiment() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for dir in [root.clone(), root.join("byom")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let study = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("study-"));
            if path.extension().is_some_and(|e| e == "toml") && !study {
                let cfg = ouro::config::Config::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                ouro::experiment::Experiment::new(cfg)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
    }
    assert!(n >= 16, "{n} examples");
}

#[test]
fn the_demo_config_is_valid() {
    let cfg = ouro::config::Config::parse(ouro::cli::DEMO_CONFIG, &[]).unwrap();
    ouro::experiment::Experiment::new(cfg).unwrap();
}

/// Every example still runs: one generation of its first seed, with at most 300 samples and, for
/// a trained MLP or U-Net denoiser, 20 training steps, and for the U-Net 2 000 training images
/// and 4 sampling steps (the full runs are the README's tables). The PyTorch example
/// (`examples/byom/ddpm-ring.toml`) needs PyTorch and is only checked above; the numpy one runs
/// when numpy is installed (always in CI).
#[test]
fn every_example_runs_a_short_generation() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let numpy = std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut ran = Vec::new();
    for dir in [root.clone(), root.join("byom")] {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("study-")
            })
            .collect();
        paths.sort();
        for path in paths {
            let full = ouro::config::Config::load(&path, &[]).unwrap();
            let is_command = full.model.get("kind").and_then(|k| k.as_str()) == Some("command");
            let script = full
                .model
                .get("fit")
                .map(|f| f.to_string())
                .unwrap_or_default();
            if is_command && (script.contains("ddpm.py") || !numpy) {
                continue;
            }
            let mut set = vec![
                "generations=1".to_string(),
                format!(
                    "samples_per_generation={}",
                    full.samples_per_generation.min(300)
                ),
            ];
            let denoiser = full.model.get("denoiser").and_then(|d| d.as_str());
            let trained = matches!(denoiser, Some("mlp" | "unet"));
            if trained && !full.model.contains_key("epochs") {
                set.push("model.train_steps=20".into());
            }
            if denoiser == Some("unet") {
                // the real-data classifier of `real_accuracy` would train on 50 000 images
                set.push("target.max_points=3000".into());
                set.push("loop.train_size=2000".into());
                set.push("model.sample_steps=4".into());
            }
            let cfg = ouro::config::Config::load(&path, &set).unwrap();
            let exp = ouro::experiment::Experiment::new(cfg)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rows = exp
                .run_seed(exp.config.seed, &mut |g| {
                    assert_eq!(g.samples.points.ncols(), exp.target.dim());
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(rows.len(), 1, "{}", path.display());
            ran.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    eprintln!("ran {}: {ran:?}", ran.len());
    assert!(ran.len() >= 15, "{ran:?}");
}

/// Every example study (`examples/study-*.toml`) is valid: each of its cells passes all checks.
#[test]
fn every_example_study_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("study-")
        {
            let study =
                ouro::experiment::study::Study::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert!(study.cells.len() >= 4, "{}", path.display());
            n += 1;
        }
    }
    assert!(n >= 2);
}
