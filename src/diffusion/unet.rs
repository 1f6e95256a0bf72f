//! The U-Net denoiser for images: the network of [`crate::nn::unet`] on square greyscale images
//! (rows of side² values), preconditioned as D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in·x,
//! embed(t(σ)), class) like the MLP ([`super::precondition`]), trained by
//! [`super::trainer::fit`], class-conditional with classifier-free guidance.

use super::denoiser::{Conditioning, Denoiser, guide};
use super::noise::NoiseSchedule;
use super::precondition::{Objective, preconditioning, time_embedding};
use super::trainer::{Network, Slots, TrainConfig, fit};
use crate::error::{Error, Result};
use crate::nn::mlp::Adam;
use crate::nn::unet::{Packed, Unet, UnetShape, Workspace};
use crate::rng::Stream;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use std::cell::RefCell;

/// Images per forward pass: activations of 8 MNIST images (channels 32, 64, 64) take about
/// 30 MB, and one 28 × 28 × 32 activation 0.8 MB, within a core's L2. Against 16 images, 8 made
/// training 3% and sampling 8% faster on one core of the Xeon (`ouro bench unet-train`,
/// `unet-sample`); 4 was no faster than 8.
const MICRO_BATCH: usize = 8;

/// The U-Net's architecture keys (the image side and the classes come from the data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnetArch {
    /// Feature maps per level.
    pub channels: Vec<usize>,
    /// Residual blocks per level.
    pub blocks: usize,
    /// GroupNorm groups.
    pub groups: usize,
    /// Self-attention between the middle blocks.
    pub attention: bool,
}

impl UnetArch {
    /// The network for greyscale images of `dim` = side² values and `classes` classes (0:
    /// unconditional); an error naming the problem when `dim` is not a square or the levels do
    /// not halve the side exactly.
    pub fn shape(&self, dim: usize, classes: usize) -> Result<UnetShape> {
        let side = (dim as f64).sqrt().round() as usize;
        if side * side != dim {
            return Err(Error::Run(format!(
                "denoiser = \"unet\" needs square greyscale images (side² values per point); \
                 the data have {dim} values per point"
            )));
        }
        let shape = UnetShape {
            side,
            in_ch: 1,
            channels: self.channels.clone(),
            blocks: self.blocks,
            groups: self.groups,
            classes,
            attention: self.attention,
        };
        shape
            .check()
            .map_err(|e| Error::Run(format!("denoiser = \"unet\": {e}")))?;
        Ok(shape)
    }
}

/// A trained U-Net denoiser (weights in standardised data units).
#[derive(Clone, Debug)]
pub struct UnetDenoiser {
    net: Unet,
    params: Vec<f32>,
    packed: Packed,
    schedule: NoiseSchedule,
    objective: Objective,
    conditioning: Option<Conditioning>,
    /// Adam steps run.
    pub steps_run: usize,
    /// Mean training loss over the last 100 steps.
    pub final_loss: f64,
    /// Best held-out loss when early stopping was on.
    pub best_eval_loss: Option<f64>,
}

impl UnetDenoiser {
    /// The denoiser of `net` with weights `params`.
    pub fn from_params(
        net: Unet,
        params: Vec<f32>,
        schedule: NoiseSchedule,
        objective: Objective,
        conditioning: Option<Conditioning>,
    ) -> Result<Self> {
        if params.len() != net.params() {
            return Err(Error::Run(format!(
                "weights have {} parameters; this U-Net needs {}",
                params.len(),
                net.params()
            )));
        }
        Ok(UnetDenoiser {
            packed: net.pack(&params, false),
            net,
            params,
            schedule,
            objective,
            conditioning,
            steps_run: 0,
            final_loss: f64::NAN,
            best_eval_loss: None,
        })
    }

    /// Trains on `data` (rows of side² values, standardised units) with sample `weights` when
    /// given, from `init` weights when they fit (warm start) and PyTorch's initialisation
    /// otherwise.
    #[allow(clippy::too_many_arguments)]
    pub fn train_weighted(
        data: ArrayView2<f32>,
        labels: Option<&[u32]>,
        weights: Option<&[f64]>,
        cfg: &TrainConfig,
        arch: &UnetArch,
        schedule: &NoiseSchedule,
        init: Option<&[f32]>,
        rng: &mut Stream,
    ) -> Result<Self> {
        let classes = cfg.conditioning.as_ref().map_or(0, |c| c.classes);
        let net = Unet::new(&arch.shape(data.ncols(), classes)?);
        let mut cfg = cfg.clone();
        cfg.time_embedding = net.shape().time_width();
        let cfg = &cfg;
        let params = match init {
            Some(p) if p.len() == net.params() => p.to_vec(),
            _ => net.init(rng),
        };
        let f = fit(&net, params, data, labels, weights, cfg, schedule, rng)?;
        let mut d = UnetDenoiser::from_params(
            net,
            f.params,
            schedule.clone(),
            cfg.objective,
            cfg.conditioning.clone(),
        )?;
        d.steps_run = f.steps_run;
        d.final_loss = f.final_loss;
        d.best_eval_loss = f.best_eval_loss;
        Ok(d)
    }

