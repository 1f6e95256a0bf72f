//! Noise schedules: maps from a schedule's own time variable t to the noise level σ.
//!
//! Everything in [`crate::diffusion`] works in noise-level space (Karras et al. 2022): the noisy
//! point is x_σ = x₀ + σ ε with ε ~ N(0, I). A variance-preserving (VP) process
//! x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε is the same process rescaled, x_t = √ᾱ_t x_σ with
//! σ = √((1 − ᾱ_t)/ᾱ_t), i.e. ᾱ = 1/(1 + σ²). A schedule therefore only has to say which σ each
//! time step has, what the prior at the largest σ is, and what number the network sees as "time".

/// A noise schedule. Time runs forward (t = 0 is clean data); samplers walk it backwards.
#[derive(Clone, Debug, PartialEq)]
pub enum NoiseSchedule {
    /// Discrete VP (DDPM): ᾱ_t = Π_{s ≤ t} (1 − β_s) for t = 1 … T, ᾱ_0 = 1. Between integer
    /// steps log ᾱ is interpolated linearly. Time is the step count t ∈ [0, T]; the network sees
    /// the zero-based step index t − 1, as in Ho et al. (2020).
    DiscreteVp {
        /// ln ᾱ_t for t = 0 … T (`log_abar[0] = 0`).
        log_abar: Vec<f64>,
        /// β_t for t = 1 … T (`betas[0]` is β_1).
        betas: Vec<f64>,
    },
    /// Ornstein–Uhlenbeck / continuous VP with β ≡ 2: dx = −x dt + √2 dW, so ᾱ(t) = e^{−2t} and
    /// σ(t) = √(e^{2t} − 1); t ∈ [0, t_max] (Khelifa et al. use t_max = 4).
    Ou {
        /// Largest time.
        t_max: f64,
    },
    /// Variance exploding (Song et al. 2021): σ(t) = σ_min (σ_max/σ_min)^t for t ∈ [0, 1].
    Ve {
        /// σ at t = 0.
        sigma_min: f64,
        /// σ at t = 1.
        sigma_max: f64,
    },
    /// Karras et al. (EDM): σ(t) = (σ_min^{1/ρ} + t (σ_max^{1/ρ} − σ_min^{1/ρ}))^ρ for t ∈ [0, 1],
    /// so a uniform grid in t is the EDM sampling grid.
    Edm {
        /// σ at t = 0.
        sigma_min: f64,
        /// σ at t = 1.
        sigma_max: f64,
        /// Grid curvature ρ (7 in the paper).
        rho: f64,
    },
}

impl NoiseSchedule {
    /// A noise level to train a denoiser at, the schedule's training distribution: a uniform step
    /// k ∈ 1..=T for discrete VP (returned too), σ(t) at a uniform time t for OU and VE (at least
    /// 10⁻⁴), and EDM's ln σ ~ N(−1.2, 1.2²) (Karras et al. 2022).
    pub fn training_sigma(&self, rng: &mut crate::rng::Stream) -> (f64, Option<usize>) {
        use rand::RngExt;
        use rand_distr::Distribution as _;
        match self {
            NoiseSchedule::DiscreteVp { betas, .. } => {
                let k = rng.random_range(1..=betas.len());
                (self.sigma(k as f64), Some(k))
            }
            NoiseSchedule::Edm { .. } => {
                let z: f64 = rand_distr::StandardNormal.sample(rng);
                ((-1.2 + 1.2 * z).exp(), None)
            }
            _ => {
                let t = rng.random::<f64>() * self.t_end();
                (self.sigma(t).max(1e-4), None)
            }
        }
    }

    /// DDPM's linear β schedule: β_t = β_min + (β_max − β_min)(t − 1)/(T − 1) for t = 1 … T.
    pub fn vp_linear(beta_min: f64, beta_max: f64, steps: usize) -> Self {
        let betas = (0..steps)
            .map(|i| {
                let f = if steps > 1 {
                    i as f64 / (steps - 1) as f64
                } else {
                    0.0
                };
                beta_min + (beta_max - beta_min) * f
            })
            .collect();
        Self::from_betas(betas)
    }

