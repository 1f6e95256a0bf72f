//! The metric benchmark of `ouro bench metrics`, run side by side with
//! `bench/metrics_reference.py` (the `prdc` package, numpy and scipy) on the same arrays: a real
//! set N(0, I) and a generated set 1.1·N(0, I) + 0.1, both n × d.

use super::distance::{energy_distance, frechet_distance};
use super::fidelity::prdc;
use super::kernel::{Kernel, median_bandwidth, mmd2};
use crate::distributions::standard_normals;
use crate::error::Result;
use crate::experiment::with_threads;
use crate::rng::{Role, stream};
use ndarray::{Array2, ArrayView2};
use std::time::Instant;

/// The benchmark's arrays: (real, generated), from the seeded streams of `seed`.
pub fn data(n: usize, d: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let real = standard_normals(n, d, &mut stream(seed, 0, Role::RealInit)).mapv(|v| v as f32);
    let generated = standard_normals(n, d, &mut stream(seed, 0, Role::Samples))
        .mapv(|v| (1.1 * v + 0.1) as f32);
    (real, generated)
}

/// One timed workload: its name, the best wall time over the repeats (s), and what it computed.
pub struct Timing {
    /// Workload name (as in the Python script).
    pub name: &'static str,
    /// Best of the repeats, seconds.
    pub seconds: f64,
    /// The values computed, by metric name.
    pub values: Vec<(&'static str, f64)>,
}

type Workload = fn(ArrayView2<f32>, ArrayView2<f32>) -> Vec<(&'static str, f64)>;

/// The workloads, each as `bench/metrics_reference.py` runs it: precision/recall/density/
/// coverage with k = 5; both MMD² estimates with the RBF kernel at the median-heuristic
/// bandwidth (bandwidth included); KID's cubic-kernel MMD² over the full sets; the energy
/// distance; the Fréchet distance.
const WORKLOADS: &[(&str, Workload)] = &[
    ("prdc", |r, g| {
        let p = prdc(r, g, 5);
        vec![
            ("precision", p.precision),
            ("recall", p.recall),
            ("density", p.density),
            ("coverage", p.coverage),
        ]
    }),
    ("mmd2", |r, g| {
        let m = mmd2(g, r, Kernel::Rbf(median_bandwidth(r)));
        vec![("mmd2", m.unbiased), ("mmd2_biased", m.biased)]
    }),
    ("kid", |r, g| {
        vec![("kid", mmd2(g, r, Kernel::kid(r.ncols())).unbiased)]
    }),
    ("energy", |r, g| vec![("energy", energy_distance(g, r))]),
    ("frechet", |r, g| vec![("frechet", frechet_distance(g, r))]),
];

/// Least total time spent on one workload: short ones (the Fréchet distance takes milliseconds)
/// repeat until this is reached, so that their best time is not a cold start.
const MIN_TOTAL_S: f64 = 0.5;

/// Times every workload on `threads` threads: the best of at least `repeats` runs, and of as
/// many more as fit in 0.5 s.
pub fn run(
    real: ArrayView2<f32>,
    generated: ArrayView2<f32>,
    threads: usize,
    repeats: usize,
) -> Result<Vec<Timing>> {
    with_threads(threads, || {
        WORKLOADS
            .iter()
            .map(|&(name, work)| {
                let mut best = f64::INFINITY;
                let mut values = Vec::new();
                let (mut runs, mut total) = (0, 0.0);
                while runs < repeats.max(1) || total < MIN_TOTAL_S {
                    let t = Instant::now();
                    values = work(real, generated);
                    let el = t.elapsed().as_secs_f64();
                    best = best.min(el);
                    total += el;
                    runs += 1;
                }
                Timing {
                    name,
                    seconds: best,
                    values,
                }
            })
            .collect()
    })
}
