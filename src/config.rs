//! The experiment file: one TOML document, parsed strictly (unknown keys are errors) into these
//! types. Checking values against each other (dimensions, ranges, which keys a schedule uses)
//! happens where each section is turned into a working object (`data`, `models`, `schedule`,
//! `metrics`); `crate::experiment::Experiment::new` runs all of them before anything is written.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A whole experiment.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// First seed; repeat r uses seed + r.
    #[serde(default)]
    pub seed: u64,
    /// Number of independent repeats (seeds seed .. seed + repeats − 1).
    #[serde(default = "one")]
    pub repeats: u64,
    /// Number of generations, numbered 0 .. generations − 1; generation 0 is fitted on real data.
    pub generations: usize,
    /// Samples drawn from each generation's model for evaluation and for `samples/`.
    #[serde(default = "ten_thousand")]
    pub samples_per_generation: usize,
    /// Write each generation's samples to `samples/seed-S/gen-GGG.npy`.
    #[serde(default = "yes")]
    pub save_samples: bool,
    /// Save samples, models (and training sets) only every this many generations (the last is
    /// always saved).
    #[serde(default = "one_usize")]
    pub save_every: usize,
    /// Write each saved generation's fitted model to `models/seed-S/gen-GGG.safetensors`
    /// (`ouro sample` draws from it).
    #[serde(default = "yes")]
    pub save_models: bool,
    /// Also write each generation's training set to `train/seed-S/gen-GGG.npy`.
    #[serde(default)]
    pub save_train_sets: bool,
    /// What the real data are.
    pub target: TargetConfig,
    /// The learner fitted every generation: `kind` and that learner's keys, checked by
    /// [`crate::models::build`].
    pub model: toml::Table,
    /// How each generation's training set is built.
    #[serde(rename = "loop")]
    pub schedule: LoopConfig,
    /// Which metrics are computed and how.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

fn one() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn ten_thousand() -> usize {
    10_000
}

/// A scalar, or one value per item (e.g. one standard deviation per mixture component).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// The same value for every item.
    One(f64),
    /// One value per item.
    Many(Vec<f64>),
}

/// `[target]`: a known distribution or a real data set.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TargetConfig {
    /// N(mean, std² I) or N(mean, cov).
    Gaussian {
        dim: usize,
        /// Mean; shorter than `dim` is padded with zeros (default: 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mean: Option<Vec<f64>>,
        /// Isotropic standard deviation (default 1 when `cov` is absent).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        std: Option<f64>,
        /// Full covariance matrix, dim × dim.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cov: Option<Vec<Vec<f64>>>,
    },
    /// Gaussian mixture Σ_k w_k N(μ_k, Σ_k).
    Gmm {
        dim: usize,
        /// Component means; each shorter than `dim` is padded with zeros.
        means: Vec<Vec<f64>>,
        /// Isotropic standard deviation, one for all or one per component (default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        std: Option<OneOrMany>,
        /// Full covariance per component (instead of `std`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        covs: Option<Vec<Vec<Vec<f64>>>>,
        /// Component weights (normalised; default uniform).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<Vec<f64>>,
    },
    /// `components` isotropic Gaussians with means evenly spaced on a circle of `radius` in the
    /// first two coordinates.
    RingGmm {
        #[serde(default = "two")]
        dim: usize,
        components: usize,
        radius: f64,
        std: f64,
    },
    /// Concentric circles in 2-D with radial noise.
    Rings {
        radii: Vec<f64>,
        #[serde(default = "default_ring_noise")]
        noise: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<Vec<f64>>,
    },
    /// Two interleaving half circles in 2-D.
    Moons {
        #[serde(default = "default_moons_noise")]
        noise: f64,
    },
    /// Multivariate Student-t (heavy tails).
    StudentT {
        dim: usize,
        df: f64,
        #[serde(default = "one_f64")]
        scale: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mean: Option<Vec<f64>>,
    },
    /// scikit-learn's 8×8 digits (1 797 × 64, 10 classes), shipped with ouro.
    Digits(RealDataConfig),
    /// Old Faithful (272 × 2), shipped with ouro.
    Faithful(RealDataConfig),
    /// Palmer penguins bill length and depth (342 × 2, 3 species), shipped with ouro.
    Penguins(RealDataConfig),
    /// A CSV file of numeric columns.
    Csv(CsvConfig),
    /// A `.npy` file with a 2-D [n, d] array.
    Npy(NpyConfig),
    /// MNIST (28×28 digits, 60 000 train + 10 000 test), shipped with ouro.
    Mnist(ImageConfig),
    /// Fashion-MNIST from `path` (default `/usr/share/datasets/fashion-mnist`, Debian's
    /// `dataset-fashion-mnist`).
    FashionMnist(ImageConfig),
    /// Any pair of IDX files: `images` [n, rows, cols] and `labels` [n] (gzipped or not).
    Idx(ImageConfig),
}

