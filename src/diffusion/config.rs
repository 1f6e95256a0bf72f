//! The keys of `[model] kind = "diffusion"`.

use serde::{Deserialize, Serialize};

/// `[model] kind = "diffusion"`. Every key but `denoiser` is optional; keys that the chosen
/// denoiser, noise schedule or sampler does not use are errors. The run's config.toml lists every
/// key that was used, with its resolved value.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiffusionConfig {
    /// "mlp" (trained network), "empirical" (Yi et al.'s optimum), "kde" or "gmm-exact".
    pub denoiser: String,
    /// "vp-linear" (default), "vp-cosine", "ou", "ve" or "edm".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    /// "ddpm" (default), "ddim", "euler-maruyama", "euler" or "heun".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<String>,
    /// Sampling steps of a full generation (default: the schedule's T for VP, else 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_steps: Option<usize>,
    /// DDIM's η (ddim only; default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<f64>,
    /// Last time of the sampling grid, in the schedule's time units (early stop at σ(t_min)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_min: Option<f64>,
    /// Whether the last step jumps to σ = 0 (default true); false returns the points at σ(t_min).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denoise_final: Option<bool>,
    /// Shift and scale the training set to mean 0 and unit overall variance before fitting
    /// (default: true for mlp, false for the closed-form denoisers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardize: Option<bool>,
    /// VP schedules: number of diffusion steps T (default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diffusion_steps: Option<usize>,
    /// vp-linear: β_1 (default 1e-4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_min: Option<f64>,
    /// vp-linear: β_T (default 0.02).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_max: Option<f64>,
    /// ou: the time horizon (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_max: Option<f64>,
    /// ve and edm: smallest σ (defaults 0.01 and 0.002).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_min: Option<f64>,
    /// ve and edm: largest σ (defaults 50 and 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    /// edm: grid curvature ρ (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// kde: kernel bandwidth h in data units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<f64>,
    /// gmm-exact: mixture components fitted by EM (default 1: a Gaussian).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub components: Option<usize>,
    /// Clip the denoiser's prediction of x₀ (and so the samples) to [lo, hi] in data units,
    /// e.g. [-1, 1] for image targets (DDPM's clip_denoised; default: no clipping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<[f64; 2]>,
    /// Controlled error added to the denoiser (`[model.error]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DenoiserErrorConfig>,
    /// mlp: hidden widths (default [256, 256, 256]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Vec<usize>>,
    /// mlp: size of the sinusoidal time embedding (default 32, even).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_embedding: Option<usize>,
    /// mlp: "eps" (default), "x0", "v" or "one-step" (Yi et al.; discrete VP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    /// mlp: Adam steps per generation (default 2000 when `epochs` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_steps: Option<usize>,
    /// mlp: training budget in passes over the training set instead of `train_steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    /// mlp: mini-batch size (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// mlp: Adam learning rate (default 1e-3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// mlp: linear learning-rate warm-up steps (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_steps: Option<usize>,
    /// mlp: clip the global gradient norm to this (default: no clipping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
    /// mlp: EMA decay of the weights used for sampling (default: no EMA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
    /// mlp: fraction of the training set held out for early stopping (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping_fraction: Option<f64>,
    /// mlp: stop after this many evaluations without improvement of the held-out loss (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patience: Option<usize>,
    /// mlp: evaluate the held-out loss every this many steps (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_every: Option<usize>,
    /// mlp: write each generation's weights to `weights/seed-S/gen-GGG.safetensors` (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_weights: Option<bool>,
    /// mlp: condition on the target's class labels (default false); samples carry labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditional: Option<bool>,
    /// conditional: probability of training a point without its label (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_dropout: Option<f64>,
    /// conditional: classifier-free guidance weight w ≥ 0 (default 0: purely conditional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
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
