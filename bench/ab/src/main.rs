//! Times one MLP training step of `bench/torch_reference.py`'s workload (batch 512 as two chunks
//! of 256 rows through forward, loss gradient and backward, then Adam with the repacking of the
//! weights) for two builds of ouro in one process, alternating them every few steps so that a
//! machine whose speed drifts favours neither. Separate runs of `ouro bench train` on a shared
//! VM differ by ±15%, which hides changes of a few percent; the ratio of the two builds' times
//! within each round of this harness is steady to ~1%.
//!
//! usage: ouro-ab DIM THREADS [ROUNDS]   (through `sh bench/ab.sh REV`)

use std::time::Instant;

/// Deterministic inputs in [−0.5, 0.5).
fn values(n: usize, s: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + s) * 7919) % 1013) as f32 / 1013.0 - 0.5)
        .collect()
}

/// A training step of one build: `$krate` is `old` or `new`.
macro_rules! stepper {
    ($module:ident, $krate:ident) => {
        mod $module {
            use $krate::nn::mlp::*;
            use $krate::rng::{Role, stream};

            pub struct Step {
                shape: MlpShape,
                params: Vec<f32>,
                packed: PackedWeights,
                ws: Workspace,
                inputs: [Vec<f32>; 2],
                targets: [Vec<f32>; 2],
                adam: Adam,
            }

            impl Step {
                pub fn new(d: usize) -> Step {
                    let shape = MlpShape::new(d + 32, &[256, 256, 256], d);
                    let params = init_params(&shape, &mut stream(1, 0, Role::Fit));
                    let packed = PackedWeights::new(&shape, &params, true);
                    let ws = Workspace::new(&shape, 256);
                    let (ni, nt) = (ws.input.len(), ws.target.len());
                    Step {
                        inputs: [super::values(ni, 0), super::values(ni, 1)],
                        targets: [super::values(nt, 2), super::values(nt, 3)],
                        adam: Adam::new(shape.params()),
                        shape,
                        params,
                        packed,
                        ws,
                    }
                }

                /// One step; returns its loss.
                pub fn run(&mut self) -> f64 {
                    let n_out = (512 * self.shape.widths.last().expect("output")) as f32;
                    let mut loss = 0.0;
                    for c in 0..2 {
                        self.ws.input.copy_from_slice(&self.inputs[c]);
                        self.ws.target.copy_from_slice(&self.targets[c]);
                        forward_train(&self.shape, &self.params, &self.packed, &mut self.ws);
                        loss += loss_grad(&mut self.ws, 1.0 / n_out);
                        if c == 0 {
                            backward(&self.shape, &self.packed, &mut self.ws);
                        } else {
                            backward_add(&self.shape, &self.packed, &mut self.ws);
                        }
                    }
                    let grads = [&self.ws.grads[..]];
                    self.adam.step_packed(
                        &self.shape,
                        &mut self.params,
                        &grads,
                        1.0,
                        1e-3,
                        &mut self.packed,
                    );
                    loss
                }
            }
        }
    };
}

stepper!(baseline, old);
stepper!(current, new);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: Option<usize>| -> usize {
        match args.get(i).map(|s| s.parse::<usize>()) {
            Some(Ok(v)) => v,
            None if default.is_some() => default.unwrap_or_default(),
            _ => {
                eprintln!("usage: ouro-ab DIM THREADS [ROUNDS]  (positive integers)");
                std::process::exit(2);
            }
        }
    };
    let (d, threads, rounds) = (arg(1, None), arg(2, None), arg(3, Some(200)));
    if d == 0 || threads == 0 || rounds < 10 {
        eprintln!("DIM and THREADS must be positive and ROUNDS at least 10");
        std::process::exit(2);
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("the first thread pool");
    let (mut old, mut new) = (baseline::Step::new(d), current::Step::new(d));
    // Steps per timing: long enough for the clock, short enough to see the same machine.
    let per = 4;
    let (mut t_old, mut t_new) = (Vec::new(), Vec::new());
    let (mut l_old, mut l_new) = (0.0f64, 0.0f64);
    for r in 0..rounds {
        let mut time = |old_side: bool| {
            let t0 = Instant::now();
            for _ in 0..per {
                if old_side {
                    l_old = old.run();
                } else {
                    l_new = new.run();
                }
            }
            t0.elapsed().as_secs_f64() / per as f64
        };
        // Alternate which build goes first.
        let (a, b) = if r % 2 == 0 {
            let a = time(true);
            (a, time(false))
        } else {
            let b = time(false);
            (time(true), b)
        };
        // The first rounds warm caches and the thread pool.
        if r >= 5 {
            t_old.push(a);
            t_new.push(b);
        }
    }
    let mut ratios: Vec<f64> = t_old.iter().zip(&t_new).map(|(a, b)| a / b).collect();
    ratios.sort_by(f64::total_cmp);
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let total = |v: &[f64]| v.iter().sum::<f64>();
    println!(
        "D={d} threads={threads} rounds={rounds}: steps/s best old {:.1} new {:.1}; new/old speed: \
         median of rounds {:.3}, of totals {:.3}, of bests {:.3}; same loss bits: {}",
        1.0 / best(&t_old),
        1.0 / best(&t_new),
        ratios[ratios.len() / 2],
        total(&t_old) / total(&t_new),
        best(&t_old) / best(&t_new),
        l_old.to_bits() == l_new.to_bits()
    );
}
