//! Training the MLP denoiser with Adam: mini-batches of (x₀, σ, ε) with σ from the noise
//! schedule's training distribution ([`NoiseSchedule::training_sigma`]), the ε, x₀, v or
//! one-step-noise regression target, chunks summed in a fixed order (bit-identical at any thread
//! count), EMA weights and early stopping on a held-out loss.

use super::denoiser::{Conditioning, training_labels};
use super::mlp::{MlpDenoiser, input_width};
use super::noise::NoiseSchedule;
use super::precondition::{Objective, preconditioning, time_embedding};
use crate::distributions::fill_standard_normals;
use crate::error::{Error, Result};
use crate::nn::mlp::{
    Adam, MlpShape, PackedWeights, Workspace, backward, backward_add, forward_train, init_params,
    loss_grad,
};
use crate::rng::Stream;
use ndarray::ArrayView2;
use rand::seq::SliceRandom;
use rand::{Rng, RngExt, SeedableRng};
use rayon::prelude::*;

/// Architecture and training budget of the MLP denoiser.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Hidden widths.
    pub hidden: Vec<usize>,
    /// Time-embedding size (even).
    pub time_embedding: usize,
    /// Regression objective.
    pub objective: Objective,
    /// Adam steps (already resolved from epochs when given so).
    pub steps: usize,
    /// Epochs, when the budget was given that way (steps = ⌈epochs·n/batch⌉).
    pub epochs: Option<f64>,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// The learning rate after the warm-up.
    pub lr_decay: LrDecay,
    /// Global gradient-norm clip.
    pub grad_clip: Option<f64>,
    /// EMA decay of the sampling weights.
    pub ema: Option<f64>,
    /// Early stopping on a held-out denoising loss.
    pub early_stopping: Option<EarlyStopping>,
    /// Class conditioning (a class-conditional network), if any.
    pub conditioning: Option<Conditioning>,
}

/// How the learning rate moves after the warm-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrDecay {
    /// It stays at `lr`.
    #[default]
    None,
    /// Half a cosine from `lr` down to 0 at the last step (Loshchilov & Hutter 2017, without
    /// restarts): lr·½(1 + cos(π·s/S)) at step s of the S steps after the warm-up.
    Cosine,
}

impl TrainConfig {
    /// The learning rate of step `step` (0-based): the linear warm-up to `lr` over
    /// `warmup_steps`, then `lr_decay`.
    pub fn lr_at(&self, step: usize) -> f64 {
        let warm = if self.warmup_steps > 0 {
            ((step + 1) as f64 / self.warmup_steps as f64).min(1.0)
        } else {
            1.0
        };
        let decay = match self.lr_decay {
            LrDecay::None => 1.0,
            LrDecay::Cosine => {
                let after = self.steps.saturating_sub(self.warmup_steps).max(1);
                let s = step.saturating_sub(self.warmup_steps).min(after);
                0.5 * (1.0 + (std::f64::consts::PI * s as f64 / after as f64).cos())
            }
        };
        self.lr * warm * decay
    }

    /// The config with `steps` = ⌈epochs·n/batch⌉ for a training set of `n` rows when the
    /// budget is given in epochs.
    pub fn budget(&self, n: usize) -> TrainConfig {
        let mut t = self.clone();
        if let Some(e) = t.epochs {
            t.steps = ((e * n as f64 / t.batch_size as f64).ceil() as usize).max(1);
        }
        t
    }
}

/// Early stopping: hold out `fraction` of the training set and stop after `patience`
/// evaluations (every `every` steps) without a lower held-out loss; the best weights are kept.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyStopping {
    /// Held-out fraction of the training set.
    pub fraction: f64,
    /// Evaluations without improvement before stopping.
    pub patience: usize,
    /// Steps between evaluations.
    pub every: usize,
}

/// Rows per worker chunk of a mini-batch: a batch of 512 is two chunks, run on two threads when
/// there are two. Fixed, so the gradient (a sum over chunks in order) does not depend on threads.
const TRAIN_CHUNK: usize = 256;

/// A network the trainer fits (the MLP and the U-Net): per-chunk buffers that [`BatchContext::fill`]
/// writes a mini-batch into, one forward, loss and backward pass over a chunk, and the Adam step
/// that keeps its packed weights current.
pub(crate) trait Network: Sync {
    /// One chunk's buffers.
    type Buffers: Send;
    /// The weights packed for the passes.
    type Packed: Send + Sync;
    /// Rows per chunk of a mini-batch (fixed, so that the gradient, summed over chunks in
    /// order, does not depend on the thread count).
    fn chunk(&self) -> usize;
    /// Buffers for a chunk of `rows` rows.
    fn buffers(&self, rows: usize) -> Self::Buffers;
    /// Rows of a chunk's buffers.
    fn rows(buf: &Self::Buffers) -> usize;
    /// Where a mini-batch is written.
    fn slots<'b>(&self, buf: &'b mut Self::Buffers) -> Slots<'b>;
    /// The weights packed for forward passes (and backward ones with `backward`).
    fn pack(&self, params: &[f32], backward: bool) -> Self::Packed;
    /// Forward pass and squared-error loss Σ (F − target)² (returned); with `backward`, the
    /// gradient of `scale` times it is written to the chunk's gradient (`Some(false)`) or added
    /// to it (`Some(true)`, the same bits as adding a separately computed gradient).
    fn pass(
        &self,
        params: &[f32],
        packed: &Self::Packed,
        buf: &mut Self::Buffers,
        scale: f32,
        backward: Option<bool>,
    ) -> f64;
    /// The chunk's gradient.
    fn grads(buf: &Self::Buffers) -> &[f32];
    /// One Adam update with g = scale·Σ grads, repacking `packed`.
    #[allow(clippy::too_many_arguments)]
    fn adam(
        &self,
        adam: &mut Adam,
        params: &mut [f32],
        grads: &[&[f32]],
        scale: f32,
        lr: f32,
        packed: &mut Self::Packed,
    );
}

