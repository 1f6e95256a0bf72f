//! Learners and the models they fit.
//!
//! A [`Learner`] holds checked hyper-parameters (the `[model]` section) and fits a training set
//! into a [`Model`], which can be sampled and saved. The loop, the metrics, the run folder and the
//! reconstruction sweep only talk to these two traits, and ask a model what it offers (exact
//! moments and log-density through [`Model::distribution`], a denoiser through
//! [`Model::diffusion`]) instead of matching on its kind.
//!
//! Adding a learner is one file that implements [`LearnerConfig`] (its keys, checked), [`Learner`]
//! and [`Model`], plus one line in [`LEARNERS`]; `histogram.rs` is a small complete example.

mod command;
mod em;
mod histogram;
mod mle;
mod smoothing;

pub use command::{CommandConfig, CommandLearner, CommandModel};
pub use em::MixtureEm;
pub(crate) use em::{load_mixture, save_mixture};
pub use histogram::{Histogram, HistogramLearner};
pub use mle::{CovarianceKind, GaussianMle};
pub use smoothing::{Bandwidth, KdeLearner};

use crate::data::Dataset;
use crate::data::tensors::TensorFile;
use crate::diffusion::{DiffusionLearner, DiffusionModel};
use crate::distributions::Distribution;
use crate::error::{Error, Result};
use crate::rng::Stream;
use ndarray::ArrayView2;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// The learners `[model] kind` names, in the order `ouro learners` lists them. A new learner is
/// registered by one line here.
pub const LEARNERS: &[Registration] = &[
    register::<GaussianMle>(),
    register::<MixtureEm>(),
    register::<KdeLearner>(),
    register::<HistogramLearner>(),
    register::<crate::diffusion::DiffusionConfig>(),
    register::<CommandConfig>(),
];

/// The metadata `format` of a saved model.
pub const MODEL_FORMAT: &str = "ouro-model-1";

/// A training set handed to [`Learner::fit`]: points (rows), optionally one class label and one
/// non-negative weight per point.
#[derive(Clone, Copy, Debug)]
pub struct TrainingSet<'a> {
    /// The points, one per row.
    pub points: ArrayView2<'a, f32>,
    /// Class labels (used by class-conditional learners, ignored by the others).
    pub labels: Option<&'a [u32]>,
    /// Sample weights (only learners that offer [`Offers::weights`] accept them).
    pub weights: Option<&'a [f64]>,
}

impl<'a> TrainingSet<'a> {
    /// Points without labels or weights.
    pub fn points(points: ArrayView2<'a, f32>) -> Self {
        TrainingSet {
            points,
            labels: None,
            weights: None,
        }
    }

    /// Points with optional labels.
    pub fn labeled(points: ArrayView2<'a, f32>, labels: Option<&'a [u32]>) -> Self {
        TrainingSet {
            points,
            labels,
            weights: None,
        }
    }
}

/// What a learner's models offer beyond sampling; decides which metrics and options apply
/// before anything is fitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offers {
    /// Every fitted model is a Gaussian ([`Distribution::as_gaussian`]): closed-form KL and W2.
    pub gaussian: bool,
    /// Samples carry class labels.
    pub labels: bool,
    /// `fit` starts from the previous generation's model when given one (`loop.warm_start`).
    pub warm_start: bool,
    /// `fit` honours per-point sample weights.
    pub weights: bool,
    /// Every fitted model has its own log-density ([`Distribution::log_density`]).
    pub log_density: bool,
    /// [`Learner::extrapolate`] is implemented (`[loop.neon]`).
    pub extrapolate: bool,
}

/// What a learner is told about the data before the loop starts.
#[derive(Clone, Copy, Debug)]
pub struct DataShape {
    /// Coordinates per point.
    pub dim: usize,
    /// Number of classes of a labelled data set.
    pub classes: Option<usize>,
}

/// A fitted generative model of one generation.
pub trait Model: Send + Sync + std::fmt::Debug + std::any::Any {
    /// Coordinates per point.
    fn dim(&self) -> usize;

    /// `n` independent draws (rows), with their class labels when the model generates labelled
    /// points; every random draw comes from `rng`.
    fn sample(&self, n: usize, rng: &mut Stream) -> Result<Dataset>;

    /// The model as a distribution with what it knows in closed form (moments, log-density,
    /// being a Gaussian), when it has any.
    fn distribution(&self) -> Option<&dyn Distribution> {
        None
    }

    /// The model as a diffusion model (a denoiser and a sampling plan), when it is one.
    fn diffusion(&self) -> Option<&DiffusionModel> {
        None
    }

    /// Adds the fitted parameters to `file` (tensors and metadata), from which the learner's
    /// [`Learner::load`] rebuilds a model that samples the same bits.
    fn save(&self, file: &mut TensorFile) -> Result<()>;
}

