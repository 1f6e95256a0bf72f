//! The `ouro` command line: `run`, `demo`, `metrics`.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::experiment::provenance;
use crate::experiment::run_dir::{self, RunOptions};
use crate::report;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};

/// A laboratory for self-consuming generative models.
#[derive(Parser, Debug)]
#[command(name = "ouro", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the experiment declared in a TOML file and write its run folder.
    Run {
        /// The experiment file (see examples/).
        config: PathBuf,
        /// Run folder to create (config.toml, metrics.csv, metrics.png, samples/).
        #[arg(long)]
        out: PathBuf,
        /// Override a config key, e.g. --set loop.fresh_fraction=0.1 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Worker threads (0 = all cores); results are identical for any value.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Replace the run folder if it exists.
        #[arg(long)]
        force: bool,
        /// Continue a run that was killed (its hidden partial folder) from the last generation
        /// each seed finished; the result is the same bytes as a run that never stopped.
        #[arg(long, conflicts_with = "force")]
        resume: bool,
        /// Print no table.
        #[arg(long)]
        quiet: bool,
        /// Write DIR/report.html at the end (see `ouro report`).
        #[arg(long)]
        report: bool,
    },
    /// Run a built-in experiment (fully synthetic Gaussian loop) and compare it with theory.
    Demo {
        /// Run folder (replaced if it exists).
        #[arg(long, default_value = "runs/demo")]
        out: PathBuf,
        /// Worker threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Reconstruction sweep (Yamaguchi & Fukuda): fit the diffusion model on the real training set,
    /// noise those points to each time t and sample back; writes reconstruction.csv and the sets.
    Reconstruct {
        /// The experiment file ([model] kind = "diffusion").
        config: PathBuf,
        /// Times in the schedule's units, e.g. 0,100,200,500,1000 (diffusion steps for VP schedules).
        #[arg(long, value_delimiter = ',', required = true)]
        steps: Vec<f64>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Override a config key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Worker threads (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Replace the output folder if it exists.
        #[arg(long)]
        force: bool,
        /// Write DIR/report.html at the end (see `ouro report`).
        #[arg(long)]
        report: bool,
    },
    /// List the metrics that `[metrics] names` accepts.
    Metrics,
    /// Run a study: the cells of a grid over config keys ([axes], [zip]), each an ordinary run
    /// folder under DIR/cells/NNN/, then study.csv, summary.csv and study.png over all of them;
    /// here, or as a job array on a Slurm cluster (--executor slurm).
    Sweep {
        /// The study file (see examples/study-*.toml); with --cell, --collect or
        /// --resubmit-failed, the study folder a Slurm submission wrote.
        #[arg(required_unless_present = "status")]
        study: Option<PathBuf>,
        /// Study folder to create (or continue with --resume).
        #[arg(long, required_unless_present_any = ["status", "cell", "collect", "resubmit_failed"])]
        out: Option<PathBuf>,
        /// Override a key of the base experiment in every cell (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Cells run at once; results are identical for any value.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Worker threads in all (0 = all cores), shared by the cells that run at once.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Run only these cells, e.g. 3,5-7.
        #[arg(long)]
        cells: Option<String>,
        /// Print the cells and their resolved configs, and run nothing; with --executor slurm,
        /// write the study folder and its sbatch script without submitting it.
        #[arg(long)]
        dry_run: bool,
        /// Continue the study in --out: finished cells are kept, the others run.
        #[arg(long, conflicts_with = "force")]
        resume: bool,
        /// Replace the study folder if it exists.
        #[arg(long)]
        force: bool,
        /// Print no progress bar.
        #[arg(long)]
        quiet: bool,
        /// Print the state of each cell of the study folder DIR (done, running, partial, failed,
        /// pending, and its Slurm task's state when submitted) and exit.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["study", "out", "dry_run", "resume", "force"])]
        status: Option<PathBuf>,
        /// Where the cells run: here (local), or as a Slurm job array submitted with sbatch
        /// (slurm), which returns at once with the job id.
        #[arg(long, value_enum, default_value = "local")]
        executor: Executor,
        /// Slurm partition of the job array.
        #[arg(long, value_name = "P")]
        partition: Option<String>,
        /// Slurm time limit of each task, e.g. 02:00:00 or 1-00:00:00.
        #[arg(long, value_name = "LIMIT")]
        time: Option<String>,
        /// CPUs of each Slurm task (and its threads).
        #[arg(long, default_value_t = 1, value_name = "N")]
        cpus_per_task: usize,
        /// Memory of each Slurm task, e.g. 8G.
        #[arg(long, value_name = "SIZE")]
        mem: Option<String>,
        /// At most this many Slurm tasks at once.
        #[arg(long, value_name = "K")]
        max_running: Option<usize>,
        /// One more sbatch option for the job array, e.g. --sbatch-arg=--account=lab
        /// (repeatable).
        #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
        sbatch_arg: Vec<String>,
        /// Run cell I of the submitted study folder (what each Slurm task runs), resuming it,
        /// and assemble the study tables if it was the last.
        #[arg(long, value_name = "I", requires = "resume", conflicts_with_all = ["out", "collect", "resubmit_failed", "dry_run"])]
        cell: Option<usize>,
        /// Assemble study.csv, summary.csv and study.png of the submitted study folder from its
        /// finished cells.
        #[arg(long, conflicts_with_all = ["out", "resubmit_failed", "dry_run"])]
        collect: bool,
        /// Submit again the cells of the study folder that failed or were cancelled (not
        /// finished, queued or running); they resume from their last checkpoint.
        #[arg(long, conflicts_with = "out")]
        resubmit_failed: bool,
        /// Write DIR/report.html when the study has run (locally), or with --collect.
        #[arg(long, conflicts_with_all = ["status", "cell", "resubmit_failed", "dry_run"])]
        report: bool,
    },
    /// Ask a seed paper's headline question again at CPU scale: runs its studies, judges each
    /// claim against the measurements and writes claims.csv, claims.md and the figures.
    Reproduce {
        /// The paper: khelifa2026, bertrand2024, yi2023 or gerstgrasser2024 (`ouro reproduce x`
        /// lists them).
        paper: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The one-minute version (fewer seeds, generations and points).
        #[arg(long)]
        quick: bool,
        /// Cells run at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
        /// Worker threads in all (0 = all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Replace the output folder if it exists.
        #[arg(long)]
        force: bool,
        /// Write DIR/report.html at the end (see `ouro report`).
        #[arg(long)]
        report: bool,
    },
    /// Write one self-contained HTML page (DIR/report.html: charts with their theory, tables,
    /// sample pictures, provenance) for a run, study, reconstruction or reproduction folder.
    Report {
        /// The folder.
        dir: PathBuf,
        /// Where to write the page (default DIR/report.html).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write one HTML page overlaying the metrics of several run or study folders.
    Compare {
        /// The folders (two or more).
        #[arg(required = true, num_args = 2..)]
        dirs: Vec<PathBuf>,
        /// Where to write the page.
        #[arg(long, value_name = "FILE", default_value = "compare.html")]
        out: PathBuf,
    },
    /// List the learners that `[model] kind` accepts.
    Learners,
    /// Draw samples from a saved model (a run folder's models/seed-S/gen-GGG.safetensors) and
    /// write them as .npy (with FILE's stem + .labels.npy for a model whose samples carry labels).
    Sample {
        /// The saved model.
        model: PathBuf,
        /// Number of samples.
        #[arg(long)]
        n: usize,
        /// The .npy file to write.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the (seed, generation, samples) stream the draws come from (default: the S of
        /// a path with seed-S in it, else 0). With the file's own seed and generation and n =
        /// samples_per_generation, the draws are the run's samples/seed-S/gen-GGG.npy.
        #[arg(long)]
        seed: Option<u64>,
        /// Generation of that stream (default: the G of a file named gen-GGG, else 0).
        #[arg(long)]
        generation: Option<u64>,
        /// Override a key of the saved [model] table before sampling, e.g. --set sampler=dpmpp-2m
        /// --set sample_steps=10 --set guidance=2 (repeatable; sampling keys change how the same
        /// fitted model is sampled).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Worker threads (0 = all cores); the draws do not depend on it.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Train the MLP classifier on the training split of CONFIG's labelled data set (first seed)
    /// and save it: its held-out accuracy is printed, and its last hidden layer is the feature
    /// space of `ouro eval --features`.
    Classifier {
        /// Experiment file whose `[target]` is a labelled data set (digits, mnist, …).
        config: PathBuf,
        /// Where to write the classifier (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Override a config key (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Compare a generated set with a real one (and a training set): fidelity, coverage,
    /// distances and memorisation, from .npy files of shape [n, d].
    Eval {
        /// The real points (the reference: k-NN balls of precision and coverage are theirs).
        #[arg(required_unless_present = "list")]
        real: Option<PathBuf>,
        /// The generated points.
        #[arg(required_unless_present = "list")]
        generated: Option<PathBuf>,
        /// The generative model's training set (enables memorized, copies, authenticity,
        /// nn_gap).
        #[arg(long)]
        train: Option<PathBuf>,
        /// Metrics to compute, comma-separated (default: every one the inputs allow; see
        /// --list).
        #[arg(long, value_delimiter = ',')]
        metrics: Vec<String>,
        /// Print one JSON object, metric name → number (null where undefined).
        #[arg(long)]
        json: bool,
        /// k of the k-NN balls.
        #[arg(long, default_value_t = 5)]
        k: usize,
        /// Ratio of the nearest-neighbour memorisation test.
        #[arg(long, default_value_t = 1.0 / 3.0)]
        ratio: f64,
        /// Random directions of sliced_w2.
        #[arg(long, default_value_t = 128)]
        projections: usize,
        /// Seed of those directions.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// RBF bandwidths of mmd2, comma-separated: `median`, multiples of it (`0.5x`), or
        /// numbers; with several, mmd2 is the mean over them.
        #[arg(long, value_delimiter = ',', default_value = "median")]
        bandwidths: Vec<String>,
        /// k of the KSG mutual-information estimate (mi_excess).
        #[arg(long, default_value_t = 3)]
        ksg_k: usize,
        /// Class labels of the real points (.npy of integers ≥ 0, one per row).
        #[arg(long, value_name = "LABELS.npy")]
        real_labels: Option<PathBuf>,
        /// Class labels of the generated points (enables synthetic_accuracy).
        #[arg(long, value_name = "LABELS.npy")]
        generated_labels: Option<PathBuf>,
        /// Class labels of the training points (enables real_accuracy).
        #[arg(long, value_name = "LABELS.npy")]
        train_labels: Option<PathBuf>,
        /// Compare the sets in the feature space of this classifier (`ouro classifier`): every
        /// set is mapped through its last hidden layer first (FID-style metrics on images).
        /// synthetic_accuracy and real_accuracy still train on the points themselves, as in
        /// `ouro run`.
        #[arg(long, value_name = "CLASSIFIER.safetensors")]
        features: Option<PathBuf>,
        /// Worker threads (0 = all cores); results are identical for any value.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// List the metrics and exit.
        #[arg(long)]
        list: bool,
    },
    /// Time the reference workloads: bench/torch_reference.py (MLP denoiser, D + 32 → 3×256
    /// SiLU) and bench/metrics_reference.py (metrics on n × D arrays).
    Bench {
        /// "train" (Adam steps/s and GFLOP/s of the layer products, batch 512), "sample" (DDPM
        /// samples/s, extrapolated to 1000 steps), "unet-train" and "unet-sample" (the same for
        /// the default U-Net on 28×28 images, batch 64; sampling in network evaluations of one
        /// image per second), "gemm" (GFLOP/s of the 256×256×256 layer product, one thread,
        /// ouro's kernel against matrixmultiply, and the core's FMA peak) or "metrics" (seconds
        /// per metric on n real and n generated points).
        #[arg(value_parser = ["train", "sample", "unet-train", "unet-sample", "gemm", "metrics"])]
        mode: String,
        /// Data dimension D (default 2; 64 for metrics).
        #[arg(long)]
        dim: Option<usize>,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Timed training steps, or timed sampling steps (of 1000).
        #[arg(long)]
        steps: Option<usize>,
        /// Untimed warm-up training steps.
        #[arg(long, default_value_t = 20)]
        warmup: usize,
        /// Points sampled (default 10 000; 512 images for unet-sample).
        #[arg(long)]
        n: Option<usize>,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Metrics: timed runs per workload (the best is printed).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Metrics: also write the arrays as DIR/real.npy and DIR/generated.npy.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// `ouro bench metrics`: writes the arrays if asked, then one line per workload.
fn bench_metrics(
    n: usize,
    dim: usize,
    seed: u64,
    threads: usize,
    repeats: usize,
    out: Option<&Path>,
) -> Result<()> {
    use crate::metrics::bench;
    if n < 6 {
        return Err(Error::Run(
            "--n: the metric benchmark needs more than k = 5 points".into(),
        ));
    }
    let (real, generated) = bench::data(n, dim, seed);
    if let Some(dir) = out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Run(format!("--out {}: {e}", dir.display())))?;
        crate::data::write_npy(&dir.join("real.npy"), &real)?;
        crate::data::write_npy(&dir.join("generated.npy"), &generated)?;
    }
    for t in bench::run(real.view(), generated.view(), threads, repeats)? {
        let values: Vec<String> = t
            .values
            .iter()
            .map(|(k, v)| format!("{k}={v:.6}"))
            .collect();
        println!(
            "ouro metric={} threads={threads} n={n} d={dim} time={:.6}s {}",
            t.name,
            t.seconds,
            values.join(" ")
        );
    }
    Ok(())
}

/// A value for a terminal table: 4 decimals, or scientific notation when small.
fn format_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The built-in demo experiment.
pub const DEMO_CONFIG: &str = r#"# Fully synthetic loop: each generation fits a Gaussian by maximum likelihood to 20 samples of the
# previous one. Theory: the expected variance shrinks as ((n-1)/n)^(g+1).
seed = 0
repeats = 200
generations = 100
samples_per_generation = 2000
save_every = 33

[target]
kind = "gaussian"
dim = 2

[model]
kind = "gaussian"

[loop]
schedule = "replace"
train_size = 20

[metrics]
names = ["cov_trace_ratio", "mean_shift", "kl_gaussian", "w2_gaussian"]
"#;

/// Where `ouro sweep` runs its cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Executor {
    /// In this process.
    Local,
    /// As a Slurm job array.
    Slurm,
}

/// Runs the command line; returns the error to print.
pub fn main_with(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            out,
            set,
            threads,
            force,
            resume,
            quiet,
            report: want_report,
        } => {
            let started = provenance::Started::now();
            let exp = load_experiment(&config, &set)?;
            let opts = RunOptions {
                force,
                threads,
                progress: !quiet,
                resume,
            };
            let result = run_dir::run(&exp, &out, &opts)?;
            if result.already_finished {
                println!("{} is already finished; nothing to run", out.display());
                return Ok(());
            }
            for w in crate::theory::predict::warnings(&result.theory) {
                eprintln!("{w}");
            }
            if !quiet {
                println!("{}", report::table(&result.names, &result.rows, 11));
                if !result.theory.is_empty() {
                    println!("{}", crate::theory::predict::table(&result.theory, 11));
                }
                println!("run folder: {}", out.display());
                println!("plot:       {}", result.plot.display());
            }
            finish(&out, &started, threads, want_report, quiet)
        }
        Command::Demo { out, threads } => demo(&out, threads),
        Command::Reconstruct {
            config,
            steps,
            out,
            set,
            threads,
            force,
            report: want_report,
        } => {
            let started = provenance::Started::now();
            let exp = load_experiment(&config, &set)?;
            let sweep = watched(threads, || {
                crate::experiment::reconstruct::reconstruct(&exp, &steps, &out, force)
            })??;
            let mut head = format!("{:>8} {:>9}", "t", "sigma");
            for c in &sweep.columns {
                head.push_str(&format!(" {c:>15}"));
            }
            println!("{head}");
            for (t, sigma, v) in &sweep.rows {
                let mut line = format!("{t:>8} {sigma:>9.4}");
                for x in v {
                    line.push_str(&format!(" {:>15}", format_value(*x)));
                }
                println!("{line}");
            }
            println!("folder: {}", out.display());
            finish(&out, &started, threads, want_report, false)
        }
        Command::Bench {
            mode,
            dim,
            threads,
            steps,
            warmup,
            n,
            seed,
            repeats,
            out,
        } => {
            let dim = dim.unwrap_or(if mode == "metrics" { 64 } else { 2 });
            if dim == 0 || threads == 0 {
                return Err(Error::Run(
                    "--dim and --threads: expected at least 1".into(),
                ));
            }
            use crate::diffusion::bench;
            if mode == "train" {
                let steps = steps.unwrap_or(200).max(1);
                let (el, loss) = bench::train(dim, warmup, steps, seed, threads)?;
                println!(
                    "ouro mlp D={dim} threads={threads} steps={steps} time={el:.3}s steps_per_s={:.2} gflop_per_s={:.1} final_loss={loss:.6}",
                    steps as f64 / el,
                    steps as f64 * bench::train_flops(dim) / el / 1e9
                );
            } else if mode == "unet-train" {
                let steps = steps.unwrap_or(20).max(1);
                let (el, loss) = bench::unet_train(warmup.min(5), steps, seed, threads)?;
                println!(
                    "ouro unet threads={threads} steps={steps} time={el:.3}s steps_per_s={:.3} images_per_s={:.1} gflop_per_s={:.1} final_loss={loss:.6}",
                    steps as f64 / el,
                    64.0 * steps as f64 / el,
                    64.0 * steps as f64 * 3.0 * bench::unet_flops() / el / 1e9
                );
            } else if mode == "unet-sample" {
                let steps = steps.unwrap_or(5).clamp(1, 1000);
                let n = n.unwrap_or(512);
                let el = bench::unet_sample(n, steps, seed, threads)?;
                println!(
                    "ouro unet-sample threads={threads} n={n} steps={steps} time={el:.3}s evals_per_s={:.1} gflop_per_s={:.1}",
                    (n * steps) as f64 / el,
                    (n * steps) as f64 * bench::unet_flops() / el / 1e9
                );
            } else if mode == "metrics" {
                let n = n.unwrap_or(10_000);
                return bench_metrics(n, dim, seed, threads, repeats, out.as_deref());
            } else if mode == "gemm" {
                println!("kernels: {}", crate::nn::isa::isa().describe());
                for (name, gflops) in bench::gemm(256, 400) {
                    println!("{name:<16} 256x256x256 GFLOP/s={gflops:.1}");
                }
                if let Some((peak, unit)) = bench::fma_peak() {
                    println!(
                        "{:<16} {unit}, registers only GFLOP/s={peak:.1}",
                        "fma peak"
                    );
                }
            } else {
                let steps = steps.unwrap_or(50).clamp(1, 1000);
                let n = n.unwrap_or(10_000);
                let el = bench::sample(dim, n, steps, seed, threads)?;
                let full = el * 1000.0 / steps as f64;
                println!(
                    "ouro sample D={dim} threads={threads} n={n} steps={steps} time={el:.3}s extrap_1000_steps={full:.2}s samples_per_s={:.1}",
                    n as f64 / full
                );
            }
            Ok(())
        }
        Command::Eval {
            real,
            generated,
            train,
            metrics,
            json,
            k,
            ratio,
            projections,
            seed,
            bandwidths,
            ksg_k,
            real_labels,
            generated_labels,
            train_labels,
            features,
            threads,
            list,
        } => {
            if list {
                for m in crate::metrics::eval::EVAL_METRICS {
                    let t = match (m.needs_train, m.needs_labels) {
                        (false, false) => "",
                        (true, false) => " (needs --train)",
                        (false, true) => " (needs --real-labels, --generated-labels)",
                        (true, true) => " (needs --train, --real-labels, --train-labels)",
                    };
                    println!("{:<14} {}{t}", m.name, m.description);
                }
                return Ok(());
            }
            let bandwidths = bandwidths
                .iter()
                .map(|b| crate::metrics::eval::Bandwidth::parse(b))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| Error::Run(format!("--bandwidths: {e}")))?;
            if ksg_k == 0 {
                return Err(Error::Run("--ksg-k: expected at least 1".into()));
            }
            let opts = crate::metrics::eval::EvalOptions {
                k,
                memorization_ratio: ratio,
                projections,
                seed,
                bandwidths,
                ksg_k,
            };
            let (Some(real), Some(generated)) = (real, generated) else {
                return Err(Error::Run("expected REAL.npy and GENERATED.npy".into()));
            };
            let labels = [
                real_labels.as_deref(),
                generated_labels.as_deref(),
                train_labels.as_deref(),
            ];
            let features = features
                .as_deref()
                .map(crate::classifier::Classifier::load)
                .transpose()?;
            eval(
                &real,
                &generated,
                train.as_deref(),
                labels,
                features.as_ref(),
                &metrics,
                json,
                &opts,
                threads,
            )
        }
        Command::Classifier { config, out, set } => train_classifier(&config, &set, &out),
        Command::Sweep {
            study,
            out,
            set,
            jobs,
            threads,
            cells,
            dry_run,
            resume,
            force,
            quiet,
            status,
            executor,
            partition,
            time,
            cpus_per_task,
            mem,
            max_running,
            sbatch_arg,
            cell,
            collect,
            resubmit_failed,
            report: want_report,
        } => {
            let started = provenance::Started::now();
            use crate::experiment::{slurm, study};
            let slurm_opts = slurm::SlurmOptions {
                partition,
                time,
                cpus_per_task,
                mem,
                max_running,
                sbatch_args: sbatch_arg,
                dry_run,
            };
            if let Some(dir) = status {
                let tasks = slurm::task_states(&dir);
                for (i, (cell, values, state)) in study::status(&dir)?.into_iter().enumerate() {
                    match tasks.get(&i) {
                        Some(t) => println!("{cell}  {state:<8} slurm {t:<10} {values}"),
                        None => println!("{cell}  {state:<8} {values}"),
                    }
                }
                return Ok(());
            }
            let path = study.expect("clap requires STUDY without --status");
            if let Some(i) = cell {
                // A Slurm task: its partial folder survives a kill, and USR1 stops it at a
                // checkpoint.
                run_dir::keep_partial_folders();
                #[cfg(unix)]
                {
                    extern "C" fn on_usr1(_: libc::c_int) {
                        run_dir::request_stop();
                    }
                    // SAFETY: the handler only stores to an atomic flag (async-signal-safe).
                    unsafe {
                        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
                    }
                }
                return slurm::run_task(&path, i, threads);
            }
            if collect {
                let s = slurm::load(&path)?;
                study::write_tables(&s, &path)?;
                println!("study tables: {}", path.join("study.csv").display());
                if want_report {
                    println!("report: {}", report::page::write(&path, None)?.display());
                }
                return Ok(());
            }
            if resubmit_failed {
                let sub = slurm::resubmit_failed(&path, &slurm_opts)?;
                match sub.job {
                    Some(job) => println!(
                        "submitted job {job}: cells {}",
                        sub.cells
                            .iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    None if sub.cells.is_empty() => {
                        println!("no cell of {} needs resubmitting", path.display())
                    }
                    None => println!("script: {} (not submitted)", sub.script.display()),
                }
                return Ok(());
            }
            let out = out.expect("clap requires --out");
            let s = study::Study::load(&path, &set)?;
            let only = cells
                .map(|c| study::parse_cells(&c, s.cells.len()))
                .transpose()?;
            if executor == Executor::Slurm {
                if want_report {
                    return Err(Error::Run(format!(
                        "--report: the study runs on the cluster after this command returns; when \
                         it has finished, `ouro report {}` (or `ouro sweep {0} --collect --report`) \
                         writes the page",
                        out.display()
                    )));
                }
                let here = path.parent().unwrap_or(Path::new("."));
                let here = if here.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    here
                };
                let source = slurm::StudySource {
                    here: here.to_path_buf(),
                    set: set.clone(),
                };
                let sub = slurm::submit(
                    &s,
                    &source,
                    &out,
                    only.as_deref(),
                    force,
                    resume,
                    &slurm_opts,
                )?;
                if !sub.cells.is_empty() {
                    println!("script: {}", sub.script.display());
                }
                match sub.job {
                    Some(job) => {
                        println!("submitted job {job}: {} cells", sub.cells.len());
                        println!(
                            "watch: ouro sweep --status {}   logs: {}",
                            out.display(),
                            out.join("slurm").join("logs").display()
                        );
                    }
                    None if sub.cells.is_empty() => {
                        println!("every cell of {} is already finished", out.display())
                    }
                    None => println!("dry run: {} cells, not submitted", sub.cells.len()),
                }
                return Ok(());
            }
            let slurm_only = [
                ("--partition", slurm_opts.partition.is_some()),
                ("--time", slurm_opts.time.is_some()),
                ("--mem", slurm_opts.mem.is_some()),
                ("--max-running", slurm_opts.max_running.is_some()),
                ("--sbatch-arg", !slurm_opts.sbatch_args.is_empty()),
                ("--cpus-per-task", slurm_opts.cpus_per_task != 1),
            ];
            if let Some((flag, _)) = slurm_only.iter().find(|(_, given)| *given) {
                return Err(Error::Run(format!(
                    "{flag} is an option of --executor slurm; the local executor takes --jobs and \
                     --threads"
                )));
            }
            if dry_run {
                for c in &s.cells {
                    println!("# cell {} ({})", c.name(), c.label());
                    println!("{}", c.experiment.config.to_toml());
                }
                println!("{} cells", s.cells.len());
                return Ok(());
            }
            let opts = study::SweepOptions {
                jobs,
                threads,
                only,
                force,
                resume,
                progress: !quiet,
            };
            let report = study::sweep(&s, &out, &opts)?;
            if resume && report.ran.is_empty() && report.failed.is_empty() {
                println!(
                    "every cell of {} is already finished; nothing to run",
                    out.display()
                );
            } else {
                println!(
                    "{} cells run, {} already finished, {} failed",
                    report.ran.len(),
                    report.kept.len(),
                    report.failed.len()
                );
            }
            println!("study folder: {}", out.display());
            if !report.ran.is_empty() {
                provenance::append(&out, started.finish(threads))?;
            }
            if want_report {
                println!(
                    "report: {}",
                    crate::report::page::write(&out, None)?.display()
                );
            }
            if let Some((i, e)) = report.failed.first() {
                return Err(Error::Run(format!(
                    "{} cells failed (cells/NNN.error); cell {i:03}: {e}",
                    report.failed.len()
                )));
            }
            Ok(())
        }
        Command::Reproduce {
            paper,
            out,
            quick,
            jobs,
            threads,
            force,
            report: want_report,
        } => {
            let started = provenance::Started::now();
            let opts = crate::reproduce::ReproduceOptions {
                quick,
                jobs,
                threads,
                force,
            };
            let claims = crate::reproduce::reproduce(&paper, &out, &opts)?;
            for (i, c) in claims.iter().enumerate() {
                println!("{}. [{}] {}", i + 1, c.verdict.name(), c.statement);
                println!("   {}: {}", c.rule, c.measured);
            }
            println!("claims: {}", out.join("claims.md").display());
            finish(&out, &started, threads, want_report, false)
        }
        Command::Report { dir, out } => {
            let path = report::page::write(&dir, out.as_deref())?;
            println!("report: {}", path.display());
            Ok(())
        }
        Command::Compare { dirs, out } => {
            report::page::compare(&dirs, &out)?;
            println!("comparison: {}", out.display());
            Ok(())
        }
        Command::Learners => {
            for r in crate::models::LEARNERS {
                println!("{:<12} {}", r.kind, r.about);
            }
            Ok(())
        }
        Command::Sample {
            model,
            n,
            out,
            seed,
            generation,
            set,
            threads,
            force,
        } => {
            let seed = seed.unwrap_or_else(|| path_number(&model, "seed-").unwrap_or(0));
            let generation = generation.unwrap_or_else(|| path_number(&model, "gen-").unwrap_or(0));
            sample_model(&model, n, &out, (seed, generation), &set, threads, force)
        }
        Command::Metrics => {
            use crate::metrics::{ALL, Needs, eval::EVAL_METRICS};
            for m in ALL {
                let note = match m.needs {
                    Needs::Nothing => "",
                    Needs::Gaussians => " (Gaussian target and model)",
                    Needs::Mixture => " (mixture target)",
                    Needs::Density => " (target with a known density)",
                    Needs::Labels => " (labelled target, model.conditional = true)",
                    Needs::Curation => " (a loop with [loop.curate])",
                };
                let default = if m.default { "" } else { " [by name]" };
                println!("{:<16} {}{note}{default}", m.name, m.description);
            }
            for m in EVAL_METRICS
                .iter()
                .filter(|m| !m.needs_labels && ALL.iter().all(|a| a.name != m.name))
            {
                println!(
                    "{:<16} {} (against the reference set) [by name]",
                    m.name, m.description
                );
            }
            Ok(())
        }
    }
}

