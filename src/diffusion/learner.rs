//! `[model] kind = "diffusion"` as a learner of the loop: checked hyper-parameters that fit a
//! training set into a [`DiffusionModel`] (a fitted denoiser plus a sampling plan).

use super::closed_form::{KernelDenoiser, MixtureDenoiser, PerClass};
use super::config::{
    DenoiserErrorConfig, DenoiserKind, DiffusionConfig, NoiseKind, SamplerKind, SigmaGridKind,
    TrainKeys,
};
use super::denoiser::ErrorField;
use super::denoiser::{Clipped, Denoiser, Imperfect};
use super::denoiser::{Conditioning, training_labels};
use super::mlp::MlpDenoiser;
use super::noise::NoiseSchedule;
use super::precondition::Objective;
use super::sampler::{Sampler, SamplingPlan, Spacing};
use super::trainer::{EarlyStopping, TrainConfig};
use super::unet::{UnetArch, UnetDenoiser};
use crate::error::{Error, Result};
use crate::models::MixtureEm;
use crate::rng::Stream;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};
use std::sync::Arc;

/// Which denoiser is fitted.
#[derive(Clone, Debug)]
pub enum DenoiserSpec {
    /// Yi et al.'s empirical optimum (the KDE denoiser with h = 0).
    Empirical,
    /// Exact denoiser of the training set's KDE with bandwidth h (data units).
    Kde {
        /// Bandwidth.
        bandwidth: f64,
    },
    /// Exact posterior mean of a Gaussian mixture fitted by EM.
    GmmExact(MixtureEm),
    /// A trained MLP.
    Mlp(TrainConfig),
    /// A trained U-Net.
    Unet(TrainConfig, UnetArch),
}

/// A checked diffusion learner.
#[derive(Clone, Debug)]
pub struct DiffusionLearner {
    /// The denoiser fitted every generation.
    pub denoiser: DenoiserSpec,
    /// How samples are drawn (in standardised units when `standardize`).
    pub plan: SamplingPlan,
    /// Whether training data are shifted and scaled to mean 0 and unit overall variance.
    pub standardize: bool,
    /// Controlled error added to the fitted denoiser.
    pub error: Option<DenoiserErrorConfig>,
    /// Box [lo, hi] (data units) that the denoiser's output is clipped to.
    pub clip: Option<[f64; 2]>,
    /// Class conditioning (`model.conditional = true`); its number of classes is 0 until
    /// [`DiffusionLearner::set_classes`] gives the target's.
    pub(crate) conditioning: Option<Conditioning>,
    resolved: DiffusionConfig,
}

fn positive(key: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(Error::config(format!(
            "model.{key} = {v}: expected a number > 0"
        )))
    }
}

/// `v` when it is in `lo..=hi`, else an error naming `key` and the range.
fn count_in(key: &str, v: usize, lo: usize, hi: usize) -> Result<usize> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(Error::config(format!(
            "model.{key} = {v}: expected {lo} … {hi}"
        )))
    }
}

/// Most diffusion steps T of a VP schedule (its tables hold T values).
const MAX_DIFFUSION_STEPS: usize = 100_000;
/// Most sampling steps of a generation.
const MAX_SAMPLE_STEPS: usize = 1_000_000;
/// Widest hidden layer, time embedding and mini-batch of the MLP denoiser.
const MAX_WIDTH: usize = 1 << 16;
const MAX_LAYERS: usize = 64;
const MAX_BATCH: usize = 1 << 20;
/// Most resolutions of a U-Net (each halves the image side).
const MAX_LEVELS: usize = 6;
/// Most feature maps of a U-Net level.
const MAX_CHANNELS: usize = 1024;