/// Checked hyper-parameters that fit training sets into models.
pub trait Learner: Send + Sync + std::fmt::Debug {
    /// The `[model]` keys with every default resolved, `kind` first: what `config.toml` records
    /// and every saved model carries.
    fn config(&self) -> toml::Table;

    /// Checks the learner against the data (dimension, classes) before the loop starts.
    fn prepare(&mut self, data: &DataShape) -> Result<()> {
        let _ = data;
        Ok(())
    }

    /// Smallest training set the learner can fit.
    fn min_points(&self) -> usize {
        1
    }

    /// What its models offer.
    fn offers(&self) -> Offers {
        Offers::default()
    }

    /// Fits `train`; `previous` is the last generation's model when warm starting, `rng` the
    /// (seed, generation, fit) stream.
    fn fit(
        &self,
        train: &TrainingSet,
        previous: Option<&dyn Model>,
        rng: &mut Stream,
    ) -> Result<Box<dyn Model>>;

    /// The model [`Model::save`] wrote to `file`.
    fn load(&self, file: &TensorFile) -> Result<Box<dyn Model>>;

    /// Fits `train`, a sample of `base`, as a perturbation of `base` (Neon's θ₁): warm-started
    /// from it where the learner can, and in its coordinates where the learner has any.
    fn fit_from(
        &self,
        train: &TrainingSet,
        base: &dyn Model,
        rng: &mut Stream,
    ) -> Result<Box<dyn Model>> {
        self.fit(train, self.offers().warm_start.then_some(base), rng)
    }

    /// Negative extrapolation in parameter space (Alemohammad et al. 2025, Neon): the model with
    /// parameters θ₀ + w(θ₀ − θ₁), θ₀ those of `base` and θ₁ those of `self_trained` (fitted on
    /// samples of `base`). `None` for learners whose parameters do not extrapolate.
    fn extrapolate(
        &self,
        base: &dyn Model,
        self_trained: &dyn Model,
        w: f64,
    ) -> Option<Result<Box<dyn Model>>> {
        let _ = (base, self_trained, w);
        None
    }

    /// The learner as a diffusion learner, when it is one (for the reconstruction sweep).
    fn diffusion(&self) -> Option<&DiffusionLearner> {
        None
    }
}

impl dyn Learner {
    /// [`Learner::fit`] after checking the training set against what the learner needs.
    pub fn fit_checked(
        &self,
        train: &TrainingSet,
        previous: Option<&dyn Model>,
        rng: &mut Stream,
    ) -> Result<Box<dyn Model>> {
        let n = train.points.nrows();
        if n < self.min_points() {
            return Err(Error::Run(format!(
                "the training set has {n} points; this learner needs at least {}",
                self.min_points()
            )));
        }
        if train.weights.is_some() && !self.offers().weights {
            return Err(Error::Run(format!(
                "model.kind = {}: this learner does not take sample weights",
                self.config()["kind"]
            )));
        }
        self.fit(train, previous, rng)
    }

    /// The `kind` of `[model]`.
    pub fn kind(&self) -> String {
        match self.config().get("kind") {
            Some(toml::Value::String(s)) => s.clone(),
            _ => String::new(),
        }
    }
}

/// A learner's `[model]` keys: deserialised (unknown keys are errors, missing keys take their
/// defaults) and checked by [`LearnerConfig::build`].
pub trait LearnerConfig: DeserializeOwned {
    /// The `kind` that selects this learner.
    const KIND: &'static str;
    /// One line for `ouro learners`.
    const ABOUT: &'static str;
    /// The keys of the `[model]` table (without `kind`); by default deserialised by serde, with
    /// errors that name the key.
    fn from_table(table: toml::Table) -> Result<Self> {
        let result: std::result::Result<Self, _> =
            serde_path_to_error::deserialize(toml::Value::Table(table));
        result.map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().message().trim().to_string();
            if path == "." {
                Error::config(format!("model: {inner}"))
            } else {
                Error::config(format!("model.{path}: {inner}"))
            }
        })
    }
    /// Checks the values and builds the learner.
    fn build(self) -> Result<Box<dyn Learner>>;
}

/// One entry of [`LEARNERS`].
pub struct Registration {
    /// The `kind` that selects the learner.
    pub kind: &'static str,
    /// One line about it.
    pub about: &'static str,
    build: fn(toml::Table) -> Result<Box<dyn Learner>>,
}

/// The registration of the learner whose keys are `C`.
pub const fn register<C: LearnerConfig>() -> Registration {
    Registration {
        kind: C::KIND,
        about: C::ABOUT,
        build: build_from::<C>,
    }
}

fn build_from<C: LearnerConfig>(table: toml::Table) -> Result<Box<dyn Learner>> {
    C::from_table(table)?.build()
}

