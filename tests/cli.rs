//! Bad input through the `ouro` binary: one clear line on stderr, exit status 2, no panic, and no
//! run folder (or leftover) written.

use std::path::Path;
use std::process::Command;

const GOOD: &str = r#"
seed = 0
generations = 2
samples_per_generation = 100
[target]
kind = "gaussian"
dim = 2
[model]
kind = "gaussian"
[loop]
schedule = "augment"
real_size = 50
synthetic_ratio = 1.0
"#;

/// Runs `ouro run` on `config` with extra arguments; returns (status, stderr).
fn run(dir: &Path, config: &str, extra: &[&str]) -> (i32, String) {
    let cfg = dir.join("exp.toml");
    std::fs::write(&cfg, config).unwrap();
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .arg("run")
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_rejected(config: &str, extra: &[&str], fragments: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(dir.path(), config, extra);
    assert_eq!(code, 2, "expected failure, got {code}: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(
        err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    for f in fragments {
        assert!(err.contains(f), "`{f}` missing from: {err}");
    }
    assert_only_the_config_is_left(dir.path(), "files left behind");
}

/// `dir` holds the experiment file and nothing else (no run folder, no hidden partial one).
fn assert_only_the_config_is_left(dir: &Path, context: &str) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("exp.toml")],
        "{context}"
    );
}

#[test]
fn a_good_config_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(dir.path(), GOOD, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(dir.path().join("out/metrics.csv").exists());
}

#[test]
fn config_mistakes_name_the_key() {
    assert_rejected(
        &GOOD.replace("dim = 2", "dim = 2\nmeans = [1]"),
        &[],
        &["unknown field `means`", "target"],
    );
    assert_rejected(
        &GOOD.replace("generations = 2\n", ""),
        &[],
        &["missing field `generations`"],
    );
    assert_rejected(
        GOOD,
        &["--set", "loop.synthetic_ratio=-0.5"],
        &["loop.synthetic_ratio", "≥ 0"],
    );
    assert_rejected(
        GOOD,
        &["--set", "loop.synthetic_size=-5"],
        &["loop.synthetic_size"],
    );
    let fresh = GOOD.replace("augment", "fresh").replace(
        "real_size = 50\nsynthetic_ratio = 1.0",
        "train_size = 50\nfresh_fraction = 1.2",
    );
    assert_rejected(&fresh, &[], &["loop.fresh_fraction = 1.2", "[0, 1]"]);
    assert_rejected(
        &GOOD.replace("dim = 2", "dim = 2\nmean = [1, 2, 3]"),
        &[],
        &["target.mean", "target.dim = 2"],
    );
    assert_rejected(
        GOOD,
        &["--set", "loop.fresh_fraction=0.5"],
        &["loop.fresh_fraction is not used", "augment"],
    );
    assert_rejected(
        GOOD,
        &["--set", "model.kind=vae"],
        &[
            "model.kind = \"vae\": expected one of",
            "\"diffusion\", \"command\"",
        ],
    );
    assert_rejected(
        GOOD,
        &["--set", "metrics.names=[\"fid\"]"],
        &["unknown metric `fid`"],
    );
    assert_rejected(
        GOOD,
        &["--set", "metrics.bandwidths=[\"wide\"]"],
        &["metrics.bandwidths", "bandwidth `wide`", "median"],
    );
    assert_rejected(
        GOOD,
        &[
            "--set",
            "metrics.names=[\"precision\"]",
            "--set",
            "metrics.k=0",
        ],
        &["metrics.k = 0"],
    );
    assert_rejected(
        GOOD,
        &["--set", "metrics.names=[\"modes_hit\"]"],
        &["`modes_hit` needs", "Gaussian-mixture target"],
    );
    assert_rejected(
        GOOD,
        &["--set", "metrics.names=[\"synthetic_accuracy\"]"],
        &[
            "`synthetic_accuracy` needs labelled samples",
            "model.conditional = true",
        ],
    );
    let diffusion = "generations = 1\n[target]\nkind = \"digits\"\n[model]\nkind = \"diffusion\"\n\
                     denoiser = \"mlp\"\n[loop]\nschedule = \"replace\"\n";
    assert_rejected(
        diffusion,
        &["--set", "model.guidance=1.0"],
        &["model.guidance", "unless model.conditional = true"],
    );
    assert_rejected(
        diffusion,
        &[
            "--set",
            "model.conditional=true",
            "--set",
            "model.label_dropout=0.0",
            "--set",
            "model.guidance=2.0",
        ],
        &["guidance > 0 needs label_dropout > 0"],
    );
    assert_rejected(
        diffusion,
        &[
            "--set",
            "model.conditional=true",
            "--set",
            "model.label_dropout=1.0",
        ],
        &["model.label_dropout = 1", "0 ≤ label_dropout < 1"],
    );
    assert_rejected(
        &diffusion.replace("\"mlp\"", "\"gmm-exact\""),
        &[
            "--set",
            "model.conditional=true",
            "--set",
            "model.components=500",
        ],
        &["gmm-exact: a class has", "needs at least 500 per class"],
    );
    assert_rejected(
        diffusion,
        &["--set", "model.clip=[1.0, -1.0]"],
        &["model.clip = [1, -1]", "lo < hi"],
    );
    assert_rejected(
        &diffusion.replace("\"mlp\"", "\"empirical\""),
        &[
            "--set",
            "model.conditional=true",
            "--set",
            "model.label_dropout=0.2",
        ],
        &[
            "model.label_dropout",
            "unless denoiser is \"mlp\" or \"unet\"",
        ],
    );
    assert_rejected(
        &diffusion.replace("\"digits\"", "\"gaussian\"\ndim = 2"),
        &["--set", "model.conditional=true"],
        &["model.conditional = true needs a target with class labels"],
    );
    assert_rejected(
        GOOD,
        &["--set", "nonsense"],
        &["--set `nonsense`", "KEY=VALUE"],
    );
    assert_rejected("generations = [", &[], &["not valid TOML"]);
}