/// Where [`BatchContext::fill`] writes one chunk of a mini-batch.
pub(crate) struct Slots<'b> {
    /// rows × `width`: c_in·x_σ in the first d values, the time embedding after it.
    pub input: &'b mut [f32],
    /// Values per input row.
    pub width: usize,
    /// rows × d regression targets.
    pub target: &'b mut [f32],
    /// A class-conditional network's classes: a one-hot block after the time embedding (the
    /// MLP), or one index per row (the U-Net); ∅ is the index `classes`.
    pub classes: Option<&'b mut [u32]>,
}

impl Network for MlpShape {
    type Buffers = Workspace;
    type Packed = PackedWeights;

    fn chunk(&self) -> usize {
        TRAIN_CHUNK
    }

    fn buffers(&self, rows: usize) -> Workspace {
        Workspace::new(self, rows)
    }

    fn rows(buf: &Workspace) -> usize {
        buf.rows()
    }

    fn slots<'b>(&self, buf: &'b mut Workspace) -> Slots<'b> {
        Slots {
            input: &mut buf.input,
            width: self.widths[0],
            target: &mut buf.target,
            classes: None,
        }
    }

    fn pack(&self, params: &[f32], backward: bool) -> PackedWeights {
        PackedWeights::new(self, params, backward)
    }

    fn pass(
        &self,
        params: &[f32],
        packed: &PackedWeights,
        ws: &mut Workspace,
        scale: f32,
        grad: Option<bool>,
    ) -> f64 {
        forward_train(self, params, packed, ws);
        let l = loss_grad(ws, scale);
        match grad {
            Some(true) => backward_add(self, packed, ws),
            Some(false) => backward(self, packed, ws),
            None => {}
        }
        l
    }

    fn grads(buf: &Workspace) -> &[f32] {
        &buf.grads
    }

    fn adam(
        &self,
        adam: &mut Adam,
        params: &mut [f32],
        grads: &[&[f32]],
        scale: f32,
        lr: f32,
        packed: &mut PackedWeights,
    ) {
        adam.step_packed(self, params, grads, scale, lr, packed);
    }
}

/// The exponential moving average of the weights over the steps run, without the initial
/// weights: m_t = β m_{t−1} + (1 − β) θ_t from m_0 = 0, read as m_t/(1 − β^t) (the weights
/// β^{t−s}(1 − β)/(1 − β^t) of θ_1 … θ_t sum to 1). Started from θ_0 instead, the average kept
/// β^t of the initial weights: 22% of the random initialisation after 1 500 steps at β = 0.999,
/// which left speckle in U-Net samples.
struct Ema {
    sum: Vec<f32>,
    decay: f64,
    steps: i32,
}

impl Ema {
    fn new(decay: f64, len: usize) -> Self {
        Ema {
            sum: vec![0.0; len],
            decay,
            steps: 0,
        }
    }

    fn update(&mut self, params: &[f32]) {
        let (a, b) = (self.decay as f32, (1.0 - self.decay) as f32);
        for (e, &p) in self.sum.iter_mut().zip(params) {
            *e = a * *e + b * p;
        }
        self.steps += 1;
    }

    /// m_t/(1 − β^t).
    fn average(&self) -> Vec<f32> {
        let k = (1.0 / (1.0 - self.decay.powi(self.steps.max(1)))) as f32;
        self.sum.iter().map(|&v| v * k).collect()
    }
}

/// What [`fit`] returns: the weights and how training went.
pub(crate) struct Trained {
    /// The trained weights (EMA or early-stopping best when set).
    pub params: Vec<f32>,
    /// Adam steps run.
    pub steps_run: usize,
    /// Mean training loss over the last 100 steps.
    pub final_loss: f64,
    /// Best held-out loss when early stopping was on.
    pub best_eval_loss: Option<f64>,
}

