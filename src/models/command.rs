//! `[model] kind = "command"`: bring your own model. ouro runs a `fit` and a `sample` command
//! line of the user's (a PyTorch model on a GPU, a flow, anything that reads and writes `.npy`
//! files) and treats the result like any learner.
//!
//! Protocol (placeholders in the argument lists are replaced by ouro):
//! - `fit`: reads the training set `{train}` (`.npy`, float32 [n, d]) and, when the data have
//!   classes, its labels `{labels}` (`.npy`, int64 [n]; an empty string otherwise); starts from
//!   the previous generation's state `{state_in}` when warm starting (an empty string otherwise);
//!   writes its fitted state, any bytes it likes, to `{state_out}`; seeds itself with `{seed}`.
//! - `sample`: reads the state `{state}`, writes `{n}` samples as a float `.npy` array [n, d] to
//!   `{out}` (and their labels as integers to `{out_labels}` if it names that placeholder);
//!   seeds itself with `{seed}`.
//!
//! `{dim}` is d in both. Seeds are integers below 2⁶³ drawn from ouro's (seed, generation, role)
//! streams, so a run is reproducible when the commands are deterministic given their seed. Every
//! call runs in the current directory with a fresh temporary folder for its files, and must end
//! within `timeout` seconds.

use super::{DataShape, Learner, LearnerConfig, Model, Offers, TrainingSet};
use crate::data::Dataset;
use crate::data::tensors::TensorFile;
use crate::error::{Error, Result};
use crate::rng::Stream;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Placeholders `fit` may use.
const FIT_PLACEHOLDERS: [&str; 6] = ["train", "labels", "state_in", "state_out", "seed", "dim"];
/// Placeholders `sample` may use.
const SAMPLE_PLACEHOLDERS: [&str; 6] = ["state", "n", "out", "out_labels", "seed", "dim"];
/// Lines of a failed command's stderr shown in the error.
const STDERR_LINES: usize = 20;

/// The keys of `[model] kind = "command"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The fit command line, e.g. `["python3", "my_model.py", "fit", "{train}", "{state_out}",
    /// "{seed}"]`.
    pub fit: Vec<String>,
    /// The sample command line, e.g. `["python3", "my_model.py", "sample", "{state}", "{n}",
    /// "{out}", "{seed}"]`.
    pub sample: Vec<String>,
    /// Seconds one call may take before it is stopped (default 3600).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Smallest training set the model can fit (default 2).
    #[serde(default = "default_min_points")]
    pub min_points: usize,
}

fn default_timeout() -> f64 {
    3600.0
}
fn default_min_points() -> usize {
    2
}

impl LearnerConfig for CommandConfig {
    const KIND: &'static str = "command";
    const ABOUT: &'static str =
        "your own model: `fit` and `sample` command lines that read and write .npy files";
    fn build(self) -> Result<Box<dyn Learner>> {
        check_template("fit", &self.fit, &FIT_PLACEHOLDERS, &["train", "state_out"])?;
        check_template(
            "sample",
            &self.sample,
            &SAMPLE_PLACEHOLDERS,
            &["state", "n", "out"],
        )?;
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            return Err(Error::config(format!(
                "model.timeout = {}: expected a number of seconds > 0",
                self.timeout
            )));
        }
        if self.min_points == 0 {
            return Err(Error::config("model.min_points: expected at least 1"));
        }
        Ok(Box::new(CommandLearner {
            config: Arc::new(self),
            dim: 0,
        }))
    }
}

/// Checks that `args` is a non-empty command line whose `{placeholders}` are all in `known` and
/// that it names every placeholder of `required`.
fn check_template(key: &str, args: &[String], known: &[&str], required: &[&str]) -> Result<()> {
    if args.first().is_none_or(|a| a.is_empty()) {
        return Err(Error::config(format!(
            "model.{key}: expected a command line, e.g. [\"python3\", \"my_model.py\", \"{key}\", …]"
        )));
    }
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("{{{n}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for arg in args {
        for name in placeholders(arg) {
            if !known.contains(&name) {
                return Err(Error::config(format!(
                    "model.{key}: unknown placeholder {{{name}}}; expected {}",
                    list(known)
                )));
            }
        }
    }
    for name in required {
        if !args.iter().any(|a| placeholders(a).any(|p| p == *name)) {
            return Err(Error::config(format!(
                "model.{key}: the command line must name {{{name}}} (placeholders: {})",
                list(known)
            )));
        }
    }
    Ok(())
}

