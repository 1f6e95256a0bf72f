//! The reference workload of `bench/torch_reference.py`, for `ouro bench`: a DDPM MLP denoiser
//! (input D + 32-dim sinusoidal time embedding, 3 hidden layers of 256 with SiLU, batch 512, Adam
//! lr 1e-3, linear β from 1e-4 to 0.02, T = 1000) trained on an 8-component mixture, and ancestral
//! sampling of 10 000 points timed over a few steps and extrapolated to 1 000; and the same for
//! the default U-Net on 28 × 28 images (`unet_*`).

use super::denoiser::Conditioning;
use super::learner::Fitted;
use super::mlp::MlpDenoiser;
use super::noise::NoiseSchedule;
use super::precondition::Objective;
use super::sampler::{Sampler, run};
use super::trainer::{LrDecay, TrainConfig};
use super::unet::{UnetArch, UnetDenoiser};
use crate::distributions::standard_normals;
use crate::error::Result;
use crate::experiment::with_threads;
use crate::nn::mlp::{MlpShape, init_params};
use crate::rng::{Role, stream};
use ndarray::Array2;
use rand::RngExt;
use std::time::Instant;

/// Points in the benchmark's training set (as in the PyTorch script).
const NDATA: usize = 65_536;

/// The benchmark's network and training settings.
pub fn reference_config(steps: usize) -> TrainConfig {
    TrainConfig {
        hidden: vec![256, 256, 256],
        time_embedding: 32,
        objective: Objective::Eps,
        steps,
        epochs: None,
        batch_size: 512,
        lr: 1e-3,
        warmup_steps: 0,
        lr_decay: LrDecay::None,
        grad_clip: None,
        ema: None,
        early_stopping: None,
        conditioning: None,
    }
}

/// The benchmark's data: 8 centres (on a circle of radius 2 for D = 2, N(0, I) otherwise), each
/// point a random centre plus N(0, 0.1² I).
pub fn reference_data(d: usize, seed: u64) -> Array2<f32> {
    let mut rng = stream(seed, 0, Role::RealInit);
    let centres: Array2<f64> = if d == 2 {
        Array2::from_shape_fn((8, 2), |(k, j)| {
            let a = k as f64 * std::f64::consts::TAU / 8.0;
            2.0 * if j == 0 { a.cos() } else { a.sin() }
        })
    } else {
        standard_normals(8, d, &mut rng)
    };
    let noise = standard_normals(NDATA, d, &mut rng);
    let idx: Vec<usize> = (0..NDATA).map(|_| rng.random_range(0..8)).collect();
    Array2::from_shape_fn((NDATA, d), |(i, j)| {
        (centres[[idx[i], j]] + 0.1 * noise[[i, j]]) as f32
    })
}

/// Training throughput: `warmup` untimed steps, then `steps` timed ones. Returns (seconds, last
/// mean loss).
pub fn train(
    d: usize,
    warmup: usize,
    steps: usize,
    seed: u64,
    threads: usize,
) -> Result<(f64, f64)> {
    let data = reference_data(d, seed);
    let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
    with_threads(threads, || {
        let mut rng = stream(seed, 0, Role::Fit);
        let warm = MlpDenoiser::train(
            data.view(),
            None,
            &reference_config(warmup.max(1)),
            &schedule,
            None,
            &mut rng,
        )?;
        let t0 = Instant::now();
        let net = MlpDenoiser::train(
            data.view(),
            None,
            &reference_config(steps),
            &schedule,
            Some(warm.params()),
            &mut rng,
        )?;
        Ok((t0.elapsed().as_secs_f64(), net.final_loss))
    })?
}