    /// The flat weights (PyTorch's `state_dict` order).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Adds the network to `file`: its tensors under `bench/unet.py`'s names and metadata
    /// `objective`, `side`, `channels`, `blocks`, `groups`, `attention`, `classes` (0:
    /// unconditional) and `guidance`.
    pub fn save(&self, file: &mut crate::data::tensors::TensorFile) {
        let s = self.net.shape();
        self.net.put(file, &self.params);
        file.set("objective", self.objective.name());
        file.set("side", s.side.to_string());
        let channels: Vec<String> = s.channels.iter().map(|c| c.to_string()).collect();
        file.set("channels", channels.join(","));
        file.set("blocks", s.blocks.to_string());
        file.set("groups", s.groups.to_string());
        file.set("attention", s.attention.to_string());
        file.set("classes", s.classes.to_string());
        let guidance = self.conditioning.as_ref().map_or(0.0, |c| c.guidance);
        file.set("guidance", guidance.to_string());
    }

    /// Sets the classifier-free guidance weight of a class-conditional network (nothing for an
    /// unconditional one).
    pub fn set_guidance(&mut self, w: f64) {
        if let Some(c) = self.conditioning.as_mut() {
            c.guidance = w;
        }
    }

    /// The denoiser [`UnetDenoiser::save`] wrote to `file`.
    pub fn load(file: &crate::data::tensors::TensorFile, schedule: NoiseSchedule) -> Result<Self> {
        let objective = Objective::parse(file.get("objective")?)
            .ok_or_else(|| file.error("metadata `objective` is not an objective"))?;
        let channels = file
            .get("channels")?
            .split(',')
            .map(|c| c.trim().parse::<usize>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| file.error("metadata `channels`: expected widths separated by commas"))?;
        let side: usize = file.value("side")?;
        let arch = UnetArch {
            channels,
            blocks: file.value("blocks")?,
            groups: file.value("groups")?,
            attention: file.value("attention")?,
        };
        let classes: usize = file.value("classes")?;
        let guidance: f64 = file.value("guidance")?;
        if !(guidance.is_finite() && guidance >= 0.0) {
            return Err(file.error("metadata: expected guidance ≥ 0"));
        }
        let shape = arch
            .shape(side * side, classes)
            .map_err(|e| file.error(e.to_string()))?;
        let net = Unet::new(&shape);
        let params = net.take(file)?;
        let conditioning = (classes > 0).then_some(Conditioning {
            classes,
            label_dropout: 0.0,
            guidance,
        });
        UnetDenoiser::from_params(net, params, schedule, objective, conditioning)
    }

    /// Network output F for the rows of c_in·x (`input`), all at noise level σ (its time
    /// embedding `temb`, one row per image of a micro-batch), with class `classes[i]` per row
    /// (∅ = the number of classes). Micro-batches run in parallel, each in its thread's
    /// buffers; each image's output does not depend on which.
    fn network(&self, input: &[f32], temb: &[f32], classes: Option<&[u32]>, f: &mut [f32]) {
        let len = self.net.shape().image_len();
        let w = self.net.shape().time_width();
        f.par_chunks_mut(MICRO_BATCH * len)
            .zip(input.par_chunks(MICRO_BATCH * len))
            .enumerate()
            .for_each(|(b, (out, x))| {
                let n = x.len() / len;
                let labels = classes.map(|c| &c[b * MICRO_BATCH..b * MICRO_BATCH + n]);
                BUFFERS.with(|cell| {
                    let mut cell = cell.borrow_mut();
                    let ws = cell.get_or_insert_with(Workspace::default);
                    self.net
                        .forward(&self.params, &self.packed, x, &temb[..n * w], labels, n, ws);
                    out.copy_from_slice(ws.output());
                });
            });
    }
}

thread_local! {
    static BUFFERS: RefCell<Option<Workspace>> = const { RefCell::new(None) };
}