/// Trains `net` from `params` on `data` (rows, standardised units) with Adam: mini-batches of
/// (x₀, σ, ε) with σ from `schedule`'s training distribution and `cfg`'s objective, the chunks of
/// a batch summed in a fixed order. With `weights` w_i ≥ 0 (not all 0), each mini-batch row is
/// drawn with replacement with probability w_i / Σ w over the training rows, so the expected
/// gradient is that of the weighted loss Σ_i w_i ℓ_i / Σ w (importance-sampled SGD; the
/// unweighted path keeps its epoch permutations). Weights of held-out early-stopping rows are
/// not used. `time_embedding` is the width of the time input, `labels` a class-conditional
/// network's (checked).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit<N: Network>(
    net: &N,
    mut params: Vec<f32>,
    data: ArrayView2<f32>,
    labels: Option<&[u32]>,
    weights: Option<&[f64]>,
    cfg: &TrainConfig,
    schedule: &NoiseSchedule,
    rng: &mut Stream,
) -> Result<Trained> {
    if let Some(w) = weights {
        crate::models::check_weights(w, data.nrows())?;
    }
    let labels = training_labels(cfg.conditioning.as_ref(), labels, data.nrows())?.map(|(_, l)| l);
    // Split off the early-stopping set.
    let mut order: Vec<usize> = (0..data.nrows()).collect();
    order.shuffle(rng);
    let held = cfg
        .early_stopping
        .as_ref()
        .map(|e| ((data.nrows() as f64 * e.fraction).round() as usize).clamp(1, data.nrows() - 1))
        .unwrap_or(0);
    let (held_idx, train_idx) = order.split_at(held);
    let mut trainer = Trainer::new(
        net,
        &params,
        cfg,
        schedule,
        data,
        labels,
        train_idx.to_vec(),
        rng,
    );
    if let Some(w) = weights {
        let mut acc = 0.0;
        let cum: Vec<f64> = trainer
            .train_idx
            .iter()
            .map(|&i| {
                acc += w[i];
                acc
            })
            .collect();
        if acc <= 0.0 {
            return Err(Error::Run(
                "sample weights: every training row (outside the early-stopping set) has weight 0"
                    .into(),
            ));
        }
        trainer.row_weights = Some(cum);
        trainer.upcoming = trainer.draw_rows();
    }
    let eval = (held > 0).then(|| EvalSet::new(&trainer, held_idx, rng));
    let mut ema = cfg.ema.map(|decay| Ema::new(decay, params.len()));
    let mut best: Option<(f64, Vec<f32>)> = None;
    let mut since_best = 0;
    let mut recent = std::collections::VecDeque::with_capacity(100);
    let mut steps_run = 0;
    let watch = crate::progress::current();
    if let Some(w) = &watch {
        w.report("training", 0, cfg.steps as u64, "steps");
    }
    for step in 0..cfg.steps {
        let loss = trainer.step(&mut params, step);
        if let Some(w) = &watch {
            w.report("training", step as u64 + 1, cfg.steps as u64, "steps");
        }
        if recent.len() == 100 {
            recent.pop_front();
        }
        recent.push_back(loss);
        if let Some(e) = ema.as_mut() {
            e.update(&params);
        }
        steps_run = step + 1;
        if let (Some(ev), Some(es)) = (&eval, &cfg.early_stopping)
            && ((step + 1) % es.every == 0 || step + 1 == cfg.steps)
        {
            let averaged = ema.as_ref().map(Ema::average);
            let current = averaged.as_deref().unwrap_or(&params);
            let l = ev.loss(net, current);
            if best.as_ref().is_none_or(|(b, _)| l < *b) {
                best = Some((l, current.to_vec()));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= es.patience {
                    break;
                }
            }
        }
    }
    if !recent.iter().all(|l: &f64| l.is_finite()) {
        return Err(Error::Run(
            "denoiser training diverged (non-finite loss); lower model.lr or set model.grad_clip"
                .into(),
        ));
    }
    let final_loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    let mut best_eval_loss = None;
    if let Some((l, p)) = best {
        best_eval_loss = Some(l);
        params = p;
    } else if let Some(e) = ema {
        params = e.average();
    }
    Ok(Trained {
        params,
        steps_run,
        final_loss,
        best_eval_loss,
    })
}

impl MlpDenoiser {
    /// Trains on `data` (rows, standardised units), starting from `init` weights when given
    /// (warm start) and from PyTorch's default initialisation otherwise. A class-conditional
    /// network needs `labels` (one per row, each below the number of classes).
    pub fn train(
        data: ArrayView2<f32>,
        labels: Option<&[u32]>,
        cfg: &TrainConfig,
        schedule: &NoiseSchedule,
        init: Option<&[f32]>,
        rng: &mut Stream,
    ) -> Result<Self> {
        Self::train_weighted(data, labels, None, cfg, schedule, init, rng)
    }

    /// [`MlpDenoiser::train`] with sample weights (see [`fit`]).
    pub fn train_weighted(
        data: ArrayView2<f32>,
        labels: Option<&[u32]>,
        weights: Option<&[f64]>,
        cfg: &TrainConfig,
        schedule: &NoiseSchedule,
        init: Option<&[f32]>,
        rng: &mut Stream,
    ) -> Result<Self> {
        let dim = data.ncols();
        let shape = MlpShape::new(input_width(dim, cfg), &cfg.hidden, dim);
        let params = match init {
            Some(p) if p.len() == shape.params() => p.to_vec(),
            _ => init_params(&shape, rng),
        };
        let f = fit(&shape, params, data, labels, weights, cfg, schedule, rng)?;
        let mut net = MlpDenoiser::from_params(dim, cfg, schedule.clone(), f.params)?;
        net.steps_run = f.steps_run;
        net.final_loss = f.final_loss;
        net.best_eval_loss = f.best_eval_loss;
        Ok(net)
    }
}

/// Mini-batch construction and one Adam step, with all buffers allocated up front.
struct Trainer<'a, N: Network> {
    net: &'a N,
    cfg: &'a TrainConfig,
    schedule: NoiseSchedule,
    data: ArrayView2<'a, f32>,
    /// The training labels (class-conditional networks).
    labels: Option<&'a [u32]>,
    train_idx: Vec<usize>,
    /// Position in the current epoch's permutation.
    cursor: usize,
    /// The next step's data rows, drawn one step ahead so that they can be prefetched.
    upcoming: Vec<usize>,
    order_rng: Stream,
    /// Cumulative sample weights over `train_idx`, when rows are drawn by weight.
    row_weights: Option<Vec<f64>>,
    workers: Vec<(N::Buffers, FillScratch, Stream)>,
    /// Time embeddings of the discrete steps (DiscreteVp), one row per step.
    emb_table: Option<Vec<f32>>,
    adam: Adam,
    /// The current weights packed for the forward and backward products (packed by Adam as it
    /// updates them; only [`Trainer::step`] changes the weights).
    packed: N::Packed,
    dim: usize,
}