/// Builds the learner that the `[model]` table names by its `kind`.
pub fn build(model: &toml::Table) -> Result<Box<dyn Learner>> {
    let kinds = || {
        LEARNERS
            .iter()
            .map(|r| format!("\"{}\"", r.kind))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = match model.get("kind") {
        Some(toml::Value::String(k)) => k.as_str(),
        Some(other) => {
            return Err(Error::config(format!(
                "model.kind = {other}: expected one of {}",
                kinds()
            )));
        }
        None => {
            return Err(Error::config(format!(
                "model.kind: missing; expected one of {}",
                kinds()
            )));
        }
    };
    let entry = LEARNERS.iter().find(|r| r.kind == kind).ok_or_else(|| {
        Error::config(format!(
            "model.kind = \"{kind}\": expected one of {}",
            kinds()
        ))
    })?;
    let mut rest = model.clone();
    rest.remove("kind");
    (entry.build)(rest)
}

/// `[model]` keys of `config` as a table with `kind` first (for [`Learner::config`]).
pub fn config_table(kind: &str, config: &impl Serialize) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("kind".into(), toml::Value::String(kind.into()));
    match toml::Value::try_from(config) {
        Ok(toml::Value::Table(rest)) => t.extend(rest),
        other => panic!("a learner's keys serialise to a table, got {other:?}"),
    }
    t
}

/// Writes `model`, fitted by `learner`, to `path` (safetensors): the model's tensors and
/// metadata, the format tag and the learner's `[model]` keys (metadata `model`, as JSON), so the
/// file alone is enough to load and sample it.
pub fn save(learner: &dyn Learner, model: &dyn Model, path: &Path) -> Result<()> {
    to_file(learner, model)?.write(path)
}

/// The saved-model file of `model` (see [`save`]), not yet written.
pub fn to_file(learner: &dyn Learner, model: &dyn Model) -> Result<TensorFile> {
    let mut file = TensorFile::new(MODEL_FORMAT);
    model.save(&mut file)?;
    file.set("format", MODEL_FORMAT);
    let json = serde_json::to_string(&learner.config()).expect("a TOML table is valid JSON");
    file.set("model", json);
    Ok(file)
}

/// A model saved by [`save`], with the learner that fitted it.
pub fn load(path: &Path) -> Result<(Box<dyn Learner>, Box<dyn Model>)> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::data(path, format!("cannot read it: {e}")))?;
    load_bytes(&bytes, path)
}

/// [`load`] of the file's `bytes` (`path` for messages).
pub fn load_bytes(bytes: &[u8], path: &Path) -> Result<(Box<dyn Learner>, Box<dyn Model>)> {
    load_with(bytes, path, &[])
}

/// [`load_bytes`] with `KEY=VALUE` overrides of the saved `[model]` table applied first (keys
/// relative to it, e.g. `sampler=dpmpp-2m` or `sample_steps=10` to sample a diffusion model
/// another way); an override the learner rejects is its config error.
pub fn load_with(
    bytes: &[u8],
    path: &Path,
    overrides: &[String],
) -> Result<(Box<dyn Learner>, Box<dyn Model>)> {
    let file = TensorFile::parse(bytes, path)?;
    file.expect_format(MODEL_FORMAT, "a model saved by ouro")?;
    let mut table: toml::Table = serde_json::from_str(file.get("model")?)
        .map_err(|e| file.error(format!("metadata `model` is not a [model] table: {e}")))?;
    for item in overrides {
        crate::config::apply_override(&mut table, item)?;
    }
    // The saved table has every default filled in: a Karras grid's ρ goes with it when the
    // overrides choose another grid (and do not set ρ themselves).
    let sets = |key: &str| {
        overrides
            .iter()
            .any(|o| o.split('=').next().map(str::trim) == Some(key))
    };
    if sets("sigma_grid")
        && !sets("grid_rho")
        && table.get("sigma_grid").and_then(|v| v.as_str()) != Some("karras")
    {
        table.remove("grid_rho");
    }
    let learner = build(&table).map_err(|e| match e {
        Error::Config(m) if !overrides.is_empty() => {
            Error::config(format!("--set {}: {m}", overrides.join(" --set ")))
        }
        e => file.error(format!("metadata `model`: {e}")),
    })?;
    let model = learner.load(&file)?;
    Ok((learner, model))
}

/// `previous` as the concrete model type `M`, when it is one (for warm starts).
/// Checks sample weights against `points` training points: one finite weight ≥ 0 per point,
/// not all 0 (what every learner that takes weights needs).
pub fn check_weights(weights: &[f64], points: usize) -> Result<()> {
    if weights.len() != points
        || weights.iter().any(|v| !(v.is_finite() && *v >= 0.0))
        || weights.iter().sum::<f64>() <= 0.0
    {
        return Err(Error::Run(
            "sample weights: expected one finite weight ≥ 0 per point, not all 0".into(),
        ));
    }
    Ok(())
}

pub(crate) fn downcast<M: Model>(previous: Option<&dyn Model>) -> Option<&M> {
    previous.and_then(|m| (m as &dyn std::any::Any).downcast_ref::<M>())
}
