//! Samplers: each is one step rule over a denoiser and a decreasing σ grid (as in k-diffusion),
//! run on fixed chunks of rows so that the result does not depend on the thread count.
//!
//! Notation: a step goes from σ_t to σ_s < σ_t, D = D(x, σ_t), ε̂ = (x − D)/σ_t. Reading σ as a
//! VP process with ᾱ = 1/(1 + σ²) gives the DDPM and DDIM updates in σ-space; a step that lands
//! on σ_s = 0 returns D for every sampler.

use super::denoiser::Denoiser;
use super::noise::NoiseSchedule;
use crate::distributions::fill_standard_normals;
use crate::nn::simd_dispatch;
use crate::rng::Stream;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution as _, StandardNormal};
use rayon::prelude::*;

/// Rows per independent chunk (each with its own noise stream).
pub const CHUNK: usize = 256;

/// A sampling rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampler {
    /// Ancestral DDPM (Ho et al.): x ← x − (σ_t² − σ_s²)/σ_t · ε̂ + √((σ_t² − σ_s²)(1 + σ_s²)/(1 + σ_t²)) z,
    /// i.e. the reverse-step variance β_t of the paper (not the posterior variance β̃_t).
    Ddpm,
    /// DDIM (Song et al.) with stochasticity η: σ_up = min(σ_s, η √(σ_s²(σ_t² − σ_s²)/σ_t²)),
    /// σ_down = √(σ_s² − σ_up²), x ← D + σ_down ε̂ + σ_up z. η = 0 is deterministic; η = 1
    /// samples the forward posterior q(x_s | x_t, x₀ = D).
    Ddim {
        /// η ∈ [0, 1].
        eta: f64,
    },
    /// Euler–Maruyama on the reverse SDE dx = −d(σ²) ∇log p_σ(x) + √(d(σ²)) dW:
    /// x ← x + (σ_t² − σ_s²)/σ_t² (D − x) + √(σ_t² − σ_s²) z.
    EulerMaruyama,
    /// Euler on the probability-flow ODE dx/dσ = (x − D)/σ.
    Euler,
    /// Heun's second-order method on the probability-flow ODE (Karras et al., Algorithm 1);
    /// an Euler step when σ_s = 0. On a [`Spacing::Karras`] grid this is EDM's deterministic
    /// sampler (k-diffusion's `sample_heun` with no churn).
    Heun,
    /// DPM-Solver++(2M) (Lu et al. 2022, multistep, data prediction; k-diffusion's
    /// `sample_dpmpp_2m`): with λ = −ln σ, h = λ_s − λ_t and the previous step's h' and D',
    /// x ← (σ_s/σ_t) x − (e^{−h} − 1) D̂, where D̂ = (1 + 1/(2r)) D − D'/(2r), r = h'/h, and
    /// D̂ = D on the first step (and the last, to σ = 0). One evaluation per step.
    DpmSolver2M,
}

/// How the σ grid is spaced between its ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Spacing {
    /// Uniform in the schedule's own time (DDPM's steps for VP, EDM's grid for `edm`).
    Schedule,
    /// Karras et al. (2022, eq. 5): σ_i = (σ_max^{1/ρ} + i/(n−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ
    /// between the schedule's σ at the grid's first and last times (k-diffusion's
    /// `get_sigmas_karras`); for any schedule, the network seeing the time of each σ.
    Karras {
        /// Curvature ρ (7 in the paper): larger puts more steps at small σ.
        rho: f64,
    },
}

impl Sampler {
    /// Denoiser evaluations for a grid of `steps` steps (Heun needs two per step but the last).
    pub fn evaluations(&self, grid: &[f64]) -> usize {
        let steps = grid.len() - 1;
        match self {
            Sampler::Heun => steps + grid[1..].iter().filter(|&&s| s > 0.0).count(),
            _ => steps,
        }
    }
}