/// The names inside `{…}` in `arg` that look like placeholders (letters and underscores).
fn placeholders(arg: &str) -> impl Iterator<Item = &str> {
    arg.split('{').skip(1).filter_map(|rest| {
        let name = rest.split_once('}')?.0;
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .then_some(name)
    })
}

/// Replaces each `{name}` of `args` by its value.
fn fill(args: &[String], values: &[(&str, String)]) -> Vec<String> {
    args.iter()
        .map(|a| {
            let mut a = a.clone();
            for (name, v) in values {
                a = a.replace(&format!("{{{name}}}"), v);
            }
            a
        })
        .collect()
}

/// The learner of `[model] kind = "command"`.
#[derive(Clone, Debug)]
pub struct CommandLearner {
    config: Arc<CommandConfig>,
    dim: usize,
}

impl Learner for CommandLearner {
    fn config(&self) -> toml::Table {
        super::config_table(CommandConfig::KIND, &*self.config)
    }

    fn prepare(&mut self, data: &DataShape) -> Result<()> {
        self.dim = data.dim;
        Ok(())
    }

    fn min_points(&self) -> usize {
        self.config.min_points
    }

    fn offers(&self) -> Offers {
        let names =
            |args: &[String], name: &str| args.iter().any(|a| placeholders(a).any(|p| p == name));
        Offers {
            labels: names(&self.config.sample, "out_labels"),
            warm_start: names(&self.config.fit, "state_in"),
            ..Offers::default()
        }
    }

    fn fit(
        &self,
        train: &TrainingSet,
        previous: Option<&dyn Model>,
        rng: &mut Stream,
    ) -> Result<Box<dyn Model>> {
        let dir = Scratch::new()?;
        let x = train.points;
        let train_path = dir.path("train.npy");
        crate::data::write_npy(&train_path, &x.to_owned())?;
        let labels_path = match train.labels {
            Some(l) => {
                let p = dir.path("labels.npy");
                crate::data::write_labels_npy(&p, l)?;
                p.display().to_string()
            }
            None => String::new(),
        };
        let state_in = match super::downcast::<CommandModel>(previous) {
            Some(m) => {
                let p = dir.path("state_in");
                write_file(&p, &m.state)?;
                p.display().to_string()
            }
            None => String::new(),
        };
        let state_out = dir.path("state_out");
        let seed = rng.random::<u64>() >> 1;
        let args = fill(
            &self.config.fit,
            &[
                ("train", train_path.display().to_string()),
                ("labels", labels_path),
                ("state_in", state_in),
                ("state_out", state_out.display().to_string()),
                ("seed", seed.to_string()),
                ("dim", x.ncols().to_string()),
            ],
        );
        run("fit", &args, self.config.timeout, &dir)?;
        let state = std::fs::read(&state_out).map_err(|e| {
            Error::Run(format!(
                "model.fit: `{}` finished but left no state at {{state_out}} ({e}); the fit \
                 command must write its fitted state there",
                args.join(" ")
            ))
        })?;
        Ok(Box::new(CommandModel {
            config: self.config.clone(),
            state,
            dim: x.ncols(),
        }))
    }

    fn load(&self, file: &TensorFile) -> Result<Box<dyn Model>> {
        let (_, state) = file.take::<u8>("state")?;
        let dim = file.value("dim")?;
        Ok(Box::new(CommandModel {
            config: self.config.clone(),
            state,
            dim,
        }))
    }
}

/// A model fitted by a `fit` command: its state bytes, sampled by the `sample` command.
#[derive(Clone)]
pub struct CommandModel {
    config: Arc<CommandConfig>,
    state: Vec<u8>,
    dim: usize,
}

impl std::fmt::Debug for CommandModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandModel")
            .field("state_bytes", &self.state.len())
            .field("dim", &self.dim)
            .finish()
    }
}

impl CommandModel {
    /// The state the fit command wrote.
    pub fn state(&self) -> &[u8] {
        &self.state
    }
}

impl Model for CommandModel {
    fn dim(&self) -> usize {
        self.dim
    }