/// Values beyond what f32 data and f32 squared distances hold are refused with the key and the
/// largest magnitude supported (they used to panic in the memorisation metric).
#[test]
fn data_scales_beyond_f32_are_refused_with_the_limit() {
    let kde = GOOD.replace(
        "kind = \"gaussian\"\n[loop]",
        "kind = \"kde\"\nbandwidth = 0.5\n[loop]",
    );
    for (cfg, set, key) in [
        (
            kde.as_str(),
            "model.bandwidth=1e30",
            "model.bandwidth = 1e30",
        ),
        (GOOD, "target.std=1e30", "target.std = 1e30"),
        (GOOD, "target.std=1e200", "target.std = 1e200"),
        (GOOD, "target.mean=[1e300]", "target.mean = 1e300"),
        (
            GOOD,
            "target.cov=[[1e40, 0], [0, 1]]",
            "target.cov: entry 1e40",
        ),
    ] {
        assert_rejected(cfg, &["--set", set], &[key, "1e15"]);
    }
    // Known distributions hold dense d × d covariances (found by fuzzing: dim = 7702 took minutes).
    assert_rejected(
        GOOD,
        &["--set", "target.dim=7702"],
        &["target.dim = 7702", "1 to 1024"],
    );
    let many = format!(
        "{}\n[target]\nkind = \"ring-gmm\"\ndim = 1000\ncomponents = 100\nradius = 1.0\nstd = 0.1\n{}",
        GOOD.split("[target]").next().unwrap(),
        &GOOD[GOOD.find("[model]").unwrap()..]
    );
    assert_rejected(
        &many,
        &[],
        &["100 components of dimension 1000", "at most 67"],
    );
    // At the limit it runs.
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(dir.path(), GOOD, &["--set", "target.std=1e15"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn data_file_problems_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.npy");
    let cfg = |kind: &str, p: &Path| {
        GOOD.replace(
            "kind = \"gaussian\"\ndim = 2",
            &format!("kind = \"{kind}\"\npath = \"{}\"", p.display()),
        )
    };
    assert_rejected(&cfg("npy", &missing), &[], &["nope.npy", "cannot open"]);
    let junk = dir.path().join("junk.npy");
    std::fs::write(&junk, b"\x93NUMPY garbage").unwrap();
    assert_rejected(&cfg("npy", &junk), &[], &["junk.npy", "not a valid .npy"]);
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "a,b\n1,2\n3,oops\n").unwrap();
    assert_rejected(&cfg("csv", &csv), &[], &["bad.csv", "line 3", "`oops`"]);
    std::fs::write(&csv, "a,b\n1,2\n3,2e19\n").unwrap();
    assert_rejected(
        &cfg("csv", &csv),
        &[],
        &["bad.csv", "line 3", "`2e19`", "at most 1e15"],
    );
    assert_rejected(
        &cfg("csv", &dir.path().join("absent.csv")),
        &[],
        &["absent.csv", "cannot read"],
    );
}

/// IDX image targets: a truncated file, a wrong magic number, a label count that does not match
/// the images, a side that does not divide, and a missing Fashion-MNIST folder each give one line.
#[test]
fn idx_problems_name_the_file_and_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let idx = |dims: &[u32], data: &[u8]| {
        let mut b = vec![0u8, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b.extend(data);
        b
    };
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let images = write("img-idx3-ubyte", &idx(&[6, 4, 4], &[7; 96]));
    let labels = write("lab-idx1-ubyte", &idx(&[6], &[0, 1, 0, 1, 0, 1]));
    let cfg = |i: &Path, l: &Path, extra: &str| {
        GOOD.replace(
            "kind = \"gaussian\"\ndim = 2",
            &format!(
                "kind = \"idx\"\nimages = \"{}\"\nlabels = \"{}\"\nheldout_fraction = 0.5{extra}",
                i.display(),
                l.display()
            ),
        )
        .replace("real_size = 50", "real_size = 3")
    };
    let truncated = write("short-idx3-ubyte", &idx(&[6, 4, 4], &[7; 95]));
    assert_rejected(
        &cfg(&truncated, &labels, ""),
        &[],
        &["short-idx3-ubyte", "truncated", "96 bytes"],
    );
    let mut bad = idx(&[6, 4, 4], &[7; 96]);
    bad[2] = 0x09;
    bad[0] = 0x42;
    let magic = write("magic-idx3-ubyte", &bad);
    assert_rejected(
        &cfg(&magic, &labels, ""),
        &[],
        &["magic-idx3-ubyte", "magic number"],
    );
    // Found by fuzzing: images of zero pixels.
    let empty = write("empty-idx3-ubyte", &idx(&[6, 0, 4], &[]));
    assert_rejected(
        &cfg(&empty, &labels, ""),
        &[],
        &["empty-idx3-ubyte", "0 × 4 pixels"],
    );
    let few = write("few-idx1-ubyte", &idx(&[5], &[0, 1, 0, 1, 0]));
    assert_rejected(
        &cfg(&images, &few, ""),
        &[],
        &["few-idx1-ubyte", "5 labels for 6 images"],
    );
    assert_rejected(
        &cfg(&images, &labels, "\nside = 3"),
        &[],
        &["target.side", "4×4"],
    );
    assert_rejected(
        &cfg(&images, &labels, "\nclasses = [5]"),
        &[],
        &["target.classes"],
    );
    let fashion = GOOD.replace(
        "kind = \"gaussian\"\ndim = 2",
        &format!(
            "kind = \"fashion-mnist\"\npath = \"{}\"",
            dir.path().join("nowhere").display()
        ),
    );
    assert_rejected(&fashion, &[], &["nowhere", "dataset-fashion-mnist"]);
    // The good pair runs.
    let (code, err) = run(dir.path(), &cfg(&images, &labels, ""), &[]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_finite_data_set_that_would_run_out_is_refused_up_front() {
    let cfg = r#"
generations = 10
[target]
kind = "faithful"
[model]
kind = "kde"
bandwidth = "scott"
[loop]
schedule = "fresh"
train_size = 100
fresh_fraction = 0.5
"#;
    assert_rejected(
        cfg,
        &[],
        &["draw 550 real points", "training split has 218"],
    );
}

#[test]
fn a_fit_that_breaks_down_says_which_key_to_change_and_leaves_nothing() {
    // some digit pixels are always 0, so an unregularised mixture covariance is singular
    let cfg = r#"
generations = 2
samples_per_generation = 100
[target]
kind = "digits"
[model]
kind = "gmm"
components = 2
reg_covar = 0.0
[loop]
schedule = "replace"
train_size = 500
"#;
    assert_rejected(cfg, &[], &["seed 0", "model.reg_covar"]);
}

const DIFFUSION: &str = r#"
seed = 0
generations = 1
samples_per_generation = 100
[target]
kind = "gaussian"
dim = 2
[model]
kind = "diffusion"
denoiser = "kde"
bandwidth = 0.3
sample_steps = 20
[loop]
schedule = "replace"
train_size = 50
"#;

#[test]
fn diffusion_keys_that_do_not_apply_are_rejected() {
    assert_rejected(
        DIFFUSION,
        &["--set", "model.hidden=[64]"],
        &["model.hidden", "denoiser = \"mlp\""],
    );
    assert_rejected(
        DIFFUSION,
        &["--set", "model.sampler=\"leapfrog\""],
        &["model.sampler", "leapfrog", "euler-maruyama"],
    );
    assert_rejected(
        DIFFUSION,
        &["--set", "model.eta=0.5"],
        &["model.eta", "ddim"],
    );
    assert_rejected(
        DIFFUSION,
        &["--set", "model.t_min=5000"],
        &["model.t_min", "1000"],
    );
    assert_rejected(
        DIFFUSION,
        &["--set", "model.grid_rho=5"],
        &["model.grid_rho", "sigma_grid = \"karras\""],
    );
    let mlp = DIFFUSION.replace("denoiser = \"kde\"\nbandwidth = 0.3", "denoiser = \"mlp\"");
    assert_rejected(
        &mlp,
        &["--set", "model.lr_decay=\"linear\""],
        &["model.lr_decay", "linear", "none", "cosine"],
    );
    assert_rejected(
        DIFFUSION,
        &[
            "--set",
            "model.sigma_grid=\"karras\"",
            "--set",
            "model.grid_rho=0",
        ],
        &["model.grid_rho", "> 0"],
    );
}

/// The U-Net's keys, and data that are not square images, are one error each.
#[test]
fn unet_keys_and_non_image_data_are_rejected() {
    let unet = DIFFUSION.replace(
        "denoiser = \"kde\"\nbandwidth = 0.3",
        "denoiser = \"unet\"\ntrain_steps = 2",
    );
    assert_rejected(
        &unet,
        &["--set", "model.groups=3"],
        &["model.groups = 3", "divisor"],
    );
    assert_rejected(&unet, &["--set", "model.channels=[]"], &["model.channels"]);
    assert_rejected(&unet, &["--set", "model.blocks=0"], &["model.blocks"]);
    assert_rejected(
        &unet,
        &["--set", "model.hidden=[64]"],
        &["model.hidden", "denoiser = \"mlp\""],
    );
    assert_rejected(&unet, &[], &["unet", "square greyscale images"]);
}

#[test]
fn reconstruct_rejects_times_outside_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exp.toml");
    std::fs::write(&cfg, DIFFUSION).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .arg("reconstruct")
        .arg(&cfg)
        .args(["--steps", "0,2000", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--steps: 2000") && err.contains("0 … 1000"),
        "{err}"
    );
    assert!(!dir.path().join("out").exists());
    // A good sweep writes the csv with one row per time.
    let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .arg("reconstruct")
        .arg(&cfg)
        .args(["--steps", "0,500,1000", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(dir.path().join("out/reconstruction.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("t,sigma,rms_distance"));
}

/// `ouro classifier` needs a finite labelled data set; anything else is one line, no file.
#[test]
fn classifier_needs_a_labelled_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exp.toml");
    std::fs::write(&cfg, GOOD).unwrap();
    let out = dir.path().join("c.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .args([
            "classifier",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("finite labelled data set") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!out.exists());
}

/// Ctrl-C (SIGINT) and SIGTERM in the middle of a run remove its hidden partial folder: nothing
/// is left beside the config, and the exit status says it was interrupted.
#[test]
fn an_interrupted_run_leaves_nothing() {
    let long = GOOD
        .replace("generations = 2", "generations = 100000")
        .replace(
            "samples_per_generation = 100",
            "samples_per_generation = 20000",
        );
    for signal in ["INT", "TERM"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("exp.toml");
        std::fs::write(&cfg, &long).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ouro"))
            .arg("run")
            .arg(&cfg)
            .arg("--out")
            .arg(dir.path().join("out"))
            .arg("--quiet")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let partial = dir.path().join(format!(".out.partial-{}", child.id()));
        let started = std::time::Instant::now();
        while !partial.join("config.toml").exists() {
            assert!(started.elapsed().as_secs() < 60, "the run never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let killed = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(killed.success());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "SIG{signal}: {err}");
        assert!(err.contains("interrupted"), "{err}");
        assert_only_the_config_is_left(dir.path(), &format!("SIG{signal}"));
    }
}

/// Settings that used to be accepted and silently ignored: a bias longer than the data's
/// dimension, and a warm start for a learner fitted in closed form.
#[test]
fn keys_without_effect_are_errors() {
    assert_rejected(
        &DIFFUSION.replace("[loop]", "[model.error]\nbias = [0.1, 0.2, 0.3]\n[loop]"),
        &[],
        &["model.error.bias has 3 entries", "2 coordinates"],
    );
    assert_rejected(
        GOOD,
        &["--set", "loop.warm_start=true"],
        &["loop.warm_start = true", "model.kind = \"gaussian\""],
    );
    let kde = GOOD.replace(
        "kind = \"gaussian\"\n[loop]",
        "kind = \"kde\"\nbandwidth = 0.5\n[loop]",
    );
    assert_rejected(
        &kde,
        &["--set", "loop.warm_start=true"],
        &["loop.warm_start = true", "model.kind = \"kde\""],
    );
    assert_rejected(
        DIFFUSION,
        &["--set", "loop.warm_start=true"],
        &["loop.warm_start = true", "model.denoiser = \"kde\""],
    );
}

/// `ouro sample --set` samples a saved diffusion model another way: the saved sampling keys
/// given again redraw the run's samples bit for bit, another sampler and step count draw other
/// points, and a key the learner rejects is one line with nothing written.
#[test]
fn sample_overrides_the_saved_sampling_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(dir.path(), DIFFUSION, &[]);
    assert_eq!(code, 0, "{err}");
    let model = dir.path().join("out/models/seed-0/gen-000.safetensors");
    let run_samples = std::fs::read(dir.path().join("out/samples/seed-0/gen-000.npy")).unwrap();
    let sample = |name: &str, set: &[&str]| {
        let out = dir.path().join(name);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ouro"));
        cmd.arg("sample")
            .arg(&model)
            .args(["--n", "100", "--out"])
            .arg(&out);
        for s in set {
            cmd.args(["--set", s]);
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        (o.status.code(), err, std::fs::read(&out).ok())
    };
    let (code, err, same) = sample("same.npy", &["sample_steps=20"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(same.unwrap(), run_samples);
    let (code, err, other) = sample("dpm.npy", &["sampler=dpmpp-2m", "sample_steps=7"]);
    assert_eq!(code, Some(0), "{err}");
    let other = other.unwrap();
    assert_eq!(other.len(), run_samples.len());
    assert_ne!(other, run_samples);
    let (code, err, written) = sample("bad.npy", &["sampler=nope"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--set sampler=nope") && err.contains("sampler"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(written.is_none());
    // a model saved with a Karras grid (its ρ filled in) samples on the schedule's grid
    let karras = tempfile::tempdir().unwrap();
    let (code, err) = run(
        karras.path(),
        DIFFUSION,
        &["--set", "model.sigma_grid=karras"],
    );
    assert_eq!(code, 0, "{err}");
    let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
        .arg("sample")
        .arg(karras.path().join("out/models/seed-0/gen-000.safetensors"))
        .args(["--n", "10", "--set", "sigma_grid=schedule", "--out"])
        .arg(karras.path().join("s.npy"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // the guidance weight is a sampling key too: the saved one redraws the run, 0 draws others
    let guided = tempfile::tempdir().unwrap();
    let config = "seed = 0\ngenerations = 1\nsamples_per_generation = 50\n[target]\nkind = \"digits\"\n\
                  [model]\nkind = \"diffusion\"\ndenoiser = \"kde\"\nbandwidth = 0.3\nconditional = true\n\
                  guidance = 1.0\nsample_steps = 10\n[loop]\nschedule = \"replace\"\ntrain_size = 200\n";
    let (code, err) = run(guided.path(), config, &[]);
    assert_eq!(code, 0, "{err}");
    let draw = |set: &str| {
        let out = guided.path().join(format!("{set}.npy"));
        let o = Command::new(env!("CARGO_BIN_EXE_ouro"))
            .arg("sample")
            .arg(guided.path().join("out/models/seed-0/gen-000.safetensors"))
            .args(["--n", "50", "--set", set, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        std::fs::read(out).unwrap()
    };
    let run_samples = std::fs::read(guided.path().join("out/samples/seed-0/gen-000.npy")).unwrap();
    assert_eq!(draw("guidance=1.0"), run_samples);
    assert_ne!(draw("guidance=0"), run_samples);
}

/// `ouro sample` on a saved model draws, from the stream of the run's seed and generation (read
/// off the path), exactly the run's samples of that generation; `ouro learners` lists every
/// `[model] kind`; a bad model file or --n is one line.
#[test]
fn sample_redraws_a_runs_samples_from_its_saved_model() {
    let dir = tempfile::tempdir().unwrap();
    let config = GOOD.replace(
        "kind = \"gaussian\"\n[loop]",
        "kind = \"gmm\"\ncomponents = 2\n[loop]",
    );
    let (code, err) = run(dir.path(), &config, &["--set", "seed=4"]);
    assert_eq!(code, 0, "{err}");
    let ouro = || Command::new(env!("CARGO_BIN_EXE_ouro"));
    let model = dir.path().join("out/models/seed-4/gen-001.safetensors");
    let drawn = dir.path().join("drawn.npy");
    let o = ouro()
        .arg("sample")
        .arg(&model)
        .args(["--n", "100", "--out"])
        .arg(&drawn)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read(&drawn).unwrap(),
        std::fs::read(dir.path().join("out/samples/seed-4/gen-001.npy")).unwrap()
    );
    // an existing file is not replaced without --force; --n 0 and a missing model are refused
    for (args, fragment) in [
        (vec!["--n", "100"], "already exists"),
        (vec!["--n", "0", "--force"], "--n: expected at least 1"),
    ] {
        let o = ouro()
            .arg("sample")
            .arg(&model)
            .args(&args)
            .arg("--out")
            .arg(&drawn)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(fragment) && err.lines().count() == 1, "{err}");
    }
    let o = ouro()
        .args(["sample", "nowhere.safetensors", "--n", "5", "--out"])
        .arg(dir.path().join("x.npy"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("nowhere.safetensors: cannot read it"), "{err}");
    let o = ouro().arg("learners").output().unwrap();
    let listed = String::from_utf8_lossy(&o.stdout);
    for kind in [
        "gaussian",
        "gmm",
        "kde",
        "histogram",
        "diffusion",
        "command",
    ] {
        assert!(listed.lines().any(|l| l.starts_with(kind)), "{listed}");
    }
}

/// `OURO_ISA` names a kernel set: an unknown name, or one wider than the CPU runs, is one line
/// naming the variable and what it accepts; a narrower one runs.
#[test]
fn a_bad_ouro_isa_is_one_error() {
    let ouro = |isa: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_ouro"))
            .arg("learners")
            .env("OURO_ISA", isa)
            .output()
            .unwrap()
    };
    let o = ouro("sse9");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("OURO_ISA = \"sse9\"") && err.contains("\"portable\", \"avx2\" or \"avx512\""),
        "{err}"
    );
    let o = ouro("portable");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    if ouro::nn::isa::Isa::detected() < ouro::nn::isa::Isa::Avx512 {
        let o = ouro("avx512");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2));
        assert!(err.contains("this CPU runs at most"), "{err}");
    }
}

/// Output into a pipe whose reader has gone (`ouro learners | head -1`) ends the process quietly:
/// no panic message, no backtrace.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_quietly() {
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' bench gemm | head -c 1 >/dev/null",
            env!("CARGO_BIN_EXE_ouro")
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}