/// Runs `sampler` from `x` (rows at noise level `grid[0]`) down the grid and returns the points at
/// `grid.last()`. `labels` (one per row) are handed to the denoiser as the rows' classes.
/// `rng` seeds one independent stream per chunk of [`CHUNK`] rows.
pub fn run(
    denoiser: &dyn Denoiser,
    sampler: Sampler,
    grid: &[f64],
    mut x: Array2<f32>,
    labels: Option<&[u32]>,
    rng: &mut Stream,
) -> Array2<f32> {
    assert!(grid.len() >= 2, "a grid needs at least one step");
    if let Some(l) = labels {
        assert_eq!(l.len(), x.nrows(), "one label per row");
    }
    let chunks = x.nrows().div_ceil(CHUNK);
    let seeds: Vec<u64> = (0..chunks).map(|_| rng.next_u64()).collect();
    // progress: points finished, of `total`
    let (watch, done, total) = (
        crate::progress::current(),
        std::sync::atomic::AtomicU64::new(0),
        x.nrows() as u64,
    );
    if let Some(w) = &watch {
        w.report("sampling", 0, total, "points");
    }
    let views: Vec<_> = x.axis_chunks_iter_mut(Axis(0), CHUNK).collect();
    views
        .into_par_iter()
        .zip(seeds)
        .enumerate()
        .for_each(|(c, (chunk, seed))| {
            let mut chunk_rng = Stream::seed_from_u64(seed);
            let rows = c * CHUNK..c * CHUNK + chunk.nrows();
            let den = Chunk {
                inner: denoiser,
                labels: labels.map(|l| &l[rows]),
            };
            let n = chunk.nrows() as u64;
            run_chunk(&den, sampler, grid, chunk, &mut chunk_rng);
            if let Some(w) = &watch {
                let d = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                w.report("sampling", d, total, "points");
            }
        });
    x
}

/// The denoiser seen by one chunk of rows: with the chunk's labels, when there are labels.
struct Chunk<'a> {
    inner: &'a dyn Denoiser,
    labels: Option<&'a [u32]>,
}

impl Chunk<'_> {
    fn denoise(&self, x: ArrayView2<f32>, sigma: f64, out: ArrayViewMut2<f32>) {
        self.inner.denoise(x, sigma, self.labels, out)
    }
}

fn run_chunk(
    den: &Chunk,
    sampler: Sampler,
    grid: &[f64],
    mut x: ArrayViewMut2<f32>,
    rng: &mut Stream,
) {
    let mut d = Array2::<f32>::zeros(x.dim());
    let mut z = vec![0.0f32; x.len()];
    let mut extra = match sampler {
        Sampler::Heun | Sampler::DpmSolver2M => {
            Some((Array2::<f32>::zeros(x.dim()), Array2::<f32>::zeros(x.dim())))
        }
        _ => None,
    };
    for (i, w) in grid.windows(2).enumerate() {
        let (st, ss) = (w[0], w[1]);
        den.denoise(x.view(), st, d.view_mut());
        if ss == 0.0 {
            x.assign(&d);
            continue;
        }
        let dv = st * st - ss * ss;
        match sampler {
            Sampler::Ddpm => {
                let keep = (ss * ss / (st * st)) as f32; // x − dv/σ_t² (x − D)
                let noise = (dv * (1.0 + ss * ss) / (1.0 + st * st)).sqrt() as f32;
                update(x.view_mut(), d.view(), keep, noise, &mut z, rng);
            }
            Sampler::Ddim { eta } => {
                let up = (eta * (ss * ss * dv / (st * st)).sqrt()).min(ss);
                let down = (ss * ss - up * up).max(0.0).sqrt();
                update(
                    x.view_mut(),
                    d.view(),
                    (down / st) as f32,
                    up as f32,
                    &mut z,
                    rng,
                );
            }
            Sampler::EulerMaruyama => {
                let keep = (ss * ss / (st * st)) as f32;
                update(x.view_mut(), d.view(), keep, dv.sqrt() as f32, &mut z, rng);
            }
            Sampler::Euler => update(x.view_mut(), d.view(), (ss / st) as f32, 0.0, &mut z, rng),
            Sampler::Heun => {
                let (x1, d1) = extra.as_mut().expect("Heun buffers");
                // Euler predictor: x1 = D + (σ_s/σ_t)(x − D).
                x1.assign(&x);
                update(x1.view_mut(), d.view(), (ss / st) as f32, 0.0, &mut z, rng);
                den.denoise(x1.view(), ss, d1.view_mut());
                // Trapezoid on dx/dσ = (x − D)/σ.
                let h = ss - st;
                for (((xv, &dv0), &x1v), &dv1) in
                    x.iter_mut().zip(d.iter()).zip(x1.iter()).zip(d1.iter())
                {
                    let slope0 = (*xv as f64 - dv0 as f64) / st;
                    let slope1 = (x1v as f64 - dv1 as f64) / ss;
                    *xv = (*xv as f64 + 0.5 * h * (slope0 + slope1)) as f32;
                }
            }
            Sampler::DpmSolver2M => {
                let (previous, _) = extra.as_mut().expect("DPM-Solver buffers");
                let h = (st / ss).ln();
                let keep = ss / st; // σ_s/σ_t = e^{−h}
                let towards = -(-h).exp_m1(); // 1 − e^{−h}
                let (a, b) = match i {
                    0 => (1.0, 0.0),
                    _ => {
                        let r = (grid[i - 1] / st).ln() / h;
                        (1.0 + 0.5 / r, 0.5 / r)
                    }
                };
                for ((xv, &dv), pv) in x.iter_mut().zip(d.iter()).zip(previous.iter_mut()) {
                    let dhat = a * dv as f64 - b * *pv as f64;
                    *xv = (keep * *xv as f64 + towards * dhat) as f32;
                    *pv = dv;
                }
            }
        }
    }
}