impl DiffusionLearner {
    /// Checks the values of `[model]` (kind = "diffusion", parsed and resolved by
    /// [`DiffusionConfig::from_table`]) and builds the learner.
    pub fn from_config(cfg: &DiffusionConfig) -> Result<Self> {
        let schedule = match cfg.noise {
            NoiseKind::VpLinear {
                diffusion_steps,
                beta_min: b0,
                beta_max: b1,
            } => {
                count_in("diffusion_steps", diffusion_steps, 2, MAX_DIFFUSION_STEPS)?;
                if !(b0 > 0.0 && b0 <= b1 && b1 < 1.0) {
                    return Err(Error::config(format!(
                        "model.beta_min = {b0}, beta_max = {b1}: expected 0 < beta_min ≤ beta_max < 1"
                    )));
                }
                NoiseSchedule::vp_linear(b0, b1, diffusion_steps)
            }
            NoiseKind::VpCosine { diffusion_steps } => {
                count_in("diffusion_steps", diffusion_steps, 2, MAX_DIFFUSION_STEPS)?;
                NoiseSchedule::vp_cosine(diffusion_steps, 0.008)
            }
            NoiseKind::Ou { t_max } => NoiseSchedule::Ou {
                t_max: positive("t_max", t_max)?,
            },
            NoiseKind::Ve {
                sigma_min,
                sigma_max,
            }
            | NoiseKind::Edm {
                sigma_min,
                sigma_max,
                ..
            } => {
                let (lo, hi) = (
                    positive("sigma_min", sigma_min)?,
                    positive("sigma_max", sigma_max)?,
                );
                if lo >= hi {
                    return Err(Error::config(format!(
                        "model.sigma_min = {lo}, sigma_max = {hi}: expected sigma_min < sigma_max"
                    )));
                }
                match cfg.noise {
                    NoiseKind::Edm { rho, .. } => NoiseSchedule::Edm {
                        sigma_min: lo,
                        sigma_max: hi,
                        rho: positive("rho", rho)?,
                    },
                    _ => NoiseSchedule::Ve {
                        sigma_min: lo,
                        sigma_max: hi,
                    },
                }
            }
        };
        let sampler = match cfg.sampler {
            SamplerKind::Ddpm => Sampler::Ddpm,
            SamplerKind::Ddim { eta } => {
                if !(0.0..=1.0).contains(&eta) {
                    return Err(Error::config(format!(
                        "model.eta = {eta}: expected 0 ≤ eta ≤ 1"
                    )));
                }
                Sampler::Ddim { eta }
            }
            SamplerKind::EulerMaruyama => Sampler::EulerMaruyama,
            SamplerKind::Euler => Sampler::Euler,
            SamplerKind::Heun => Sampler::Heun,
            SamplerKind::DpmSolver2M => Sampler::DpmSolver2M,
        };
        let spacing = match cfg.sigma_grid {
            SigmaGridKind::Schedule => Spacing::Schedule,
            SigmaGridKind::Karras { grid_rho } => Spacing::Karras {
                rho: positive("grid_rho", grid_rho)?,
            },
        };
        let steps = cfg.sample_steps.expect("resolved");
        count_in("sample_steps", steps, 1, MAX_SAMPLE_STEPS)?;
        let t_min = cfg.t_min.expect("resolved");
        if !(t_min >= 0.0 && t_min < schedule.t_end()) {
            return Err(Error::config(format!(
                "model.t_min = {t_min}: expected 0 ≤ t_min < {} (the schedule's end time)",
                schedule.t_end()
            )));
        }
        if !cfg.denoise_final && schedule.sigma(t_min) == 0.0 {
            return Err(Error::config(
                "model.denoise_final = false needs t_min > 0 (the grid would end at σ = 0)",
            ));
        }
        let plan = SamplingPlan {
            schedule,
            sampler,
            steps,
            t_min,
            denoise_final: cfg.denoise_final,
            spacing,
        };
        let denoiser = match &cfg.denoiser {
            DenoiserKind::Empirical => DenoiserSpec::Empirical,
            DenoiserKind::Kde { bandwidth } => {
                let h = bandwidth.ok_or_else(|| {
                    Error::config("model.bandwidth: denoiser = \"kde\" needs a bandwidth > 0")
                })?;
                let h = crate::data::data_scale("model.bandwidth", positive("bandwidth", h)?)?;
                DenoiserSpec::Kde { bandwidth: h }
            }
            DenoiserKind::GmmExact { components } => {
                if *components == 0 {
                    return Err(Error::config("model.components: expected at least 1"));
                }
                DenoiserSpec::GmmExact(MixtureEm::with_components(*components))
            }
            DenoiserKind::Mlp(m) => {
                if m.hidden.is_empty() || m.hidden.len() > MAX_LAYERS || m.hidden.contains(&0) {
                    return Err(Error::config(format!(
                        "model.hidden: expected a list of 1 … {MAX_LAYERS} widths ≥ 1"
                    )));
                }
                for &w in &m.hidden {
                    count_in("hidden", w, 1, MAX_WIDTH)?;
                }
                let temb = m.time_embedding;
                if temb == 0 || temb % 2 == 1 || temb > MAX_WIDTH {
                    return Err(Error::config(format!(
                        "model.time_embedding = {temb}: expected an even number from 2 to {MAX_WIDTH}"
                    )));
                }
                let mut t = Self::train_config(&m.train, &plan)?;
                t.hidden = m.hidden.clone();
                t.time_embedding = temb;
                DenoiserSpec::Mlp(t)
            }
            DenoiserKind::Unet(u) => {
                if u.channels.is_empty() || u.channels.len() > MAX_LEVELS {
                    return Err(Error::config(format!(
                        "model.channels: expected a list of 1 … {MAX_LEVELS} widths (one per resolution)"
                    )));
                }
                for &c in &u.channels {
                    count_in("channels", c, 1, MAX_CHANNELS)?;
                }
                count_in("blocks", u.blocks, 1, 4)?;
                count_in("groups", u.groups, 1, MAX_CHANNELS)?;
                if let Some(c) = u.channels.iter().find(|&&c| c % u.groups != 0) {
                    return Err(Error::config(format!(
                        "model.groups = {}: expected a divisor of every width in model.channels ({c} is not a multiple)",
                        u.groups
                    )));
                }
                if u.channels[0] % 2 == 1 {
                    return Err(Error::config(format!(
                        "model.channels[0] = {}: expected an even width (it is also the time embedding's)",
                        u.channels[0]
                    )));
                }
                let mut t = Self::train_config(&u.train, &plan)?;
                t.time_embedding = u.channels[0];
                let arch = UnetArch {
                    channels: u.channels.clone(),
                    blocks: u.blocks,
                    groups: u.groups,
                    attention: u.attention,
                };
                DenoiserSpec::Unet(t, arch)
            }
        };
        if let Some(e) = &cfg.error {
            if !(e.scale.is_finite() && e.noise.is_finite() && e.noise >= 0.0) {
                return Err(Error::config(
                    "model.error: expected a finite scale and noise ≥ 0",
                ));
            }
            positive("error.length_scale", e.length_scale)?;
            for &b in &e.bias {
                crate::data::data_scale("model.error.bias", b)?;
            }
        }
        if let Some([lo, hi]) = cfg.clip
            && !(lo.is_finite() && hi.is_finite() && lo < hi)
        {
            return Err(Error::config(format!(
                "model.clip = [{lo}, {hi}]: expected [lo, hi] with lo < hi (data units)"
            )));
        }
        let trained = matches!(cfg.denoiser, DenoiserKind::Mlp(_) | DenoiserKind::Unet(_));
        let conditioning = if cfg.conditional {
            // The closed-form denoisers need no dropout: their unconditional denoiser is that of
            // all training points.
            let p = match &cfg.denoiser {
                DenoiserKind::Mlp(m) => m.train.label_dropout.expect("resolved"),
                DenoiserKind::Unet(u) => u.train.label_dropout.expect("resolved"),
                _ => 0.0,
            };
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(format!(
                    "model.label_dropout = {p}: expected 0 ≤ label_dropout < 1"
                )));
            }
            let w = cfg.guidance.expect("resolved");
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::config(format!(
                    "model.guidance = {w}: expected a number ≥ 0 (0: purely conditional)"
                )));
            }
            if w > 0.0 && p == 0.0 && trained {
                return Err(Error::config(
                    "model.guidance > 0 needs label_dropout > 0 (the unconditional model it \
                     extrapolates from is learnt from the dropped labels)",
                ));
            }
            Some(Conditioning {
                classes: 0,
                label_dropout: p,
                guidance: w,
            })
        } else {
            None
        };
        Ok(DiffusionLearner {
            denoiser,
            plan,
            standardize: cfg.standardize.expect("resolved"),
            error: cfg.error.clone(),
            clip: cfg.clip,
            conditioning,
            resolved: cfg.clone(),
        })
    }

    /// Whether the learner is class-conditional (`model.conditional = true`).
    pub fn is_conditional(&self) -> bool {
        self.conditioning.is_some()
    }

    /// Gives a class-conditional learner the number of classes of the target (`None`: the
    /// target has no labels, an error for a class-conditional learner).
    pub fn set_classes(&mut self, classes: Option<usize>) -> Result<()> {
        let Some(conditioning) = &mut self.conditioning else {
            return Ok(());
        };
        let Some(classes) = classes else {
            return Err(Error::config(
                "model.conditional = true needs a target with class labels (digits, mnist, \
                 fashion-mnist, idx, or a file target with `labels`)",
            ));
        };
        conditioning.classes = classes;
        if let DenoiserSpec::Mlp(t) | DenoiserSpec::Unet(t, _) = &mut self.denoiser {
            t.conditioning = Some(conditioning.clone());
        }
        Ok(())
    }

    /// The training keys `m` checked (a network's own keys are added by the caller).
    fn train_config(m: &TrainKeys, plan: &SamplingPlan) -> Result<TrainConfig> {
        if m.objective == Objective::OneStep && plan.schedule.step_beta(1.0).is_none() {
            return Err(Error::config(
                "model.objective = \"one-step\" needs a discrete schedule (noise = \"vp-linear\" or \"vp-cosine\")",
            ));
        }
        let steps = match (m.train_steps, m.epochs) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "model.train_steps and model.epochs: give the training budget one way, not both",
                ));
            }
            (_, Some(e)) => {
                positive("epochs", e)?;
                0
            }
            (Some(0), None) => {
                return Err(Error::config("model.train_steps: expected at least 1"));
            }
            (Some(s), None) => s,
            (None, None) => unreachable!("resolved"),
        };
        let batch_size = m.batch_size.expect("resolved");
        count_in("batch_size", batch_size, 1, MAX_BATCH)?;
        let lr = positive("lr", m.lr.expect("resolved"))?;
        let grad_clip = m.grad_clip.map(|c| positive("grad_clip", c)).transpose()?;
        if let Some(e) = m.ema
            && !(0.0..1.0).contains(&e)
        {
            return Err(Error::config(format!(
                "model.ema = {e}: expected 0 ≤ ema < 1"
            )));
        }
        let early_stopping = match m.early_stopping_fraction {
            None => None,
            Some(f) => {
                if !(f > 0.0 && f < 1.0) {
                    return Err(Error::config(format!(
                        "model.early_stopping_fraction = {f}: expected 0 < fraction < 1"
                    )));
                }
                let every = m.eval_every.expect("resolved");
                if every == 0 {
                    return Err(Error::config("model.eval_every: expected at least 1"));
                }
                Some(EarlyStopping {
                    fraction: f,
                    patience: m.patience.expect("resolved"),
                    every,
                })
            }
        };
        Ok(TrainConfig {
            hidden: Vec::new(),
            time_embedding: 0,
            objective: m.objective,
            steps,
            epochs: m.epochs,
            batch_size,
            lr,
            warmup_steps: m.warmup_steps,
            lr_decay: m.lr_decay,
            grad_clip,
            ema: m.ema,
            early_stopping,
            conditioning: None,
        })
    }

    /// The configuration with every default that applies written out.
    pub fn resolved_config(&self) -> DiffusionConfig {
        self.resolved.clone()
    }

    /// Smallest training set this learner can fit.
    pub fn min_points(&self) -> usize {
        match &self.denoiser {
            DenoiserSpec::GmmExact(em) => em.components.max(2),
            DenoiserSpec::Mlp(t) | DenoiserSpec::Unet(t, _) if t.early_stopping.is_some() => 4,
            _ => 2,
        }
    }

    /// Fits `data` (with its `labels`, which a class-conditional learner needs); `previous`
    /// gives the warm start (MLP weights) when given.
    pub fn fit(
        &self,
        data: ArrayView2<f32>,
        labels: Option<&[u32]>,
        previous: Option<&DiffusionModel>,
        rng: &mut Stream,
    ) -> Result<DiffusionModel> {
        self.fit_weighted(data, labels, None, previous, rng)
    }

    /// [`DiffusionLearner::fit`] with sample weights (the MLP denoiser only: its mini-batches
    /// draw rows with probability ∝ weight, see [`MlpDenoiser::train_weighted`]; the
    /// standardisation stays unweighted).
    pub fn fit_weighted(
        &self,
        data: ArrayView2<f32>,
        labels: Option<&[u32]>,
        weights: Option<&[f64]>,
        previous: Option<&DiffusionModel>,
        rng: &mut Stream,
    ) -> Result<DiffusionModel> {
        self.fit_in(data, labels, weights, previous, None, rng)
    }

    /// Fits `data` warm-started from `base` and in `base`'s standardised coordinates (its shift
    /// and scale rather than those of `data`), so that the two networks' parameters are
    /// comparable: Neon's self-trained θ₁.
    pub fn fit_in_frame_of(
        &self,
        data: ArrayView2<f32>,
        labels: Option<&[u32]>,
        base: &DiffusionModel,
        rng: &mut Stream,
    ) -> Result<DiffusionModel> {
        let frame = (base.shift.clone(), base.scale);
        self.fit_in(data, labels, None, Some(base), Some(frame), rng)
    }

    /// θ₀ + w(θ₀ − θ₁) over every network parameter, for two MLP models in the same frame (see
    /// [`DiffusionLearner::fit_in_frame_of`]); `None` for other denoisers or other frames.
    pub fn extrapolate_networks(
        &self,
        base: &DiffusionModel,
        other: &DiffusionModel,
        w: f64,
    ) -> Option<Result<DiffusionModel>> {
        let (DenoiserSpec::Mlp(t), Some(a), Some(b)) =
            (&self.denoiser, base.network(), other.network())
        else {
            return None;
        };
        if a.params().len() != b.params().len()
            || base.shift != other.shift
            || base.scale != other.scale
        {
            return None;
        }
        let w = w as f32;
        let params: Vec<f32> = a
            .params()
            .iter()
            .zip(b.params())
            .map(|(&p, &q)| p + w * (p - q))
            .collect();
        let d = base.shift.len();
        Some(
            MlpDenoiser::from_params(d, t, self.plan.schedule.clone(), params).map(|net| {
                self.assemble(
                    Fitted::Mlp(net),
                    base.shift.clone(),
                    base.scale,
                    base.class_counts.clone(),
                    base.field.clone(),
                )
            }),
        )
    }

    fn fit_in(
        &self,
        data: ArrayView2<f32>,
        labels: Option<&[u32]>,
        weights: Option<&[f64]>,
        previous: Option<&DiffusionModel>,
        frame: Option<(Array1<f64>, f64)>,
        rng: &mut Stream,
    ) -> Result<DiffusionModel> {
        if weights.is_some()
            && !matches!(self.denoiser, DenoiserSpec::Mlp(_) | DenoiserSpec::Unet(..))
        {
            return Err(Error::Run(
                "sample weights: only the mlp and unet denoisers take them".into(),
            ));
        }
        let d = data.ncols();
        let (shift, scale) = match frame {
            Some(f) => f,
            None if self.standardize => {
                let mu = crate::linalg::mean(data);
                let var = crate::linalg::covariance(data, 0).diag().sum() / d as f64;
                (mu, var.sqrt().max(1e-12))
            }
            None => (Array1::zeros(d), 1.0),
        };
        let x = standardize(data, &shift, scale);
        let class_labels = training_labels(self.conditioning.as_ref(), labels, data.nrows())?;
        let kernel = |h: f64| -> Result<Fitted> {
            let fit = |p: ArrayView2<f32>| Ok(KernelDenoiser::new(p, h));
            Ok(match class_labels {
                Some((c, l)) => Fitted::ClassKernels(PerClass::fit(x.view(), l, c, fit)?),
                None => Fitted::Kernel(fit(x.view())?),
            })
        };
        let fitted = match &self.denoiser {
            DenoiserSpec::Empirical => kernel(0.0)?,
            DenoiserSpec::Kde { bandwidth } => kernel(bandwidth / scale)?,
            DenoiserSpec::GmmExact(em) => {
                let mut fit = |p: ArrayView2<f32>| -> Result<MixtureDenoiser> {
                    let need = em.components.max(2);
                    if p.nrows() < need {
                        return Err(Error::Run(format!(
                            "gmm-exact: a class has {} training points; model.components = {} \
                             needs at least {need} per class",
                            p.nrows(),
                            em.components
                        )));
                    }
                    Ok(MixtureDenoiser::new(em.fit(p, None, rng)?))
                };
                match class_labels {
                    Some((c, l)) => Fitted::ClassMixtures(PerClass::fit(x.view(), l, c, fit)?),
                    None => Fitted::Mixture(fit(x.view())?),
                }
            }
            DenoiserSpec::Mlp(t) => {
                let t = t.budget(data.nrows());
                let init = previous.and_then(|p| p.network()).map(|n| n.params());
                Fitted::Mlp(MlpDenoiser::train_weighted(
                    x.view(),
                    labels,
                    weights,
                    &t,
                    &self.plan.schedule,
                    init,
                    rng,
                )?)
            }
            DenoiserSpec::Unet(t, arch) => {
                let t = t.budget(data.nrows());
                let init = previous.and_then(|p| match &*p.fitted {
                    Fitted::Unet(u) => Some(u.params()),
                    _ => None,
                });
                Fitted::Unet(Box::new(UnetDenoiser::train_weighted(
                    x.view(),
                    labels,
                    weights,
                    &t,
                    arch,
                    &self.plan.schedule,
                    init,
                    rng,
                )?))
            }
        };
        let class_counts =
            class_labels.map(|(c, labels)| crate::data::class_counts(labels, c.classes));
        let field = self
            .error
            .as_ref()
            .map(|e| ErrorField::draw(d, e.length_scale / scale, rng));
        Ok(self.assemble(fitted, shift, scale, class_counts, field))
    }

    /// The model of a fitted denoiser (standardised units): this learner's controlled error
    /// (with its random `field`, drawn when fitting) and clip around it, and its sampling plan.
    pub(crate) fn assemble(
        &self,
        fitted: Fitted,
        shift: Array1<f64>,
        scale: f64,
        class_counts: Option<Vec<usize>>,
        field: Option<ErrorField>,
    ) -> DiffusionModel {
        let fitted = Arc::new(fitted);
        let denoiser: Arc<dyn Denoiser> = match (&self.error, &field) {
            (Some(e), Some(f)) => {
                let bias: Vec<f64> = e.bias.iter().map(|b| b / scale).collect();
                Arc::new(Imperfect::new(
                    fitted.clone(),
                    e.scale,
                    &bias,
                    e.noise / scale,
                    f.clone(),
                ))
            }
            _ => fitted.clone(),
        };
        let denoiser: Arc<dyn Denoiser> = match self.clip {
            Some([lo, hi]) => {
                let bound = |v: f64| -> Vec<f32> {
                    shift.iter().map(|&m| ((v - m) / scale) as f32).collect()
                };
                Arc::new(Clipped::new(denoiser, bound(lo), bound(hi)))
            }
            None => denoiser,
        };
        DiffusionModel {
            fitted,
            denoiser,
            plan: self.plan.clone(),
            shift,
            scale,
            class_counts,
            field,
        }
    }
}