/// Floating-point operations of one training step of the benchmark's network at data dimension
/// `d` (2 per multiply-add of the layer products; biases, SiLU, loss and Adam are not counted):
/// forward 2·B·Σ nᵢₙ·nₒᵤₜ, the weight gradients as much again, and the input gradients of every
/// layer but the first, for B = 512 rows. For D = 64: 2·512·(172 032 + 172 032 + 147 456) ≈ 503 MFLOP.
pub fn train_flops(d: usize) -> f64 {
    let cfg = reference_config(1);
    let shape = MlpShape::new(d + cfg.time_embedding, &cfg.hidden, d);
    let layers: Vec<f64> = shape
        .widths
        .windows(2)
        .map(|w| (w[0] * w[1]) as f64)
        .collect();
    let all: f64 = layers.iter().sum();
    2.0 * cfg.batch_size as f64 * (3.0 * all - layers[0])
}

/// Sampling throughput: `n` points through the first `steps` DDPM steps of 1 000 with an untrained
/// network. Returns seconds for those steps.
pub fn sample(d: usize, n: usize, steps: usize, seed: u64, threads: usize) -> Result<f64> {
    let cfg = reference_config(1);
    let shape = MlpShape::new(d + cfg.time_embedding, &cfg.hidden, d);
    let mut rng = stream(seed, 0, Role::Fit);
    let params = init_params(&shape, &mut rng);
    let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
    let net = Fitted::Mlp(MlpDenoiser::from_params(d, &cfg, schedule.clone(), params)?);
    let grid = schedule.grid(1000.0, 1.0, 1000, true);
    let steps = steps.clamp(1, 1000);
    let std = schedule.prior_std(grid[0]);
    let x = standard_normals(n, d, &mut rng).mapv(|v| (std * v) as f32);
    with_threads(threads, || {
        let t0 = Instant::now();
        let out = run(&net, Sampler::Ddpm, &grid[..=steps], x, None, &mut rng);
        let el = t0.elapsed().as_secs_f64();
        std::hint::black_box(out);
        el
    })
}

/// The U-Net workload of `bench/torch_reference.py unet-train` and `unet-sample`: the default
/// U-Net (28 × 28 greyscale images, channels 32, 64, 64, one block per level, 8 groups, 10
/// classes, no attention; `denoiser = "unet"`'s defaults), ε objective on DDPM's linear β schedule
/// (T = 1000), batch 64, Adam lr 5·10⁻⁴, labels dropped with probability 0.1.
pub fn unet_config(steps: usize) -> (TrainConfig, UnetArch) {
    let cfg = TrainConfig {
        hidden: Vec::new(),
        time_embedding: 32,
        objective: Objective::Eps,
        steps,
        epochs: None,
        batch_size: 64,
        lr: 5e-4,
        warmup_steps: 0,
        lr_decay: LrDecay::None,
        grad_clip: None,
        ema: None,
        early_stopping: None,
        conditioning: Some(Conditioning {
            classes: 10,
            label_dropout: 0.1,
            guidance: 0.0,
        }),
    };
    let arch = UnetArch {
        channels: vec![32, 64, 64],
        blocks: 1,
        groups: 8,
        attention: false,
    };
    (cfg, arch)
}

/// The U-Net benchmark's data: 2 048 images of N(0, 1) pixels with labels i mod 10 (the values
/// do not change the work).
fn unet_data(seed: u64) -> (Array2<f32>, Vec<u32>) {
    let x = standard_normals(2048, 784, &mut stream(seed, 0, Role::RealInit)).mapv(|v| v as f32);
    (x, (0..2048).map(|i| (i % 10) as u32).collect())
}

/// U-Net training throughput: `warmup` untimed Adam steps, then `steps` timed ones. Returns
/// (seconds, last mean loss).
pub fn unet_train(warmup: usize, steps: usize, seed: u64, threads: usize) -> Result<(f64, f64)> {
    let (x, labels) = unet_data(seed);
    let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
    with_threads(threads, || {
        let mut rng = stream(seed, 0, Role::Fit);
        let train = |steps: usize, init: Option<&[f32]>, rng: &mut crate::rng::Stream| {
            let (cfg, arch) = unet_config(steps);
            UnetDenoiser::train_weighted(
                x.view(),
                Some(&labels),
                None,
                &cfg,
                &arch,
                &schedule,
                init,
                rng,
            )
        };
        let warm = train(warmup.max(1), None, &mut rng)?;
        let t0 = Instant::now();
        let net = train(steps, Some(warm.params()), &mut rng)?;
        Ok((t0.elapsed().as_secs_f64(), net.final_loss))
    })?
}