/// Reads one `ouro eval` input (finite values, checked by the reader) and checks it is not empty.
fn eval_input(path: &std::path::Path, what: &str) -> Result<ndarray::Array2<f32>> {
    let x = crate::data::read_npy(path)?;
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(Error::data(
            path,
            format!("the {what} set is empty (shape {:?})", x.dim()),
        ));
    }
    Ok(x)
}

/// Reads class labels for a set of `n` rows: a 1-D (or n × 1) .npy of integers ≥ 0.
/// The number after `prefix` in the last component of `path` that starts with it (`seed-3` → 3,
/// `gen-004.safetensors` → 4).
fn path_number(path: &Path, prefix: &str) -> Option<u64> {
    path.iter().rev().find_map(|c| {
        let rest = c.to_str()?.strip_prefix(prefix)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

/// Runs `f` on `threads` worker threads (0: every core) with a [`crate::progress::Watch`] whose
/// reports (the work under way) and the time so far are drawn on a terminal, or logged once a
/// minute when stderr is not one.
fn watched<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    let bar = indicatif::ProgressBar::no_length();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{wide_msg}  {elapsed}").expect("valid template"),
    );
    let watch = crate::progress::Watch::new("", bar.clone(), true);
    let result =
        crate::experiment::with_threads(threads, || crate::progress::watching(Some(watch), f));
    bar.finish_and_clear();
    result
}

/// `ouro sample`: `n` draws of the model saved at `model` from the (seed, generation, samples)
/// stream, written to `out` (and the labels beside it) only when all succeeded.
fn sample_model(
    model: &Path,
    n: usize,
    out: &Path,
    (seed, generation): (u64, u64),
    overrides: &[String],
    threads: usize,
    force: bool,
) -> Result<()> {
    if n == 0 {
        return Err(Error::Run("--n: expected at least 1 sample".into()));
    }
    if out.extension().is_none_or(|e| e != "npy") {
        return Err(Error::Run(format!(
            "--out {}: expected a file name ending in .npy",
            out.display()
        )));
    }
    let labels_path = out.with_extension("labels.npy");
    for p in [out, labels_path.as_path()] {
        if p.exists() && !force {
            return Err(Error::Run(format!(
                "{} already exists; choose another --out or pass --force to replace it",
                p.display()
            )));
        }
    }
    let bytes =
        std::fs::read(model).map_err(|e| Error::data(model, format!("cannot read it: {e}")))?;
    let (_, fitted) = crate::models::load_with(&bytes, model, overrides)?;
    let started = std::time::Instant::now();
    let mut rng = crate::rng::stream(seed, generation, crate::rng::Role::Samples);
    let set = watched(threads, || fitted.sample(n, &mut rng))??;
    crate::data::write_npy(out, &set.points)?;
    if let Some(labels) = &set.labels {
        crate::data::write_labels_npy(&labels_path, labels)?;
    }
    let how = if overrides.is_empty() {
        String::new()
    } else {
        format!(" with {}", overrides.join(", "))
    };
    println!(
        "{} samples of {}{how} (seed {seed}, generation {generation}) in {:.1} s written to {}",
        n,
        model.display(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn eval_labels(path: &Path, n: usize, what: &str) -> Result<Vec<u32>> {
    crate::data::read_labels(path, n, &format!("{what} point"))
}

#[allow(clippy::too_many_arguments)]
fn eval(
    real: &Path,
    generated: &Path,
    train: Option<&Path>,
    label_paths: [Option<&Path>; 3],
    features: Option<&crate::classifier::Classifier>,
    names: &[String],
    json: bool,
    opts: &crate::metrics::eval::EvalOptions,
    threads: usize,
) -> Result<()> {
    use crate::metrics::eval::{Labels, evaluate, resolve};
    let [real_lp, gen_lp, train_lp] = label_paths;
    if train_lp.is_some() && train.is_none() {
        return Err(Error::Run("--train-labels: needs --train".into()));
    }
    let present = Labels {
        real: real_lp.map(|_| &[][..]),
        generated: gen_lp.map(|_| &[][..]),
        train: train_lp.map(|_| &[][..]),
    };
    let chosen = resolve(names, train.is_some(), &present)?;
    if opts.k == 0 {
        return Err(Error::Run("--k: expected at least 1".into()));
    }
    if !(opts.memorization_ratio > 0.0 && opts.memorization_ratio <= 1.0) {
        return Err(Error::Run(format!(
            "--ratio {}: expected a number in (0, 1]",
            opts.memorization_ratio
        )));
    }
    if opts.projections == 0 {
        return Err(Error::Run("--projections: expected at least 1".into()));
    }
    let r = eval_input(real, "real")?;
    let g = eval_input(generated, "generated")?;
    let t = train.map(|p| eval_input(p, "training")).transpose()?;
    for (x, path, what) in [(&g, generated, "generated")]
        .into_iter()
        .chain(t.as_ref().zip(train).map(|(x, p)| (x, p, "training")))
    {
        if x.ncols() != r.ncols() {
            return Err(Error::data(
                path,
                format!(
                    "the {what} points have {} dimensions but the real ones ({}) have {}",
                    x.ncols(),
                    real.display(),
                    r.ncols()
                ),
            ));
        }
    }
    // Classifier metrics train on the points themselves, as `ouro run` does; with --features
    // every other metric compares the sets in the feature space. The points are kept only when
    // a classifier metric is asked for.
    let raw = features
        .filter(|_| chosen.iter().any(|m| m.needs_labels))
        .map(|_| (r.clone(), g.clone(), t.clone()));
    let (r, g, t) = match features {
        None => (r, g, t),
        Some(c) => {
            if r.ncols() != c.dim() {
                return Err(Error::data(
                    real,
                    format!(
                        "--features: the classifier takes {}-dimensional points, these have {}",
                        c.dim(),
                        r.ncols()
                    ),
                ));
            }
            let map = |x: &ndarray::Array2<f32>| {
                c.features(x.view()).ok_or_else(|| {
                    Error::Run("--features: the classifier has no hidden layer".into())
                })
            };
            (map(&r)?, map(&g)?, t.as_ref().map(map).transpose()?)
        }
    };
    let knn = ["precision", "recall", "density", "coverage"];
    if chosen.iter().any(|m| knn.contains(&m.name)) {
        for (x, path, what) in [(&r, real, "real"), (&g, generated, "generated")] {
            if x.nrows() <= opts.k {
                return Err(Error::data(
                    path,
                    format!(
                        "the {what} set has {} points; k-NN balls with --k {} need more than k",
                        x.nrows(),
                        opts.k
                    ),
                ));
            }
        }
    }
    if let (Some(t), Some(path)) = (&t, train)
        && t.nrows() < 2
    {
        return Err(Error::data(
            path,
            "the training set needs at least 2 points",
        ));
    }
    let rl = real_lp
        .map(|p| eval_labels(p, r.nrows(), "real"))
        .transpose()?;
    let gl = gen_lp
        .map(|p| eval_labels(p, g.nrows(), "generated"))
        .transpose()?;
    let tl = match (train_lp, &t) {
        (Some(p), Some(t)) => Some(eval_labels(p, t.nrows(), "training")?),
        _ => None,
    };
    let labels = Labels {
        real: rl.as_deref(),
        generated: gl.as_deref(),
        train: tl.as_deref(),
    };
    let values = crate::experiment::with_threads(threads, || {
        let Some((rr, rg, rt)) = &raw else {
            return evaluate(
                r.view(),
                g.view(),
                t.as_ref().map(|t| t.view()),
                &labels,
                &chosen,
                opts,
            );
        };
        let (classify, rest): (Vec<_>, Vec<_>) = chosen.iter().partition(|m| m.needs_labels);
        let mut by_name = evaluate(
            r.view(),
            g.view(),
            t.as_ref().map(|t| t.view()),
            &labels,
            &rest,
            opts,
        );
        by_name.extend(evaluate(
            rr.view(),
            rg.view(),
            rt.as_ref().map(|t| t.view()),
            &labels,
            &classify,
            opts,
        ));
        chosen
            .iter()
            .filter_map(|m| by_name.iter().find(|(n, _)| *n == m.name).copied())
            .collect::<Vec<_>>()
    })?;
    if json {
        let obj: serde_json::Map<String, serde_json::Value> = values
            .iter()
            .map(|&(n, v)| {
                (
                    n.to_string(),
                    serde_json::Number::from_f64(v)
                        .map_or(serde_json::Value::Null, serde_json::Value::Number),
                )
            })
            .collect();
        println!("{}", serde_json::Value::Object(obj));
    } else {
        println!("real: {} ({} × {})", real.display(), r.nrows(), r.ncols());
        println!(
            "generated: {} ({} × {})",
            generated.display(),
            g.nrows(),
            g.ncols()
        );
        if let (Some(t), Some(p)) = (&t, train) {
            println!("train: {} ({} × {})", p.display(), t.nrows(), t.ncols());
        }
        for (n, v) in values {
            println!("{n:<14} {v:.6}");
        }
    }
    Ok(())
}

/// Loads and checks an experiment file; config errors are prefixed with the file's path.
/// `ouro classifier`: trains on the first seed's training pool of the config's target, reports
/// the held-out accuracy, writes the classifier.
fn train_classifier(config: &Path, set: &[String], out: &Path) -> Result<()> {
    use crate::rng::Role;
    let exp = load_experiment(config, set)?;
    let seed = exp.config.seed;
    let pool = exp.target.pool_size().ok_or_else(|| {
        Error::config("target: the classifier needs a finite labelled data set (digits, mnist, …)")
    })?;
    let mut real = exp.target.realize(seed, exp.metrics.eval_samples);
    let (x, labels) = real.draw_labeled(pool, 0, Role::RealInit)?;
    let (Some(labels), Some(test_labels)) = (labels, real.reference_labels.clone()) else {
        return Err(Error::config("target: the data set has no class labels"));
    };
    let c = crate::classifier::fit_mlp(x.view(), &labels, &test_labels, seed);
    let (acc, per) = c.accuracy(real.reference.view(), &test_labels);
    let classes = per.len();
    c.save(out)?;
    println!(
        "trained on {} points, {classes} classes; held-out accuracy {acc:.4} on {} points",
        x.nrows(),
        test_labels.len()
    );
    let per: Vec<String> = per.iter().map(|a| format!("{a:.3}")).collect();
    println!("per class: {}", per.join(" "));
    println!("written: {}", out.display());
    Ok(())
}

/// After a command wrote the folder `out`: records its session in `provenance.toml` and, with
/// `want_report`, writes `out/report.html`.
fn finish(
    out: &Path,
    started: &provenance::Started,
    threads: usize,
    want_report: bool,
    quiet: bool,
) -> Result<()> {
    provenance::append(out, started.finish(threads))?;
    if want_report {
        let path = report::page::write(out, None)?;
        if !quiet {
            println!("report:     {}", path.display());
        }
    }
    Ok(())
}

fn load_experiment(config: &std::path::Path, set: &[String]) -> Result<Experiment> {
    Experiment::new(Config::load(config, set)?).map_err(|e| match e {
        Error::Config(m) => Error::config(format!("{}: {m}", config.display())),
        other => other,
    })
}

fn demo(out: &std::path::Path, threads: usize) -> Result<()> {
    let started = provenance::Started::now();
    let exp = Experiment::new(Config::parse(DEMO_CONFIG, &[])?)?;
    let n = match exp.schedule {
        crate::schedule::Schedule::Replace { train_size } => train_size,
        _ => {
            return Err(Error::Run(
                "the demo config must use schedule = \"replace\"".into(),
            ));
        }
    };
    let opts = RunOptions {
        force: true,
        threads,
        progress: true,
        resume: false,
    };
    let result = run_dir::run(&exp, out, &opts)?;
    let summary = report::by_generation(&result.rows, result.names.len());
    let col = result
        .names
        .iter()
        .position(|&n| n == "cov_trace_ratio")
        .expect("demo metric");
    let kl = result
        .names
        .iter()
        .position(|&n| n == "kl_gaussian")
        .expect("demo metric");
    println!(
        "Fully synthetic loop: Gaussian MLE refitted on {n} of its own samples per generation, {} repeats.",
        exp.config.repeats
    );
    println!(
        "Variance ratio tr(Σ_g)/tr(Σ_real): measured mean ± standard error vs theory ((n-1)/n)^(g+1).\n"
    );
    println!(
        "{:>10} {:>22} {:>10} {:>14}",
        "generation", "measured", "theory", "KL(real‖model)"
    );
    let last = summary.len() - 1;
    for g in [0, 1, 2, 5, 10, 20, 40, 60, 80, last] {
        let s = summary[g][col];
        let se = s.sd / (s.count as f64).sqrt();
        println!(
            "{g:>10} {:>22} {:>10.4} {:>14.3}",
            format!("{:.4} ± {:.4}", s.mean, se),
            crate::theory::replace_mle_variance(n, g),
            summary[g][kl].mean
        );
    }
    provenance::append(out, started.finish(threads))?;
    let page = report::page::write(out, None)?;
    println!("\nrun folder: {}", out.display());
    println!("plot:       {}", result.plot.display());
    println!("report:     {}", page.display());
    Ok(())
}