/// x ← D + keep·(x − D) + noise·z with z ~ N(0, I) drawn in bulk from `rng` into `z` (one
/// value per element of x, by [`fill_standard_normals`]; no draw when `noise` is 0).
fn update(
    mut x: ArrayViewMut2<f32>,
    d: ArrayView2<f32>,
    keep: f32,
    noise: f32,
    z: &mut [f32],
    rng: &mut Stream,
) {
    let (xs, ds) = (
        x.as_slice_mut().expect("contiguous rows"),
        d.as_slice().expect("contiguous rows"),
    );
    if noise > 0.0 {
        let z = &mut z[..xs.len()];
        fill_standard_normals(rng, z);
        blend_noise(xs, ds, keep, noise, z);
    } else {
        blend(xs, ds, keep);
    }
}

simd_dispatch! {
/// x ← d + keep·(x − d).
fn blend(x: &mut [f32], d: &[f32], keep: f32) {
    for (xv, &dv) in x.iter_mut().zip(d) {
        *xv = dv + keep * (*xv - dv);
    }
}
}

simd_dispatch! {
/// x ← d + keep·(x − d) + noise·z.
fn blend_noise(x: &mut [f32], d: &[f32], keep: f32, noise: f32, z: &[f32]) {
    for ((xv, &dv), &zv) in x.iter_mut().zip(d).zip(z) {
        *xv = dv + keep * (*xv - dv) + noise * zv;
    }
}
}

/// Everything needed to turn a denoiser into samples: schedule, rule, number of steps and where
/// to stop. Works in the denoiser's units.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingPlan {
    /// The noise schedule.
    pub schedule: NoiseSchedule,
    /// The step rule.
    pub sampler: Sampler,
    /// Steps of a full generation (from the schedule's end to `t_min`).
    pub steps: usize,
    /// Early stop: the last grid time (σ_min = σ(t_min)).
    pub t_min: f64,
    /// Whether the last step jumps from σ(t_min) to σ = 0 (returns D(x, σ_min)); otherwise the
    /// samples are the noisy points at σ_min.
    pub denoise_final: bool,
    /// How the grid's noise levels are spaced.
    pub spacing: Spacing,
}

impl SamplingPlan {
    /// The σ grid of a full generation.
    pub fn grid(&self) -> Vec<f64> {
        self.grid_from(self.schedule.t_end(), self.steps)
    }

    fn grid_from(&self, t_start: f64, steps: usize) -> Vec<f64> {
        let mut grid = self
            .schedule
            .grid(t_start, self.t_min, steps, self.denoise_final);
        if let Spacing::Karras { rho } = self.spacing {
            let last = grid.len() - 1 - usize::from(self.denoise_final);
            let (hi, lo) = (grid[0].powf(1.0 / rho), grid[last].powf(1.0 / rho));
            for (i, s) in grid[..=last].iter_mut().enumerate().skip(1) {
                let f = i as f64 / last as f64;
                *s = (hi + f * (lo - hi)).powf(rho);
            }
            grid[last] = lo.powf(rho);
        }
        grid
    }

    /// Draws `n` points: x ~ N(0, prior_std(σ_max)² I), then the sampler down the grid; row i
    /// is of class `labels[i]` when labels are given (n = their number).
    pub fn generate(
        &self,
        den: &dyn Denoiser,
        n: usize,
        labels: Option<&[u32]>,
        rng: &mut Stream,
    ) -> Array2<f32> {
        let grid = self.grid();
        let std = self.schedule.prior_std(grid[0]) as f32;
        let x = Array2::from_shape_simple_fn((n, den.dim()), || {
            std * <StandardNormal as rand_distr::Distribution<f32>>::sample(&StandardNormal, rng)
        });
        run(den, self.sampler, &grid, x, labels, rng)
    }