impl Denoiser for UnetDenoiser {
    fn dim(&self) -> usize {
        self.net.shape().image_len()
    }

    /// D(x, σ | c): the class-conditional output (with guidance) for labelled rows, the
    /// unconditional one (class ∅) otherwise.
    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        labels: Option<&[u32]>,
        mut out: ArrayViewMut2<f32>,
    ) {
        let rows = x.nrows();
        let (c_in, c_skip, c_out) = preconditioning(self.objective, &self.schedule, sigma);
        let input: Vec<f32> = x.iter().map(|&v| (c_in * v as f64) as f32).collect();
        let w = self.net.shape().time_width();
        let mut row = vec![0.0f32; w];
        time_embedding(self.schedule.network_time(sigma), &mut row);
        let temb = row.repeat(MICRO_BATCH.min(rows));
        let mut f = vec![0.0f32; input.len()];
        match (&self.conditioning, labels) {
            (None, _) => self.network(&input, &temb, None, &mut f),
            (Some(c), labels) => {
                let null = vec![c.classes as u32; rows];
                match labels {
                    None => self.network(&input, &temb, Some(&null), &mut f),
                    Some(l) => {
                        assert_eq!(l.len(), rows, "one label per row");
                        self.network(&input, &temb, Some(l), &mut f);
                        if c.guidance != 0.0 {
                            let mut f_null = vec![0.0f32; input.len()];
                            self.network(&input, &temb, Some(&null), &mut f_null);
                            guide(&mut f, &f_null, c.guidance);
                        }
                    }
                }
            }
        }
        for ((o, &xv), &fv) in out.iter_mut().zip(x.iter()).zip(&f) {
            *o = (c_skip * xv as f64 + c_out * fv as f64) as f32;
        }
    }
}

/// A training chunk's buffers: the batch as [`super::trainer::BatchContext`] fills it, split
/// into images and time embeddings for the forward pass, and the pass's workspace and gradient.
pub(crate) struct UnetBuffers {
    rows: usize,
    input: Vec<f32>,
    target: Vec<f32>,
    classes: Option<Vec<u32>>,
    x: Vec<f32>,
    temb: Vec<f32>,
    dout: Vec<f32>,
    ws: Workspace,
    grads: Vec<f32>,
    /// A chunk's own gradient when it is added to `grads` (summed from zero first, so that the
    /// sum has the bits of adding separately computed gradients).
    own: Vec<f32>,
}

impl Network for Unet {
    type Buffers = UnetBuffers;
    type Packed = Packed;

    fn chunk(&self) -> usize {
        MICRO_BATCH
    }

    fn buffers(&self, rows: usize) -> UnetBuffers {
        let s = self.shape();
        let (len, w) = (s.image_len(), s.time_width());
        UnetBuffers {
            rows,
            input: vec![0.0; rows * (len + w)],
            target: vec![0.0; rows * len],
            classes: (s.classes > 0).then(|| vec![0; rows]),
            x: Vec::new(),
            temb: Vec::new(),
            dout: Vec::new(),
            ws: Workspace::for_training(),
            grads: vec![0.0; self.params()],
            own: Vec::new(),
        }
    }

    fn rows(buf: &UnetBuffers) -> usize {
        buf.rows
    }