fn standardize(data: ArrayView2<f32>, shift: &Array1<f64>, scale: f64) -> Array2<f32> {
    let mut x = data.to_owned();
    for mut row in x.rows_mut() {
        for (v, &m) in row.iter_mut().zip(shift) {
            *v = ((*v as f64 - m) / scale) as f32;
        }
    }
    x
}

/// The fitted denoiser of one generation.
#[derive(Debug)]
pub enum Fitted {
    /// Empirical or KDE denoiser.
    Kernel(KernelDenoiser),
    /// Class-conditional empirical or KDE denoisers.
    ClassKernels(PerClass<KernelDenoiser>),
    /// Class-conditional Gaussian-mixture posterior means (a mixture fitted per class).
    ClassMixtures(PerClass<MixtureDenoiser>),
    /// Gaussian-mixture posterior mean.
    Mixture(MixtureDenoiser),
    /// Trained MLP.
    Mlp(MlpDenoiser),
    /// Trained U-Net.
    Unet(Box<UnetDenoiser>),
}

impl Denoiser for Fitted {
    fn dim(&self) -> usize {
        match self {
            Fitted::Kernel(k) => k.dim(),
            Fitted::ClassKernels(k) => k.dim(),
            Fitted::ClassMixtures(m) => m.dim(),
            Fitted::Mixture(m) => m.dim(),
            Fitted::Mlp(n) => n.dim(),
            Fitted::Unet(n) => n.dim(),
        }
    }
    fn denoise(
        &self,
        x: ArrayView2<f32>,
        sigma: f64,
        labels: Option<&[u32]>,
        out: ArrayViewMut2<f32>,
    ) {
        match self {
            Fitted::Kernel(k) => k.denoise(x, sigma, labels, out),
            Fitted::ClassKernels(k) => k.denoise(x, sigma, labels, out),
            Fitted::ClassMixtures(m) => m.denoise(x, sigma, labels, out),
            Fitted::Mixture(m) => m.denoise(x, sigma, labels, out),
            Fitted::Mlp(n) => n.denoise(x, sigma, labels, out),
            Fitted::Unet(n) => n.denoise(x, sigma, labels, out),
        }
    }
}