    fn sample(&self, n: usize, rng: &mut Stream) -> Result<Dataset> {
        let dir = Scratch::new()?;
        let state = dir.path("state");
        write_file(&state, &self.state)?;
        let out = dir.path("samples.npy");
        let out_labels = dir.path("labels.npy");
        let seed = rng.random::<u64>() >> 1;
        let args = fill(
            &self.config.sample,
            &[
                ("state", state.display().to_string()),
                ("n", n.to_string()),
                ("out", out.display().to_string()),
                ("out_labels", out_labels.display().to_string()),
                ("seed", seed.to_string()),
                ("dim", self.dim.to_string()),
            ],
        );
        run("sample", &args, self.config.timeout, &dir)?;
        let command = args.join(" ");
        let wrong = |what: String| {
            Error::Run(format!(
                "model.sample: `{command}` {what}; expected a float .npy array of shape [{n}, {}] \
                 at {{out}}",
                self.dim
            ))
        };
        if !out.exists() {
            return Err(wrong("finished but wrote nothing at {out}".into()));
        }
        let points = crate::data::read_npy(&out).map_err(|e| wrong(format!("wrote {e}")))?;
        if points.dim() != (n, self.dim) {
            return Err(wrong(format!(
                "wrote an array of shape [{}, {}]",
                points.nrows(),
                points.ncols()
            )));
        }
        let labels = if self
            .config
            .sample
            .iter()
            .any(|a| a.contains("{out_labels}"))
        {
            let l = crate::data::read_labels(&out_labels, n, "sample")
                .map_err(|e| Error::Run(format!("model.sample: `{command}`: {e}")))?;
            Some(l)
        } else {
            None
        };
        Ok(Dataset { points, labels })
    }

    fn save(&self, file: &mut TensorFile) -> Result<()> {
        file.put("state", &[self.state.len()], &self.state);
        file.set("dim", self.dim.to_string());
        Ok(())
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// Runs `args` with stdout and stderr to files of `dir`, stopping it after `timeout` seconds. A
/// command that cannot start, fails or runs out of time is one error naming the command (`key`
/// is `fit` or `sample`), with the last lines of its stderr.
fn run(key: &str, args: &[String], timeout: f64, dir: &Scratch) -> Result<()> {
    let command = args.join(" ");
    let stderr_path = dir.path("stderr.txt");
    let file = |p: &Path| {
        std::fs::File::create(p).map_err(|e| Error::io(format!("cannot create {}", p.display()), e))
    };
    let start = Instant::now();
    let mut child = std::process::Command::new(&args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .stdout(file(&dir.path("stdout.txt"))?)
        .stderr(file(&stderr_path)?)
        .spawn()
        .map_err(|e| Error::Run(format!("model.{key}: cannot start `{command}`: {e}")))?;
    let limit = Duration::from_secs_f64(timeout);
    let mut pause = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Error::Run(format!("model.{key}: waiting for `{command}`: {e}")))?
        {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Run(format!(
                "model.{key}: `{command}` did not finish within model.timeout = {timeout} s and \
                 was stopped{}",
                stderr_tail(&stderr_path)
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    if !status.success() {
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        return Err(Error::Run(format!(
            "model.{key}: `{command}` {how}{}",
            stderr_tail(&stderr_path)
        )));
    }
    Ok(())
}

/// "; its stderr ends:" and the last lines of the file at `path`, indented; empty when there
/// is nothing to show.
fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "; it wrote nothing to stderr".into();
    }
    let tail = &lines[lines.len().saturating_sub(STDERR_LINES)..];
    let mut s = String::from("; its stderr ends:");
    for l in tail {
        s.push_str("\n  | ");
        s.push_str(l);
    }
    s
}

/// A temporary folder for one command's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("ouro-command-{}-{k}", std::process::id()));
        std::fs::create_dir_all(&p)
            .map_err(|e| Error::io(format!("cannot create {}", p.display()), e))?;
        Ok(Scratch(p))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_filled() {
        let names: Vec<&str> = placeholders("a{train}b{x_y}{}{Not}{seed").collect();
        assert_eq!(names, ["train", "x_y"]);
        let args = vec!["--n={n}".to_string(), "{out}".to_string()];
        let filled = fill(&args, &[("n", "7".into()), ("out", "/t/o.npy".into())]);
        assert_eq!(filled, ["--n=7", "/t/o.npy"]);
    }
}
