//! `[model] kind = "command"`: a user's own model behind two command lines. The numpy Gaussian of
//! examples/byom/ against the replace loop's closed form, a shell "model" for the protocol, and
//! one clear error for each way a command can fail.

use ouro::config::Config;
use ouro::experiment::Experiment;
use std::process::Command;

/// A 2-D Gaussian target in the replace loop with 30 training points, `samples` samples per
/// generation and `model` as the `[model]` keys after `kind = "command"`.
fn experiment_with(model: &str, samples: usize, warm: bool) -> Result<Experiment, ouro::Error> {
    let text = format!(
        "seed = 0\ngenerations = 2\nsamples_per_generation = {samples}\n\
         [target]\nkind = \"gaussian\"\ndim = 2\n[model]\nkind = \"command\"\n{model}\n\
         [loop]\nschedule = \"replace\"\ntrain_size = 30\nwarm_start = {warm}\n\
         [metrics]\nnames = [\"mean_shift\"]\n"
    );
    Experiment::new(Config::parse(&text, &[])?)
}

fn experiment(model: &str) -> Result<Experiment, ouro::Error> {
    experiment_with(model, 30, false)
}

/// A shell "model" whose state is its training set and whose samples are that set again: the
/// protocol without Python. `fail_fit` / `fail_sample` replace one of the two scripts.
fn shell_model(fit: &str, sample: &str, timeout: f64) -> String {
    format!(
        "fit = [\"sh\", \"-c\", '{fit}', \"{{train}}\", \"{{state_out}}\", \"{{seed}}\"]\n\
         sample = [\"sh\", \"-c\", '{sample}', \"{{state}}\", \"{{out}}\", \"{{n}}\"]\n\
         timeout = {timeout}\n"
    )
}

const COPY: &str = r#"cp "$0" "$1""#;

fn run_error(model: &str) -> String {
    run_error_with(model, 30)
}