/// Floating-point operations of one image through the benchmark's U-Net: 2 per multiply-add
/// of its convolutions (norms, activations and the embedding MLP are not counted). A training
/// step costs 3 times this per image (forward, input and weight gradients). These are the direct
/// convolutions' operations: the Winograd products ([`crate::nn::winograd`]) do fewer, so the
/// `gflop_per_s` printed from this count is an effective rate.
pub fn unet_flops() -> f64 {
    let (cfg, arch) = unet_config(1);
    let classes = cfg.conditioning.as_ref().map_or(0, |c| c.classes);
    let shape = arch.shape(784, classes).expect("the benchmark's U-Net");
    2.0 * crate::nn::unet::Unet::new(&shape).macs_per_image()
}

/// U-Net sampling throughput: `n` images of class i mod 10 through the first `steps` DDPM steps
/// of 1 000 with an untrained network (one evaluation per step). Returns seconds.
pub fn unet_sample(n: usize, steps: usize, seed: u64, threads: usize) -> Result<f64> {
    let (cfg, arch) = unet_config(1);
    let shape = arch.shape(784, 10)?;
    let net = crate::nn::unet::Unet::new(&shape);
    let mut rng = stream(seed, 0, Role::Fit);
    let params = net.init(&mut rng);
    let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
    let den = Fitted::Unet(Box::new(UnetDenoiser::from_params(
        net,
        params,
        schedule.clone(),
        cfg.objective,
        cfg.conditioning.clone(),
    )?));
    let grid = schedule.grid(1000.0, 1.0, 1000, true);
    let steps = steps.clamp(1, 1000);
    let std = schedule.prior_std(grid[0]);
    let x = standard_normals(n, 784, &mut rng).mapv(|v| (std * v) as f32);
    let labels: Vec<u32> = (0..n).map(|i| (i % 10) as u32).collect();
    with_threads(threads, || {
        let t0 = Instant::now();
        let out = run(
            &den,
            Sampler::Ddpm,
            &grid[..=steps],
            x,
            Some(&labels),
            &mut rng,
        );
        let el = t0.elapsed().as_secs_f64();
        std::hint::black_box(out);
        el
    })
}

