//! The keys of `[model] kind = "diffusion"`, typed. They are flat in TOML; the denoiser, the noise
//! schedule, the sampler and the grid spacing are tagged enums (`denoiser = "mlp"`, `noise =
//! "ou"`, `sampler = "ddim"`, `sigma_grid = "karras"`) whose variants carry the keys that only they use, with their defaults. Each key is
//! declared once, here, with its default; [`DiffusionConfig::from_table`] fills in the defaults
//! that depend on other keys, and a key the chosen options do not use is an error because it is
//! missing from the resolved config, which is exactly what `config.toml` records.

use super::precondition::Objective;
use super::trainer::LrDecay;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// `[model] kind = "diffusion"` with every default that applies resolved.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct DiffusionConfig {
    /// Which denoiser is fitted, with its keys.
    #[serde(flatten)]
    pub denoiser: DenoiserKind,
    /// The noise schedule, with its keys (default vp-linear).
    #[serde(flatten)]
    pub noise: NoiseKind,
    /// The sampler, with its keys (default ddpm).
    #[serde(flatten)]
    pub sampler: SamplerKind,
    /// How the sampling grid is spaced (default: uniform in the schedule's time).
    #[serde(flatten)]
    pub sigma_grid: SigmaGridKind,
    /// Sampling steps of a full generation (default: the schedule's T for VP, else 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_steps: Option<usize>,
    /// Last time of the sampling grid, in the schedule's time units (early stop at σ(t_min);
    /// default 1 for VP, else 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_min: Option<f64>,
    /// Whether the last step jumps to σ = 0; false returns the points at σ(t_min).
    #[serde(default = "yes")]
    pub denoise_final: bool,
    /// Shift and scale the training set to mean 0 and unit overall variance before fitting
    /// (default: true for mlp, false for the closed-form denoisers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardize: Option<bool>,
    /// Clip the denoiser's prediction of x₀ (and so the samples) to [lo, hi] in data units,
    /// e.g. [-1, 1] for image targets (DDPM's clip_denoised).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<[f64; 2]>,
    /// Controlled error added to the denoiser (`[model.error]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DenoiserErrorConfig>,
    /// Condition on the target's class labels; samples carry labels.
    #[serde(default)]
    pub conditional: bool,
    /// conditional: classifier-free guidance weight w ≥ 0 (default 0: purely conditional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
}

fn yes() -> bool {
    true
}

/// `denoiser = ...`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "denoiser", rename_all = "kebab-case")]
pub enum DenoiserKind {
    /// A trained MLP.
    Mlp(MlpConfig),
    /// A trained U-Net (image targets).
    Unet(UnetConfig),
    /// Yi et al.'s empirical optimum (the KDE denoiser with h = 0).
    Empirical,
    /// The exact denoiser of the training set's KDE.
    Kde {
        /// Bandwidth h in data units (required).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bandwidth: Option<f64>,
    },
    /// The exact posterior mean of a Gaussian mixture fitted by EM.
    GmmExact {
        /// Mixture components (1: a Gaussian).
        #[serde(default = "one")]
        components: usize,
    },
}

fn one() -> usize {
    1
}

/// `denoiser = "mlp"`: the network and its training.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct MlpConfig {
    /// Hidden widths.
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Size of the sinusoidal time embedding (even).
    #[serde(default = "default_time_embedding")]
    pub time_embedding: usize,
    /// The training keys.
    #[serde(flatten)]
    pub train: TrainKeys,
}

/// `denoiser = "unet"`: the network (images only) and its training.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct UnetConfig {
    /// Feature maps per resolution, from the full image down (each level halves the side).
    #[serde(default = "default_channels")]
    pub channels: Vec<usize>,
    /// Residual blocks per level, down and up.
    #[serde(default = "one")]
    pub blocks: usize,
    /// GroupNorm groups (dividing every channel count).
    #[serde(default = "default_groups")]
    pub groups: usize,
    /// Self-attention at the lowest resolution.
    #[serde(default)]
    pub attention: bool,
    /// The training keys.
    #[serde(flatten)]
    pub train: TrainKeys,
}

