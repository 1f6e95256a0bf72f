//! The MLP denoiser: a network F(c_in·x, embed(t(σ)), class) preconditioned as
//! D(x, σ) = c_skip(σ)·x + c_out(σ)·F (Karras et al. 2022, with σ_data = 1 on standardised data;
//! [`super::precondition`]), trained by [`super::trainer`].

use super::denoiser::{Conditioning, Denoiser, guide, rows_by_class};
use super::noise::NoiseSchedule;
use super::precondition::{Objective, preconditioning, time_embedding};
use super::trainer::TrainConfig;
use crate::error::{Error, Result};
use crate::nn::mlp::{InferenceBuffers, MlpShape, PackedWeights, forward_shared_tail};
use ndarray::{ArrayView2, ArrayViewMut2};
use std::cell::RefCell;

/// A trained MLP denoiser (weights in standardised data units).
#[derive(Clone, Debug)]
pub struct MlpDenoiser {
    pub(crate) shape: MlpShape,
    pub(crate) params: Vec<f32>,
    /// `params` packed for inference.
    pub(crate) packed: PackedWeights,
    pub(crate) schedule: NoiseSchedule,
    pub(crate) objective: Objective,
    pub(crate) dim: usize,
    pub(crate) time_embedding: usize,
    pub(crate) conditioning: Option<Conditioning>,
    /// Steps actually run and last training loss, for reporting.
    pub steps_run: usize,
    /// Mean training loss over the last 100 steps.
    pub final_loss: f64,
    /// Best held-out loss when early stopping was on.
    pub best_eval_loss: Option<f64>,
}

/// Per-thread inference scratch, kept between calls.
#[derive(Default)]
struct Scratch {
    /// Network buffers (created on first use).
    bufs: Option<InferenceBuffers>,
    /// The scaled input c_in·x.
    input: Vec<f32>,
    /// The input part shared by the rows of one network call: time embedding and class one-hot.
    tail: Vec<f32>,
    /// Network output F.
    f: Vec<f32>,
    /// Output without class, for guidance.
    f_null: Vec<f32>,
    /// One class's rows of the input, and their output.
    sub_in: Vec<f32>,
    sub_out: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

impl MlpDenoiser {
    /// A denoiser from given weights.
    pub fn from_params(
        dim: usize,
        cfg: &TrainConfig,
        schedule: NoiseSchedule,
        params: Vec<f32>,
    ) -> Result<Self> {
        let shape = MlpShape::new(input_width(dim, cfg), &cfg.hidden, dim);
        if params.len() != shape.params() {
            return Err(Error::Run(format!(
                "weights have {} parameters; this architecture needs {}",
                params.len(),
                shape.params()
            )));
        }
        Ok(MlpDenoiser::with_weights(
            (shape, params),
            schedule,
            cfg.objective,
            (dim, cfg.time_embedding),
            cfg.conditioning.clone(),
        ))
    }

    /// The denoiser of a network whose `params` fit `shape` (checked by the callers), mapping
    /// `dim` coordinates with a `time_embedding`-wide time input (and the class block of
    /// `conditioning`) to the regression target of `objective`.
    fn with_weights(
        (shape, params): (MlpShape, Vec<f32>),
        schedule: NoiseSchedule,
        objective: Objective,
        (dim, time_embedding): (usize, usize),
        conditioning: Option<Conditioning>,
    ) -> Self {
        MlpDenoiser {
            packed: PackedWeights::new(&shape, &params, false),
            shape,
            params,
            schedule,
            objective,
            dim,
            time_embedding,
            conditioning,
            steps_run: 0,
            final_loss: f64::NAN,
            best_eval_loss: None,
        }
    }

    /// Adds the network to `file`: tensors `net.*` in PyTorch's `nn.Sequential` layout and
    /// metadata `objective`, `time_embedding`, `dim`, `classes` (0: unconditional; the input
    /// then ends with a one-hot block of classes + 1 entries, the last one "no class") and
    /// `guidance`.
    pub fn save(&self, file: &mut crate::data::tensors::TensorFile) {
        crate::nn::weights::put(file, &self.shape, &self.params);
        file.set("objective", self.objective.name());
        file.set("time_embedding", self.time_embedding.to_string());
        file.set("dim", self.dim.to_string());
        let c = self.conditioning.as_ref();
        file.set("classes", c.map_or(0, |c| c.classes).to_string());
        file.set("guidance", c.map_or(0.0, |c| c.guidance).to_string());
    }

    /// The denoiser [`MlpDenoiser::save`] wrote to `file`: the architecture comes from the
    /// tensors' shapes, the objective, time-embedding size and class conditioning from the
    /// metadata, checked against each other.
    pub fn load(file: &crate::data::tensors::TensorFile, schedule: NoiseSchedule) -> Result<Self> {
        let (shape, params) = crate::nn::weights::take(file)?;
        let objective = Objective::parse(file.get("objective")?)
            .ok_or_else(|| file.error("metadata `objective` is not an objective"))?;
        let (dim, time_embedding, classes): (usize, usize, usize) = (
            file.value("dim")?,
            file.value("time_embedding")?,
            file.value("classes")?,
        );
        let guidance: f64 = file.value("guidance")?;
        if !(guidance.is_finite() && guidance >= 0.0) || time_embedding % 2 != 0 {
            return Err(file.error("metadata: expected guidance ≥ 0 and an even time_embedding"));
        }
        let conditioning = (classes > 0).then_some(Conditioning {
            classes,
            label_dropout: 0.0,
            guidance,
        });
        let widths = &shape.widths;
        let input = dim + time_embedding + conditioning.as_ref().map_or(0, Conditioning::width);
        if widths[0] != input || widths[widths.len() - 1] != dim {
            return Err(file.error(format!(
                "the network maps {} to {} values; dim = {dim}, time_embedding = \
                 {time_embedding} and {classes} classes need {input} to {dim}",
                widths[0],
                widths[widths.len() - 1]
            )));
        }
        Ok(MlpDenoiser::with_weights(
            (shape, params),
            schedule,
            objective,
            (dim, time_embedding),
            conditioning,
        ))
    }

