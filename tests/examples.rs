//! Every committed example config parses and passes all checks (running them is the README's job).

#[test]
fn every_example_is_a_valid_experiment() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut n = 0;
    for dir in [root.clone(), root.join("byom")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
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