/// The keys of a trained denoiser's Adam training (the MLP's and the U-Net's).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct TrainKeys {
    /// "eps", "x0", "v" or "one-step" (Yi et al.; discrete VP only).
    #[serde(default = "default_objective")]
    pub objective: Objective,
    /// Adam steps per generation (default 2000 when `epochs` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_steps: Option<usize>,
    /// Training budget in passes over the training set instead of `train_steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    /// Mini-batch size (default 512 for mlp, 64 for unet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Adam learning rate (default 10⁻³ for mlp, 5·10⁻⁴ for unet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Linear learning-rate warm-up steps.
    #[serde(default)]
    pub warmup_steps: usize,
    /// The learning rate after the warm-up: "none" (constant) or "cosine" (down to 0 at the
    /// last step).
    #[serde(default, skip_serializing_if = "is_no_decay")]
    pub lr_decay: LrDecay,
    /// Clip the global gradient norm to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    /// EMA decay of the weights used for sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
    /// Fraction of the training set held out for early stopping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping_fraction: Option<f64>,
    /// Early stopping: evaluations without improvement of the held-out loss (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// Early stopping: evaluate the held-out loss every this many steps (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<usize>,
    /// conditional: probability of training a point without its label (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_dropout: Option<f64>,
}

impl TrainKeys {
    /// Fills in the defaults: `batch_size` and `lr` as given, 2000 steps unless `epochs`, the
    /// early-stopping keys only with a held-out fraction, label dropout only when `conditional`.
    fn resolve(&mut self, batch_size: usize, lr: f64, conditional: bool) {
        self.batch_size.get_or_insert(batch_size);
        self.lr.get_or_insert(lr);
        if self.epochs.is_none() {
            self.train_steps.get_or_insert(2000);
        }
        if self.early_stopping_fraction.is_some() {
            self.patience = Some(self.patience.unwrap_or(5).max(1));
            self.eval_every.get_or_insert(100);
        } else {
            self.patience = None;
            self.eval_every = None;
        }
        if conditional {
            self.label_dropout.get_or_insert(0.1);
        } else {
            self.label_dropout = None;
        }
    }
}

fn default_hidden() -> Vec<usize> {
    vec![256, 256, 256]
}
fn default_time_embedding() -> usize {
    32
}
fn is_no_decay(d: &LrDecay) -> bool {
    *d == LrDecay::None
}

fn default_objective() -> Objective {
    Objective::Eps
}
fn default_channels() -> Vec<usize> {
    vec![32, 64, 64]
}
fn default_groups() -> usize {
    8
}

/// `noise = ...`: the noise schedule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "noise", rename_all = "kebab-case")]
pub enum NoiseKind {
    /// DDPM's linear β schedule.
    VpLinear {
        /// Number of diffusion steps T.
        #[serde(default = "thousand")]
        diffusion_steps: usize,
        /// β_1.
        #[serde(default = "default_beta_min")]
        beta_min: f64,
        /// β_T.
        #[serde(default = "default_beta_max")]
        beta_max: f64,
    },
    /// The cosine schedule of Nichol & Dhariwal.
    VpCosine {
        /// Number of diffusion steps T.
        #[serde(default = "thousand")]
        diffusion_steps: usize,
    },
    /// The Ornstein–Uhlenbeck process on [0, t_max].
    Ou {
        /// The time horizon.
        #[serde(default = "default_t_max")]
        t_max: f64,
    },
    /// Variance exploding, σ from sigma_min to sigma_max.
    Ve {
        /// Smallest σ.
        #[serde(default = "default_ve_min")]
        sigma_min: f64,
        /// Largest σ.
        #[serde(default = "default_ve_max")]
        sigma_max: f64,
    },
    /// Karras et al.'s EDM grid.
    Edm {
        /// Smallest σ.
        #[serde(default = "default_edm_min")]
        sigma_min: f64,
        /// Largest σ.
        #[serde(default = "default_edm_max")]
        sigma_max: f64,
        /// Grid curvature ρ.
        #[serde(default = "default_rho")]
        rho: f64,
    },
}