    /// The flat weights (layer by layer: W_l row-major in × out, then b_l).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The training objective (fixes the preconditioning).
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// Dimension of the data.
    pub fn dim_out(&self) -> usize {
        self.dim
    }

    /// The network's layer widths.
    pub fn shape(&self) -> &MlpShape {
        &self.shape
    }

    /// Size of the time embedding.
    pub fn time_embedding(&self) -> usize {
        self.time_embedding
    }

    /// The class conditioning, for a class-conditional network.
    pub fn conditioning(&self) -> Option<&Conditioning> {
        self.conditioning.as_ref()
    }
}

/// Width of the network input: the point, its time embedding and, when class-conditional, the
/// class one-hot block.
pub(crate) fn input_width(dim: usize, cfg: &TrainConfig) -> usize {
    dim + cfg.time_embedding + cfg.conditioning.as_ref().map_or(0, Conditioning::width)
}

impl MlpDenoiser {
    /// D(x, σ | c) for every row: the class-conditional output (with guidance) for labelled
    /// rows, the unconditional one (class ∅) otherwise; an unconditional network ignores labels.
    /// The rows of each class go through the network together (their class embedding is part
    /// of the shared first-layer bias).
    fn denoise_rows(
        &self,
        x: ArrayView2<f32>,
        labels: Option<&[u32]>,
        sigma: f64,
        mut out: ArrayViewMut2<f32>,
    ) {
        let (rows, d) = x.dim();
        let (c_in, c_skip, c_out) = preconditioning(self.objective, &self.schedule, sigma);
        let temb = self.time_embedding;
        BUFFERS.with(|cell| {
            let mut cell = cell.borrow_mut();
            let Scratch {
                bufs,
                input,
                tail,
                f,
                f_null,
                sub_in,
                sub_out,
            } = cell.get_or_insert_with(Scratch::default);
            let bufs = bufs.get_or_insert_with(|| InferenceBuffers::new(&self.shape, rows));
            input.clear();
            match x.as_slice() {
                // Contiguous rows (the samplers' case) convert as a slice, which vectorises.
                Some(xs) => input.extend(xs.iter().map(|&v| (c_in * v as f64) as f32)),
                None => input.extend(x.iter().map(|&v| (c_in * v as f64) as f32)),
            }
            tail.clear();
            tail.resize(self.shape.widths[0] - d, 0.0);
            time_embedding(self.schedule.network_time(sigma), &mut tail[..temb]);
            f.resize(rows * d, 0.0);
            let mut net = |tail: &[f32], x: &[f32], f: &mut [f32]| {
                forward_shared_tail(&self.shape, &self.params, &self.packed, x, d, tail, f, bufs)
            };
            match (&self.conditioning, labels) {
                (None, _) => net(tail, input, f),
                (Some(c), None) => {
                    tail[temb + c.classes] = 1.0;
                    net(tail, input, f);
                }
                (Some(c), Some(labels)) => {
                    assert_eq!(labels.len(), rows, "one label per row");
                    for (class, idx) in rows_by_class(labels, c.classes).iter().enumerate() {
                        if idx.is_empty() {
                            continue;
                        }
                        tail[temb..].fill(0.0);
                        tail[temb + class] = 1.0;
                        if idx.len() == rows {
                            net(tail, input, f);
                            continue;
                        }
                        sub_in.clear();
                        for &i in idx {
                            sub_in.extend_from_slice(&input[i * d..(i + 1) * d]);
                        }
                        sub_out.resize(idx.len() * d, 0.0);
                        net(tail, sub_in, sub_out);
                        for (&i, src) in idx.iter().zip(sub_out.chunks_exact(d)) {
                            f[i * d..(i + 1) * d].copy_from_slice(src);
                        }
                    }
                    if c.guidance != 0.0 {
                        tail[temb..].fill(0.0);
                        tail[temb + c.classes] = 1.0;
                        f_null.resize(rows * d, 0.0);
                        net(tail, input, f_null);
                        guide(f, f_null, c.guidance);
                    }
                }
            }
            let mix = |o: &mut f32, xv: f32, fv: f32| {
                *o = (c_skip * xv as f64 + c_out * fv as f64) as f32;
            };
            match (out.as_slice_mut(), x.as_slice()) {
                (Some(os), Some(xs)) => {
                    for ((o, &xv), &fv) in os.iter_mut().zip(xs).zip(f.iter()) {
                        mix(o, xv, fv);
                    }
                }
                _ => {
                    for ((o, &xv), &fv) in out.iter_mut().zip(x.iter()).zip(f.iter()) {
                        mix(o, xv, fv);
                    }
                }
            }
        });
    }
}

impl Denoiser for MlpDenoiser {
    fn dim(&self) -> usize {
        self.dim
    }

    /// Without labels: the unconditional denoiser (class ∅ for a class-conditional network).
    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        labels: Option<&[u32]>,
        out: ArrayViewMut2<f32>,
    ) {
        self.denoise_rows(x, labels, sigma, out)
    }
}
