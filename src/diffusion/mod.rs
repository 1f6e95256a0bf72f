//! Diffusion models as learners of the loop: a denoiser D(x, σ) ≈ E[x₀ | x₀ + σε = x]
//! ([`Denoiser`]), a noise schedule ([`NoiseSchedule`]) and a sampler ([`Sampler`]).
//!
//! - `noise`: VP linear/cosine (DDPM), OU, VE and EDM schedules, all mapped to σ.
//! - `sampler`: DDPM ancestral, DDIM(η), Euler–Maruyama, probability-flow Euler and Heun.
//! - `closed_form`: the empirical-optimal (Yi et al.), KDE and Gaussian-mixture denoisers.
//! - `denoiser`: the trait and the imperfect-score wrapper (Khelifa et al.).
//! - `trained`: the MLP denoiser (network in [`crate::nn`]) and its Adam training.

pub mod bench;
pub mod closed_form;
pub mod config;
pub mod denoiser;
pub mod learner;
pub mod noise;
pub mod sampler;
pub mod saved;
pub mod trained;

pub use closed_form::{KernelDenoiser, MixtureDenoiser};
pub use config::{DenoiserErrorConfig, DiffusionConfig};
pub use denoiser::{Clipped, Denoiser, ErrorField, Imperfect};
pub use learner::{DiffusionLearner, DiffusionModel};
pub use noise::NoiseSchedule;
pub use sampler::{Sampler, SamplingPlan};
pub use trained::{MlpDenoiser, Objective, TrainConfig};