fn thousand() -> usize {
    1000
}
fn default_beta_min() -> f64 {
    1e-4
}
fn default_beta_max() -> f64 {
    0.02
}
fn default_t_max() -> f64 {
    4.0
}
fn default_ve_min() -> f64 {
    0.01
}
fn default_ve_max() -> f64 {
    50.0
}
fn default_edm_min() -> f64 {
    0.002
}
fn default_edm_max() -> f64 {
    80.0
}
fn default_rho() -> f64 {
    7.0
}

/// `sampler = ...`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "sampler", rename_all = "kebab-case")]
pub enum SamplerKind {
    /// DDPM's ancestral sampler.
    Ddpm,
    /// DDIM with stochasticity η.
    Ddim {
        /// η ∈ [0, 1] (0: deterministic).
        #[serde(default)]
        eta: f64,
    },
    /// Euler–Maruyama on the reverse SDE.
    EulerMaruyama,
    /// Euler on the probability-flow ODE.
    Euler,
    /// Heun on the probability-flow ODE.
    Heun,
    /// DPM-Solver++(2M), multistep, one evaluation per step.
    #[serde(rename = "dpmpp-2m")]
    DpmSolver2M,
}

/// `sigma_grid = ...`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "sigma_grid", rename_all = "kebab-case")]
pub enum SigmaGridKind {
    /// Uniform in the schedule's time.
    Schedule,
    /// Karras et al.'s spacing, uniform in σ^{1/ρ}.
    Karras {
        /// ρ (default 7).
        #[serde(default = "default_rho")]
        grid_rho: f64,
    },
}

/// `[model.error]`: D'(x, σ) = x + scale·(D − x) + bias + noise·f(x) with f a fixed random field.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DenoiserErrorConfig {
    /// Multiplies the score (default 1).
    #[serde(default = "unit")]
    pub scale: f64,
    /// Constant bias per coordinate (default none).
    #[serde(default)]
    pub bias: Vec<f64>,
    /// Amplitude of the random error field (default 0).
    #[serde(default)]
    pub noise: f64,
    /// Length scale of the random error field (default 1).
    #[serde(default = "unit")]
    pub length_scale: f64,
}

fn unit() -> f64 {
    1.0
}

/// The values each tag takes, in the order error messages list them.
const TAGS: [(&str, &[&str], Option<&str>); 4] = [
    (
        "denoiser",
        &["mlp", "unet", "empirical", "kde", "gmm-exact"],
        None,
    ),
    (
        "noise",
        &["vp-linear", "vp-cosine", "ou", "ve", "edm"],
        Some("vp-linear"),
    ),
    (
        "sampler",
        &[
            "ddpm",
            "ddim",
            "euler-maruyama",
            "euler",
            "heun",
            "dpmpp-2m",
        ],
        Some("ddpm"),
    ),
    ("sigma_grid", &["schedule", "karras"], Some("schedule")),
];

impl DiffusionConfig {
    /// Parses the `[model]` keys (without `kind`) and resolves every default that applies; a
    /// key the chosen denoiser, noise schedule or sampler does not use is an error that names
    /// the options that do use it.
    pub fn from_table(mut table: toml::Table) -> Result<DiffusionConfig> {
        for (tag, names, default) in TAGS {
            match (table.get(tag), default) {
                (None, Some(d)) => {
                    table.insert(tag.into(), toml::Value::String(d.to_string()));
                }
                (None, None) => {
                    return Err(Error::config(format!(
                        "model.{tag}: missing; expected {}",
                        quoted(names)
                    )));
                }
                (Some(toml::Value::String(v)), _) if names.contains(&v.as_str()) => {}
                (Some(v), _) => {
                    return Err(Error::config(format!(
                        "model.{tag} = {v}: expected {}",
                        quoted(names)
                    )));
                }
            }
        }
        let mut cfg: DiffusionConfig = match table.clone().try_into() {
            Ok(c) => c,
            Err(e) => return Err(locate(&table, e)),
        };
        cfg.resolve();
        let resolved = toml::Table::try_from(&cfg).expect("a config serialises");
        for (key, value) in &table {
            if !resolved.contains_key(key) {
                return Err(Error::config(format!(
                    "model.{key}: not used {}; remove it",
                    why_unused(key, value, &cfg)
                )));
            }
        }
        Ok(cfg)
    }