/// Options of the image targets (`mnist`, `fashion-mnist`, `idx`). Pixels are scaled to [−1, 1].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// `fashion-mnist`: the folder holding `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// `idx`: the images file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<PathBuf>,
    /// `idx`: the labels file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
    /// `mnist`, `fashion-mnist`: "train" (60 000 images) or "test" (10 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Average-pool the images to side × side pixels (e.g. 14 for MNIST; must divide the side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<usize>,
    /// Keep only these classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<u32>>,
    /// Keep only the first this many images (after the class filter, in file order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_points: Option<usize>,
    /// Share of the points held out for evaluation.
    #[serde(default = "default_heldout")]
    pub heldout_fraction: f64,
    /// Scale every pixel to mean 0, standard deviation 1 instead of keeping [−1, 1].
    #[serde(default)]
    pub standardize: bool,
}

fn two() -> usize {
    2
}
fn one_f64() -> f64 {
    1.0
}
fn default_ring_noise() -> f64 {
    0.05
}
fn default_moons_noise() -> f64 {
    0.1
}
fn default_heldout() -> f64 {
    0.2
}

/// Options shared by every finite real data set.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RealDataConfig {
    /// Share of the points held out for evaluation (never trained on).
    #[serde(default = "default_heldout")]
    pub heldout_fraction: f64,
    /// Scale every column to mean 0, standard deviation 1 (statistics of the whole data set).
    #[serde(default)]
    pub standardize: bool,
}

impl Default for RealDataConfig {
    fn default() -> Self {
        RealDataConfig {
            heldout_fraction: default_heldout(),
            standardize: false,
        }
    }
}

/// `kind = "csv"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    pub path: PathBuf,
    /// Columns to use (names, or 0-based indices as strings without a header); default: all but
    /// the label column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// Column holding class labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_column: Option<String>,
    /// Whether the first line holds column names.
    #[serde(default = "yes")]
    pub header: bool,
    /// Skip rows with missing values (`NA`, empty, `nan`) instead of failing.
    #[serde(default)]
    pub skip_missing: bool,
    #[serde(default = "default_heldout")]
    pub heldout_fraction: f64,
    #[serde(default)]
    pub standardize: bool,
}

/// `kind = "npy"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NpyConfig {
    pub path: PathBuf,
    /// Optional `.npy` file of integer class labels, one per row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
    #[serde(default = "default_heldout")]
    pub heldout_fraction: f64,
    #[serde(default)]
    pub standardize: bool,
}

/// The schedule names of `loop.schedule`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    Replace,
    Augment,
    Fresh,
    Accumulate,
    AccumulateSubsample,
}

/// `[loop]`: how each generation's training set is built.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoopConfig {
    pub schedule: ScheduleKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synthetic_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_fraction: Option<f64>,
    /// The share w of the fit's total weight on the real points of a training set that mixes
    /// real and synthetic ones (augment, fresh, accumulate): each real point weighs w·N/r and
    /// each synthetic one (1 − w)·N/s (He, Xu & Cheng 2025).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_weight: Option<f64>,
    /// Fit generation t starting from generation t − 1's model (where the learner iterates).
    #[serde(default)]
    pub warm_start: bool,
    /// `[loop.curate]`: what happens to the previous model's samples before they train the
    /// next generation (see `crate::curate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub curate: Option<CurateConfig>,
    /// `[loop.neon]`: negative extrapolation of every generation's fitted parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neon: Option<NeonConfig>,
}

/// `[loop.neon]` (Alemohammad et al. 2025): after fitting θ₀, fit θ₁ on `samples` points drawn
/// from θ₀ (warm-started from θ₀ where the learner can) and keep θ₀ + `weight`·(θ₀ − θ₁).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeonConfig {
    /// w ≥ 0 (0: the plain loop).
    pub weight: f64,
    /// Points drawn from θ₀ to fit θ₁ (default: the training set's size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
}

/// `[loop.curate]`: a filter (`filter`) and/or a correction (`correct`) of the synthetic points.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurateConfig {
    /// `likelihood-rank`, `reward` or `verifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterKind>,
    /// likelihood-rank: which candidates to keep (`top`, `bottom`, `random`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<KeepKind>,
    /// likelihood-rank: the share of candidates kept, in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// reward: candidates per kept point (K ≥ 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choices: Option<usize>,
    /// reward: the Bradley–Terry temperature τ > 0 (P(pick i) ∝ exp(r_i/τ)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// reward: what is rewarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<ScoreConfig>,
    /// verifier: what is checked against `threshold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<ScoreConfig>,
    /// verifier: a candidate is kept when its score is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// The expert correction's strength γ ∈ [0, 1]: x ← x + γ (L(x) − x), L a few Langevin steps
    /// on the target's true score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<f64>,
    /// Langevin steps of the correction (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct_steps: Option<usize>,
    /// Langevin step size ε, in squared data units (default 0.1 × the target's smallest
    /// variance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct_step_size: Option<f64>,
}

/// `loop.curate.filter`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FilterKind {
    LikelihoodRank,
    Reward,
    Verifier,
}

/// `loop.curate.keep`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KeepKind {
    Top,
    Bottom,
    Random,
}