/// The hidden layer's product, (256 × 256)·(256 × 256), timed on one thread: `reps` products per
/// round, best of 7 interleaved rounds. Returns GFLOP/s for ouro's kernel without an epilogue, with the
/// bias + SiLU epilogue, and for matrixmultiply's sgemm (through ndarray) without one.
pub fn gemm(size: usize, reps: usize) -> [(&'static str, f64); 3] {
    use crate::nn::gemm::{Epilogue, PackedB, matmul};
    let values = |len: usize, s: usize| -> Vec<f32> {
        (0..len)
            .map(|i| (((i + s) * 7919) % 1013) as f32 / 1013.0 - 0.5)
            .collect()
    };
    let (a, b, bias) = (
        values(size * size, 1),
        values(size * size, 2),
        values(size, 3),
    );
    let mut c = vec![0.0f32; size * size];
    let mut packed = PackedB::new();
    packed.pack(&b, size, size, false);
    let av = ndarray::ArrayView2::from_shape((size, size), &a).expect("square");
    let bv = ndarray::ArrayView2::from_shape((size, size), &b).expect("square");
    let mut cv = Array2::<f32>::zeros((size, size));
    // The three are interleaved round by round so that a drifting machine favours none.
    let mut best = [f64::INFINITY; 3];
    for _ in 0..7 {
        for (v, t) in best.iter_mut().enumerate() {
            let t0 = Instant::now();
            for _ in 0..reps {
                match v {
                    0 => matmul(size, size, &a, false, &packed, &mut c, Epilogue::None),
                    1 => matmul(
                        size,
                        size,
                        &a,
                        false,
                        &packed,
                        &mut c,
                        Epilogue::BiasSilu(&bias),
                    ),
                    _ => ndarray::linalg::general_mat_mul(1.0, &av, &bv, 0.0, &mut cv),
                }
            }
            *t = t.min(t0.elapsed().as_secs_f64());
        }
    }
    let gflops = |t: f64| 2.0 * (size * size * size) as f64 * reps as f64 / t / 1e9;
    std::hint::black_box((&c, &cv));
    [
        ("ouro", gflops(best[0])),
        ("ouro+bias+silu", gflops(best[1])),
        ("matrixmultiply", gflops(best[2])),
    ]
}

/// The core's f32 multiply-add peak in GFLOP/s on the widest vector unit the kernels use
/// ([`crate::nn::isa::isa`]), the ceiling for every line of [`gemm`] and for `ouro bench train`'s
/// `gflop_per_s`: twelve independent FMA chains in registers (enough to cover the FMA latency on
/// two pipes), 16 lanes with AVX-512F, else 8 with AVX2 + FMA, 2 FLOP per lane, best of 5 rounds
/// of 10⁸ iterations. Returns the peak and the unit's name; `None` on the portable kernels.
pub fn fma_peak() -> Option<(f64, &'static str)> {
    use crate::nn::isa::{Isa, isa};
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        /// `n` rounds of 12 FMAs on 8 lanes; returns a lane so the work is not optimised out.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn chains8(n: usize) -> f32 {
            let mut acc = [_mm256_setzero_ps(); 12];
            let (a, b) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(0.999_999));
            for _ in 0..n {
                for v in acc.iter_mut() {
                    *v = _mm256_fmadd_ps(*v, a, b);
                }
            }
            acc.iter().map(|&v| _mm256_cvtss_f32(v)).sum()
        }
        /// The same on 16 lanes.
        #[target_feature(enable = "avx512f")]
        unsafe fn chains16(n: usize) -> f32 {
            let mut acc = [_mm512_setzero_ps(); 12];
            let (a, b) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(0.999_999));
            for _ in 0..n {
                for v in acc.iter_mut() {
                    *v = _mm512_fmadd_ps(*v, a, b);
                }
            }
            acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
        }
        let (lanes, unit) = match isa() {
            Isa::Avx512 => (16, "avx512 (16 lanes)"),
            Isa::Avx2 => (8, "avx2+fma (8 lanes)"),
            Isa::Portable => return None,
        };
        let n = 100_000_000;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let t0 = Instant::now();
            // SAFETY: the CPU runs isa() (AVX-512F for 16 lanes, AVX2 + FMA for 8).
            std::hint::black_box(unsafe {
                if lanes == 16 {
                    chains16(std::hint::black_box(n))
                } else {
                    chains8(std::hint::black_box(n))
                }
            });
            best = best.min(t0.elapsed().as_secs_f64());
        }
        Some(((n * 12 * lanes * 2) as f64 / best / 1e9, unit))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The step's operation count, against the layer sizes written out: 96·256 + 2·256² + 256·64
    /// = 172 032 weights for D = 64 (input 64 + 32), 34·256 + 2·256² + 256·2 = 140 288 for D = 2.
    #[test]
    fn train_flops_counts_forward_weight_and_input_gradients() {
        assert_eq!(train_flops(64), 1024.0 * (3.0 * 172_032.0 - 96.0 * 256.0));
        assert_eq!(train_flops(64), 503_316_480.0);
        assert_eq!(train_flops(2), 1024.0 * (3.0 * 140_288.0 - 34.0 * 256.0));
    }
}