    /// Fills in the defaults that depend on other keys and drops keys that do not apply.
    fn resolve(&mut self) {
        let discrete = matches!(
            self.noise,
            NoiseKind::VpLinear { .. } | NoiseKind::VpCosine { .. }
        );
        let steps = match self.noise {
            NoiseKind::VpLinear {
                diffusion_steps, ..
            }
            | NoiseKind::VpCosine { diffusion_steps } => diffusion_steps,
            _ => 100,
        };
        self.sample_steps.get_or_insert(steps);
        self.t_min.get_or_insert(if discrete { 1.0 } else { 0.0 });
        let trained = matches!(self.denoiser, DenoiserKind::Mlp(_) | DenoiserKind::Unet(_));
        self.standardize.get_or_insert(trained);
        if self.conditional {
            self.guidance.get_or_insert(0.0);
        } else {
            self.guidance = None;
        }
        match &mut self.denoiser {
            DenoiserKind::Mlp(m) => m.train.resolve(512, 1e-3, self.conditional),
            DenoiserKind::Unet(u) => u.train.resolve(64, 5e-4, self.conditional),
            _ => {}
        }
    }
}

/// `"a", "b" or "c"`.
fn quoted(names: &[&str]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match q.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => q.join(""),
    }
}

/// Why `key` (given as `value`) does not apply to `cfg`: the options under which it would.
fn why_unused(key: &str, value: &toml::Value, cfg: &DiffusionConfig) -> String {
    match key {
        "guidance" | "label_dropout" if !cfg.conditional => {
            return "unless model.conditional = true".into();
        }
        "patience" | "eval_every" => return "without early_stopping_fraction".into(),
        _ => {}
    }
    /// Whether the variant `name` of the enum `T` tagged `tag` keeps `key = value`.
    fn keeps<T: serde::de::DeserializeOwned + Serialize>(
        tag: &str,
        name: &str,
        key: &str,
        value: &toml::Value,
    ) -> bool {
        let mut t = toml::Table::new();
        t.insert(tag.into(), toml::Value::String(name.to_string()));
        t.insert(key.into(), value.clone());
        t.try_into::<T>()
            .ok()
            .and_then(|v| toml::Table::try_from(&v).ok())
            .is_some_and(|k| k.contains_key(key))
    }
    for (tag, names, _) in TAGS {
        let users: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| match tag {
                "denoiser" => keeps::<DenoiserKind>(tag, name, key, value),
                "noise" => keeps::<NoiseKind>(tag, name, key, value),
                "sampler" => keeps::<SamplerKind>(tag, name, key, value),
                _ => keeps::<SigmaGridKind>(tag, name, key, value),
            })
            .collect();
        if !users.is_empty() {
            return match users[..] {
                [one] => format!("unless {tag} = \"{one}\""),
                _ => format!("unless {tag} is {}", quoted(&users)),
            };
        }
    }
    "by a diffusion model: not one of its keys (check the spelling)".into()
}

/// The error of a table that does not deserialise, naming the key at fault: the keys are
/// flat, so the first one whose removal makes the error go away is it.
fn locate(table: &toml::Table, e: toml::de::Error) -> Error {
    let message = e.message().trim().to_string();
    for key in table.keys() {
        if matches!(
            key.as_str(),
            "denoiser" | "noise" | "sampler" | "sigma_grid"
        ) {
            continue;
        }
        let mut t = table.clone();
        t.remove(key);
        if t.try_into::<DiffusionConfig>().is_ok() {
            let value = &table[key];
            return Error::config(format!("model.{key} = {value}: {message}"));
        }
    }
    Error::config(format!("model: {message}"))
}