fn run_error_with(model: &str, samples: usize) -> String {
    let exp = experiment_with(model, samples, false).expect("a valid config");
    match exp.run_seed(0, &mut |_| Ok(())) {
        Ok(_) => panic!("the run should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_shell_model_runs_the_loop_and_its_samples_are_its_training_set() {
    let exp = experiment(&shell_model(COPY, COPY, 10.0)).unwrap();
    let mut seen = vec![];
    exp.run_seed(0, &mut |g| {
        // the samples are the training set, bit for bit
        assert_eq!(g.samples.points, g.train.points);
        seen.push(g.generation);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, [0, 1]);
    // a rerun is bit-identical (the commands are deterministic)
    let a = exp.run_seed(3, &mut |_| Ok(())).unwrap();
    let b = exp.run_seed(3, &mut |_| Ok(())).unwrap();
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

#[test]
fn each_failure_is_one_error_naming_the_command() {
    // non-zero exit: the status and the tail of stderr
    let e = run_error(&shell_model(
        r#"echo "line one" >&2; echo "CUDA out of memory" >&2; exit 3"#,
        COPY,
        10.0,
    ));
    assert!(e.contains("model.fit: `sh -c"), "{e}");
    assert!(e.contains("exited with status 3"), "{e}");
    assert!(e.contains("| CUDA out of memory"), "{e}");
    // fit succeeds but writes no state
    let e = run_error(&shell_model("true", COPY, 10.0));
    assert!(e.contains("left no state at {state_out}"), "{e}");
    // sample writes nothing
    let e = run_error(&shell_model(COPY, "true", 10.0));
    assert!(
        e.contains("model.sample:") && e.contains("wrote nothing"),
        "{e}"
    );
    // sample writes something that is not .npy
    let e = run_error(&shell_model(COPY, r#"echo hello > "$1""#, 10.0));
    assert!(
        e.contains("model.sample:") && e.contains("not a valid .npy"),
        "{e}"
    );
    // sample writes the wrong shape: the [30, 2] training set when 20 samples are asked for
    let e = run_error_with(&shell_model(COPY, COPY, 10.0), 20);
    assert!(e.contains("wrote an array of shape [30, 2]"), "{e}");
    assert!(
        e.contains("expected a float .npy array of shape [20, 2]"),
        "{e}"
    );
    // a command that runs past model.timeout is stopped
    let start = std::time::Instant::now();
    let e = run_error(&shell_model("sleep 30", COPY, 0.5));
    assert!(
        e.contains("did not finish within model.timeout = 0.5 s"),
        "{e}"
    );
    assert!(start.elapsed().as_secs_f64() < 10.0);
    // a program that does not exist
    let e = run_error(
        "fit = [\"/nonexistent/ouro-model\", \"{train}\", \"{state_out}\"]\n\
         sample = [\"sh\", \"{state}\", \"{n}\", \"{out}\"]\n",
    );
    assert!(e.contains("cannot start `/nonexistent/ouro-model"), "{e}");
}

#[test]
fn bad_command_configs_are_refused_before_anything_runs() {
    let cases = [
        (
            "fit = [\"sh\", \"{train}\"]\nsample = [\"sh\", \"{state}\", \"{n}\", \"{out}\"]",
            "model.fit: the command line must name {state_out}",
        ),
        (
            "fit = [\"sh\", \"{train}\", \"{state_out}\", \"{trian}\"]\nsample = [\"sh\", \"{state}\", \"{n}\", \"{out}\"]",
            "model.fit: unknown placeholder {trian}",
        ),
        (
            "fit = []\nsample = [\"sh\", \"{state}\", \"{n}\", \"{out}\"]",
            "model.fit: expected a command line",
        ),
        (
            "fit = [\"sh\", \"{train}\", \"{state_out}\"]\nsample = [\"sh\", \"{state}\", \"{out}\"]",
            "model.sample: the command line must name {n}",
        ),
        (
            "fit = [\"sh\", \"{train}\", \"{state_out}\"]\nsample = [\"sh\", \"{state}\", \"{n}\", \"{out}\"]\ntimeout = 0",
            "model.timeout = 0",
        ),
        (
            "fit = [\"sh\", \"{train}\", \"{state_out}\"]\nsample = [\"sh\", \"{state}\", \"{n}\", \"{out}\"]\ncuda = true",
            "model.cuda: unknown field `cuda`",
        ),
    ];
    for (model, expected) in cases {
        let e = experiment(model).err().expect("refused").to_string();
        assert!(e.contains(expected), "{model}: {e}");
    }
    // warm starts need {state_in}
    let e = experiment_with(&shell_model(COPY, COPY, 10.0), 30, true)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("loop.warm_start = true has no effect"), "{e}");
}

/// Whether `python3` with numpy is here. The test below needs it; CI installs numpy and sets
/// OURO_REQUIRE_NUMPY=1 so that it cannot be skipped there.
fn have_numpy() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("OURO_REQUIRE_NUMPY").is_none(),
            "OURO_REQUIRE_NUMPY is set but python3 cannot import numpy"
        );
        eprintln!("SKIPPED: python3 with numpy is not installed (pip install numpy)");
    }
    ok
}

/// The numpy Gaussian of examples/byom/gaussian.py in the replace loop: with n training points
/// per generation the fitted variance follows E[σ²_g] = σ² ((n − 1)/n)^(g+1) (each refit's MLE
/// variance is σ²_{g−1} χ²_{n−1}/n). Measured by the per-coordinate variance of m samples of
/// each model (whose mean is σ²_g (m − 1)/m), averaged over d = 6 coordinates and R = 24 seeds;
/// the tolerance is 4 standard errors of that mean across seeds.
#[test]
fn the_numpy_gaussian_collapses_at_the_closed_form_rate() {
    if !have_numpy() {
        return;
    }
    let (n, m, d, generations, seeds) = (12usize, 4000usize, 6usize, 4usize, 24u64);
    let text = format!(
        "seed = 0\nrepeats = {seeds}\ngenerations = {generations}\nsamples_per_generation = {m}\n\
         [target]\nkind = \"gaussian\"\ndim = {d}\n\
         [model]\nkind = \"command\"\n\
         fit = [\"python3\", \"examples/byom/gaussian.py\", \"fit\", \"{{train}}\", \"{{state_out}}\", \"{{seed}}\"]\n\
         sample = [\"python3\", \"examples/byom/gaussian.py\", \"sample\", \"{{state}}\", \"{{n}}\", \"{{out}}\", \"{{seed}}\"]\n\
         [loop]\nschedule = \"replace\"\ntrain_size = {n}\n[metrics]\nnames = [\"mean_shift\"]\n"
    );
    let exp = Experiment::new(Config::parse(&text, &[]).unwrap()).unwrap();
    let per_seed: Vec<Vec<f64>> = ouro::experiment::with_threads(0, || {
        use rayon::prelude::*;
        exp.seeds()
            .collect::<Vec<_>>()
            .par_iter()
            .map(|&seed| {
                let mut v = vec![0.0; generations];
                exp.run_seed(seed, &mut |g| {
                    let x = g.samples.points.mapv(|v| v as f64);
                    let var = x.var_axis(ndarray::Axis(0), 0.0);
                    v[g.generation] = var.mean().unwrap();
                    Ok(())
                })
                .unwrap();
                v
            })
            .collect()
    })
    .unwrap();
    let shrink = (n as f64 - 1.0) / n as f64;
    for g in 0..generations {
        let values: Vec<f64> = per_seed.iter().map(|v| v[g]).collect();
        let r = values.len() as f64;
        let mean = values.iter().sum::<f64>() / r;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (r - 1.0)).sqrt();
        let se = sd / r.sqrt();
        let theory = shrink.powi(g as i32 + 1) * (m as f64 - 1.0) / m as f64;
        eprintln!("generation {g}: measured {mean:.4} ± {se:.4}, theory {theory:.4}");
        assert!(
            (mean - theory).abs() < 4.0 * se,
            "generation {g}: {mean} ± {se} vs {theory}"
        );
    }
}

/// Labels through the protocol: `fit` gets the training labels at {labels}, `sample` writes
/// labels to {out_labels}, and the samples come back labelled, so class metrics apply. The shell
/// "model" packs the training set and its labels into its state with tar and unpacks them as
/// its samples.
#[test]
fn labels_go_to_fit_and_come_back_from_sample() {
    let model = r#"
fit = ["sh", "-c", 'tar -cf "$1" -C "$(dirname "$0")" "$(basename "$0")" "$(basename "$2")"', "{train}", "{state_out}", "{labels}"]
sample = ["sh", "-c", 'cd "$(dirname "$1")" && tar -xf "$0" && mv train.npy "$1" && test -f "$2"', "{state}", "{out}", "{out_labels}", "{n}"]
"#;
    let text = format!(
        "generations = 2\nsamples_per_generation = 100\n[target]\nkind = \"penguins\"\n\
         [model]\nkind = \"command\"\n{model}\n[loop]\nschedule = \"replace\"\ntrain_size = 100\n\
         [metrics]\nnames = [\"class_edge90\", \"mean_shift\"]\n"
    );
    let exp = Experiment::new(Config::parse(&text, &[]).unwrap()).unwrap();
    let mut seen = 0;
    exp.run_seed(0, &mut |g| {
        let labels = g.samples.labels.as_ref().expect("labelled samples");
        assert_eq!(Some(labels), g.train.labels.as_ref());
        assert_eq!(g.samples.points, g.train.points);
        assert!(g.metrics[0].is_finite(), "class_edge90 {:?}", g.metrics);
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, 2);
}
