//! `[model] kind = "diffusion"` as a learner of the loop: checked hyper-parameters that fit a
//! training set into a [`DiffusionModel`] (a fitted denoiser plus a sampling plan).

use super::closed_form::{KernelDenoiser, MixtureDenoiser, PerClass};
use super::config::{DenoiserErrorConfig, DiffusionConfig};
use super::denoiser::ErrorField;
use super::denoiser::{Clipped, Denoiser, Imperfect};
use super::noise::NoiseSchedule;
use super::sampler::{Sampler, SamplingPlan};
use super::trained::{
    Conditioning, EarlyStopping, MlpDenoiser, Objective, TrainConfig, training_labels,
};
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
    conditioning: Option<Conditioning>,
    resolved: DiffusionConfig,
}

/// Names a config key that the chosen options do not use.
fn unused(key: &str, value: bool, why: &str) -> Result<()> {
    if value {
        Err(Error::config(format!(
            "model.{key}: not used {why}; remove it"
        )))
    } else {
        Ok(())
    }
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

impl DiffusionLearner {
    /// Checks `[model]` (kind = "diffusion") and builds the learner.
    pub fn from_config(cfg: &DiffusionConfig) -> Result<Self> {
        let mut r = DiffusionConfig {
            denoiser: cfg.denoiser.clone(),
            ..Default::default()
        };
        // Noise schedule.
        let noise = cfg.noise.clone().unwrap_or_else(|| "vp-linear".into());
        let discrete = matches!(noise.as_str(), "vp-linear" | "vp-cosine");
        unused(
            "diffusion_steps",
            cfg.diffusion_steps.is_some() && !discrete,
            "by this noise schedule (only vp-linear and vp-cosine)",
        )?;
        unused(
            "beta_min",
            cfg.beta_min.is_some() && noise != "vp-linear",
            "unless noise = \"vp-linear\"",
        )?;
        unused(
            "beta_max",
            cfg.beta_max.is_some() && noise != "vp-linear",
            "unless noise = \"vp-linear\"",
        )?;
        unused(
            "t_max",
            cfg.t_max.is_some() && noise != "ou",
            "unless noise = \"ou\"",
        )?;
        let ve_edm = matches!(noise.as_str(), "ve" | "edm");
        unused(
            "sigma_min",
            cfg.sigma_min.is_some() && !ve_edm,
            "unless noise is \"ve\" or \"edm\"",
        )?;
        unused(
            "sigma_max",
            cfg.sigma_max.is_some() && !ve_edm,
            "unless noise is \"ve\" or \"edm\"",
        )?;
        unused(
            "rho",
            cfg.rho.is_some() && noise != "edm",
            "unless noise = \"edm\"",
        )?;
        let schedule = match noise.as_str() {
            "vp-linear" | "vp-cosine" => {
                let steps = cfg.diffusion_steps.unwrap_or(1000);
                if steps < 2 {
                    return Err(Error::config("model.diffusion_steps: expected at least 2"));
                }
                r.diffusion_steps = Some(steps);
                if noise == "vp-linear" {
                    let b0 = cfg.beta_min.unwrap_or(1e-4);
                    let b1 = cfg.beta_max.unwrap_or(0.02);
                    if !(b0 > 0.0 && b0 <= b1 && b1 < 1.0) {
                        return Err(Error::config(format!(
                            "model.beta_min = {b0}, beta_max = {b1}: expected 0 < beta_min ≤ beta_max < 1"
                        )));
                    }
                    r.beta_min = Some(b0);
                    r.beta_max = Some(b1);
                    NoiseSchedule::vp_linear(b0, b1, steps)
                } else {
                    NoiseSchedule::vp_cosine(steps, 0.008)
                }
            }
            "ou" => {
                let t_max = positive("t_max", cfg.t_max.unwrap_or(4.0))?;
                r.t_max = Some(t_max);
                NoiseSchedule::Ou { t_max }
            }
            "ve" | "edm" => {
                let edm = noise == "edm";
                let lo = positive(
                    "sigma_min",
                    cfg.sigma_min.unwrap_or(if edm { 0.002 } else { 0.01 }),
                )?;
                let hi = positive(
                    "sigma_max",
                    cfg.sigma_max.unwrap_or(if edm { 80.0 } else { 50.0 }),
                )?;
                if lo >= hi {
                    return Err(Error::config(format!(
                        "model.sigma_min = {lo}, sigma_max = {hi}: expected sigma_min < sigma_max"
                    )));
                }
                r.sigma_min = Some(lo);
                r.sigma_max = Some(hi);
                if edm {
                    let rho = positive("rho", cfg.rho.unwrap_or(7.0))?;
                    r.rho = Some(rho);
                    NoiseSchedule::Edm {
                        sigma_min: lo,
                        sigma_max: hi,
                        rho,
                    }
                } else {
                    NoiseSchedule::Ve {
                        sigma_min: lo,
                        sigma_max: hi,
                    }
                }
            }
            other => {
                return Err(Error::config(format!(
                    "model.noise = \"{other}\": expected \"vp-linear\", \"vp-cosine\", \"ou\", \"ve\" or \"edm\""
                )));
            }
        };
        r.noise = Some(noise.clone());
        // Sampler.
        let sampler_name = cfg.sampler.clone().unwrap_or_else(|| "ddpm".into());
        unused(
            "eta",
            cfg.eta.is_some() && sampler_name != "ddim",
            "unless sampler = \"ddim\"",
        )?;
        let sampler = match sampler_name.as_str() {
            "ddpm" => Sampler::Ddpm,
            "ddim" => {
                let eta = cfg.eta.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&eta) {
                    return Err(Error::config(format!(
                        "model.eta = {eta}: expected 0 ≤ eta ≤ 1"
                    )));
                }
                r.eta = Some(eta);
                Sampler::Ddim { eta }
            }
            "euler-maruyama" => Sampler::EulerMaruyama,
            "euler" => Sampler::Euler,
            "heun" => Sampler::Heun,
            other => {
                return Err(Error::config(format!(
                    "model.sampler = \"{other}\": expected \"ddpm\", \"ddim\", \"euler-maruyama\", \"euler\" or \"heun\""
                )));
            }
        };
        r.sampler = Some(sampler_name);
        let steps = cfg.sample_steps.unwrap_or(if discrete {
            schedule.t_end() as usize
        } else {
            100
        });
        if steps == 0 {
            return Err(Error::config("model.sample_steps: expected at least 1"));
        }
        r.sample_steps = Some(steps);
        let t_min = cfg.t_min.unwrap_or(if discrete { 1.0 } else { 0.0 });
        if !(t_min >= 0.0 && t_min < schedule.t_end()) {
            return Err(Error::config(format!(
                "model.t_min = {t_min}: expected 0 ≤ t_min < {} (the schedule's end time)",
                schedule.t_end()
            )));
        }
        let denoise_final = cfg.denoise_final.unwrap_or(true);
        if !denoise_final && schedule.sigma(t_min) == 0.0 {
            return Err(Error::config(
                "model.denoise_final = false needs t_min > 0 (the grid would end at σ = 0)",
            ));
        }
        r.t_min = Some(t_min);
        r.denoise_final = Some(denoise_final);
        let plan = SamplingPlan {
            schedule,
            sampler,
            steps,
            t_min,
            denoise_final,
        };
        // Denoiser.
        let kind = cfg.denoiser.as_str();
        let is_mlp = kind == "mlp";
        unused(
            "bandwidth",
            cfg.bandwidth.is_some() && kind != "kde",
            "unless denoiser = \"kde\"",
        )?;
        unused(
            "components",
            cfg.components.is_some() && kind != "gmm-exact",
            "unless denoiser = \"gmm-exact\"",
        )?;
        for (key, set) in [
            ("hidden", cfg.hidden.is_some()),
            ("time_embedding", cfg.time_embedding.is_some()),
            ("objective", cfg.objective.is_some()),
            ("train_steps", cfg.train_steps.is_some()),
            ("epochs", cfg.epochs.is_some()),
            ("batch_size", cfg.batch_size.is_some()),
            ("lr", cfg.lr.is_some()),
            ("warmup_steps", cfg.warmup_steps.is_some()),
            ("grad_clip", cfg.grad_clip.is_some()),
            ("ema", cfg.ema.is_some()),
            (
                "early_stopping_fraction",
                cfg.early_stopping_fraction.is_some(),
            ),
            ("patience", cfg.patience.is_some()),
            ("eval_every", cfg.eval_every.is_some()),
            ("label_dropout", cfg.label_dropout.is_some()),
        ] {
            unused(key, set && !is_mlp, "unless denoiser = \"mlp\"")?;
        }
        let denoiser = match kind {
            "empirical" => DenoiserSpec::Empirical,
            "kde" => {
                let h = cfg.bandwidth.ok_or_else(|| {
                    Error::config("model.bandwidth: denoiser = \"kde\" needs a bandwidth > 0")
                })?;
                r.bandwidth = Some(positive("bandwidth", h)?);
                DenoiserSpec::Kde { bandwidth: h }
            }
            "gmm-exact" => {
                let k = cfg.components.unwrap_or(1);
                if k == 0 {
                    return Err(Error::config("model.components: expected at least 1"));
                }
                r.components = Some(k);
                DenoiserSpec::GmmExact(MixtureEm {
                    components: k,
                    max_iter: 100,
                    tol: 1e-3,
                    reg_covar: 1e-6,
                })
            }
            "mlp" => DenoiserSpec::Mlp(Self::train_config(cfg, &plan, &mut r)?),
            other => {
                return Err(Error::config(format!(
                    "model.denoiser = \"{other}\": expected \"mlp\", \"empirical\", \"kde\" or \"gmm-exact\""
                )));
            }
        };
        let standardize = cfg.standardize.unwrap_or(is_mlp);
        r.standardize = Some(standardize);
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
        r.error = cfg.error.clone();
        if let Some([lo, hi]) = cfg.clip
            && !(lo.is_finite() && hi.is_finite() && lo < hi)
        {
            return Err(Error::config(format!(
                "model.clip = [{lo}, {hi}]: expected [lo, hi] with lo < hi (data units)"
            )));
        }
        r.clip = cfg.clip;
        let is_conditional = cfg.conditional == Some(true);
        let why = "unless model.conditional = true";
        unused(
            "label_dropout",
            cfg.label_dropout.is_some() && !is_conditional,
            why,
        )?;
        unused("guidance", cfg.guidance.is_some() && !is_conditional, why)?;
        let conditioning = if is_conditional {
            // The closed-form denoisers need no dropout: their unconditional denoiser is that of
            // all training points.
            let p = if is_mlp {
                cfg.label_dropout.unwrap_or(0.1)
            } else {
                0.0
            };
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(format!(
                    "model.label_dropout = {p}: expected 0 ≤ label_dropout < 1"
                )));
            }
            let w = cfg.guidance.unwrap_or(0.0);
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::config(format!(
                    "model.guidance = {w}: expected a number ≥ 0 (0: purely conditional)"
                )));
            }
            if w > 0.0 && p == 0.0 && is_mlp {
                return Err(Error::config(
                    "model.guidance > 0 needs label_dropout > 0 (the unconditional model it \
                     extrapolates from is learnt from the dropped labels)",
                ));
            }
            r.conditional = Some(true);
            r.label_dropout = is_mlp.then_some(p);
            r.guidance = Some(w);
            Some(Conditioning {
                classes: 0,
                label_dropout: p,
                guidance: w,
            })
        } else {
            r.conditional = cfg.conditional;
            None
        };
        Ok(DiffusionLearner {
            denoiser,
            plan,
            standardize,
            error: cfg.error.clone(),
            clip: cfg.clip,
            conditioning,
            resolved: r,
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
        if let DenoiserSpec::Mlp(t) = &mut self.denoiser {
            t.conditioning = Some(conditioning.clone());
        }
        Ok(())
    }

    fn train_config(
        cfg: &DiffusionConfig,
        plan: &SamplingPlan,
        r: &mut DiffusionConfig,
    ) -> Result<TrainConfig> {
        let hidden = cfg.hidden.clone().unwrap_or_else(|| vec![256, 256, 256]);
        if hidden.is_empty() || hidden.contains(&0) {
            return Err(Error::config(
                "model.hidden: expected a non-empty list of widths ≥ 1",
            ));
        }
        let temb = cfg.time_embedding.unwrap_or(32);
        if temb == 0 || temb % 2 == 1 {
            return Err(Error::config(format!(
                "model.time_embedding = {temb}: expected an even number ≥ 2"
            )));
        }
        let obj_name = cfg.objective.clone().unwrap_or_else(|| "eps".into());
        let objective = Objective::parse(&obj_name).ok_or_else(|| {
            Error::config(format!(
                "model.objective = \"{obj_name}\": expected \"eps\", \"x0\", \"v\" or \"one-step\""
            ))
        })?;
        if objective == Objective::OneStep && plan.schedule.step_beta(1.0).is_none() {
            return Err(Error::config(
                "model.objective = \"one-step\" needs a discrete schedule (noise = \"vp-linear\" or \"vp-cosine\")",
            ));
        }
        if cfg.train_steps.is_some() && cfg.epochs.is_some() {
            return Err(Error::config(
                "model.train_steps and model.epochs: give the training budget one way, not both",
            ));
        }
        let batch_size = cfg.batch_size.unwrap_or(512);
        if batch_size == 0 {
            return Err(Error::config("model.batch_size: expected at least 1"));
        }
        let steps = match cfg.epochs {
            Some(e) => {
                positive("epochs", e)?;
                0
            }
            None => cfg.train_steps.unwrap_or(2000),
        };
        if cfg.epochs.is_none() && steps == 0 {
            return Err(Error::config("model.train_steps: expected at least 1"));
        }
        let lr = positive("lr", cfg.lr.unwrap_or(1e-3))?;
        let warmup_steps = cfg.warmup_steps.unwrap_or(0);
        let grad_clip = cfg
            .grad_clip
            .map(|c| positive("grad_clip", c))
            .transpose()?;
        if let Some(e) = cfg.ema
            && !(0.0..1.0).contains(&e)
        {
            return Err(Error::config(format!(
                "model.ema = {e}: expected 0 ≤ ema < 1"
            )));
        }
        let early_stopping = match cfg.early_stopping_fraction {
            None => {
                unused(
                    "patience",
                    cfg.patience.is_some(),
                    "without early_stopping_fraction",
                )?;
                unused(
                    "eval_every",
                    cfg.eval_every.is_some(),
                    "without early_stopping_fraction",
                )?;
                None
            }
            Some(f) => {
                if !(f > 0.0 && f < 1.0) {
                    return Err(Error::config(format!(
                        "model.early_stopping_fraction = {f}: expected 0 < fraction < 1"
                    )));
                }
                let patience = cfg.patience.unwrap_or(5).max(1);
                let every = cfg.eval_every.unwrap_or(100);
                if every == 0 {
                    return Err(Error::config("model.eval_every: expected at least 1"));
                }
                r.early_stopping_fraction = Some(f);
                r.patience = Some(patience);
                r.eval_every = Some(every);
                Some(EarlyStopping {
                    fraction: f,
                    patience,
                    every,
                })
            }
        };
        r.hidden = Some(hidden.clone());
        r.time_embedding = Some(temb);
        r.objective = Some(obj_name);
        if cfg.epochs.is_some() {
            r.epochs = cfg.epochs;
        } else {
            r.train_steps = Some(steps);
        }
        r.batch_size = Some(batch_size);
        r.lr = Some(lr);
        r.warmup_steps = Some(warmup_steps);
        r.grad_clip = grad_clip;
        r.ema = cfg.ema;
        Ok(TrainConfig {
            hidden,
            time_embedding: temb,
            objective,
            steps,
            epochs: cfg.epochs,
            batch_size,
            lr,
            warmup_steps,
            grad_clip,
            ema: cfg.ema,
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
            DenoiserSpec::Mlp(t) if t.early_stopping.is_some() => 4,
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
        let d = data.ncols();
        let (shift, scale) = if self.standardize {
            let mu = crate::linalg::mean(data);
            let var = crate::linalg::covariance(data, 0).diag().sum() / d as f64;
            (mu, var.sqrt().max(1e-12))
        } else {
            (Array1::zeros(d), 1.0)
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
                let mut t = t.clone();
                if let Some(e) = t.epochs {
                    t.steps =
                        ((e * data.nrows() as f64 / t.batch_size as f64).ceil() as usize).max(1);
                }
                let init = previous.and_then(|p| p.network()).map(|n| n.params());
                Fitted::Mlp(MlpDenoiser::train(
                    x.view(),
                    labels,
                    &t,
                    &self.plan.schedule,
                    init,
                    rng,
                )?)
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
}

impl Denoiser for Fitted {
    fn dim(&self) -> usize {
        match self {
            Fitted::Kernel(k) => k.dim(),
            Fitted::ClassKernels(k) => k.dim(),
            Fitted::ClassMixtures(m) => m.dim(),
            Fitted::Mixture(m) => m.dim(),
            Fitted::Mlp(n) => n.dim(),
        }
    }
    fn denoise(&self, x: ArrayView2<f32>, sigma: f64, out: ArrayViewMut2<f32>) {
        match self {
            Fitted::Kernel(k) => k.denoise(x, sigma, out),
            Fitted::ClassKernels(k) => k.denoise(x, sigma, out),
            Fitted::ClassMixtures(m) => m.denoise(x, sigma, out),
            Fitted::Mixture(m) => m.denoise(x, sigma, out),
            Fitted::Mlp(n) => n.denoise(x, sigma, out),
        }
    }
    fn denoise_labeled(
        &self,
        x: ArrayView2<f32>,
        labels: &[u32],
        sigma: f64,
        out: ArrayViewMut2<f32>,
    ) {
        match self {
            Fitted::Mlp(n) => n.denoise_labeled(x, labels, sigma, out),
            Fitted::ClassKernels(k) => k.denoise_labeled(x, labels, sigma, out),
            Fitted::ClassMixtures(m) => m.denoise_labeled(x, labels, sigma, out),
            _ => self.denoise(x, sigma, out),
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