    /// Nichol & Dhariwal's cosine schedule: ᾱ(t) = f(t)/f(0) with f(t) = cos²((t/T + s)/(1 + s)·π/2),
    /// turned into β_t = min(1 − ᾱ_t/ᾱ_{t−1}, 0.999) (s = 0.008 in the paper).
    pub fn vp_cosine(steps: usize, s: f64) -> Self {
        let f = |t: f64| ((t / steps as f64 + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2).cos();
        let betas = (1..=steps)
            .map(|t| {
                let ratio = (f(t as f64) / f(t as f64 - 1.0)).powi(2);
                (1.0 - ratio).clamp(0.0, 0.999)
            })
            .collect();
        Self::from_betas(betas)
    }

    fn from_betas(betas: Vec<f64>) -> Self {
        let mut log_abar = Vec::with_capacity(betas.len() + 1);
        log_abar.push(0.0);
        let mut acc = 0.0;
        for &b in &betas {
            acc += (1.0 - b).ln();
            log_abar.push(acc);
        }
        NoiseSchedule::DiscreteVp { log_abar, betas }
    }

    /// The time range [0, t_end] of the schedule.
    pub fn t_end(&self) -> f64 {
        match self {
            NoiseSchedule::DiscreteVp { betas, .. } => betas.len() as f64,
            NoiseSchedule::Ou { t_max } => *t_max,
            NoiseSchedule::Ve { .. } | NoiseSchedule::Edm { .. } => 1.0,
        }
    }

    /// Whether the schedule is variance preserving: its prior at σ is N(0, (1 + σ²) I) in σ-space
    /// (N(0, I) for x_t), rather than N(0, σ² I).
    pub fn is_vp(&self) -> bool {
        matches!(
            self,
            NoiseSchedule::DiscreteVp { .. } | NoiseSchedule::Ou { .. }
        )
    }

    /// σ(t).
    pub fn sigma(&self, t: f64) -> f64 {
        match self {
            NoiseSchedule::DiscreteVp { log_abar, .. } => {
                let la = interpolate(log_abar, t);
                (1.0 / la.exp() - 1.0).max(0.0).sqrt()
            }
            NoiseSchedule::Ou { .. } => (2.0 * t).exp_m1().max(0.0).sqrt(),
            NoiseSchedule::Ve {
                sigma_min,
                sigma_max,
            } => sigma_min * (sigma_max / sigma_min).powf(t),
            NoiseSchedule::Edm {
                sigma_min,
                sigma_max,
                rho,
            } => {
                let (a, b) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
                (a + t * (b - a)).powf(*rho)
            }
        }
    }

    /// The time t with σ(t) = σ (the inverse of [`NoiseSchedule::sigma`], clamped to the range).
    pub fn time(&self, sigma: f64) -> f64 {
        match self {
            NoiseSchedule::DiscreteVp { log_abar, .. } => {
                // ln ᾱ = −ln(1 + σ²); log_abar decreases with t.
                let target = -(sigma * sigma).ln_1p();
                let n = log_abar.len() - 1;
                if target >= log_abar[0] {
                    return 0.0;
                }
                if target <= log_abar[n] {
                    return n as f64;
                }
                let i = log_abar.partition_point(|&v| v > target); // first index with v ≤ target
                let (hi, lo) = (log_abar[i - 1], log_abar[i]);
                (i - 1) as f64 + (hi - target) / (hi - lo)
            }
            NoiseSchedule::Ou { t_max } => (0.5 * (sigma * sigma).ln_1p()).min(*t_max),
            NoiseSchedule::Ve {
                sigma_min,
                sigma_max,
            } => ((sigma / sigma_min).ln() / (sigma_max / sigma_min).ln()).clamp(0.0, 1.0),
            NoiseSchedule::Edm {
                sigma_min,
                sigma_max,
                rho,
            } => {
                let (a, b) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
                ((sigma.powf(1.0 / rho) - a) / (b - a)).clamp(0.0, 1.0)
            }
        }
    }

    /// Standard deviation of the prior the samplers start from at noise level σ, for data of unit
    /// scale: √(1 + σ²) for VP schedules (x_t ~ N(0, I)), σ otherwise.
    pub fn prior_std(&self, sigma: f64) -> f64 {
        if self.is_vp() {
            (1.0 + sigma * sigma).sqrt()
        } else {
            sigma
        }
    }

    /// The number the network's time embedding sees at noise level σ: the zero-based step index
    /// t − 1 for discrete VP (as in DDPM code), and 1000·t/t_end for continuous schedules, so that
    /// every schedule spans about the same range of the sinusoidal embedding.
    pub fn network_time(&self, sigma: f64) -> f64 {
        match self {
            NoiseSchedule::DiscreteVp { .. } => self.time(sigma) - 1.0,
            _ => 1000.0 * self.time(sigma) / self.t_end(),
        }
    }

    /// β of the discrete step that ends at σ (rounded to the nearest step), for the one-step noise
    /// objective; `None` for continuous schedules.
    pub fn step_beta(&self, sigma: f64) -> Option<f64> {
        match self {
            NoiseSchedule::DiscreteVp { betas, .. } => {
                let t = self.time(sigma).round().clamp(1.0, betas.len() as f64) as usize;
                Some(betas[t - 1])
            }
            _ => None,
        }
    }

    /// The sampling grid: `steps` + 1 noise levels from σ(t_start) down to σ(t_stop), uniform in t.
    /// When `to_zero` is set the last level is replaced by σ = 0 after `steps` − 1 uniform steps
    /// to σ(t_stop), so the final step is a jump to the denoised point (DDPM's last step).
    pub fn grid(&self, t_start: f64, t_stop: f64, steps: usize, to_zero: bool) -> Vec<f64> {
        assert!(steps >= 1);
        let points = if to_zero { steps } else { steps + 1 };
        let mut grid: Vec<f64> = (0..points)
            .map(|i| {
                let f = if points > 1 {
                    i as f64 / (points - 1) as f64
                } else {
                    0.0
                };
                self.sigma(t_start + (t_stop - t_start) * f)
            })
            .collect();
        if to_zero {
            grid.push(0.0);
        }
        grid
    }
}

/// Piecewise-linear interpolation of `table` (indexed 0 … len − 1) at a real index.
fn interpolate(table: &[f64], t: f64) -> f64 {
    let n = table.len() - 1;
    let t = t.clamp(0.0, n as f64);
    let i = (t.floor() as usize).min(n.saturating_sub(1));
    let f = t - i as f64;
    if n == 0 {
        return table[0];
    }
    table[i] * (1.0 - f) + table[i + 1] * f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp_linear_matches_ddpm_cumulative_product() {
        let s = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
        let mut abar = 1.0f64;
        for t in 1..=1000 {
            let beta = 1e-4 + (0.02 - 1e-4) * (t - 1) as f64 / 999.0;
            abar *= 1.0 - beta;
            let sigma = s.sigma(t as f64);
            assert!((1.0 / (1.0 + sigma * sigma) - abar).abs() < 1e-12 * abar.max(1e-3));
            assert!((s.time(sigma) - t as f64).abs() < 1e-6, "t = {t}");
        }
        assert_eq!(s.sigma(0.0), 0.0);
        assert!((s.network_time(s.sigma(1000.0)) - 999.0).abs() < 1e-6);
    }

    #[test]
    fn continuous_schedules_invert() {
        let schedules = [
            NoiseSchedule::Ou { t_max: 4.0 },
            NoiseSchedule::Ve {
                sigma_min: 0.01,
                sigma_max: 50.0,
            },
            NoiseSchedule::Edm {
                sigma_min: 0.002,
                sigma_max: 80.0,
                rho: 7.0,
            },
            NoiseSchedule::vp_cosine(1000, 0.008),
        ];
        for s in schedules {
            for i in 1..20 {
                let t = s.t_end() * i as f64 / 20.0;
                let back = s.time(s.sigma(t));
                assert!(
                    (back - t).abs() < 1e-6 * s.t_end(),
                    "{s:?} t = {t} back = {back}"
                );
            }
        }
        let edm = NoiseSchedule::Edm {
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
        };
        let g = edm.grid(1.0, 0.0, 10, false);
        assert_eq!(g.len(), 11);
        assert!((g[0] - 80.0).abs() < 1e-9 && (g[10] - 0.002).abs() < 1e-12);
    }

    #[test]
    fn ddpm_grid_visits_every_step_then_zero() {
        let s = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
        let g = s.grid(1000.0, 1.0, 1000, true);
        assert_eq!(g.len(), 1001);
        assert!((g[0] - s.sigma(1000.0)).abs() < 1e-12);
        assert!((g[999] - s.sigma(1.0)).abs() < 1e-12);
        assert_eq!(g[1000], 0.0);
        assert!(g.windows(2).all(|w| w[0] > w[1]));
    }
}