    /// Reconstruction (Yamaguchi & Fukuda): noises `x0` forward to time `t` (x = x₀ + σ(t) z) and
    /// runs the sampler back from t with round(steps · t/t_end) steps (at least 1). Returns `x0`
    /// unchanged when t ≤ t_min.
    pub fn reconstruct(
        &self,
        den: &dyn Denoiser,
        x0: ArrayView2<f32>,
        labels: Option<&[u32]>,
        t: f64,
        rng: &mut Stream,
    ) -> Array2<f32> {
        if t <= self.t_min {
            return x0.to_owned();
        }
        let sigma = self.schedule.sigma(t) as f32;
        let mut x = x0.to_owned();
        for v in x.iter_mut() {
            let z: f32 = StandardNormal.sample(rng);
            *v += sigma * z;
        }
        let steps = ((self.steps as f64 * t / self.schedule.t_end()).round() as usize).max(1);
        let grid = self.grid_from(t, steps);
        run(den, self.sampler, &grid, x, labels, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::closed_form::MixtureDenoiser;
    use crate::distributions::Gaussian;
    use crate::rng::{Role, stream};

    fn gaussian_1d(std: f64) -> MixtureDenoiser {
        MixtureDenoiser::gaussian(Gaussian::isotropic(ndarray::array![0.0], std))
    }

    fn variance(x: &Array2<f32>) -> f64 {
        let n = x.nrows() as f64;
        let m = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / (n - 1.0)
    }

    #[test]
    fn deterministic_samplers_need_no_noise_and_are_chunk_independent() {
        let den = gaussian_1d(0.5);
        let plan = SamplingPlan {
            schedule: NoiseSchedule::vp_linear(1e-4, 0.02, 1000),
            sampler: Sampler::Ddim { eta: 0.0 },
            steps: 50,
            t_min: 1.0,
            denoise_final: true,
            spacing: Spacing::Schedule,
        };
        let a = plan.generate(&den, 1000, None, &mut stream(1, 0, Role::Samples));
        let b = plan.generate(&den, 1000, None, &mut stream(1, 0, Role::Samples));
        assert_eq!(a, b);
        assert!(a.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn heun_and_dpm_solver_converge_at_second_order_and_euler_at_first() {
        // Exact denoiser of N(0, s²): the PF-ODE maps x(σ_max) to x·s/√(s² + σ_max²) exactly.
        let s = 0.5;
        let den = gaussian_1d(s);
        let schedule = NoiseSchedule::Edm {
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
        };
        let x0 = ndarray::array![[80.0f32], [-40.0], [120.0]];
        let exact = |x: f32| x as f64 * s / (s * s + 80.0f64 * 80.0).sqrt();
        let error = |sampler: Sampler, steps: usize| {
            let grid = schedule.grid(1.0, 0.0, steps, true);
            let out = run(
                &den,
                sampler,
                &grid,
                x0.clone(),
                None,
                &mut stream(0, 0, Role::Samples),
            );
            (0..3)
                .map(|i| (out[[i, 0]] as f64 - exact(x0[[i, 0]])).abs())
                .fold(0.0, f64::max)
        };
        let (h1, h2) = (error(Sampler::Heun, 16), error(Sampler::Heun, 32));
        let (m1, m2) = (
            error(Sampler::DpmSolver2M, 32),
            error(Sampler::DpmSolver2M, 64),
        );
        let (e1, e2) = (error(Sampler::Euler, 64), error(Sampler::Euler, 128));
        // Halving the step size divides the error by ≈ 4 (Heun) and ≈ 2 (Euler).
        assert!(h1 / h2 > 3.2 && h1 / h2 < 5.0, "Heun ratio {}", h1 / h2);
        assert!(e1 / e2 > 1.7 && e1 / e2 < 2.4, "Euler ratio {}", e1 / e2);
        // DPM-Solver++(2M) is second order too, with one evaluation per step.
        assert!(
            m1 / m2 > 3.2 && m1 / m2 < 5.0,
            "DPM-Solver++(2M) ratio {}",
            m1 / m2
        );
        assert!(h2 < e2, "Heun with 32 steps beats Euler with 128");
        assert!(
            m2 < e2,
            "DPM-Solver++(2M) with 64 steps beats Euler with 128"
        );
    }

    #[test]
    fn karras_spacing_is_edm_grid_for_any_schedule() {
        let plan = |schedule, spacing, denoise_final| SamplingPlan {
            schedule,
            sampler: Sampler::DpmSolver2M,
            steps: 10,
            t_min: 0.0,
            denoise_final,
            spacing,
        };
        let edm = NoiseSchedule::Edm {
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
        };
        let karras = Spacing::Karras { rho: 7.0 };
        for last in [true, false] {
            let a = plan(edm.clone(), Spacing::Schedule, last).grid();
            let b = plan(edm.clone(), karras, last).grid();
            assert_eq!(a.len(), 11);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-12 * x.max(1.0), "{a:?} {b:?}");
            }
        }
        // on a VP schedule: the same ends, and uniform steps in σ^{1/7}
        let vp = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
        let mut p = plan(vp.clone(), karras, true);
        p.t_min = 1.0;
        let g = p.grid();
        assert_eq!((g.len(), g[10]), (11, 0.0));
        assert!((g[0] - vp.sigma(1000.0)).abs() < 1e-12 && (g[9] - vp.sigma(1.0)).abs() < 1e-12);
        let r: Vec<f64> = g[..10].iter().map(|s| s.powf(1.0 / 7.0)).collect();
        for w in r.windows(3) {
            assert!(((w[1] - w[0]) - (w[2] - w[1])).abs() < 1e-12);
        }
    }

    #[test]
    fn one_wide_stochastic_step_leaves_the_variance_of_its_rule() {
        // Data at a point (D ≈ 0: a Gaussian of std 10⁻³) and x ~ N(0, σ_t²). One step to σ_s
        // keeps keep·x and adds noise², so Var = keep² σ_t² + noise². Only DDIM with η = 1 lands
        // on σ_s²; Euler–Maruyama leaves σ_s⁴/σ_t² + σ_t² − σ_s² (why it fails on a 20-step grid),
        // DDPM σ_s⁴/σ_t² + (σ_t² − σ_s²)(1 + σ_s²)/(1 + σ_t²). n = 20 000: se ≈ Var·√(2/n) = 1%.
        let (st, ss, n) = (2.0f64, 1.0f64, 20_000);
        let den = gaussian_1d(1e-3);
        let dv = st * st - ss * ss;
        for (sampler, expected) in [
            (Sampler::Ddim { eta: 1.0 }, ss * ss),
            (Sampler::EulerMaruyama, ss.powi(4) / (st * st) + dv),
            (
                Sampler::Ddpm,
                ss.powi(4) / (st * st) + dv * (1.0 + ss * ss) / (1.0 + st * st),
            ),
        ] {
            let mut rng = stream(5, 0, Role::Samples);
            let x0 = Array2::from_shape_fn((n, 1), |_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                (st * z) as f32
            });
            let x = run(&den, sampler, &[st, ss], x0, None, &mut rng);
            let ratio = variance(&x) / expected;
            assert!(
                (ratio - 1.0).abs() < 4.0 * (2.0 / n as f64).sqrt(),
                "{sampler:?}: variance {} against {expected}",
                variance(&x)
            );
        }
    }

    #[test]
    fn ddim_eta_one_matches_ancestral_ddpm_on_a_gaussian() {
        // Both sample N(0, s²) when the denoiser is exact; with 1000 steps their variances agree
        // within Monte-Carlo error (n = 20 000: se of a variance ≈ s²√(2/n) = 1%).
        let s = 0.7;
        let den = gaussian_1d(s);
        let mut out = vec![];
        for sampler in [
            Sampler::Ddpm,
            Sampler::Ddim { eta: 1.0 },
            Sampler::EulerMaruyama,
        ] {
            let plan = SamplingPlan {
                schedule: NoiseSchedule::vp_linear(1e-4, 0.02, 1000),
                sampler,
                steps: 1000,
                t_min: 1.0,
                denoise_final: true,
                spacing: Spacing::Schedule,
            };
            let x = plan.generate(&den, 20_000, None, &mut stream(3, 0, Role::Samples));
            out.push(variance(&x) / (s * s));
        }
        for r in &out {
            assert!(
                (r - 1.0).abs() < 4.0 * (2.0f64 / 20_000.0).sqrt(),
                "{out:?}"
            );
        }
    }
}