/// A fitted diffusion model: a denoiser in standardised units, the sampling plan, and the affine
/// map back to data units (x = shift + scale·x_std).
#[derive(Clone)]
pub struct DiffusionModel {
    pub(crate) fitted: Arc<Fitted>,
    denoiser: Arc<dyn Denoiser>,
    /// How samples are drawn.
    pub plan: SamplingPlan,
    /// Per-coordinate shift (data mean when standardising, else 0).
    pub shift: Array1<f64>,
    /// Overall scale (data standard deviation when standardising, else 1).
    pub scale: f64,
    /// Points per class in the training set of a class-conditional model: the class
    /// proportions its samples follow.
    pub class_counts: Option<Vec<usize>>,
    /// The random field of the controlled error (`[model.error]`), in standardised units.
    pub(crate) field: Option<ErrorField>,
}

impl std::fmt::Debug for DiffusionModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffusionModel")
            .field("fitted", &self.fitted)
            .field("plan", &self.plan)
            .field("shift", &self.shift)
            .field("scale", &self.scale)
            .field("class_counts", &self.class_counts)
            .finish()
    }
}

impl DiffusionModel {
    /// A model from a denoiser (data units, no standardisation) and a plan.
    pub fn from_parts(fitted: Fitted, plan: SamplingPlan) -> Self {
        let d = fitted.dim();
        let fitted = Arc::new(fitted);
        DiffusionModel {
            denoiser: fitted.clone(),
            fitted,
            plan,
            shift: Array1::zeros(d),
            scale: 1.0,
            class_counts: None,
            field: None,
        }
    }

