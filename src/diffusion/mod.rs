//! Diffusion models as learners of the loop: a denoiser D(x, σ) ≈ E[x₀ | x₀ + σε = x]
//! ([`Denoiser`]), a noise schedule ([`NoiseSchedule`]) and a sampler ([`Sampler`]).
//!
//! - `noise`: VP linear/cosine (DDPM), OU, VE and EDM schedules, all mapped to σ.
//! - `sampler`: DDPM ancestral, DDIM(η), Euler–Maruyama, probability-flow Euler and Heun,
//!   DPM-Solver++(2M); grids uniform in the schedule's time or Karras-spaced.
//! - `config`: the `[model]` keys of a diffusion learner, typed.
//! - `closed_form`: the empirical-optimal (Yi et al.), KDE and Gaussian-mixture denoisers.
//! - `denoiser`: the trait, class conditioning and guidance, the imperfect-score wrapper
//!   (Khelifa et al.) and the clip.
//! - `mlp`: the MLP denoiser and `unet`: the U-Net denoiser for images (networks in
//!   [`crate::nn`]); `precondition`: their objectives and c_in, c_skip, c_out; `trainer`: their
//!   Adam training.
//! - `learner`: the diffusion learner and the fitted model; `saved`: both behind the
//!   [`crate::models`] traits, and saved diffusion models.

pub mod bench;
pub mod closed_form;
pub mod config;
pub mod denoiser;
pub mod learner;
pub mod mlp;
pub mod noise;
pub mod precondition;
pub mod sampler;
pub mod saved;
pub mod trainer;
pub mod unet;

pub use closed_form::{KernelDenoiser, MixtureDenoiser};
pub use config::{DenoiserErrorConfig, DiffusionConfig};
pub use denoiser::{Clipped, Denoiser, ErrorField, Imperfect};
pub use learner::{DiffusionLearner, DiffusionModel};
pub use mlp::MlpDenoiser;
pub use noise::NoiseSchedule;
pub use precondition::Objective;
pub use sampler::{Sampler, SamplingPlan, Spacing};
pub use trainer::TrainConfig;
pub use unet::{UnetArch, UnetDenoiser};