/// A score of a point: `loop.curate.reward` and `loop.curate.verifier`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScoreConfig {
    /// The target's log-density (nats).
    LogDensity,
    /// Minus the distance to `point` (padded with zeros to the dimension).
    Distance { point: Vec<f64> },
    /// w·x with `weights` (padded with zeros to the dimension).
    Linear { weights: Vec<f64> },
    /// A classifier's probability of `class` (or, without `class`, of each sample's own label),
    /// from a file written by `ouro classifier` (e.g. `data/features/digits-mlp.safetensors`).
    Classifier {
        file: std::path::PathBuf,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        class: Option<u32>,
    },
}

/// `[metrics]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Metric columns to compute; default: every metric that applies to the target and model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    /// At most this many samples (and reference points) enter the pairwise metrics (`mmd2`,
    /// `memorized`); moments use every sample.
    #[serde(default = "default_eval_samples")]
    pub eval_samples: usize,
    /// `memorized` counts samples whose nearest training point is closer than this ratio times
    /// the second nearest.
    #[serde(default = "default_memorization_ratio")]
    pub memorization_ratio: f64,
    /// k of the k-NN balls of precision, recall, density and coverage.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Random directions of `sliced_w2`.
    #[serde(default = "default_projections")]
    pub projections: usize,
    /// RBF bandwidths of the `ouro eval` MMD² (`mmd2_biased`): "median", multiples such as
    /// "0.5x", or numbers as strings; the run metric `mmd2` always uses the median.
    #[serde(default = "default_bandwidths")]
    pub bandwidths: Vec<String>,
    /// A classifier written by `ouro classifier` (e.g. `data/features/digits-mlp.safetensors`):
    /// the `ouro eval` metrics named in `names` compare its last hidden layer's features instead
    /// of the raw points (the run metrics of the first table are unaffected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<std::path::PathBuf>,
}

fn default_k() -> usize {
    5
}
fn default_projections() -> usize {
    128
}
fn default_bandwidths() -> Vec<String> {
    vec!["median".into()]
}

fn default_eval_samples() -> usize {
    2000
}
fn default_memorization_ratio() -> f64 {
    1.0 / 3.0
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            names: None,
            eval_samples: default_eval_samples(),
            memorization_ratio: default_memorization_ratio(),
            k: default_k(),
            projections: default_projections(),
            bandwidths: default_bandwidths(),
            features: None,
        }
    }
}

impl Config {
    /// Parses a TOML document, applies `key=value` overrides (dotted keys, TOML values; a value
    /// that is not valid TOML is taken as a string), and checks it against the schema.
    pub fn parse(text: &str, overrides: &[String]) -> Result<Config> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            Error::config(format!("not valid TOML: {}", e.message().trim()))
        })?;
        for item in overrides {
            apply_override(&mut table, item)?;
        }
        Config::from_table(table)
    }

    /// The config of a TOML table (a parsed file with its overrides applied), checked against
    /// the schema.
    pub fn from_table(mut table: toml::Table) -> Result<Config> {
        move_legacy_keys(&mut table)?;
        let result: std::result::Result<Config, _> =
            serde_path_to_error::deserialize(toml::Value::Table(table));
        result.map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().message().trim().to_string();
            if path == "." {
                Error::config(inner)
            } else {
                Error::config(format!("{path}: {inner}"))
            }
        })
    }

    /// Reads and parses a config file (see [`Config::parse`]).
    pub fn load(path: &std::path::Path, overrides: &[String]) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
        Config::parse(&text, overrides).map_err(|e| match e {
            Error::Config(m) => Error::config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// The resolved config as TOML (every default filled in), enough to rerun the experiment.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }
}

/// Keys of earlier versions, moved to where they live now: `model.save_weights` (diffusion MLP
/// weights) is the top-level `save_models`, which saves the fitted model of every learner.
fn move_legacy_keys(table: &mut toml::Table) -> Result<()> {
    let old = table
        .get_mut("model")
        .and_then(|m| m.as_table_mut())
        .and_then(|m| m.remove("save_weights"));
    if let Some(v) = old {
        if table.contains_key("save_models") {
            return Err(Error::config(
                "model.save_weights and save_models: give only save_models (save_weights is its \
                 old name)",
            ));
        }
        table.insert("save_models".into(), v);
    }
    Ok(())
}

/// Applies one `--set KEY=VALUE` to `table` (the value is TOML, or a string when it is not valid TOML).
pub fn apply_override(table: &mut toml::Table, item: &str) -> Result<()> {
    let (key, raw) = item.split_once('=').ok_or_else(|| {
        Error::config(format!(
            "--set `{item}`: expected KEY=VALUE, e.g. loop.fresh_fraction=0.1"
        ))
    })?;
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    set_key(table, key.trim(), value).map_err(|m| Error::config(format!("--set `{item}`: {m}")))
}

/// Sets the dotted `key` (`loop.fresh_fraction`) of `table` to `value`, creating tables on the
/// way; the message says why it cannot.
pub fn set_key(
    table: &mut toml::Table,
    key: &str,
    value: toml::Value,
) -> std::result::Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(format!("`{key}` is not a valid dotted key"));
    }
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