    /// The trained network, for an MLP denoiser.
    pub fn network(&self) -> Option<&MlpDenoiser> {
        match &*self.fitted {
            Fitted::Mlp(n) => Some(n),
            _ => None,
        }
    }

    /// The denoiser the sampler uses (with any controlled error), in standardised units.
    pub fn denoiser(&self) -> &dyn Denoiser {
        &*self.denoiser
    }

    fn to_data_units(&self, mut x: Array2<f32>) -> Array2<f32> {
        for mut row in x.rows_mut() {
            for (v, &m) in row.iter_mut().zip(&self.shift) {
                *v = (m + self.scale * *v as f64) as f32;
            }
        }
        x
    }

    /// Draws `n` samples (data units).
    pub fn generate(&self, n: usize, rng: &mut Stream) -> Array2<f32> {
        self.generate_labeled(n, rng).0
    }

    /// Draws `n` samples (data units) with their labels for a class-conditional model: the
    /// classes in the proportions of its training set (largest-remainder counts, see
    /// [`crate::data::apportion`]) in a random order drawn from `rng`. Other models: no labels.
    pub fn generate_labeled(&self, n: usize, rng: &mut Stream) -> (Array2<f32>, Option<Vec<u32>>) {
        let labels = self.class_counts.as_ref().map(|counts| {
            use rand::seq::SliceRandom;
            let mut labels: Vec<u32> = crate::data::apportion(counts, n)
                .iter()
                .enumerate()
                .flat_map(|(c, &k)| std::iter::repeat_n(c as u32, k))
                .collect();
            labels.shuffle(rng);
            labels
        });
        let x = self
            .plan
            .generate(&*self.denoiser, n, labels.as_deref(), rng);
        (self.to_data_units(x), labels)
    }

    /// Reconstruction from time `t` of the schedule: noise `x0` (data units) forward to t and run
    /// the sampler back (Yamaguchi & Fukuda), conditioned on each point's label when `labels`
    /// are given and the model is class-conditional. At t ≤ t_min: `x0` itself.
    pub fn reconstruct(
        &self,
        x0: ArrayView2<f32>,
        labels: Option<&[u32]>,
        t: f64,
        rng: &mut Stream,
    ) -> Array2<f32> {
        if t <= self.plan.t_min {
            // Nothing to undo: the originals themselves, without a round trip through the
            // standardised units (which is not exact in f32).
            return x0.to_owned();
        }
        let x = standardize(x0, &self.shift, self.scale);
        let labels = labels.filter(|_| self.class_counts.is_some());
        let out = self
            .plan
            .reconstruct(&*self.denoiser, x.view(), labels, t, rng);
        self.to_data_units(out)
    }
}