impl<'a, N: Network> Trainer<'a, N> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        net: &'a N,
        params: &[f32],
        cfg: &'a TrainConfig,
        schedule: &NoiseSchedule,
        data: ArrayView2<'a, f32>,
        labels: Option<&'a [u32]>,
        mut train_idx: Vec<usize>,
        rng: &mut Stream,
    ) -> Self {
        let mut order_rng = Stream::seed_from_u64(rng.next_u64());
        train_idx.shuffle(&mut order_rng);
        let batch = cfg.batch_size;
        let chunk = net.chunk();
        let workers = (0..batch.div_ceil(chunk))
            .map(|c| {
                let rows = chunk.min(batch - c * chunk);
                (
                    net.buffers(rows),
                    FillScratch::default(),
                    Stream::seed_from_u64(rng.next_u64()),
                )
            })
            .collect();
        let emb_table = match schedule {
            NoiseSchedule::DiscreteVp { betas, .. } => {
                let e = cfg.time_embedding;
                let mut table = vec![0.0f32; betas.len() * e];
                for (k, row) in table.chunks_exact_mut(e).enumerate() {
                    time_embedding(k as f64, row);
                }
                Some(table)
            }
            _ => None,
        };
        let mut trainer = Trainer {
            net,
            cfg,
            schedule: schedule.clone(),
            data,
            labels,
            train_idx,
            cursor: 0,
            upcoming: Vec::new(),
            order_rng,
            row_weights: None,
            workers,
            emb_table,
            adam: Adam::new(params.len()),
            packed: net.pack(params, true),
            dim: data.ncols(),
        };
        trainer.upcoming = trainer.draw_rows();
        trainer
    }

    /// What filling a batch reads.
    fn context(&self) -> BatchContext<'_> {
        BatchContext {
            schedule: &self.schedule,
            objective: self.cfg.objective,
            emb_table: self.emb_table.as_deref(),
            data: self.data,
            time_embedding: self.cfg.time_embedding,
            classes: self.labels.zip(self.cfg.conditioning.as_ref()),
        }
    }

    /// This step's data rows; draws the following step's and prefetches them. The rows are
    /// touched once per epoch, so they come from memory: fetched one step ahead they wait in
    /// the cache hierarchy instead (measured: the gather was 45% of `fill`, ~2% of a D = 64
    /// step).
    fn next_rows(&mut self) -> Vec<usize> {
        let next = self.draw_rows();
        prefetch_rows(self.data, &next);
        std::mem::replace(&mut self.upcoming, next)
    }

    /// The next `batch_size` rows of the epoch permutation (reshuffling at every epoch end).
    fn draw_rows(&mut self) -> Vec<usize> {
        if let Some(cum) = &self.row_weights {
            let total = *cum.last().expect("training rows");
            return (0..self.cfg.batch_size)
                .map(|_| {
                    let u = self.order_rng.random::<f64>() * total;
                    let k = cum.partition_point(|&c| c <= u).min(cum.len() - 1);
                    self.train_idx[k]
                })
                .collect();
        }
        let mut rows = Vec::with_capacity(self.cfg.batch_size);
        while rows.len() < self.cfg.batch_size {
            if self.cursor == self.train_idx.len() {
                self.train_idx.shuffle(&mut self.order_rng);
                self.cursor = 0;
            }
            rows.push(self.train_idx[self.cursor]);
            self.cursor += 1;
        }
        rows
    }

    fn step(&mut self, params: &mut [f32], step: usize) -> f64 {
        let rows = self.next_rows();
        let n_out = (self.cfg.batch_size * self.dim) as f32;
        let mut workers = std::mem::take(&mut self.workers);
        let ctx = self.context();
        let packed = &self.packed;
        let net = self.net;
        let p: &[f32] = params;
        let size = net.chunk();
        let chunk = |c: usize,
                     ws: &mut N::Buffers,
                     scratch: &mut FillScratch,
                     wrng: &mut Stream,
                     add: bool| {
            let start = c * size;
            let len = N::rows(ws);
            ctx.fill(net.slots(ws), scratch, &rows[start..start + len], wrng);
            net.pass(p, packed, ws, 1.0 / n_out, Some(add))
        };
        let same_rows = workers
            .iter()
            .all(|w| N::rows(&w.0) == N::rows(&workers[0].0));
        let one_thread = rayon::current_num_threads() == 1 && same_rows;
        let losses: Vec<f64> = if one_thread {
            // One thread: every chunk runs in the first chunk's buffers, still in cache from the
            // chunk before, with its own scratch and stream, adding its gradient to the first
            // chunk's: g₀ + g₁ + … in the order Adam adds the workers' gradients below, so the
            // same bits, without a gradient buffer per chunk to write and read back.
            let (first, rest) = workers.split_at_mut(1);
            let (ws, scratch0, rng0) = &mut first[0];
            let mut losses = vec![chunk(0, ws, scratch0, rng0, false)];
            for (c, (_, scratch, wrng)) in rest.iter_mut().enumerate() {
                losses.push(chunk(c + 1, ws, scratch, wrng, true));
            }
            losses
        } else {
            workers
                .par_iter_mut()
                .enumerate()
                .map(|(c, (ws, scratch, wrng))| chunk(c, ws, scratch, wrng, false))
                .collect()
        };
        self.workers = workers;
        let loss = losses.iter().sum::<f64>() / n_out as f64;
        let used = if one_thread { 1 } else { self.workers.len() };
        let grads: Vec<&[f32]> = self.workers[..used]
            .iter()
            .map(|(w, _, _)| N::grads(w))
            .collect();
        let mut scale = 1.0f32;
        if let Some(clip) = self.cfg.grad_clip {
            let norm = (0..params.len())
                .map(|j| {
                    let g: f32 = grads.iter().map(|g| g[j]).sum();
                    (g as f64) * (g as f64)
                })
                .sum::<f64>()
                .sqrt();
            if norm > clip {
                scale = (clip / norm) as f32;
            }
        }
        let lr = self.cfg.lr_at(step) as f32;
        self.net
            .adam(&mut self.adam, params, &grads, scale, lr, &mut self.packed);
        loss
    }
}