    fn slots<'b>(&self, buf: &'b mut UnetBuffers) -> Slots<'b> {
        let s = self.shape();
        Slots {
            input: &mut buf.input,
            width: s.image_len() + s.time_width(),
            target: &mut buf.target,
            classes: buf.classes.as_deref_mut(),
        }
    }

    fn pack(&self, params: &[f32], backward: bool) -> Packed {
        Unet::pack(self, params, backward)
    }

    fn pass(
        &self,
        params: &[f32],
        packed: &Packed,
        buf: &mut UnetBuffers,
        scale: f32,
        grad: Option<bool>,
    ) -> f64 {
        let s = self.shape();
        let (len, w, n) = (s.image_len(), s.time_width(), buf.rows);
        buf.x.clear();
        buf.temb.clear();
        for row in buf.input.chunks_exact(len + w) {
            buf.x.extend_from_slice(&row[..len]);
            buf.temb.extend_from_slice(&row[len..]);
        }
        let labels = buf.classes.as_deref();
        self.forward(params, packed, &buf.x, &buf.temb, labels, n, &mut buf.ws);
        let mut loss = 0.0f64;
        buf.dout.clear();
        for (&o, &t) in buf.ws.output().iter().zip(&buf.target) {
            let e = o - t;
            loss += (e * e) as f64;
            buf.dout.push(2.0 * scale * e);
        }
        match grad {
            Some(false) => {
                buf.grads.fill(0.0);
                self.backward(params, packed, &buf.dout, &mut buf.ws, &mut buf.grads);
            }
            Some(true) => {
                buf.own.clear();
                buf.own.resize(self.params(), 0.0);
                self.backward(params, packed, &buf.dout, &mut buf.ws, &mut buf.own);
                for (g, &o) in buf.grads.iter_mut().zip(&buf.own) {
                    *g += o;
                }
            }
            None => {}
        }
        loss
    }

    fn grads(buf: &UnetBuffers) -> &[f32] {
        &buf.grads
    }

    fn adam(
        &self,
        adam: &mut Adam,
        params: &mut [f32],
        grads: &[&[f32]],
        scale: f32,
        lr: f32,
        packed: &mut Packed,
    ) {
        adam.step(params, grads, scale, lr);
        self.repack(params, packed, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::denoiser::Conditioning;
    use crate::diffusion::trainer::LrDecay;
    use crate::rng::{Role, stream};
    use ndarray::Array2;

    fn config(batch_size: usize) -> TrainConfig {
        TrainConfig {
            hidden: Vec::new(),
            time_embedding: 8,
            objective: Objective::Eps,
            steps: 3,
            epochs: None,
            batch_size,
            lr: 1e-3,
            warmup_steps: 0,
            lr_decay: LrDecay::None,
            grad_clip: Some(1.0),
            ema: None,
            early_stopping: None,
            conditioning: Some(Conditioning {
                classes: 3,
                label_dropout: 0.2,
                guidance: 0.5,
            }),
        }
    }

    fn arch() -> UnetArch {
        UnetArch {
            channels: vec![8, 16],
            blocks: 1,
            groups: 4,
            attention: true,
        }
    }

    fn data() -> (Array2<f32>, Vec<u32>) {
        let x = crate::distributions::standard_normals(50, 64, &mut stream(8, 0, Role::RealInit))
            .mapv(|v| v as f32);
        (x, (0..50).map(|i| (i % 3) as u32).collect())
    }

    /// A batch of three chunks trains to the same bits on one thread and on two: three full
    /// chunks (one thread runs them in turn in the first chunk's buffers, adding gradients) and
    /// 16, 16 and 8 images (separate buffers); denoising gives the same bits too.
    #[test]
    fn training_and_denoising_are_bit_identical_at_one_and_two_threads() {
        let (x, labels) = data();
        let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
        let run = |threads: usize, batch: usize| {
            crate::experiment::with_threads(threads, || {
                let mut rng = stream(9, 0, Role::Fit);
                let cfg = config(batch);
                let net = UnetDenoiser::train_weighted(
                    x.view(),
                    Some(&labels),
                    None,
                    &cfg,
                    &arch(),
                    &schedule,
                    None,
                    &mut rng,
                )
                .unwrap();
                let mut out = Array2::zeros(x.dim());
                net.denoise(x.view(), 0.7, Some(&labels), out.view_mut());
                (net.params().to_vec(), out)
            })
            .unwrap()
        };
        for batch in [48, 40] {
            let one = run(1, batch);
            assert!(
                one == run(2, batch),
                "batch {batch}: 1 and 2 threads differ"
            );
            assert!(one.0.iter().all(|v| v.is_finite()));
        }
    }

    /// A saved U-Net loads to the same weights and denoises to the same bits; a file for another
    /// architecture is one clear error.
    #[test]
    fn a_saved_unet_loads_to_the_same_denoiser() {
        let (x, labels) = data();
        let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
        let mut rng = stream(3, 0, Role::Fit);
        let net = UnetDenoiser::train_weighted(
            x.view(),
            Some(&labels),
            None,
            &config(16),
            &arch(),
            &schedule,
            None,
            &mut rng,
        )
        .unwrap();
        let mut file = crate::data::tensors::TensorFile::new("test");
        net.save(&mut file);
        let back = UnetDenoiser::load(&file, schedule.clone()).unwrap();
        assert_eq!(back.params(), net.params());
        let (mut a, mut b) = (Array2::zeros(x.dim()), Array2::zeros(x.dim()));
        net.denoise(x.view(), 0.3, Some(&labels), a.view_mut());
        back.denoise(x.view(), 0.3, Some(&labels), b.view_mut());
        assert_eq!(a, b);
        file.set("channels", "8,24");
        let err = UnetDenoiser::load(&file, schedule).unwrap_err().to_string();
        assert!(
            err.contains("architecture") || err.contains("shape"),
            "{err}"
        );
    }
}
