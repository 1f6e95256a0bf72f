//! Preconditioning of the MLP denoiser: what the network regresses (the objective) and the
//! c_in, c_skip, c_out that turn its output F into D(x, σ) = c_skip·x + c_out·F (Karras et al.
//! 2022, with σ_data = 1 on standardised data), and the sinusoidal time embedding of its input.

use super::noise::NoiseSchedule;

/// What the network regresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// The noise ε of x = x₀ + σε (DDPM): c_skip = 1, c_out = −σ.
    Eps,
    /// The clean point x₀: c_skip = 0, c_out = 1.
    X0,
    /// v = (ε − σx₀)/√(1 + σ²) (Salimans & Ho; the same preconditioning as EDM with σ_data = 1):
    /// c_skip = 1/(1 + σ²), c_out = −σ/√(1 + σ²).
    V,
    /// Yi et al.'s one-step noise: the ε' of x_t = √α_t x_{t−1} + √β_t ε' with
    /// x_{t−1} ~ q(x_{t−1} | x₀). Its prediction stands for ε·√(β_t/(1 − ᾱ_t)), so
    /// c_skip = 1, c_out = −σ√((1 − ᾱ_t)/β_t). Discrete VP schedules only.
    OneStep,
}

impl Objective {
    /// Parses a config name.
    pub fn parse(name: &str) -> Option<Objective> {
        Some(match name {
            "eps" => Objective::Eps,
            "x0" => Objective::X0,
            "v" => Objective::V,
            "one-step" => Objective::OneStep,
            _ => return None,
        })
    }

    /// The config name.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Eps => "eps",
            Objective::X0 => "x0",
            Objective::V => "v",
            Objective::OneStep => "one-step",
        }
    }
}

/// (c_in, c_skip, c_out) at noise level σ.
pub(crate) fn preconditioning(
    objective: Objective,
    schedule: &NoiseSchedule,
    sigma: f64,
) -> (f64, f64, f64) {
    let s2 = sigma * sigma;
    let c_in = 1.0 / (1.0 + s2).sqrt();
    match objective {
        Objective::Eps => (c_in, 1.0, -sigma),
        Objective::X0 => (c_in, 0.0, 1.0),
        Objective::V => (c_in, 1.0 / (1.0 + s2), -sigma / (1.0 + s2).sqrt()),
        Objective::OneStep => {
            let beta = schedule.step_beta(sigma).unwrap_or(1.0);
            (c_in, 1.0, -sigma * (s2 / (1.0 + s2) / beta).sqrt())
        }
    }
}

/// The sinusoidal embedding [sin(t f_i), cos(t f_i)], f_i = 10000^{−i/half}, i < half (as in DDPM
/// code), written into `out` (length 2·half).
pub fn time_embedding(t: f64, out: &mut [f32]) {
    let half = out.len() / 2;
    for i in 0..half {
        let f = (-(10000.0f32.ln()) * i as f32 / half as f32).exp();
        let a = t as f32 * f;
        out[i] = a.sin();
        out[half + i] = a.cos();
    }
}