/// Asks the CPU to start loading the given rows of `data` (a hint: no effect on results).
fn prefetch_rows(data: ArrayView2<f32>, rows: &[usize]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(flat) = data.as_slice() {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let d = data.ncols();
        for &i in rows {
            let row = &flat[i * d..(i + 1) * d];
            // Every 64-byte line the row touches: one address per 16 floats, and the last
            // float (the row need not start on a line).
            for v in row.iter().step_by(16).chain(row.last()) {
                // SAFETY: a prefetch of an address inside `data` (it cannot fault either way).
                unsafe { _mm_prefetch::<_MM_HINT_T1>((v as *const f32).cast()) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (data, rows);
}

/// A worker's scratch for [`BatchContext::fill`], kept between steps.
#[derive(Default)]
struct FillScratch {
    /// The batch's data rows.
    x0: Vec<f32>,
    /// Uniform draws deciding label dropout, one per row (class-conditional networks).
    dropout: Vec<f32>,
    /// The batch's standard normals.
    noise: Vec<f32>,
    /// Each row's noise level and discrete step.
    levels: Vec<(f64, Option<usize>)>,
}

/// What filling a batch needs (shared read-only by the workers).
struct BatchContext<'a> {
    schedule: &'a NoiseSchedule,
    objective: Objective,
    emb_table: Option<&'a [f32]>,
    data: ArrayView2<'a, f32>,
    time_embedding: usize,
    /// The training labels and the conditioning, for a class-conditional network.
    classes: Option<(&'a [u32], &'a Conditioning)>,
}

impl BatchContext<'_> {
    /// Draws a noise level and noise for every row and writes the network input
    /// [c_in(x₀ + σε), embed(t)] (followed by the class one-hot, ∅ for a dropped label, for a
    /// class-conditional network) and the target a·x₀ + b·ε (ε' for the one-step objective).
    /// Levels are drawn row by row first, then all the batch's normals in one bulk draw, then
    /// the label-dropout draws.
    fn fill(&self, slots: Slots, scratch: &mut FillScratch, rows: &[usize], rng: &mut Stream) {
        let d = self.data.ncols();
        let Slots {
            input: inputs,
            width,
            target: targets,
            mut classes,
        } = slots;
        let temb = self.time_embedding;
        let FillScratch {
            x0,
            dropout,
            noise,
            levels,
        } = scratch;
        // Gather the batch's rows first: a tight copy loop keeps many cache misses in flight.
        x0.resize(rows.len() * d, 0.0);
        for (dst, &i) in x0.chunks_exact_mut(d).zip(rows) {
            for (o, &v) in dst.iter_mut().zip(self.data.row(i)) {
                *o = v;
            }
        }
        levels.clear();
        levels.extend(rows.iter().map(|_| self.schedule.training_sigma(rng)));
        // ε per value; the one-step objective needs two (ε₁ then ε' per row).
        let per_row = if self.objective == Objective::OneStep {
            2 * d
        } else {
            d
        };
        noise.resize(rows.len() * per_row, 0.0);
        fill_standard_normals(rng, noise);
        if self.classes.is_some() {
            dropout.clear();
            dropout.extend(rows.iter().map(|_| rng.random::<f32>()));
        }
        for (r, ((x0, noise), &(sigma, step))) in x0
            .chunks_exact(d)
            .zip(noise.chunks_exact(per_row))
            .zip(levels.iter())
            .enumerate()
        {
            let input = &mut inputs[r * width..(r + 1) * width];
            let target = &mut targets[r * d..(r + 1) * d];
            match self.objective {
                Objective::OneStep => {
                    // x_{k−1} = √ᾱ_{k−1} x₀ + √(1−ᾱ_{k−1}) ε₁, x_k = √α_k x_{k−1} + √β_k ε'.
                    let k = step.expect("one-step needs a discrete schedule");
                    let s_prev = self.schedule.sigma(k as f64 - 1.0);
                    let ab_prev = 1.0 / (1.0 + s_prev * s_prev);
                    let beta = self.schedule.step_beta(sigma).expect("discrete");
                    let (a1, b1) = (ab_prev.sqrt() as f32, (1.0 - ab_prev).sqrt() as f32);
                    let (a2, b2) = ((1.0 - beta).sqrt() as f32, beta.sqrt() as f32);
                    let (e1, e2) = noise.split_at(d);
                    for j in 0..d {
                        input[j] = a2 * (a1 * x0[j] + b1 * e1[j]) + b2 * e2[j];
                        target[j] = e2[j];
                    }
                }
                obj => {
                    let (c_in, c_skip, c_out) = preconditioning(obj, self.schedule, sigma);
                    let a = ((1.0 - c_skip) / c_out) as f32;
                    let b = (-c_skip * sigma / c_out) as f32;
                    let (ci, cs) = (c_in as f32, (c_in * sigma) as f32);
                    for j in 0..d {
                        input[j] = ci * x0[j] + cs * noise[j];
                        target[j] = a * x0[j] + b * noise[j];
                    }
                }
            }
            let emb = &mut input[d..d + temb];
            match (self.emb_table, step) {
                (Some(table), Some(k)) => emb.copy_from_slice(&table[(k - 1) * temb..k * temb]),
                _ => time_embedding(self.schedule.network_time(sigma), emb),
            }
            if let Some((labels, c)) = self.classes {
                let dropped = (dropout[r] as f64) < c.label_dropout;
                let class = if dropped {
                    c.classes
                } else {
                    labels[rows[r]] as usize
                };
                match classes.as_deref_mut() {
                    Some(index) => index[r] = class as u32,
                    None => {
                        let onehot = &mut input[d + temb..];
                        onehot.fill(0.0);
                        onehot[class] = 1.0;
                    }
                }
            }
        }
    }
}

/// A fixed held-out batch (noise drawn once) for early stopping.
/// One chunk of the held-out batch: its number of rows and their inputs, targets and class
/// indices.
type HeldOut = (usize, Vec<f32>, Vec<f32>, Option<Vec<u32>>);

struct EvalSet {
    /// Per chunk, as filled.
    chunks: Vec<HeldOut>,
    n_out: f64,
}

impl EvalSet {
    fn new<N: Network>(trainer: &Trainer<N>, idx: &[usize], rng: &mut Stream) -> Self {
        let ctx = trainer.context();
        let net = trainer.net;
        let chunks = idx
            .chunks(net.chunk())
            .map(|rows| {
                let mut buf = net.buffers(rows.len());
                ctx.fill(net.slots(&mut buf), &mut FillScratch::default(), rows, rng);
                let slots = net.slots(&mut buf);
                (
                    rows.len(),
                    slots.input.to_vec(),
                    slots.target.to_vec(),
                    slots.classes.map(|c| c.to_vec()),
                )
            })
            .collect();
        EvalSet {
            chunks,
            n_out: (idx.len() * trainer.dim) as f64,
        }
    }

    /// The mean squared error of the network with weights `params` on the held-out batch.
    fn loss<N: Network>(&self, net: &N, params: &[f32]) -> f64 {
        let packed = net.pack(params, false);
        let losses: Vec<f64> = self
            .chunks
            .par_iter()
            .map(|(rows, input, target, classes)| {
                let mut buf = net.buffers(*rows);
                let slots = net.slots(&mut buf);
                slots.input.copy_from_slice(input);
                slots.target.copy_from_slice(target);
                if let (Some(dst), Some(src)) = (slots.classes, classes) {
                    dst.copy_from_slice(src);
                }
                net.pass(params, &packed, &mut buf, 1.0, None)
            })
            .collect();
        losses.iter().sum::<f64>() / self.n_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::Denoiser;
    use crate::rng::{Role, stream};
    use ndarray::Array2;
    use rand_distr::{Distribution as _, StandardNormal};

    /// An untrained class-conditional network (3 classes, 2-D) with guidance `w`.
    fn conditional_net(w: f64) -> MlpDenoiser {
        let cfg = TrainConfig {
            hidden: vec![16, 16],
            time_embedding: 8,
            objective: Objective::Eps,
            steps: 1,
            epochs: None,
            batch_size: 8,
            lr: 1e-3,
            warmup_steps: 0,
            lr_decay: LrDecay::None,
            grad_clip: None,
            ema: None,
            early_stopping: None,
            conditioning: Some(Conditioning {
                classes: 3,
                label_dropout: 0.1,
                guidance: w,
            }),
        };
        let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
        let shape = MlpShape::new(input_width(2, &cfg), &cfg.hidden, 2);
        assert_eq!(shape.widths[0], 2 + 8 + 4);
        let params = init_params(&shape, &mut stream(5, 0, Role::Fit));
        MlpDenoiser::from_params(2, &cfg, schedule, params).unwrap()
    }

    /// The learning rate: the warm-up ramps linearly to lr; cosine decay is lr at the end of the
    /// warm-up, lr/2 halfway through the rest and falls monotonically towards 0; without decay
    /// it stays at lr.
    #[test]
    fn learning_rate_warms_up_then_follows_the_decay() {
        let mut cfg = TrainConfig {
            hidden: vec![16],
            time_embedding: 8,
            objective: Objective::Eps,
            steps: 1100,
            epochs: None,
            batch_size: 8,
            lr: 1e-3,
            warmup_steps: 100,
            lr_decay: LrDecay::None,
            grad_clip: None,
            ema: None,
            early_stopping: None,
            conditioning: None,
        };
        assert!((cfg.lr_at(49) - 0.5e-3).abs() < 1e-15);
        assert_eq!(cfg.lr_at(1099), 1e-3);
        cfg.lr_decay = LrDecay::Cosine;
        assert!((cfg.lr_at(49) - 0.5e-3).abs() < 1e-15);
        assert!((cfg.lr_at(100) - 1e-3).abs() < 1e-15);
        assert!((cfg.lr_at(600) - 0.5e-3).abs() < 1e-15);
        let lrs: Vec<f64> = (100..1100).map(|s| cfg.lr_at(s)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]));
        assert!(lrs[999] > 0.0 && lrs[999] < 1e-8);
    }

    /// The moving average is a weighted mean of the steps' weights alone: constant weights
    /// average to themselves after any number of steps, and θ_s = s averages to
    /// Σ s β^{t−s}(1 − β)/(1 − β^t).
    #[test]
    fn the_weight_average_leaves_out_the_initial_weights() {
        let mut e = Ema::new(0.999, 1);
        for _ in 0..10 {
            e.update(&[3.0]);
        }
        assert!((e.average()[0] - 3.0).abs() < 1e-5);
        let (b, t) = (0.9f64, 30);
        let mut e = Ema::new(b, 1);
        for s in 1..=t {
            e.update(&[s as f32]);
        }
        let want: f64 = (1..=t)
            .map(|s| s as f64 * b.powi(t - s) * (1.0 - b))
            .sum::<f64>()
            / (1.0 - b.powi(t));
        assert!((e.average()[0] as f64 - want).abs() < 1e-4 * want, "{want}");
    }

    /// A batch of several chunks (three, the last one short) trains to the same bits on one
    /// thread (chunks in turn in one set of buffers) and on two (chunks in parallel), and both
    /// agree when every chunk is full (two chunks of 256).
    #[test]
    fn training_is_bit_identical_at_one_and_two_threads() {
        let data =
            crate::distributions::standard_normals(700, 3, &mut stream(8, 0, Role::RealInit))
                .mapv(|v| v as f32);
        let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
        for batch_size in [2 * TRAIN_CHUNK, 2 * TRAIN_CHUNK + 40] {
            let cfg = TrainConfig {
                hidden: vec![32, 32],
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
                conditioning: None,
            };
            let params = |threads: usize| {
                crate::experiment::with_threads(threads, || {
                    let mut rng = stream(9, 0, Role::Fit);
                    MlpDenoiser::train(data.view(), None, &cfg, &schedule, None, &mut rng)
                        .unwrap()
                        .params()
                        .to_vec()
                })
                .unwrap()
            };
            let one = params(1);
            assert!(
                one == params(2),
                "batch {batch_size}: 1 and 2 threads differ"
            );
        }
    }

    /// Rows of mixed classes go through the network one class at a time: every row's output
    /// is what the network gives that row alone, and guidance w mixes the conditional and
    /// unconditional (class ∅) outputs as (1 + w)·D(x | c) − w·D(x | ∅).
    #[test]
    fn labelled_rows_are_denoised_by_their_class_and_guidance_mixes_linearly() {
        let x = crate::distributions::standard_normals(40, 2, &mut stream(6, 0, Role::Samples))
            .mapv(|v| v as f32);
        let labels: Vec<u32> = (0..40).map(|i| (i * 7 % 3) as u32).collect();
        let sigma = 0.8;
        let run = |net: &MlpDenoiser, rows: ArrayView2<f32>, labels: Option<&[u32]>| {
            let mut out = Array2::zeros(rows.dim());
            net.denoise(rows, sigma, labels, out.view_mut());
            out
        };
        let plain = conditional_net(0.0);
        let batch = run(&plain, x.view(), Some(&labels));
        for i in 0..40 {
            let one = run(
                &plain,
                x.slice(ndarray::s![i..i + 1, ..]),
                Some(&labels[i..i + 1]),
            );
            for j in 0..2 {
                assert!((one[[0, j]] - batch[[i, j]]).abs() <= 1e-5, "row {i}");
            }
        }
        // The class changes the output (the one-hot block feeds the first layer).
        let other: Vec<u32> = labels.iter().map(|&y| (y + 1) % 3).collect();
        let moved = run(&plain, x.view(), Some(&other));
        assert!((&moved - &batch).iter().any(|v| v.abs() > 1e-3));
        let w = 1.5f32;
        let guided = run(&conditional_net(w as f64), x.view(), Some(&labels));
        let uncond = run(&plain, x.view(), None);
        for ((g, c), u) in guided.iter().zip(&batch).zip(&uncond) {
            let want = (1.0 + w) * c - w * u;
            assert!(
                (g - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{g} vs {want}"
            );
        }
    }

    /// One training batch of every row of `data` (unconditional), as the trainer fills it: the
    /// network inputs and regression targets of `objective`, the time embedding taken from
    /// `table` (one row per step of the discrete `schedule`).
    fn training_pairs(
        (shape, schedule, objective): (&MlpShape, &NoiseSchedule, Objective),
        table: &[f32],
        data: ArrayView2<f32>,
        rng: &mut Stream,
    ) -> Workspace {
        let ctx = BatchContext {
            schedule,
            objective,
            emb_table: Some(table),
            data,
            time_embedding: shape.widths[0] - data.ncols(),
            classes: None,
        };
        let mut ws = Workspace::new(shape, data.nrows());
        let rows: Vec<usize> = (0..data.nrows()).collect();
        ctx.fill(
            shape.slots(&mut ws),
            &mut FillScratch::default(),
            &rows,
            rng,
        );
        ws
    }

    /// The one-step objective's optimum, mapped through its preconditioning, is the exact
    /// denoiser. For data N(0, s²): E[ε' | x_k] = √β_k x_k/(ᾱ_k s² + 1 − ᾱ_k) with
    /// x_k = c_in·y, and D(y, σ) = s² y/(s² + σ²).
    #[test]
    fn one_step_optimum_maps_to_the_exact_denoiser() {
        let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
        let s2 = 2.25;
        for k in [1usize, 10, 100, 500, 1000] {
            let sigma = schedule.sigma(k as f64);
            let abar = 1.0 / (1.0 + sigma * sigma);
            let beta = schedule.step_beta(sigma).expect("discrete");
            let (c_in, c_skip, c_out) = preconditioning(Objective::OneStep, &schedule, sigma);
            for y in [-3.0, 0.5, 2.0] {
                let f = beta.sqrt() * c_in * y / (abar * s2 + 1.0 - abar);
                let d = c_skip * y + c_out * f;
                let want = s2 * y / (s2 + sigma * sigma);
                assert!(
                    (d - want).abs() < 1e-9 * (1.0 + want.abs()),
                    "k = {k}, y = {y}: {d} vs {want}"
                );
            }
        }
    }

    /// The one-step training pairs: regressing the target ε' on the network input x_k must give
    /// the slope Cov(ε', x_k)/Var(x_k) = √β_k/(ᾱ_k s² + 1 − ᾱ_k). A two-step schedule with large
    /// β makes both steps' slopes far from each other and from the ε objective's √(1 − ᾱ_k)/V_k.
    /// Tolerance: 5 standard errors of the least-squares slope.
    #[test]
    fn one_step_pairs_have_the_theoretical_regression_slope() {
        let schedule = NoiseSchedule::vp_linear(0.2, 0.5, 2);
        let (n, s) = (40_000usize, 2.0f32);
        let mut rng = stream(7, 0, Role::Fit);
        let data = Array2::from_shape_fn((n, 1), |_| {
            let z: f32 = StandardNormal.sample(&mut rng);
            s * z
        });
        let temb = 4;
        let shape = MlpShape::new(1 + temb, &[4], 1);
        let mut table = vec![0.0f32; 2 * temb];
        for (k, row) in table.chunks_exact_mut(temb).enumerate() {
            time_embedding(k as f64, row);
        }
        let ws = training_pairs(
            (&shape, &schedule, Objective::OneStep),
            &table,
            data.view(),
            &mut rng,
        );
        // Step k is told apart by its embedding: sin((k − 1)·1) is 0 for k = 1.
        let mut sums = [(0.0f64, 0.0f64, 0.0f64, 0usize); 2];
        for r in 0..n {
            let input = &ws.input[r * (1 + temb)..(r + 1) * (1 + temb)];
            let k = usize::from(input[1].abs() > 0.5);
            let (u, t) = (input[0] as f64, ws.target[r] as f64);
            let e = &mut sums[k];
            e.0 += u * t;
            e.1 += u * u;
            e.2 += t * t;
            e.3 += 1;
        }
        for (k, &(ut, uu, tt, count)) in sums.iter().enumerate() {
            assert!(count > n / 3, "step {} drawn {count} times", k + 1);
            let sigma = schedule.sigma((k + 1) as f64);
            let abar = 1.0 / (1.0 + sigma * sigma);
            let beta = schedule.step_beta(sigma).expect("discrete");
            let want = beta.sqrt() / (abar * (s * s) as f64 + 1.0 - abar);
            let slope = ut / uu;
            let resid = (tt - slope * ut) / (count as f64 - 1.0);
            let se = (resid / uu).sqrt();
            assert!(
                (slope - want).abs() < 5.0 * se,
                "step {}: slope {slope:.5}, theory {want:.5}, se {se:.5}",
                k + 1
            );
        }
    }

    /// The ε, x₀ and v objectives regress what their definitions say, and the preconditioning
    /// maps that target back to x₀: for each training pair, with x = x₀ + σε recovered from the
    /// network input c_in·x, the target is ε, x₀ or v = (ε − σx₀)/√(1 + σ²) (Salimans & Ho in
    /// these units), and c_skip·x + c_out·target = x₀. A sign slip in a target or in c_out
    /// breaks one of the two.
    #[test]
    fn eps_x0_and_v_targets_follow_their_definitions() {
        let schedule = NoiseSchedule::vp_linear(0.3, 0.3, 1);
        let sigma = schedule.sigma(1.0);
        let n = 200;
        let data = Array2::from_shape_fn((n, 2), |(i, j)| (i as f32 * 0.37 + j as f32).sin() * 3.0);
        let temb = 4;
        let shape = MlpShape::new(2 + temb, &[4], 2);
        let table: Vec<f32> = {
            let mut t = vec![0.0f32; temb];
            time_embedding(0.0, &mut t);
            t
        };
        for objective in [Objective::Eps, Objective::X0, Objective::V] {
            let mut rng = stream(8, 0, Role::Fit);
            let ws = training_pairs(
                (&shape, &schedule, objective),
                &table,
                data.view(),
                &mut rng,
            );
            let (c_in, c_skip, c_out) = preconditioning(objective, &schedule, sigma);
            for r in 0..n {
                for j in 0..2 {
                    let x0 = data[[r, j]] as f64;
                    let x = ws.input[r * (2 + temb) + j] as f64 / c_in;
                    let eps = (x - x0) / sigma;
                    let want = match objective {
                        Objective::Eps => eps,
                        Objective::X0 => x0,
                        _ => (eps - sigma * x0) / (1.0 + sigma * sigma).sqrt(),
                    };
                    let got = ws.target[r * 2 + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                        "{objective:?}: target {got} vs {want}"
                    );
                    let d = c_skip * x + c_out * got;
                    assert!(
                        (d - x0).abs() < 1e-5 * (1.0 + x0.abs()),
                        "{objective:?}: D = {d} vs x0 = {x0}"
                    );
                }
            }
        }
    }

    /// Early stopping on 24 points with a large learning rate (the held-out loss soon stops
    /// improving): with patience 2 training ends before its budget, at an evaluation step, and
    /// keeps the weights of the best evaluation, patience × every steps earlier: a run with the
    /// budget cut to that step (whose last evaluation is that best one) returns the same bits.
    /// With a patience longer than the budget, every step runs.
    #[test]
    fn early_stopping_stops_and_keeps_the_best_weights() {
        let data = crate::distributions::standard_normals(24, 2, &mut stream(6, 0, Role::RealInit))
            .mapv(|v| v as f32);
        let schedule = NoiseSchedule::vp_linear(1e-4, 0.02, 1000);
        let cfg = |steps: usize, patience: usize| TrainConfig {
            hidden: vec![64, 64],
            time_embedding: 8,
            objective: Objective::Eps,
            steps,
            epochs: None,
            batch_size: 8,
            lr: 1e-2,
            warmup_steps: 0,
            lr_decay: LrDecay::None,
            grad_clip: None,
            ema: None,
            early_stopping: Some(EarlyStopping {
                fraction: 0.25,
                patience,
                every: 10,
            }),
            conditioning: None,
        };
        let train = |c: &TrainConfig| {
            MlpDenoiser::train(
                data.view(),
                None,
                c,
                &schedule,
                None,
                &mut stream(6, 0, Role::Fit),
            )
            .unwrap()
        };
        let budget = 3000;
        let stopped = train(&cfg(budget, 2));
        let s = stopped.steps_run;
        eprintln!("stopped after {s} of {budget} steps");
        assert!(
            s < budget && s % 10 == 0 && s >= 30,
            "stopped after {s} steps"
        );
        let best = train(&cfg(s - 20, 1000));
        assert_eq!(best.steps_run, s - 20);
        assert_eq!(
            best.params, stopped.params,
            "the best weights, not the last"
        );
        assert_eq!(best.best_eval_loss, stopped.best_eval_loss);
        assert_eq!(train(&cfg(200, 1000)).steps_run, 200);
    }
}
